"""Slice panels of the study report: orientation, overlays, cropping, outlines.

The truth is set in the phantom's images (one thigh fatty), independent of the drawing code.
"""

from __future__ import annotations

import numpy as np
import pytest

from mri_scoring import phantom
from mri_scoring.measure.quantify import quantify
from mri_scoring.output.levels import build_levels, crop_box, levels_html
from mri_scoring.output.slices import (
    EDEMA_RGB,
    PALETTE,
    PanelLayers,
    draw_panel,
    thin_outline,
    to_display,
    view_markers,
)

SHAPE = (96, 96, 16)


def _right_thigh_fatty():
    study = phantom.make_study("normal", seed=11, shape=SHAPE, roles=("ff", "stir"))
    right = [v for v, info in study.label_info.items() if info.side == "right"]
    study.images["ff"][np.isin(study.labels, right)] = 0.8
    return study, quantify(study, voxel_maps=True).voxel_maps


@pytest.mark.parametrize("view", ["radiological", "neurological"])
def test_right_thigh_on_the_viewers_left_in_the_radiological_view(view):
    """A phantom whose right thigh alone is fatty: in the radiological view the bright (fatty)
    thigh is on the left half of the FF panel, in the neurological view on the right half. A
    panel drawn in world-x order (the old neurological default) fails the first case."""
    study, maps = _right_thigh_fatty()
    levels, _ = build_levels(study, maps, view)
    assert [level.name for level in levels] == ["proximal", "mid", "distal"]
    for level in levels:
        title, index = level.panels[0]
        rgb = PALETTE[index]
        assert title.startswith("fat fraction")
        brightness = rgb.astype(float).sum(axis=2)
        half = rgb.shape[1] // 2
        viewer_left, viewer_right = brightness[:, :half].mean(), brightness[:, half:].mean()
        # FF 0.8 is light yellow, ~0.05 dark purple: the fatty half is clearly brighter.
        fatty_left = viewer_left > 1.2 * viewer_right
        fatty_right = viewer_right > 1.2 * viewer_left
        assert fatty_left if view == "radiological" else fatty_right, (view, level.name)
    page = levels_html(levels, "", view)
    expected = "R" if view == "radiological" else "L"
    assert f"<b class='mk left'>{expected}</b>" in page
    assert f"{view.capitalize()} view" in page


def test_display_orientation_and_markers():
    a = np.arange(6).reshape(3, 2)  # a[x, y]: x = 0..2, y = 0..1
    radiological = to_display(a, "radiological")
    assert radiological[0, 0] == a[2, 1]  # top-left: anterior (high y), patient right (high x)
    assert to_display(a, "neurological")[0, 0] == a[0, 1]
    assert view_markers("radiological") == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    with pytest.raises(ValueError, match="view must be one of"):
        to_display(a, "sagittal")


def test_outlines_are_one_pixel_thin_after_zoom():
    """The old outline marked both sides of every border and was then zoomed: 2 x zoom pixels
    wide. Now a border between two labels is one display pixel wide at any zoom."""
    labels = np.zeros((20, 20), np.int16)
    labels[:10] = 1
    labels[10:] = 2
    layers = PanelLayers(anatomy=np.zeros((20, 20), np.float32), low=0.0, high=1.0, labels=labels)
    rgb = PALETTE[draw_panel(layers, (slice(0, 20), slice(0, 20)), "neurological", zoom=4)]
    assert rgb.shape == (80, 80, 3)
    lit = rgb.sum(axis=2) > 0
    assert lit.any(axis=0).sum() == 1 and lit.all(axis=0).sum() == 1  # one full column only
    assert thin_outline(np.ones((5, 5))).sum() == 0


def test_edema_overlay_marks_exactly_the_counted_voxels():
    study = phantom.make_study("imnm", seed=12, shape=SHAPE, roles=("fat", "water", "stir"))
    maps = quantify(study, voxel_maps=True).voxel_maps
    levels, legend = build_levels(study, maps, "neurological")
    assert "voxel counted as edema" in legend and "fat fraction (%)" in legend
    for level in levels:
        title, index = level.panels[1]
        rgb = PALETTE[index]
        assert title.startswith("STIR")
        edema = maps.plane(maps.edema, level.k)
        marked = np.all(rgb == EDEMA_RGB, axis=2)
        # Panels are cropped, zoomed and outlined: compare counts of voxels, one-sided where
        # outlines may cover a marked pixel (a zoomed voxel keeps most of its pixels).
        zoom = rgb.shape[1] // _crop_width(study, levels, rgb)
        assert marked.sum() <= edema.sum() * zoom * zoom
        assert marked.sum() >= 0.6 * edema.sum() * zoom * zoom, "edema voxels not drawn"


def _crop_width(study, levels, rgb) -> int:
    box = crop_box(study, [level.k for level in levels])
    return box[0].stop - box[0].start


def test_panels_are_cropped_to_the_body():
    study, maps = _right_thigh_fatty()
    levels, _ = build_levels(study, maps, "radiological")
    rows, columns = levels[0].panels[0][1].shape[:2]
    assert columns / rows > 1.5  # two thighs side by side, not the square field of view


def test_indexed_png_round_trips_through_an_independent_decoder():
    import io

    from PIL import Image

    from mri_scoring.output.render import png_indexed_bytes

    rng = np.random.default_rng(4)
    index = rng.integers(0, len(PALETTE), (37, 53), dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(png_indexed_bytes(index, PALETTE))).convert("RGB"))
    np.testing.assert_array_equal(decoded, PALETTE[index])
