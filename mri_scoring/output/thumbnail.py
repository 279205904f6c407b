"""A study's mosaic thumbnail: one mid-thigh axial slice, fat fraction over the labels.

Written by the worker that scores the study (``OUT/<study>/thumb.png``, beside the report),
so the cohort's ``mosaic.html`` only links files and the driver draws nothing per study.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..anatomy import GROUP, MUSCLE
from ..files import atomic_write
from .levels import _anatomy_role, _plane, _window, crop_box, slice_levels
from .render import png_indexed_bytes
from .slices import PALETTE, PanelLayers, draw_panel, panel_zoom

if TYPE_CHECKING:  # pragma: no cover
    from ..io.study import Study
    from ..measure.voxel_maps import VoxelMaps

__all__ = ["THUMB_NAME", "THUMB_PIXELS", "thumbnail_png", "write_thumbnail"]

THUMB_NAME = "thumb.png"
THUMB_PIXELS = 160  # about this wide: 500 per mosaic page stay light to load


def thumbnail_png(study: Study, maps: VoxelMaps | None, view: str) -> bytes | None:
    """The mid-thigh slice as PNG bytes (None when nothing is labelled or no image shows it).

    The grey image is the report's anatomy (Dixon fat + water, else the FF map, T1w, STIR or T2
    map); the colour is the measured fat fraction on the muscles' voxels.
    """
    levels = slice_levels(study.labels)
    role = _anatomy_role(study.images)
    if not levels or role is None:
        return None
    k = levels[len(levels) // 2]
    plane = _plane(study, role, k)
    labels = study.labels[:, :, k]
    low, high = _window(role, [plane], [labels])
    colour = None
    if maps is not None and maps.ff is not None:
        muscles = np.array(sorted(v for v, info in study.label_info.items()
                                  if info.kind in (MUSCLE, GROUP)), dtype=np.int64)  # fmt: skip
        colour = maps.plane(maps.ff, k, fill=np.nan)
        colour[~np.isin(labels, muscles)] = np.nan
    box = crop_box(study, [k])
    zoom = panel_zoom(box[0].stop - box[0].start, THUMB_PIXELS)
    layers = PanelLayers(anatomy=plane, low=low, high=high, labels=labels, colour=colour)
    index = draw_panel(layers, box, view, zoom)
    step = max(1, index.shape[1] // (2 * THUMB_PIXELS))  # a large grid: every n-th pixel
    return png_indexed_bytes(np.ascontiguousarray(index[::step, ::step]), PALETTE)


def write_thumbnail(folder: Path, study: Study | None, maps: VoxelMaps | None,
                    view: str) -> bool:  # fmt: skip
    """Write ``thumb.png`` into a study's output folder; False (and no file) when there is none."""
    png = thumbnail_png(study, maps, view) if study is not None else None
    if png is None:
        (Path(folder) / THUMB_NAME).unlink(missing_ok=True)
        return False
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(folder) / THUMB_NAME, png)
    return True
