"""Regenerate the bundled sample studies (run from the repository root).

    python sample_data/make_sample_data.py

Small synthetic phantoms (mri_scoring.phantom), not patient data: IMNM-like, DM-like and normal
studies in the simple layout, one IMNM-like study in BIDS layout with its segmentation under
derivatives/, one DM-like study with a fat-fraction map (percent) and a water-T2 map instead
of Dixon and STIR, and one child: an IMNM-like study of a 9.5-year-old girl (the review's mean
onset is 9.4 years), sized by the phantom's own growth rule, with her age, sex, height and mass
in study.json (children's norms, the juvenile population prior).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mri_scoring import phantom

SHAPE = (112, 112, 20)
HERE = Path(__file__).resolve().parent


def main() -> None:
    for child in HERE.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
    roles = ("fat", "water", "stir", "t1w")
    for pattern, seed in (("imnm", 1), ("dm", 2), ("normal", 3)):
        study = phantom.make_study(
            pattern, seed=seed, shape=SHAPE, roles=roles, study_id=f"sample-{pattern}"
        )
        phantom.write_study(study, HERE / f"sample-{pattern}")
    bids = phantom.make_study(
        "imnm", seed=4, shape=SHAPE, roles=("fat", "water", "stir"), study_id="sample-bids-imnm"
    )
    phantom.write_study(bids, HERE / "bids", layout="bids", subject="imnm02", session="01")
    maps = phantom.make_study(
        "dm", seed=5, shape=SHAPE, roles=("ff", "t2map"), study_id="sample-ffmap-t2map-dm"
    )
    phantom.write_study(maps, HERE / "sample-ffmap-t2map-dm", ff_scale="percent")
    child = phantom.make_study(
        "imnm", seed=6, shape=SHAPE, roles=roles, study_id="sample-child-imnm",
        age_years=9.5, sex="female",
    )
    phantom.write_study(child, HERE / "sample-child-imnm")


if __name__ == "__main__":
    main()
