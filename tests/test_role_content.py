"""Files matched to a role by name are checked against their content.

Truth: the phantom's own images written under misleading names or units; each must measure what
the correctly named study measures (or be set aside with the evidence named).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from mri_scoring import phantom, score_study
from mri_scoring.io.study import load_study

from .helpers import TINY, write_phantom


@pytest.fixture(scope="module")
def imnm(tmp_path_factory):
    """An IMNM phantom with a T2 map and no STIR, and its scores."""
    made = phantom.make_study("imnm", seed=3, shape=TINY, roles=("fat", "water", "t2map", "t1w"))
    folder = phantom.write_study(made, tmp_path_factory.mktemp("ref") / "s")
    muscles = score_study(load_study(folder)).muscles.set_index("label")
    assert (muscles["edema_fraction"] > 0.05).sum() >= 4, "the reference has edema to compare"
    return folder, made, muscles


def _copy(folder, target):
    target.mkdir()
    for path in folder.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def _codes(study):
    return {q.code: q.message for q in study.qc}


def test_t2_map_under_a_stir_name_is_used_as_t2map(imnm, tmp_path):
    """Guards reading a water-T2 map in ms as STIR because its name is `*_t2w` (used both ways
    in the field): its edema would be z-scored as STIR intensities. It must be reassigned and
    give the T2-map edema of the correctly named study."""
    folder, _, truth = imnm
    study_dir = _copy(folder, tmp_path / "s")
    (study_dir / "t2map.nii.gz").rename(study_dir / "thigh_t2w.nii.gz")
    study = load_study(study_dir)
    codes = _codes(study)
    assert "role_reassigned" in codes and "stir" not in study.images
    assert "thigh_t2w.nii.gz" in codes["role_reassigned"] and "ms" in codes["role_reassigned"]
    got = score_study(study).muscles.set_index("label")
    np.testing.assert_allclose(got["edema_fraction"], truth["edema_fraction"], equal_nan=True)


def test_t2_map_in_seconds_reads_the_same_edema(imnm, tmp_path):
    """BIDS stores T2map in seconds; read as ms every muscle would be 'normal' (T2 0.035 ms).
    Converted with a note, the edema equals the ms map's."""
    folder, _, truth = imnm
    study_dir = _copy(folder, tmp_path / "s")
    img = nib.load(study_dir / "t2map.nii.gz")
    seconds = np.asanyarray(img.dataobj).astype(np.float32) / 1000.0
    nib.save(nib.Nifti1Image(seconds, img.affine), study_dir / "t2map.nii.gz")
    study = load_study(study_dir)
    assert "t2map_seconds" in _codes(study)
    got = score_study(study).muscles.set_index("label")
    np.testing.assert_allclose(got["edema_fraction"], truth["edema_fraction"], equal_nan=True)


def test_percent_ff_declared_as_fraction_is_flagged(tmp_path):
    """study.json says fraction, the map holds percent: flagged with the values, read as
    percent (it used to be refused as out of range, or would read every muscle as >100 %)."""
    folder, made = write_phantom(tmp_path / "p", "dm", seed=2, ff_scale="percent",
                                 roles=("ff", "stir"))  # fmt: skip
    meta = json.loads((folder / "study.json").read_text())
    meta["fat_fraction_scale"] = "fraction"
    (folder / "study.json").write_text(json.dumps(meta))
    study = load_study(folder)
    message = _codes(study)["role_content_mismatch"]
    assert "declared a fraction" in message and "percent" in message
    np.testing.assert_allclose(study.images["ff"], made.images["ff"], atol=1e-4)


def test_t1w_that_is_not_t1_weighted_is_not_used(imnm, tmp_path):
    """A fat-suppressed image saved as t1w.nii.gz (fat dark): its semi-quantitative FF would
    read fatty muscle as lean. Not used, with the fat-to-muscle ratio named; a real T1w passes."""
    folder, _, _ = imnm
    assert "role_content_mismatch" not in _codes(load_study(folder))
    study_dir = _copy(folder, tmp_path / "s")
    for name in ("fat.nii.gz", "water.nii.gz"):
        (study_dir / name).unlink()
    good = load_study(study_dir)
    assert "t1w" in good.images and "role_content_mismatch" not in _codes(good)
    stir = phantom.make_study("imnm", seed=3, shape=TINY, roles=("stir",)).images["stir"]
    img = nib.load(study_dir / "t1w.nii.gz")
    nib.save(nib.Nifti1Image(stir.astype(np.float32), img.affine), study_dir / "t1w.nii.gz")
    bad = load_study(study_dir)
    message = _codes(bad)["role_content_mismatch"]
    assert "t1w.nii.gz is not T1-weighted" in message and "t1w" not in bad.images
