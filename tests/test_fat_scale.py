"""The Dixon fat scale: subcutaneous fat and marrow as the subject's own reference.

Truth: the phantom (its adipose tissue is FF 0.95 in ``configs/phantom.yaml``). A compressed
scale is made from the phantom's own images by moving a share of the fat signal into water
(F' = aF, W' = W + (1 - a)F: total signal kept, every FF scaled by a), as a reconstruction that
under-reads fat would; the truth FF stays the phantom's. The swap check itself (fat image brighter
in muscle than in fat) is tested in test_quantify.py::test_fat_water_swap_is_flagged.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

from mri_scoring import phantom, score_study
from mri_scoring.body import muscle_envelope
from mri_scoring.config import load_settings
from mri_scoring.io.study import load_study
from mri_scoring.measure.quantify import quantify
from mri_scoring.phantom.drawing import phantom_config

SHAPE = (96, 96, 12)
ADIPOSE = phantom_config()["tissue"]["ff"]["subcutaneous_fat"]


@pytest.fixture(scope="module")
def made():
    return phantom.make_study("imnm", seed=5, shape=SHAPE, roles=("fat", "water", "stir"))


def _compressed(study, subcutaneous_ff=0.80):
    a = np.float32(subcutaneous_ff / ADIPOSE)
    fat, water = study.images["fat"], study.images["water"]
    return dataclasses.replace(study, images={**study.images, "fat": fat * a,
                                              "water": water + fat * (1 - a)})  # fmt: skip


def _settings(**fat_scale):
    return load_settings().overridden({"fat_scale": fat_scale}, "test")


def _measure(study, folder, **fat_scale):
    return quantify(load_study(phantom.write_study(study, folder)), _settings(**fat_scale))


@pytest.fixture(scope="module")
def calibrated(made, tmp_path_factory):
    return _measure(made, tmp_path_factory.mktemp("cal") / "s")


@pytest.fixture(scope="module")
def compressed(made, tmp_path_factory):
    """The compressed study scored with --fat-reference, saved with its report."""
    root = tmp_path_factory.mktemp("comp")
    folder = phantom.write_study(_compressed(made), root / "s")
    result = score_study(folder, settings=_settings(fat_reference=True))
    result.save(root / "out")
    return result, root / "out"


def _codes(findings):
    return {q.code: q.message for q in findings}


def test_compressed_scale_is_flagged_calibrated_is_not(calibrated, compressed):
    """Guards the silent case of the real IDEAL thighs: subcutaneous fat reading 0.80 with
    nothing said, while absolute FF, grades and ff_excess read low. The calibrated phantom
    reads >= 0.9 and is not flagged; the compressed one is, naming both readings, in
    score.json and the report."""
    assert calibrated.fat_scale["subcutaneous_ff"] > 0.9
    assert "fat_scale_compressed" not in _codes(calibrated.qc)
    result, out = compressed
    scale = result.fat_scale
    assert 0.75 < scale["subcutaneous_ff"] < 0.85 and scale["marrow_ff"] < 0.85
    message = _codes(result.qc)["fat_scale_compressed"]
    assert f"{scale['subcutaneous_ff']:.2f}" in message and f"{scale['marrow_ff']:.2f}" in message
    assert "ff_excess" in message and "grades" in message
    saved = json.loads((out / "score.json").read_text())
    assert saved["fat_scale"]["subcutaneous_ff"] == scale["subcutaneous_ff"]
    assert "fat_scale_compressed" in {q["code"] for q in saved["qc"]}
    assert "fat_scale_compressed" in (out / "report.html").read_text()


def test_fat_reference_restores_the_compressed_ff(made, calibrated, compressed):
    """With --fat-reference and the configured adipose FF equal to the phantom's (0.95 in
    phantom.yaml and in settings.yaml), the compressed study's fat-referenced FF is within 0.01
    of the calibrated study's FF in every muscle, and its median error against the phantom's
    truth is under 0.005; the measured columns stay as measured (low)."""
    assert load_settings()["fat_scale"]["adipose_ff"] == ADIPOSE
    reference = calibrated.table.set_index("label")
    table = compressed[0].muscles.set_index("label")
    muscles = table[table["kind"] == "muscle"].index
    for fatref, measured in (("ff_median_fatref", "ff_median"), ("ff_mean_fatref", "ff_mean")):
        got = table.loc[muscles, fatref].to_numpy()
        want = reference.loc[muscles, measured].to_numpy()
        assert np.nanmax(np.abs(got - want)) < 0.01, fatref
    low = table.loc[muscles, "ff_median"].to_numpy()
    assert np.nanmedian(reference.loc[muscles, "ff_median"].to_numpy() - low) > 0.005
    truth = made.truth["muscles"]
    keys = {row.Index: f"{row.muscle}_{row.side}" for row in table.loc[muscles].itertuples()}
    errors = [table.loc[v, "ff_median_fatref"] - truth[k]["ff_median_core"]
              for v, k in keys.items() if truth.get(k, {}).get("ff_median_core") is not None]
    assert abs(float(np.median(errors))) < 0.005
    assert calibrated.table["ff_median_fatref"].isna().all(), "empty without --fat-reference"


def _child_thin(study, keep_mm=4.0):
    """The phantom with its body cut to ``keep_mm`` around the muscles, the outermost voxel
    painted as skin (FF 0.3): a lean child's 2-5 mm fat layer on these 4.4 mm voxels."""
    voxel = (420.0 / SHAPE[0], 420.0 / SHAPE[1], 400.0 / SHAPE[2])
    envelope = muscle_envelope(study.labels > 0, voxel)
    outside = ndimage.distance_transform_edt(~envelope, sampling=(voxel[0], voxel[1], 1e6))
    keep = outside <= keep_mm
    rim = keep & ~ndimage.binary_erosion(keep, structure=np.ones((3, 3, 1), bool))
    rim &= ~envelope
    fat, water = study.images["fat"].copy(), study.images["water"].copy()
    fat[~keep], water[~keep] = 0.0, 0.0
    fat[rim], water[rim] = 0.8 * 0.3, 0.8 * 0.7
    return dataclasses.replace(study, images={**study.images, "fat": fat, "water": water})


def test_child_thin_fat_layer_gives_no_false_alarm(made, tmp_path):
    """A thin layer is mostly skin and partial volume: read, it would say 'compressed' on a
    calibrated scan. It is not read (too thin or no core), with the reason, and not flagged."""
    result = _measure(_child_thin(made), tmp_path / "child")
    scale = result.fat_scale
    assert scale["subcutaneous_ff"] is None and "not read" in scale["note"]
    assert "fat_scale_compressed" not in _codes(result.qc)
    assert scale["marrow_ff"] > 0.85, "marrow is still read and reported"


def test_layer_is_unchanged_by_padding_and_flipping_and_thinning_keeps_the_reading(made):
    """The layer is worked on cropped boxes, slice by slice: padding the volume with air and
    flipping it in plane must give the same core, voxel count and thickness (guards an
    off-by-one box that drops the layer's edge or lets the crop border act as air where the
    slice goes on). Reading 4 of the 12 slices (``max_slices``) keeps the subcutaneous FF
    within 0.01 of reading all of them."""
    from mri_scoring.body import body_mask, full_slices, subcutaneous_layer

    voxel = made.voxel_size_mm
    total = made.images["fat"] + made.images["water"]
    inside = made.labels > 0
    floor = 0.1 * float(np.percentile(total, 99))
    base = subcutaneous_layer(inside, body_mask(total, floor), voxel)
    assert base.n_layer > 1000 and base.thickness_mm > 6.0
    # the definition, on whole slices: the body is the signal with its in-plane holes filled,
    # the envelope each limb's convex hull, the layer the body outside it on the fully labelled
    # slices, the core its in-plane erosion, the thickness twice the 95th percentile of the
    # in-plane distance to the nearest non-layer voxel
    from skimage.morphology import convex_hull_image

    envelope = muscle_envelope(inside, voxel)
    disk = ndimage.generate_binary_structure(2, 1)
    for k in range(inside.shape[2]):
        joined = ndimage.binary_dilation(inside[..., k], structure=disk, iterations=1)
        limbs, n = ndimage.label(joined)
        hulls = [convex_hull_image(inside[..., k] & (limbs == i)) for i in range(1, n + 1)]
        assert np.array_equal(envelope[..., k], np.logical_or.reduce(hulls)), k
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[..., 1] = disk
    body = ndimage.binary_fill_holes(total > floor, structure=in_plane)
    assert np.array_equal(body_mask(total, floor), body)
    area = inside.sum(axis=(0, 1))
    layer = body & ~envelope & (area >= 0.5 * area.max())
    core = ndimage.binary_erosion(layer, structure=in_plane)
    distance = ndimage.distance_transform_edt(layer, sampling=(*voxel[:2], 1e6))
    assert np.array_equal(base.core, core)
    assert base.thickness_mm == pytest.approx(2 * np.percentile(distance[layer], 95), rel=1e-9)
    # a square body around a square limb: the layer's box has straight edges, where a box
    # without its one-pixel margin would see no air beyond the skin (thickness 12 -> 24 mm)
    square_body = np.zeros((40, 40, 2), bool)
    square_body[4:36, 4:36] = True
    limb = np.zeros_like(square_body)
    limb[16:24, 16:24] = True
    square = subcutaneous_layer(limb, square_body, (1.0, 1.0, 5.0))
    assert square.thickness_mm == pytest.approx(12.0, abs=1.0)
    # the core: the ring one pixel thinner on both sides (the 4 corners of the hole stay:
    # the erosion is 4-connected)
    assert square.n_layer == 2 * (32 * 32 - 8 * 8)
    assert square.core.sum() == 2 * (30 * 30 - 10 * 10 + 4)
    pad = ((7, 3), (2, 9), (0, 0))
    padded = subcutaneous_layer(np.pad(inside, pad), body_mask(np.pad(total, pad), floor), voxel)
    assert np.array_equal(padded.core[7:-3, 2:-9], base.core)
    assert (padded.n_layer, padded.thickness_mm) == (base.n_layer, base.thickness_mm)
    flip = (slice(None, None, -1), slice(None, None, -1))
    flipped = subcutaneous_layer(inside[flip], body_mask(total[flip], floor), voxel)
    assert np.array_equal(flipped.core[flip], base.core)
    assert (flipped.n_layer, flipped.thickness_mm) == (base.n_layer, base.thickness_mm)

    def reading(layer_slices):
        sub = np.s_[..., layer_slices]
        found = subcutaneous_layer(
            inside[sub], body_mask(total[sub], floor), voxel, min_slice_share=0.0
        )
        ff = made.images["fat"][sub][found.core] / total[sub][found.core]
        return float(np.quantile(ff, 0.75))

    every, four = full_slices(inside), full_slices(inside, max_slices=4)
    assert len(every) > 4 and len(four) == 4
    assert abs(reading(four) - reading(every)) < 0.01


def test_convex_hull_fill_is_scikit_image_hull_pixel_for_pixel():
    """The integer half-plane fill against scikit-image's ``convex_hull_image`` (the
    definition it replaces, 5x slower on a thigh-sized box) on 600 random masks: sparse and
    dense, single pixels, one-row and one-column lines, thin diagonals. Guards against a
    rounding of the row runs that drops or adds the pixels whose centres lie on a hull edge
    (edges through pixel centres are common: the hull's vertices are pixel-edge midpoints)."""
    from skimage.morphology import convex_hull_image

    from mri_scoring.body import convex_hull_fill

    rng = np.random.default_rng(7)
    masks = [np.eye(9, dtype=bool), np.ones((1, 7), bool), np.ones((6, 1), bool)]
    masks.append(np.zeros((5, 5), bool))
    masks[-1][2, 2] = True
    for _ in range(600):
        rows, cols = rng.integers(1, 30, 2)
        mask = rng.random((rows, cols)) < rng.uniform(0.01, 0.6)
        mask[rng.integers(rows), rng.integers(cols)] = True
        masks.append(mask)
    for mask in masks:
        assert np.array_equal(convex_hull_fill(mask), convex_hull_image(mask)), mask.astype(int)
