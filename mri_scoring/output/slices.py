"""Axial slice panels of the study report: pure drawing on 2-D arrays, no I/O, no measurement.

A panel is one axial slice of the label grid (RAS+ arrays indexed ``[x, y]``) cropped to the
body: a grey anatomical image, optionally a colour overlay (fat fraction) and marked voxels
(edema, fascial shell hits), with the segmentation outlines one display pixel thin on top.

Display orientation: anterior at the top; in the **radiological** view (the default, as
radiologists read axial images) the patient's right is on the viewer's left, in the
**neurological** view on the viewer's right. RAS+ world x increases towards the patient's
right, so the radiological view puts high x on the left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "BODY_PAD_VOXELS",
    "EDEMA_RGB",
    "GREY_LEVELS",
    "MAGMA",
    "MARK_INDEX",
    "OUTLINE_INDEX",
    "OUTLINE_RGB",
    "PALETTE",
    "PANEL_TARGET_PIXELS",
    "RAMP_LEVELS",
    "SHELL_RGB",
    "VIEWS",
    "PanelLayers",
    "body_box",
    "draw_panel",
    "overlay_rgb",
    "panel_zoom",
    "thin_outline",
    "to_display",
    "view_markers",
]

VIEWS = ("radiological", "neurological")
OUTLINE_RGB = (70, 235, 110)
EDEMA_RGB = (0, 200, 255)
SHELL_RGB = (255, 190, 0)
PANEL_TARGET_PIXELS = 560  # panels are drawn at about this width (whole-voxel zoom), then scaled
BODY_PAD_VOXELS = 3


@dataclass(kw_only=True, frozen=True)
class PanelLayers:
    """The layers of one panel, each an axial slice ``[x, y]`` of the label grid.

    Attributes
    ----------
    anatomy : ndarray of float, shape (X, Y)
        Grey image, shown from ``low`` (black) to ``high`` (white).
    low, high : float
        Display range of ``anatomy`` in its own units.
    labels : ndarray of int, shape (X, Y)
        Segmentation (0 = background); outlines are drawn where labels change.
    colour : ndarray of float, shape (X, Y), optional
        Overlay values in [0, 1] drawn with :func:`overlay_rgb`; NaN = no overlay.
    marks : tuple of (ndarray of bool, RGB)
        Voxels drawn in a solid colour over everything but the outlines, in order.
    """

    anatomy: np.ndarray
    low: float
    high: float
    labels: np.ndarray
    colour: np.ndarray | None = None
    marks: tuple[tuple[np.ndarray, tuple[int, int, int]], ...] = field(default_factory=tuple)


# "magma" from dark (low) to light (high), 9 evenly spaced samples (van der Walt & Smith, CC0),
# starting a little above black so that lean muscle stays distinguishable from air.
MAGMA = np.array(
    [
        (20, 14, 54),
        (59, 15, 112),
        (100, 26, 128),
        (140, 41, 129),
        (183, 55, 121),
        (222, 73, 104),
        (247, 112, 92),
        (254, 159, 109),
        (252, 253, 191),
    ],
    dtype=float,
)


def overlay_rgb(values: np.ndarray) -> np.ndarray:
    """Colours of overlay values in [0, 1] (dark purple = 0 to light yellow = 1), clipped.

    Parameters
    ----------
    values : ndarray of float
        NaN gives black (callers mask it out).

    Returns
    -------
    ndarray of uint8, shape values.shape + (3,)
    """
    position = np.clip(np.nan_to_num(np.asarray(values, dtype=float)), 0.0, 1.0) * (len(MAGMA) - 1)
    low = np.minimum(position.astype(int), len(MAGMA) - 2)
    weight = (position - low)[..., None]
    return np.round(MAGMA[low] * (1.0 - weight) + MAGMA[low + 1] * weight).astype(np.uint8)


def body_box(masks: Sequence[np.ndarray], pad: int = BODY_PAD_VOXELS) -> tuple[slice, slice]:
    """The (x, y) bounding box of the union of 2-D masks, padded by ``pad`` voxels.

    Parameters
    ----------
    masks : sequence of ndarray of bool, shape (X, Y)
        E.g. the body (signal above the air floor) and the labels of each level shown.
    pad : int
        Margin kept around the box (voxels), within the grid.

    Returns
    -------
    tuple of slice
        The whole grid when every mask is empty.
    """
    union = np.zeros(masks[0].shape, bool)
    for mask in masks:
        union |= mask
    if not union.any():
        return slice(0, union.shape[0]), slice(0, union.shape[1])
    xs, ys = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    x = slice(max(int(xs[0]) - pad, 0), min(int(xs[-1]) + 1 + pad, union.shape[0]))
    y = slice(max(int(ys[0]) - pad, 0), min(int(ys[-1]) + 1 + pad, union.shape[1]))
    return x, y


def panel_zoom(width_voxels: int, target: int = PANEL_TARGET_PIXELS) -> int:
    """Whole-pixel zoom that brings a crop of ``width_voxels`` closest to ``target`` pixels.

    Examples
    --------
    >>> panel_zoom(100), panel_zoom(420), panel_zoom(2000)
    (6, 1, 1)
    """
    return max(round(target / max(width_voxels, 1)), 1)


def to_display(array: np.ndarray, view: str) -> np.ndarray:
    """An ``[x, y, ...]`` slice as display rows and columns.

    Anterior (high y) at the top; the patient's right (high x in RAS+) on the left in the
    radiological view, on the right in the neurological view.

    Examples
    --------
    >>> a = np.array([[1, 2], [3, 4]])  # a[x, y]
    >>> to_display(a, "neurological").tolist()  # top row: y = 1; x increasing to the right
    [[2, 4], [1, 3]]
    >>> to_display(a, "radiological").tolist()
    [[4, 2], [3, 1]]
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    rows = np.swapaxes(array, 0, 1)[::-1]
    return rows[:, ::-1] if view == "radiological" else rows


def view_markers(view: str) -> dict[str, str]:
    """The patient-direction letters at each edge of a panel: ``{"left": "R", ...}``."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    left, right = ("R", "L") if view == "radiological" else ("L", "R")
    return {"left": left, "right": right, "top": "A", "bottom": "P"}


def thin_outline(labels: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another label: outlines one pixel thin.

    Examples
    --------
    >>> thin_outline(np.array([[0, 0, 0], [0, 1, 1], [0, 1, 1]])).astype(int).tolist()
    [[0, 1, 1], [1, 0, 0], [1, 0, 0]]
    """
    edge = np.zeros(labels.shape, bool)
    right = labels[:, 1:] != labels[:, :-1]
    down = labels[1:, :] != labels[:-1, :]
    edge[:, :-1] |= right
    edge[:-1, :] |= down
    return edge  # the line sits on whichever side comes first: one pixel thin either way


GREY_LEVELS = 176  # palette: 176 greys, 64 overlay colours, outline, edema, shell hit
RAMP_LEVELS = 64
PALETTE = np.concatenate(
    [
        np.repeat(np.round(np.linspace(0, 255, GREY_LEVELS))[:, None], 3, axis=1),
        overlay_rgb(np.linspace(0.0, 1.0, RAMP_LEVELS)),
        np.array([OUTLINE_RGB, EDEMA_RGB, SHELL_RGB]),
    ]
).astype(np.uint8)
OUTLINE_INDEX = GREY_LEVELS + RAMP_LEVELS
MARK_INDEX = {EDEMA_RGB: OUTLINE_INDEX + 1, SHELL_RGB: OUTLINE_INDEX + 2}


def draw_panel(layers: PanelLayers, box: tuple[slice, slice], view: str, zoom: int) -> np.ndarray:
    """One panel as an image of indices into :data:`PALETTE` (``PALETTE[panel]`` is its RGB).

    Indexed colour keeps panels at one byte per pixel (PNG palette images: a third of the data
    to compress, the largest cost of a report at 512 x 512). Overlays, marks and outlines are
    opaque; the grey image has 176 levels.

    Parameters
    ----------
    layers : PanelLayers
    box : tuple of slice
        The (x, y) crop (:func:`body_box`).
    view : {"radiological", "neurological"}
    zoom : int
        Display pixels per voxel (whole pixels; the outline is drawn after zooming, so it stays
        one pixel thin).

    Returns
    -------
    ndarray of uint8, shape (H, W)
        Rows anterior to posterior; columns as :func:`to_display`.
    """
    anatomy = layers.anatomy[box].astype(np.float32)
    scale = (GREY_LEVELS - 1) / max(layers.high - layers.low, 1e-12)
    scaled = (np.nan_to_num(anatomy) - np.float32(layers.low)) * np.float32(scale)
    index = np.clip(scaled + 0.5, 0, GREY_LEVELS - 1).astype(np.uint8)
    if layers.colour is not None:
        colour = layers.colour[box]
        shown = np.isfinite(colour)
        ramp = np.clip(colour[shown], 0.0, 1.0) * (RAMP_LEVELS - 1) + 0.5
        index[shown] = GREY_LEVELS + ramp.astype(np.uint8)
    for mask, mark_rgb in layers.marks:
        index[mask[box]] = MARK_INDEX[tuple(mark_rgb)]
    index = to_display(index, view)
    labels = to_display(layers.labels[box], view)
    if zoom > 1:
        index = np.repeat(np.repeat(index, zoom, axis=0), zoom, axis=1)
        labels = np.repeat(np.repeat(labels, zoom, axis=0), zoom, axis=1)
    index[thin_outline(labels)] = OUTLINE_INDEX
    return index
