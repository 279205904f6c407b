"""Is the Dixon fat scale calibrated? Subcutaneous fat and marrow as the subject's own reference.

Adipose tissue reads a proton-density fat fraction near 0.9-0.95 on a calibrated Dixon; some
reconstructions compress the scale (magnitude-only fits, T1 weighting of fat and water, no
multi-peak fat model), and then every FF reads low: absolute FF, FF grades and ``ff_excess``.
Beside the fat-water swap check (:func:`mri_scoring.measure.fat.swap_check`) this reads:

* subcutaneous fat: the core of the body's layer outside the muscle envelope
  (:func:`mri_scoring.body.subcutaneous_layer`) on at most ``max_slices`` evenly spaced, fully
  labelled slices, only when the layer is at least
  ``min_thickness_mm`` thick (a thin layer, as in a lean child, is mostly partial volume) - the
  reading is the ``reading_quantile`` of F / (F + W) there (the purest adipose voxels);
* marrow, when labelled (median FF), reported beside it; marrow alone never raises the flag
  (red marrow of children and young adults is not fatty).

Below ``min_subcutaneous_ff`` the QC finding ``fat_scale_compressed`` names both readings and
what they affect. With ``fat_reference`` the FF is also given normalised by the subject's own
adipose tissue (as AMRA does for UK Biobank): FF x ``adipose_ff`` / subcutaneous reading, in
separate ``*_fatref`` columns, never replacing the measured ones.

The layer is the one :func:`mri_scoring.body.subcutaneous_layer` finds, the same layer the
subcutaneous compartment (:mod:`.compartments`, ``compartments.tsv``) reads its edema from;
:func:`read_fat_scale` also takes a voxel mask found elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import schema
from ..anatomy import reference_tissue
from ..body import LimbOutline, body_mask, outline_of_labels, subcutaneous_layer
from ..errors import QCFinding
from .voxel_sets import LabelledRegion

__all__ = [
    "FatScale",
    "fat_scale_findings",
    "fat_scale_outputs",
    "read_fat_scale",
]


@dataclass(frozen=True, kw_only=True)
class FatScale:
    """The fat-scale readings of one Dixon study.

    Attributes
    ----------
    subcutaneous_ff : float or None
        Reading of subcutaneous fat; None when the layer is too thin or too small.
    thickness_mm : float
        Typical thickness of the subcutaneous layer.
    subcutaneous_voxels : int
        Core voxels read.
    marrow_ff : float or None
        Median FF of labelled marrow; None when none is labelled.
    note : str
        Why subcutaneous fat was not read (empty when it was).
    """

    subcutaneous_ff: float | None
    thickness_mm: float
    subcutaneous_voxels: int
    marrow_ff: float | None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready readings (``score.json`` ``fat_scale``)."""
        return {
            "subcutaneous_ff": _round(self.subcutaneous_ff),
            "subcutaneous_thickness_mm": round(self.thickness_mm, 1),
            "subcutaneous_voxels": self.subcutaneous_voxels,
            "marrow_ff": _round(self.marrow_ff),
            "note": self.note,
        }

    def factor(self, adipose_ff: float) -> float | None:
        """The fat-reference factor ``adipose_ff`` / subcutaneous reading, or None."""
        if self.subcutaneous_ff is None or self.subcutaneous_ff <= 0:
            return None
        return adipose_ff / self.subcutaneous_ff


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def read_fat_scale(
    region: LabelledRegion,
    ff_flat: np.ndarray,
    sigma: float | None,
    cfg: dict[str, Any],
    body_floor_sigma: float,
    layer: np.ndarray | None = None,
    outline: LimbOutline | None = None,
) -> FatScale:
    """Read subcutaneous fat and labelled marrow of a Dixon study.

    Parameters
    ----------
    region : LabelledRegion
        The study's labelled voxels and images (fat and water present).
    ff_flat : ndarray
        FF per labelled voxel (for marrow).
    sigma : float or None
        Dixon noise sigma: the body is F + W above ``body_floor_sigma`` sigmas.
    cfg : dict
        The ``fat_scale`` settings.
    body_floor_sigma : float
        As the swap check's.
    layer : ndarray of bool, optional
        Subcutaneous voxels found elsewhere (then only the reading is done here).
    outline : LimbOutline, optional
        The study's limb envelope on its read slices, when already found (used when its
        ``max_slices`` is this check's).

    Returns
    -------
    FatScale
    """
    study = region.study
    marrow_ids = [
        i + 1
        for i, v in enumerate(study.label_values)
        if reference_tissue(study.label_info[int(v)].muscle) == "marrow"
    ]
    marrow = ff_flat[np.isin(region.label, marrow_ids)] if marrow_ids else ff_flat[:0]
    marrow = marrow[np.isfinite(marrow)]
    marrow_ff = float(np.median(marrow)) if marrow.size else None
    thickness = float("nan")
    if layer is None:
        # the layer of a few evenly spaced, fully labelled slices (``max_slices``): every step
        # of it is in plane, so each is the layer the whole volume would give on that slice
        outline = outline_of_labels(
            study.labels, study.voxel_size_mm, cfg["max_slices"], found=outline
        )
        slices = outline.slices
        fat = np.asarray(study.images["fat"][..., slices], np.float32)
        total = fat + np.asarray(study.images["water"][..., slices], np.float32)
        floor = body_floor_sigma * sigma if sigma else float(np.quantile(total, 0.5))
        found = subcutaneous_layer(
            outline.inside,
            body_mask(total, floor),
            study.voxel_size_mm,
            min_slice_share=0.0,
            envelope=outline.envelope,
        )
        layer, thickness = found.core, found.thickness_mm
    else:
        fat = np.asarray(study.images["fat"], np.float32)
        total = fat + np.asarray(study.images["water"], np.float32)
    n = int(layer.sum())
    note = ""
    if np.isfinite(thickness) and thickness < cfg["min_thickness_mm"]:
        note = (
            f"subcutaneous fat layer {thickness:.1f} mm thick, under "
            f"{cfg['min_thickness_mm']:g} mm: not read (partial volume)"
        )
    elif n < cfg["min_voxels"]:
        note = f"{n} subcutaneous core voxels, under {cfg['min_voxels']}: not read"
    if note:
        return FatScale(
            subcutaneous_ff=None,
            thickness_mm=thickness,
            subcutaneous_voxels=n,
            marrow_ff=marrow_ff,
            note=note,
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        ff = fat[layer] / total[layer]
    ff = ff[np.isfinite(ff)]
    reading = float(np.quantile(ff, cfg["reading_quantile"])) if ff.size else None
    return FatScale(
        subcutaneous_ff=reading, thickness_mm=thickness, subcutaneous_voxels=n, marrow_ff=marrow_ff
    )


def fat_scale_findings(scale: FatScale, cfg: dict[str, Any], file: str) -> list[QCFinding]:
    """``fat_scale_compressed`` when subcutaneous fat reads below the configured level.

    Parameters
    ----------
    scale : FatScale
    cfg : dict
        The ``fat_scale`` settings.
    file : str
        The fat image, named in the finding.

    Returns
    -------
    list of QCFinding
    """
    level = cfg["min_subcutaneous_ff"]
    if scale.subcutaneous_ff is None or scale.subcutaneous_ff >= level:
        return []
    marrow = (
        f"labelled marrow reads {scale.marrow_ff:.2f}"
        if scale.marrow_ff is not None
        else "no marrow labelled"
    )
    hint = (
        ""
        if cfg.get("fat_reference")
        else ("; --fat-reference adds FF normalised by the subject's adipose tissue")
    )
    message = (
        f"fat scale compressed: subcutaneous fat reads FF {scale.subcutaneous_ff:.2f} "
        f"({scale.thickness_mm:.0f} mm layer; calibrated Dixon reads about 0.9-0.95, "
        f"expected >= {level:g}); {marrow}. Absolute FF, FF-derived grades and "
        f"ff_excess read low on this study{hint}"
    )
    return [QCFinding("warning", schema.FAT_SCALE_COMPRESSED, message, file)]


def fat_scale_outputs(
    region: LabelledRegion,
    ff_flat: np.ndarray,
    sigma: float | None,
    qset: dict[str, Any],
    cfg: dict[str, Any],
    ff_columns: Callable[[LabelledRegion, np.ndarray], dict[str, np.ndarray]],
    outline: LimbOutline | None = None,
) -> tuple[list[QCFinding], dict[str, Any], dict[str, np.ndarray]]:
    """Everything the fat scale adds to a Dixon study's fat measure.

    Parameters
    ----------
    region : LabelledRegion
    ff_flat : ndarray
        FF per labelled voxel.
    sigma : float or None
        Dixon noise sigma.
    qset : dict
        The ``quantify`` settings (the swap check's body floor).
    cfg : dict
        The ``fat_scale`` settings.
    ff_columns : callable
        Per-label FF columns of a voxel FF (``ff_median``, ``ff_mean``, ...): applied to the
        fat-referenced FF with ``fat_reference``.
    outline : LimbOutline, optional
        Passed to :func:`read_fat_scale`.

    Returns
    -------
    findings : list of QCFinding
    readings : dict
        ``score.json`` ``fat_scale`` (with the factor and ``adipose_ff`` under
        ``fat_reference``).
    columns : dict of str -> ndarray
        ``ff_median_fatref`` and ``ff_mean_fatref`` per compact label (empty without
        ``fat_reference``; NaN when subcutaneous fat was not read).
    """
    found = read_fat_scale(
        region, ff_flat, sigma, cfg, qset["swap_check_body_floor_sigma"], outline=outline
    )
    findings = fat_scale_findings(found, cfg, region.file("fat"))
    readings = found.as_dict()
    if not cfg["fat_reference"]:
        return findings, readings, {}
    factor = found.factor(cfg["adipose_ff"])
    readings["fat_reference_factor"] = None if factor is None else round(factor, 4)
    readings["adipose_ff"] = cfg["adipose_ff"]
    if factor is None:
        findings.append(
            QCFinding(
                "warning",
                schema.FAT_REFERENCE_UNAVAILABLE,
                f"--fat-reference: no subcutaneous fat reading ({found.note}); the "
                "fat-referenced columns are empty",
                region.file("fat"),
            )
        )
        empty = np.full(region.n_labels + 1, np.nan)
        return findings, readings, {"ff_median_fatref": empty, "ff_mean_fatref": empty.copy()}
    scaled = ff_columns(region, np.clip(ff_flat * np.float32(factor), 0.0, 1.0))
    columns = {"ff_median_fatref": scaled["ff_median"], "ff_mean_fatref": scaled["ff_mean"]}
    return findings, readings, columns
