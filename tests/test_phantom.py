"""The phantom agrees with its own truth (tolerances stated per test)."""

from __future__ import annotations

import filecmp

import numpy as np
import pytest
from scipy import ndimage

from mri_scoring import phantom
from mri_scoring.config import load_config_file
from mri_scoring.measure.masks import core_mask

SHAPE = (112, 112, 18)
MIN_CORE = 20  # a median over fewer core voxels is not a measurement


def _core(study, value):
    """The eroded core as quantification and the truth define it (2 mm, at least a voxel)."""
    mask = np.pad(study.labels == value, 1).astype(np.uint8)
    return core_mask(mask, study.voxel_size_mm, 2.0)[1:-1, 1:-1, 1:-1]


def _ff(study):
    fat, water = study.images["fat"], study.images["water"]
    return fat / np.maximum(fat + water, 1e-6)


@pytest.mark.parametrize("pattern", ["imnm", "dm", "normal"])
def test_noiseless_dixon_reproduces_truth_ff(pattern):
    """Core median FF from noiseless water/fat equals the truth within 0.005."""
    study = phantom.make_study(pattern, seed=4, shape=SHAPE, noise=0.0)
    ff = _ff(study)
    checked = 0
    for entry in study.truth["muscles"].values():
        core = _core(study, entry["label"])
        if core.sum() < MIN_CORE:
            continue
        assert abs(np.median(ff[core]) - entry["ff_median_core"]) <= 0.005, entry
        checked += 1
    assert checked >= 25


def test_noisy_dixon_within_002_in_core():
    """With Rician noise (SNR 50) and a 15 % bias field the core median FF is within 0.02."""
    study = phantom.make_study("imnm", seed=5, shape=SHAPE)
    ff = _ff(study)
    errors = []
    for entry in study.truth["muscles"].values():
        core = _core(study, entry["label"])
        if core.sum() >= MIN_CORE:
            errors.append(abs(np.median(ff[core]) - entry["ff_median_core"]))
    assert len(errors) >= 25 and max(errors) <= 0.02


def test_truth_follows_pattern_in_the_direction_literature_says(imnm_small, dm_small):
    imnm = imnm_small.truth["muscles"]
    assert imnm["adductor_magnus_left"]["ff_median"] > 3 * imnm["rectus_femoris_left"]["ff_median"]
    assert imnm["adductor_brevis_right"]["edema_fraction"] > 0.4
    assert imnm["obturator_externus_left"]["atrophy_factor"] < 0.6
    assert not imnm["semitendinosus_left"]["fascial_edema"]
    assert dm_small.truth["muscles"]["semitendinosus_right"]["fascial_edema"]


def test_edema_is_where_truth_says(imnm_small):
    """STIR is bright in edematous muscles and not in the others (patchy: a fraction, not all)."""
    stir = imnm_small.images["stir"]
    ab = imnm_small.labels == imnm_small.truth["muscles"]["adductor_brevis_left"]["label"]
    rf_normal = phantom.make_study("normal", seed=1, shape=(96, 96, 16))
    rf = rf_normal.labels == rf_normal.truth["muscles"]["rectus_femoris_left"]["label"]
    bright = np.median(rf_normal.images["stir"][rf]) * 1.4
    assert 0.3 < (stir[ab] > bright).mean() < 0.8  # truth ~0.55, patchy
    assert (rf_normal.images["stir"][rf] > bright).mean() < 0.02


def test_fascial_edema_is_a_bright_band_outside_the_muscle():
    study = phantom.make_study(
        "normal", seed=6, shape=SHAPE, overrides={"semitendinosus": {"fascial": True}}
    )
    st = study.labels == study.truth["muscles"]["semitendinosus_right"]["label"]
    ring = ndimage.binary_dilation(st, iterations=1) & ~st & (study.labels == 0)
    other = study.labels == study.truth["muscles"]["rectus_femoris_right"]["label"]
    other_ring = ndimage.binary_dilation(other, iterations=1) & ~other & (study.labels == 0)
    stir = study.images["stir"]
    assert np.median(stir[ring]) > 1.2 > np.median(stir[other_ring])
    assert study.truth["fascial_voxels"] > 0


def test_muscles_sit_at_their_side_and_level(imnm_small):
    truth = imnm_small.truth["muscles"]
    nz = imnm_small.shape[2]
    for name, entry in truth.items():
        if not entry["voxels"]:
            continue
        assert (entry["centroid_x_mm"] < 0) == (entry["side"] == "left"), name
    # z index nz-1 is the most proximal slice (RAS+: superior).
    for proximal in ("obturator_externus", "pectineus"):
        assert truth[f"{proximal}_left"]["z_range"][0] >= 0.75 * (nz - 1)
    lo, _hi = truth["adductor_brevis_left"]["z_range"]
    assert lo >= 0.45 * (nz - 1)
    assert truth["biceps_femoris_short_head_left"]["z_range"][1] <= 0.6 * (nz - 1)


def test_atrophy_shrinks_the_muscle_and_fat_takes_its_place():
    normal = phantom.make_study("normal", seed=7, shape=SHAPE)
    atrophic = phantom.make_study(
        "normal", seed=7, shape=SHAPE, overrides={"vastus_lateralis": {"atrophy": 0.5}}
    )
    n = normal.truth["muscles"]["vastus_lateralis_left"]["voxels"]
    a = atrophic.truth["muscles"]["vastus_lateralis_left"]["voxels"]
    assert abs(a / n - 0.5) < 0.03
    freed = (normal.labels == normal.truth["muscles"]["vastus_lateralis_left"]["label"]) & (
        atrophic.labels == 0
    )
    assert np.median(_ff(atrophic)[freed]) > 0.7


def test_same_seed_same_files_different_seed_differs(tmp_path):
    a = phantom.write_study(phantom.make_study("dm", seed=3, shape=(64, 64, 8)), tmp_path / "a")
    b = phantom.write_study(phantom.make_study("dm", seed=3, shape=(64, 64, 8)), tmp_path / "b")
    c = phantom.write_study(phantom.make_study("dm", seed=4, shape=(64, 64, 8)), tmp_path / "c")
    names = sorted(p.name for p in a.iterdir())
    assert {"labels.nii.gz", "labels.tsv", "fat.nii.gz", "stir.nii.gz", "truth.json"} <= set(names)
    _match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors
    _, differ, _ = filecmp.cmpfiles(a, c, ["fat.nii.gz", "stir.nii.gz"], shallow=False)
    assert differ == ["fat.nii.gz", "stir.nii.gz"]


def test_normative_shares_match_the_normal_phantom():
    """configs/normative.yaml is consistent with the phantom within 10 % relative (or 0.002)."""
    shares = load_config_file("normative.yaml")["shares"]
    measured = phantom.normal_volume_shares()
    for muscle, share in measured.items():
        assert abs(shares[muscle] - share) <= max(0.1 * share, 0.002), muscle


def test_every_phantom_muscle_is_in_the_vocabulary():
    phantom.check_vocabulary()
