"""Tissue compartments outside the muscles: the subcutaneous fat, per side (``compartments.tsv``).

The subcutaneous compartment is the one subcutaneous layer of :mod:`mri_scoring.body` (shared
with the fat-scale check, :mod:`.fat_scale`): the body outline (from the Dixon water + fat sum or
the T1-weighted image, :func:`~mri_scoring.body.body_mask`) outside the convex hull of each
limb's labels (the unlabelled deep fascia's stand-in, :func:`~mri_scoring.body.muscle_envelope`),
in the slices labelled about as fully as the best one (where the labels stop, unlabelled muscle
would pass for fat), at most ``max_slices`` of them, evenly spaced. It is read in 2-D per slice
(the fat is a thin band around each thigh; slices are usually far coarser than pixels):

* **thickness** -- for a voxel of the band, the distance to the skin surface plus the distance
  to the deep compartment is the band's local thickness (one pixel is subtracted for the two
  half voxels counted twice); ``thickness_mm`` is its median over the side.
* **the measured band** is eroded away from the skin (``skin_margin_mm``) and from the muscle
  border (``muscle_margin_mm``, beyond the fascial shell), voxel centre to the nearest voxel
  outside, and always by at least one pixel; a band thinner than
  ``min_thickness_mm`` (thin fat, e.g. in children) or with fewer than ``min_voxels`` voxels left
  is not measured and the row says why.
* **edema** is read from STIR only: each voxel's STIR against the suppressed subcutaneous fat's
  own level (the median of the band's fat voxels in that slice and side), edema-like above
  ``max(stir_edema_ratio, 1 + stir_edema_sigmas * spread)`` times that level. A water-T2 map
  cannot read it (fat leaves a water fraction of ~0.1: noise), so with a T2 map only the cell is
  empty with the reason.

The side of a band voxel is its side of the midline between the two thighs' labels in that
slice. :func:`subcutaneous` returns the compartment itself; :func:`measure_compartments` the
table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage

from .. import schema
from ..anatomy import GROUP, MUSCLE
from ..body import LimbOutline, body_mask, outline_of_labels, plane_box, subcutaneous_layer
from ..config import Settings
from ..errors import QCFinding
from ..io.study import Study

__all__ = [
    "COLUMNS",
    "SIDES",
    "SUBCUTANEOUS",
    "CompartmentSettings",
    "Subcutaneous",
    "measure_compartments",
    "subcutaneous",
]

SUBCUTANEOUS = "subcutaneous"
SIDES = ("left", "right")
COLUMNS = schema.COMPARTMENT_COLUMNS
"""Columns of ``compartments.tsv`` (:data:`mri_scoring.schema.COMPARTMENT_COLUMNS`)."""


@dataclass(frozen=True, kw_only=True)
class CompartmentSettings:
    """The ``compartments.subcutaneous`` settings (see ``configs/settings.yaml``)."""

    skin_margin_mm: float = 4.0
    muscle_margin_mm: float = 4.0
    max_depth_mm: float = 60.0
    min_thickness_mm: float = 10.0
    min_voxels: int = 30
    max_slices: int = 12
    body_floor: float = 0.25
    fat_ff: float = 0.75
    min_level_voxels: int = 20
    stir_edema_ratio: float = 5.0
    stir_edema_sigmas: float = 4.0

    @classmethod
    def from_settings(cls, settings: Settings) -> CompartmentSettings:
        """From the settings' ``compartments.subcutaneous`` section."""
        section = settings["compartments"][SUBCUTANEOUS]
        return cls(**{k: type(getattr(cls, k))(v) for k, v in section.items()})


@dataclass(frozen=True, eq=False, kw_only=True)
class Subcutaneous:
    """The subcutaneous compartment of one study (on the study's grid).

    Attributes
    ----------
    index : ndarray of int64
        Flat C-order indices of the measured (eroded) band voxels.
    side : ndarray of int8
        Per band voxel: 0 left, 1 right (:data:`SIDES`).
    slice : ndarray of int32
        Per band voxel: its slice (third grid axis).
    thickness_mm : dict of str to float
        Median band thickness per side (NaN where the side has no band).
    reason : dict of str to str
        Why a side is not measured ("" when it is).
    outline_source : str
        The image the body outline came from (``dixon``, ``t1w``) or "" (none).
    """

    index: np.ndarray
    side: np.ndarray
    slice: np.ndarray
    thickness_mm: dict[str, float] = field(default_factory=dict)
    reason: dict[str, str] = field(default_factory=dict)
    outline_source: str = ""

    def voxels(self, side: str) -> np.ndarray:
        """Flat indices of the measured voxels of one side ("" reason) or an empty array."""
        if self.reason.get(side):
            return np.empty(0, np.int64)
        return self.index[self.side == SIDES.index(side)]


def _outline_roles(study: Study) -> tuple[tuple[str, ...], str]:
    """Image roles whose sum outlines the body, and the name of that source."""
    if "water" in study.images and "fat" in study.images:
        return ("water", "fat"), "dixon"
    if "t1w" in study.images:
        return ("t1w",), "t1w"
    return (), ""


def _outline(study: Study, roles: tuple[str, ...], slices: np.ndarray) -> np.ndarray:
    """The outline signal (sum of ``roles``) on the given slices, float32, NaN as 0."""
    total = sum(np.asarray(study.images[r][..., slices], np.float32) for r in roles)
    return np.nan_to_num(np.asarray(total, np.float32))


def _owner(side_of: np.ndarray) -> np.ndarray:
    """Side (0/1) of every pixel: split at the midline between the two thighs' labels."""
    present = [np.flatnonzero((side_of == s).any(axis=1)) for s in (0, 1)]
    if not present[0].size or not present[1].size:
        return np.full(side_of.shape, 0 if present[0].size else 1, np.int8)
    first = 0 if present[0].mean() < present[1].mean() else 1
    low, high = present[first].max(), present[1 - first].min()
    cut = 0.5 * (low + high) if low < high else 0.5 * (present[0].mean() + present[1].mean())
    rows = np.arange(side_of.shape[0])[:, None]
    return np.where(rows <= cut, first, 1 - first).astype(np.int8) + np.zeros_like(side_of)


def _side_lookup(study: Study) -> np.ndarray:
    """Per label value: 0 left, 1 right, -1 no sided muscle (an array indexed by value)."""
    values = study.label_values
    lookup = np.full(int(values.max()) + 1 if values.size else 1, -1, np.int8)
    for value in values:
        info = study.label_info[int(value)]
        if info.kind in (MUSCLE, GROUP) and info.side in SIDES:
            lookup[int(value)] = SIDES.index(info.side)
    return lookup


def subcutaneous(
    study: Study, cset: CompartmentSettings, outline: LimbOutline | None = None
) -> Subcutaneous:
    """Find the subcutaneous fat band of each side, eroded from skin and muscle borders.

    Parameters
    ----------
    study : Study
        Labels and images on one grid (the third axis is the slice axis).
    cset : CompartmentSettings
    outline : LimbOutline, optional
        The study's limb envelope on its read slices when already found (used when its
        ``max_slices`` is ``cset.max_slices``).

    Returns
    -------
    Subcutaneous
        Every side has a ``reason`` when it cannot be measured (no outline image, no sided
        muscle, too thin, too few voxels).
    """
    roles, source = _outline_roles(study)
    empty = np.empty(0, np.int64)
    if not roles:
        why = "no Dixon water/fat or T1-weighted image to outline the body"
        nan = {s: float("nan") for s in SIDES}
        return Subcutaneous(
            index=empty,
            side=empty.astype(np.int8),
            slice=empty.astype(np.int32),
            thickness_mm=nan,
            reason=dict.fromkeys(SIDES, why),
        )
    dx, dy, _ = study.voxel_size_mm
    pixel = 0.5 * (dx + dy)
    # the one subcutaneous layer (shared with the fat-scale check): the body outside each
    # limb's convex hull of labels, on at most max_slices evenly spaced, fully labelled slices
    # (every step is in plane, so each slice's layer is the one the whole volume would give)
    outline = outline_of_labels(study.labels, study.voxel_size_mm, cset.max_slices, found=outline)
    chosen, sub = outline.slices, outline.inside
    total = _outline(study, roles, chosen)
    floor = cset.body_floor * float(np.quantile(total[::2, ::2], 0.99)) if chosen.size else 0.0
    body = body_mask(total, floor)
    layer = subcutaneous_layer(
        sub, body, study.voxel_size_mm, min_slice_share=0.0, envelope=outline.envelope
    ).layer
    if layer is None or not layer.any():
        layer = np.zeros(sub.shape, bool)
    d_out, d_in = _in_plane_depths(body, layer, (dx, dy))
    layer &= d_in <= cset.max_depth_mm
    sides = _side_lookup(study)
    index, side, slices, thickness = [], [], [], {0: [], 1: []}
    for j in np.flatnonzero(layer.any(axis=(0, 1))):
        k = int(chosen[j])
        lab = np.asarray(study.labels[..., k])
        side_of = np.full(lab.shape, -1, np.int8)
        known = (lab > 0) & (lab < sides.size)
        side_of[known] = sides[lab[known]]
        if not (side_of >= 0).any():
            continue
        # everything below at the band's pixels only (row-major, as the plane's masks were)
        band_row, band_col = np.nonzero(layer[..., j])
        owner = _owner(side_of)[band_row, band_col]
        out_k, in_k = d_out[band_row, band_col, j], d_in[band_row, band_col, j]
        local = out_k + in_k - pixel
        for s in (0, 1):
            thickness[s].append(local[owner == s])
        keep = out_k > max(cset.skin_margin_mm, pixel)
        keep &= in_k > max(cset.muscle_margin_mm, pixel)
        row, col = band_row[keep], band_col[keep]
        index.append(np.ravel_multi_index((row, col, np.full(row.size, k)), study.shape))
        side.append(owner[keep])
        slices.append(np.full(row.size, k, np.int32))
    index_all = np.concatenate(index) if index else empty
    side_all = np.concatenate(side).astype(np.int8) if side else empty.astype(np.int8)
    slice_all = np.concatenate(slices) if slices else empty.astype(np.int32)
    medians, reasons = {}, {}
    for s, name in enumerate(SIDES):
        values = np.concatenate(thickness[s]) if thickness[s] else np.empty(0)
        medians[name] = float(np.median(values)) if values.size else float("nan")
        count = int((side_all == s).sum())
        if not values.size:
            reasons[name] = "no subcutaneous band found next to a labelled muscle of this side"
        elif medians[name] < cset.min_thickness_mm:
            reasons[name] = (
                f"subcutaneous fat {medians[name]:.1f} mm thick, below the "
                f"{cset.min_thickness_mm:g} mm needed to measure it clear of skin and muscle "
                "borders (thin fat, e.g. in children)"
            )
        elif count < cset.min_voxels:
            reasons[name] = (
                f"only {count} subcutaneous voxels clear of skin and muscle borders "
                f"(at least {cset.min_voxels} needed)"
            )
        else:
            reasons[name] = ""
    return Subcutaneous(
        index=index_all,
        side=side_all,
        slice=slice_all,
        thickness_mm=medians,
        reason=reasons,
        outline_source=source,
    )


def _in_plane_depths(
    body: np.ndarray, layer: np.ndarray, pixel_mm: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """In-plane distances to air (``d_out``) and to the body inside the envelope (``d_in``).

    Slice by slice on the body's box widened by one pixel: every pixel outside that box is air,
    and the nearest air pixel to a body pixel lies in it (the image edge counts as air, as a
    one-pixel pad around the slice), and so does every pixel of the body inside the envelope;
    outside the box ``d_out`` is 0 (air) and ``d_in`` is not needed (no layer voxel there). A slice
    with no body inside the envelope has ``d_in`` infinite. The whole-volume transforms gave the
    same values at 2 x 0.6 s on a 512x512 study's 12 read slices.
    """
    d_out = np.zeros(body.shape)
    d_in = np.full(body.shape, np.inf)
    deep = body & ~layer
    for k in np.flatnonzero(body.any(axis=(0, 1))):
        box = (*plane_box(body[..., k], 1), k)
        plane = np.pad(body[box], 1)  # the image's edge is air
        d_out[box] = ndimage.distance_transform_edt(plane, sampling=pixel_mm)[1:-1, 1:-1]
        if deep[box].any():
            d_in[box] = ndimage.distance_transform_edt(~deep[box], sampling=pixel_mm)
    return d_out, d_in


def _at(study: Study, role: str, index: np.ndarray) -> np.ndarray:
    """Float32 values of one image at flat (C-order) indices, without a copy of the volume.

    ``float_image(role).ravel()`` converted and re-ordered the whole (Fortran-ordered) volume
    to read a few thousand voxels.
    """
    return np.asarray(study.images[role][np.unravel_index(index, study.shape)], np.float32)


def _fat_fraction(study: Study, index: np.ndarray) -> np.ndarray | None:
    """FF at flat indices: the FF map, else fat / (fat + water); None without either."""
    if "ff" in study.images:
        return _at(study, "ff", index)
    if "fat" in study.images and "water" in study.images:
        fat = _at(study, "fat", index)
        total = fat + _at(study, "water", index)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, fat / total, np.nan)
    return None


def _edema(
    stir: np.ndarray, ff: np.ndarray | None, slices: np.ndarray, cset: CompartmentSettings
) -> tuple[float, str]:
    """Edema-like share of one side's band against its suppressed fat's own level."""
    fat = np.isfinite(stir) & (stir > 0)
    if ff is not None:
        fat &= np.nan_to_num(ff, nan=0.0) > cset.fat_ff
    if fat.sum() < cset.min_level_voxels:
        return float("nan"), "too few fat voxels in the band to set the suppressed-fat STIR level"
    level = np.full(stir.shape, float(np.median(stir[fat])))
    for k in np.unique(slices):
        here = slices == k
        if (fat & here).sum() >= cset.min_level_voxels:
            level[here] = float(np.median(stir[fat & here]))
    ratio = stir / level
    reference = ratio[fat]
    spread = 1.4826 * float(np.median(np.abs(reference - np.median(reference))))
    cut = max(cset.stir_edema_ratio, 1.0 + cset.stir_edema_sigmas * spread)
    valid = np.isfinite(ratio)
    return float(np.mean(ratio[valid] > cut)), ""


def measure_compartments(
    study: Study, settings: Settings, outline: LimbOutline | None = None
) -> tuple[pd.DataFrame, list[QCFinding]]:
    """``compartments.tsv`` rows of one study and the QC findings of measuring them.

    Parameters
    ----------
    study : Study
    settings : Settings
        Section ``compartments``.
    outline : LimbOutline, optional
        Passed to :func:`subcutaneous`.

    Returns
    -------
    tuple
        (table with :data:`COLUMNS`, one row per side; list of QCFinding).
    """
    cset = CompartmentSettings.from_settings(settings)
    band = subcutaneous(study, cset, outline)
    has_stir = "stir" in study.images
    rows, qc = [], []
    for name in SIDES:
        index = band.voxels(name)
        slices = band.slice[band.side == SIDES.index(name)] if index.size else index
        note = band.reason.get(name, "")
        ff_median = edema = float("nan")
        if not note:
            ff = _fat_fraction(study, index)
            ff_median = float(np.nanmedian(ff)) if ff is not None and ff.size else float("nan")
            if has_stir:
                stir = _at(study, "stir", index)
                edema, note = _edema(stir, ff, slices, cset)
            elif "t2map" in study.images:
                note = (
                    "subcutaneous edema is read from STIR only: in fat a water-T2 map has a "
                    "water fraction of ~0.1 to read from (noise)"
                )
            else:
                note = "no STIR (input image missing): subcutaneous edema not measured"
        rows.append(
            {
                "study_id": study.study_id,
                "compartment": SUBCUTANEOUS,
                "side": name,
                "voxels": int(index.size),
                "thickness_mm": band.thickness_mm.get(name, np.nan),
                "ff_median": ff_median,
                "edema_fraction": edema,
                "edema_source": "stir" if np.isfinite(edema) else "",
                "note": note,
            }
        )
        if band.reason.get(name):
            qc.append(
                QCFinding(
                    "info",
                    schema.SUBCUTANEOUS_NOT_MEASURED,
                    f"{name} subcutaneous fat not measured: {band.reason[name]}",
                    "",
                )
            )
    return pd.DataFrame(rows, columns=list(COLUMNS)), qc
