"""The slice section of the study report: which levels, which layers, which legends.

Three axial levels (proximal, mid, distal thirds of the labelled range) are shown, each as one
or two panels cropped to the body: the fat fraction as measured, in colour over the muscles, on
the Dixon sum (or the FF map, or the T1w image), and STIR or the water-T2 map with the voxels
counted as edema and the fascial-shell hits marked (the T1w image when there is neither). The
per-voxel values come from :class:`~mri_scoring.measure.voxel_maps.VoxelMaps`, the arrays the table
was counted from: nothing is measured here.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass

import numpy as np

from ..anatomy import GROUP, MUSCLE
from ..io.study import Study
from ..measure.voxel_maps import VoxelMaps
from .figures import colour_bar, swatch_legend
from .render import png_indexed_bytes
from .slices import (
    EDEMA_RGB,
    OUTLINE_RGB,
    PALETTE,
    SHELL_RGB,
    PanelLayers,
    body_box,
    draw_panel,
    overlay_rgb,
    panel_zoom,
    view_markers,
)

__all__ = [
    "BODY_MARGIN_MM",
    "FF_SOURCE_TITLES",
    "LEVEL_NAMES",
    "ROLE_TITLES",
    "Level",
    "build_levels",
    "crop_box",
    "display_range",
    "levels_html",
    "slice_levels",
    "slices_heading",
]

LEVEL_NAMES = ("proximal", "mid", "distal")
BODY_MARGIN_MM = 35.0  # kept around the labels: skin and subcutaneous fat [elicited]
ROLE_TITLES = {"stir": "STIR", "t2map": "water T2 map", "t1w": "T1-weighted"}


@dataclass(frozen=True)
class Level:
    """One level of the slice section: its name, slice index, height and drawn panels."""

    name: str
    k: int
    z_mm: float
    panels: list[tuple[str, np.ndarray]]


def slice_levels(labels: np.ndarray) -> list[int]:
    """Proximal, mid and distal slice indices; empty when nothing is labelled.

    The quarter points of the labelled z range, proximal (high z in RAS+) first.
    """
    labelled = np.flatnonzero(labels.any(axis=(0, 1)))
    if labelled.size == 0:
        return []
    return [int(k) for k in np.linspace(labelled.max(), labelled.min(), 5)[1:4].round()]


def display_range(planes: list[np.ndarray], labels: list[np.ndarray]) -> tuple[float, float]:
    """Grey window of the planes shown: 0 to 1.2 x the 99.5th percentile inside the labels."""
    sample = np.concatenate([p[lab > 0] for p, lab in zip(planes, labels, strict=True)])
    sample = sample[np.isfinite(sample)]
    return 0.0, (float(np.percentile(sample, 99.5)) * 1.2 if sample.size else 1.0)


def crop_box(study: Study, levels: list[int]) -> tuple[slice, slice]:
    """The (x, y) crop shared by every panel.

    The labels of the levels shown plus a margin of ``BODY_MARGIN_MM`` for skin and
    subcutaneous fat (the signal is no guide: an FF map or a T2 map is noise in the air).
    """
    pad = max(round(BODY_MARGIN_MM / min(study.voxel_size_mm[:2])), 2)
    return body_box([study.labels[:, :, k] > 0 for k in levels], pad)


def _anatomy_role(images: dict) -> str | None:
    for role in ("dixon", "ff", "t1w", "stir", "t2map"):
        if role == "dixon" and "fat" in images and "water" in images:
            return role
        if role in images:
            return role
    return None


def _plane(study: Study, role: str, k: int) -> np.ndarray:
    if role == "dixon":
        return study.images["fat"][:, :, k].astype(np.float32) + study.images["water"][:, :, k]
    return study.images[role][:, :, k].astype(np.float32)


def _window(role: str, planes: list[np.ndarray], labels: list[np.ndarray]) -> tuple[float, float]:
    return (0.0, 1.0) if role == "ff" else display_range(planes, labels)


FF_SOURCE_TITLES = {"dixon": "Dixon", "ff": "FF map", "t1w": "T1w, semi-quantitative"}


def _panel_specs(study: Study, maps: VoxelMaps | None) -> list[tuple[str, str, bool, bool]]:
    """The panels of each level as (caption, image role, draws FF colour, draws edema marks)."""
    anatomy = _anatomy_role(study.images)
    if anatomy is None:
        return []
    has_ff = maps is not None and maps.ff is not None
    second = next((r for r in ("stir", "t2map") if r in study.images), None)
    if second is None and "t1w" in study.images and (has_ff or anatomy != "t1w"):
        second = "t1w"
    specs = []
    if has_ff:
        specs.append(
            (
                f"fat fraction ({FF_SOURCE_TITLES.get(anatomy, anatomy)}) over the muscles",
                anatomy,
                True,
                False,
            )
        )
    elif anatomy != second:
        specs.append((ROLE_TITLES.get(anatomy, "Dixon fat + water"), anatomy, False, False))
    if second is not None:
        marked = maps is not None and maps.edema is not None and second != "t1w"
        title = ROLE_TITLES[second] + (", edema and fascial-shell hits" if marked else "")
        specs.append((title, second, False, marked))
    return specs


def slices_heading(study: Study, maps: VoxelMaps | None) -> str:
    """The slice section's heading: what its panels show, and only that.

    A T1w-only study shows a semi-quantitative fat fraction and the T1w image, no edema; a
    study with STIR but no fat-fraction source shows edema only.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> t1w_only = NS(images={"t1w": None})
    >>> slices_heading(t1w_only, NS(ff=[0.1], edema=None))
    'Slices: fat fraction (T1w, semi-quantitative) and the T1-weighted image'
    >>> slices_heading(NS(images={"fat": 0, "water": 0, "stir": 0}), NS(ff=[0.1], edema=[1]))
    'Slices: fat fraction and edema'
    """
    shown = []
    for caption, role, ff_colour, marked in _panel_specs(study, maps):
        if ff_colour:
            source = FF_SOURCE_TITLES.get(_anatomy_role(study.images) or "", "")
            shown.append("fat fraction" + (f" ({source})" if "semi" in source else ""))
        elif marked:
            shown.append(f"edema ({ROLE_TITLES[role]})" if not shown else "edema")
        else:
            shown.append(f"the {caption} image")
    return "Slices: " + " and ".join(shown) if shown else "Slices"


def build_levels(
    study: Study, maps: VoxelMaps | None, view: str, edema_threshold: float | None = None
) -> tuple[list[Level], str]:
    """Draw the panels of every level and the legend HTML above them.

    Parameters
    ----------
    study : Study
    maps : VoxelMaps or None
        Per-voxel FF and edema masks (None: outlines on the images only).
    view : {"radiological", "neurological"}
    edema_threshold : float, optional
        The T2 edema threshold (ms), marked on the T2 grey bar.

    Returns
    -------
    (list of Level, str)
    """
    levels = slice_levels(study.labels)
    specs = _panel_specs(study, maps)
    if not levels or not specs:
        return [], ""
    muscle_values = np.array(
        sorted(v for v, info in study.label_info.items() if info.kind in (MUSCLE, GROUP)),
        dtype=np.int64,
    )
    planes = {(role, k): _plane(study, role, k) for _, role, _, _ in specs for k in levels}
    label_planes = [study.labels[:, :, k] for k in levels]
    windows = {
        role: _window(role, [planes[(role, k)] for k in levels], label_planes)
        for _, role, _, _ in specs
    }
    box = crop_box(study, levels)
    zoom = panel_zoom(box[0].stop - box[0].start)
    out = []
    for name, k, labels in zip(LEVEL_NAMES, levels, label_planes, strict=True):
        panels = []
        for title, role, ff_colour, marked in specs:
            colour, marks = None, []
            if ff_colour:
                colour = maps.plane(maps.ff, k, fill=np.nan)
                colour[~np.isin(labels, muscle_values)] = np.nan
            if marked:
                marks.append((maps.plane(maps.edema, k), EDEMA_RGB))
                if maps.shell_edema is not None:
                    marks.append((maps.plane(maps.shell_edema, k, shell=True), SHELL_RGB))
            low, high = windows[role]
            layers = PanelLayers(
                anatomy=planes[(role, k)],
                low=low,
                high=high,
                labels=labels,
                colour=colour,
                marks=tuple(marks),
            )
            panels.append((title, draw_panel(layers, box, view, zoom)))
        z_mm = float((study.affine @ np.array([0.0, 0.0, k, 1.0]))[2])
        out.append(Level(name, k, z_mm, panels))
    return out, _legend(specs, windows, edema_threshold)


def _legend(
    specs: list[tuple[str, str, bool, bool]],
    windows: dict[str, tuple[float, float]],
    edema_threshold: float | None,
) -> str:
    parts = []
    if any(ff for _, _, ff, _ in specs):
        ticks = [(p / 100, f"{p}") for p in (0, 20, 40, 60, 80, 100)]
        parts.append(colour_bar(overlay_rgb, ticks, "fat fraction (%)"))
    for _, role, _, _ in specs:
        if role == "t2map":
            high = windows[role][1]
            ticks = [(t / high, f"{t:g}") for t in np.arange(0, high, 20 if high > 80 else 10)]
            title = "water T2 (ms)"
            if edema_threshold is not None:
                title = f"water T2 (ms; edema > {edema_threshold:g})"
            parts.append(colour_bar(_grey, ticks, title))
        elif role == "stir":
            parts.append(
                colour_bar(
                    _grey, [(0.0, "0"), (1.0, f"{windows[role][1]:.4g}")], "STIR (arbitrary units)"
                )
            )
    items = [(_css(OUTLINE_RGB), "segmentation outline")]
    if any(marked for *_, marked in specs):
        items += [
            (_css(EDEMA_RGB), "voxel counted as edema"),
            (_css(SHELL_RGB), "fascial-shell voxel read as edema"),
        ]
    return "<div class=legend>" + "".join(parts) + swatch_legend(items) + "</div>"


def _grey(values: np.ndarray) -> np.ndarray:
    grey = np.round(np.clip(values, 0, 1) * 255).astype(np.uint8)
    return np.repeat(grey[:, None], 3, axis=1)


def _css(rgb: tuple[int, int, int]) -> str:
    return "rgb({},{},{})".format(*rgb)


def _png_uri(index: np.ndarray) -> str:
    encoded = base64.b64encode(png_indexed_bytes(index, PALETTE)).decode("ascii")
    return "data:image/png;base64," + encoded


def levels_html(levels: list[Level], legend: str, view: str) -> str:
    """The slice section's HTML: legend, then one row of panels per level, markers on each."""
    marks = view_markers(view)
    rows = []
    for level in levels:
        figures = []
        for title, rgb in level.panels:
            alt = f"{title}, {level.name} (slice {level.k})"
            markers = "".join(
                f"<b class='mk {edge}'>{letter}</b>" for edge, letter in marks.items()
            )
            figures.append(
                f'<figure class=panel><div class=frame><img src="{_png_uri(rgb)}" '
                f'alt="{html.escape(alt)}" width={rgb.shape[1]} height={rgb.shape[0]}>'
                f"{markers}</div><figcaption>{html.escape(title)}</figcaption></figure>"
            )
        rows.append(
            f"<h3>{level.name} (slice {level.k}, z = {level.z_mm:+.0f} mm)</h3>"
            f"<div class=levels>{''.join(figures)}</div>"
        )
    side = (
        "patient's right on the viewer's left"
        if view == "radiological"
        else "patient's right on the viewer's right"
    )
    return (
        legend + "".join(rows) + f"<p class=small>{view.capitalize()} view ({side}); anterior "
        "(A) at the top, posterior (P) at the bottom; R/L mark the patient's sides. Panels are "
        "cropped to the body.</p>"
    )
