"""Regenerate the bundled sample studies (run from the repository root).

    python sample_data/make_sample_data.py

Not patient data. Small synthetic phantoms (mri_scoring.phantom): IMNM-like, DM-like and normal
studies in the simple layout, one IMNM-like study in BIDS layout with its segmentation under
derivatives/, one DM-like study with a fat-fraction map (percent) and a water-T2 map instead of
Dixon and STIR; one child: an IMNM-like study of a 9.5-year-old girl (the review's mean onset is
9.4 years), sized by the phantom's own growth rule, with her age, sex, height and mass in
study.json (children's norms, the juvenile population prior); and one study on real anatomy: the
MuscleMap whole-body test segmentation (MIT, tests/data/musclemap/, see
sample-musclemap-imnm/README.md) cropped to the thighs, its skin, subcutaneous fat, septa and
marrow and IMNM-like muscle fat and edema painted by the phantom's own rules
(mri_scoring.phantom.real_anatomy).

Every array is a function of the seeds below: tests/test_sample_data.py regenerates them and
compares with the committed files.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from mri_scoring import phantom
from mri_scoring.anatomy import label_scheme
from mri_scoring.phantom.real_anatomy import paint_study

SHAPE = (112, 112, 20)
HERE = Path(__file__).resolve().parent
MUSCLEMAP = HERE.parent / "tests" / "data" / "musclemap"
REAL_NAME = "sample-musclemap-imnm"
# The thighs of the MuscleMap map: slices 66-299 (below the calf muscles, up to the hip), every
# 6th slice (9 mm), every 2nd voxel in plane (3 mm); cropped to the body with this margin (mm).
REAL_SLICES = slice(66, 300, 6)
REAL_STEP = 2
REAL_MARGIN_MM = 24.0

README = """# sample-musclemap-imnm: phantom images on real thigh anatomy

Not patient images. The label map is real anatomy: the MuscleMap toolbox's whole-body test
segmentation (github.com/MuscleMap/MuscleMap, `images/test_dseg.nii.gz` at commit
141ca85cf5f22a2f6a9751cb78f6149913eb6298; MIT licence, Copyright (c) 2023 MuscleMap,
see LICENSE here), cropped to the thighs (slices 66-299 of 352, every 6th: 9 mm; every 2nd
voxel in plane: 3 mm) with its MuscleMap label codes and names. The fat, water and STIR images
are synthetic: skin, subcutaneous fat, septa, bone cortex and marrow, and IMNM-like muscle fat
and edema, painted on it by the phantom's rules (mri_scoring.phantom.real_anatomy,
configs/phantom.yaml). Made by sample_data/make_sample_data.py.
"""


def _real_anatomy(out: Path) -> None:
    image = nib.load(MUSCLEMAP / "test_dseg_141ca85.nii.gz")
    labels = np.asarray(image.dataobj)[::REAL_STEP, ::REAL_STEP, REAL_SLICES].astype(np.int16)
    affine = image.affine.copy()
    affine[:3, :2] *= REAL_STEP
    affine[:3, 2] *= REAL_SLICES.step
    affine[:3, 3] = image.affine[:3, :3] @ [0, 0, REAL_SLICES.start] + image.affine[:3, 3]
    margin = int(np.ceil(REAL_MARGIN_MM / float(np.linalg.norm(affine[:3, 0]))))
    inside = np.nonzero(labels.any(axis=2))
    lo = [max(int(a.min()) - margin, 0) for a in inside]
    hi = [min(int(a.max()) + margin + 1, n) for a, n in zip(inside, labels.shape[:2], strict=True)]
    labels = np.ascontiguousarray(labels[lo[0]:hi[0], lo[1]:hi[1], :])
    affine[:3, 3] = affine[:3, :3] @ [lo[0], lo[1], 0] + affine[:3, 3]
    names = label_scheme("musclemap").names
    study = paint_study(labels, affine, names, "imnm", seed=6, study_id=REAL_NAME)
    folder = phantom.write_study(study, out / REAL_NAME)
    shutil.copyfile(MUSCLEMAP / "LICENSE", folder / "LICENSE")
    (folder / "README.md").write_text(README, encoding="utf-8")


def main(out: Path = HERE) -> None:
    """Write every sample study into ``out`` (default: this folder, replacing its studies)."""
    out.mkdir(parents=True, exist_ok=True)
    for child in out.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
    roles = ("fat", "water", "stir", "t1w")
    for pattern, seed in (("imnm", 1), ("dm", 2), ("normal", 3)):
        study = phantom.make_study(
            pattern, seed=seed, shape=SHAPE, roles=roles, study_id=f"sample-{pattern}"
        )
        phantom.write_study(study, out / f"sample-{pattern}")
    bids = phantom.make_study(
        "imnm", seed=4, shape=SHAPE, roles=("fat", "water", "stir"), study_id="sample-bids-imnm"
    )
    phantom.write_study(bids, out / "bids", layout="bids", subject="imnm02", session="01")
    maps = phantom.make_study(
        "dm", seed=5, shape=SHAPE, roles=("ff", "t2map"), study_id="sample-ffmap-t2map-dm"
    )
    phantom.write_study(maps, out / "sample-ffmap-t2map-dm", ff_scale="percent")
    child = phantom.make_study(
        "imnm", seed=6, shape=SHAPE, roles=roles, study_id="sample-child-imnm",
        age_years=9.5, sex="female",
    )
    phantom.write_study(child, out / "sample-child-imnm")
    _real_anatomy(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
