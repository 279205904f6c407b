"""Edema-like signal per label and in the fascial shell, from STIR or a water-T2 map.

STIR is compared with the study's normal muscle after removing a smooth bias field
(:mod:`.bias`). The normal level survives diffuse edema (:mod:`.reference`): it moves down to a
darker cluster of muscle when one exists, is checked against a T2 map and against suppressed fat,
and when it cannot be trusted the edema cells are left empty with a warning. A water-T2 map is
compared with thresholds in ms for the stated field strength. Fatty voxels never count as edema;
too few voxels leave an empty cell and a flag. Fascial edema is the share of the exclusive shell
just outside each muscle with edema-like signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import schema
from ..anatomy import REFERENCE
from ..errors import QCFinding
from . import reference
from .bias import BiasFit, BlockGrid, fit_log_bias, log_bias_at
from .masks import background_sample
from .voxel_sets import LabelledRegion, VoxelSet, label_quantiles
from .water_t2 import T2Range, t2_range

__all__ = [
    "Z_BINS",
    "Z_RANGE",
    "EdemaMeasure",
    "EdemaReference",
    "measure_edema",
    "suppressed_fat_levels",
]

Z_RANGE = (-20.0, 40.0)
Z_BINS = 3000


@dataclass(kw_only=True)
class EdemaReference:
    """How edema-like signal was decided, for the record (``score.json``)."""

    source: str  # "stir", "t2map" or ""
    normal_mode: float = float("nan")
    normal_sigma: float = float("nan")
    threshold: float = float("nan")
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The reference as plain data (``score.json`` ``edema_reference``)."""
        return {
            "source": self.source,
            "normal_mode": _finite(self.normal_mode),
            "normal_sigma": _finite(self.normal_sigma),
            "threshold": _finite(self.threshold),
            **self.details,
        }


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


@dataclass(kw_only=True, frozen=True, eq=False)
class EdemaMeasure:
    """Edema measures of one study.

    Attributes
    ----------
    columns : dict
        ``edema_fraction``, ``edema_z``, ``fascial_edema_fraction`` (and ``t2_median_ms`` from a
        T2 map) per compact label (index 0 = background); ``edema_source`` as a string.
        Empty when edema could not be measured.
    reference : EdemaReference
    qc : list of QCFinding
    counted, edema : ndarray of bool or None
        Per labelled voxel: in the denominator of ``edema_fraction``; read as edema.
    shell_edema : ndarray of bool or None
        Per shell voxel: read as edema-like (numerator of ``fascial_edema_fraction``).
    flags : dict of int to list of str
        Row flags per compact label (too few voxels, untrusted reference).
    """

    columns: dict[str, Any] = field(default_factory=dict)
    reference: EdemaReference = field(default_factory=lambda: EdemaReference(source=""))
    qc: list[QCFinding] = field(default_factory=list)
    counted: np.ndarray | None = None
    edema: np.ndarray | None = None
    shell_edema: np.ndarray | None = None
    flags: dict[int, list[str]] = field(default_factory=dict)


@dataclass(kw_only=True, frozen=True, eq=False)
class _Readout:
    """Assessable voxels of one edema source: their signal, labels and the edema-like cut."""

    source: str
    counted: np.ndarray  # per labelled voxel: assessable with a usable value
    values: np.ndarray  # STIR / normal level, or water T2 in ms (one per counted voxel)
    label: np.ndarray
    mode: float
    sigma: float
    threshold: float
    shell_edema: np.ndarray
    reference: EdemaReference
    t2_median: np.ndarray | None = None


def measure_edema(
    region: LabelledRegion, ff_flat: np.ndarray | None, qset: dict[str, Any], eset: dict[str, Any]
) -> EdemaMeasure:
    """Edema fraction, robust z and fascial-edema fraction per label, from STIR or a T2 map.

    STIR is preferred; its normal-muscle reference is checked against a T2 map (when present)
    and against suppressed fat (:mod:`.reference`). A reference found edematous by the T2 map is
    replaced by the T2 map's absolute thresholds; one that cannot be trusted leaves every edema
    cell empty with a warning, so that the edema features are unavailable, not absent.

    Parameters
    ----------
    region : LabelledRegion
        The study's labelled voxels, shell and images.
    ff_flat : ndarray or None
        Fat fraction per labelled voxel (None: fatty voxels cannot be excluded).
    qset, eset : dict
        The ``quantify`` and ``edema`` sections of the settings.

    Returns
    -------
    EdemaMeasure
        Empty (source "") when the study has neither STIR nor a T2 map.
    """
    if "stir" not in region.images and "t2map" not in region.images:
        return EdemaMeasure()
    qc: list[QCFinding] = []
    assessable = region.use_core & region.is_muscle[region.label]
    if ff_flat is not None:
        assessable &= ~(ff_flat > qset["fatty_voxel_ff"])
    t2 = t2_range(eset, region.study.metadata)
    if "t2map" in region.images:
        basis = (
            "stated in study.json" if t2.stated else "assumed: no field_strength_t in study.json"
        )
        qc.append(
            QCFinding(
                "info",
                schema.T2MAP_ASSUMPTIONS,
                "the T2 map is read as fat-corrected water T2 in ms at "
                f"{t2.field_strength_t:g} T ({basis}): normal {t2.normal_ms:g} ms, "
                f"edema-like above {t2.edema_ms:g} ms",
                region.file("t2map"),
            )
        )
    if "stir" not in region.images:
        readout = _t2_readout(region, assessable, t2, ff_flat is None, qc)
        return _columns(region, readout, qset, qc)
    stir = _stir_readout(region, ff_flat, assessable, qset, eset, t2, qc)
    if stir is None:
        return EdemaMeasure(columns={}, reference=EdemaReference(source="stir"), qc=qc)
    readout, verdict = stir
    if verdict == reference.FROM_T2MAP:
        stir_reference = readout.reference.to_dict()
        readout = _t2_readout(region, assessable, t2, ff_flat is None, qc)
        readout.reference.details.update(verdict=verdict, stir_reference=stir_reference)
    elif verdict == reference.UNTRUSTED:
        return _unmeasured(region, readout, qc)
    return _columns(region, readout, qset, qc)


def _t2_readout(
    region: LabelledRegion, assessable: np.ndarray, t2: T2Range, no_ff: bool, qc: list[QCFinding]
) -> _Readout:
    values = region.gather("t2map")
    ok = assessable & np.isfinite(values) & (values > 0)
    values, lab_ok = values[ok], region.label[ok]
    shell_edema = region.gather("t2map", region.shell) > t2.edema_ms
    ref = EdemaReference(
        source="t2map",
        normal_mode=t2.normal_ms,
        normal_sigma=t2.sd_ms,
        threshold=t2.edema_ms,
        details={"unit": "ms", "field_strength_t": t2.field_strength_t},
    )
    low, high, step = t2.median_grid_ms
    bins = round((high - low) / step)
    median = label_quantiles(lab_ok, values, region.n_labels, (0.5,), (low, high), bins)[:, 0]
    if no_ff:
        qc.append(
            QCFinding(
                "info",
                schema.T2_FAT_NOT_EXCLUDED,
                "no fat-fraction image: fatty voxels cannot be excluded from the T2 edema measure",
                region.file("t2map"),
            )
        )
    return _Readout(
        source="t2map",
        counted=ok,
        values=values,
        label=lab_ok,
        mode=t2.normal_ms,
        sigma=t2.sd_ms,
        threshold=t2.edema_ms,
        shell_edema=shell_edema,
        reference=ref,
        t2_median=median,
    )


def _stir_readout(
    region: LabelledRegion,
    ff_flat: np.ndarray | None,
    assessable: np.ndarray,
    qset: dict[str, Any],
    eset: dict[str, Any],
    t2: T2Range,
    qc: list[QCFinding],
) -> tuple[_Readout, str] | None:
    """STIR against a normal-muscle level that is checked, or None without enough muscle."""
    stir = region.gather("stir")
    if ff_flat is not None:
        stir /= np.maximum(
            1.0 - np.nan_to_num(ff_flat, nan=0.0), np.float32(qset["water_fraction_floor"])
        )
    ok = assessable & np.isfinite(stir) & (stir > 0)
    if ok.sum() < eset["reference_min_voxels"]:
        qc.append(
            QCFinding(
                "warning",
                schema.EDEMA_REFERENCE_MISSING,
                "too few non-fatty muscle voxels to set a normal-muscle STIR reference",
                region.file("stir"),
            )
        )
        return None
    grid = BlockGrid.make(region.voxels.shape, region.study.voxel_size_mm, eset["stir_block_mm"])
    values = np.log(stir[ok]).astype(np.float32)
    del stir
    reference_voxels = region.voxels.subset(ok)  # the bias field is evaluated only where used
    coef = fit_log_bias(
        grid.ids_at(reference_voxels),
        values,
        grid,
        BiasFit.from_settings(
            eset,
            eset["stir_block_quantile" if ff_flat is not None else "stir_block_quantile_no_ff"],
        ),
    )
    values -= log_bias_at(coef, reference_voxels)
    np.exp(values, out=values)
    # Without a fat fraction, fatty muscle is dark on STIR: a darker cluster may be fat, not
    # normal muscle, so the reference is not moved (and the low quantile is not trusted).
    darker_share = eset["stir_darker_cluster_share"] if ff_flat is not None else np.inf
    rule = reference.ReferenceRule.from_settings(eset, darker_share)
    level = reference.anchored_normal_level(values, rule)
    threshold = rule.edema_threshold(level.mode, level.sigma)
    shell_norm = region.gather("stir", region.shell) / np.exp(log_bias_at(coef, region.shell))
    reference_t2 = None
    if "t2map" in region.images:
        t2_values = region.gather("t2map")[ok][values <= threshold]
        t2_values = t2_values[np.isfinite(t2_values) & (t2_values > 0)]
        enough = t2_values.size >= eset["reference_min_voxels"]
        reference_t2 = float(np.median(t2_values)) if enough else None
    prior = eset["stir_normal_to_fat_ratio"]
    verdict = reference.judge_reference(
        level,
        suppressed_fat_levels(
            region,
            ff_flat,
            coef,
            qset["fatty_voxel_ff"],
            min_voxels=eset["suppressed_fat_min_voxels"],
            body_floor=eset["background_body_floor"],
        ),
        tuple(prior) if prior else None,
        reference_t2,
        t2.edema_ms,
    )
    ref = EdemaReference(
        source="stir",
        normal_mode=level.mode,
        normal_sigma=level.sigma,
        threshold=threshold,
        details={
            "unit": "STIR / fitted normal-muscle level",
            "verdict": verdict.verdict,
            **verdict.checks,
            "bias_coefficients": [float(c) for c in coef],
        },
    )
    _reference_findings(region, level, verdict, qc, eset["reference_min_normal_share"])
    readout = _Readout(
        source="stir",
        counted=ok,
        values=values,
        label=region.label[ok],
        mode=level.mode,
        sigma=level.sigma,
        threshold=threshold,
        shell_edema=shell_norm > threshold,
        reference=ref,
    )
    return readout, verdict.verdict


def _reference_findings(
    region: LabelledRegion,
    level: reference.NormalLevel,
    verdict: reference.ReferenceVerdict,
    qc: list[QCFinding],
    min_normal_share: float,
) -> None:
    file = region.file("stir")
    if verdict.verdict == reference.FROM_T2MAP:
        qc.append(QCFinding("warning", schema.EDEMA_REFERENCE_FROM_T2MAP, verdict.reason, file))
        return
    if verdict.verdict == reference.UNTRUSTED:
        qc.append(
            QCFinding(
                "warning",
                schema.EDEMA_REFERENCE_UNTRUSTED,
                verdict.reason + "; edema and fascial edema are left empty",
                file,
            )
        )
        return
    if level.steps:
        qc.append(
            QCFinding(
                "info",
                schema.EDEMA_REFERENCE_REANCHORED,
                f"{1 - level.reference_share:.0%} of non-fatty muscle reads "
                "edema-like on STIR: the normal-muscle reference was moved from the "
                f"main peak ({level.apparent_mode:.3g}) down to the darker muscle "
                f"({level.mode:.3g}, {level.reference_share:.0%} of muscle)",
                file,
            )
        )
    elif level.reference_share < min_normal_share:
        qc.append(
            QCFinding(
                "warning",
                schema.EDEMA_REFERENCE_UNCERTAIN,
                f"only {level.reference_share:.0%} of muscle reads normal on STIR: "
                "the normal-muscle reference may itself be edematous",
                file,
            )
        )
    if verdict.verdict == reference.UNVERIFIED:
        qc.append(QCFinding("info", schema.EDEMA_REFERENCE_UNVERIFIED, verdict.reason, file))


def suppressed_fat_levels(
    region: LabelledRegion,
    ff_flat: np.ndarray | None,
    coef: np.ndarray,
    fat_ff: float,
    *,
    min_voxels: int = 100,
    body_floor: float = 0.25,
) -> dict[str, float]:
    """Bias-corrected STIR of suppressed fat: labelled marrow and unlabelled fat tissue.

    Parameters
    ----------
    region : LabelledRegion
    ff_flat : ndarray or None
        Fat fraction per labelled voxel; without it (and without a Dixon pair or FF map for the
        unlabelled tissue) fat cannot be told from bone or muscle and nothing is returned.
    coef : ndarray
        The STIR log-bias polynomial (:func:`fit_log_bias`).
    fat_ff : float
        Tissue with FF above this is fat (``fatty_voxel_ff``); only FF above ``(1 + fat_ff) / 2``
        is used, so that partial volume with muscle does not lift the level.
    min_voxels : int
        A tissue's median is taken from at least this many voxels (``suppressed_fat_min_voxels``).
    body_floor : float
        Unlabelled voxels with Dixon water + fat below this share of its 99th percentile are air,
        not tissue (``background_body_floor``).

    Returns
    -------
    dict of str to float
        ``marrow`` and ``unlabelled_fat`` medians (STIR / fitted bias), each from at least
        ``min_voxels`` voxels.
    """
    cut = 0.5 * (1.0 + fat_ff)
    levels: dict[str, float] = {}
    if ff_flat is not None:
        marrow = np.isin(region.label, np.flatnonzero(region.kinds == REFERENCE))
        marrow &= np.nan_to_num(ff_flat, nan=0.0) > cut
        if marrow.sum() >= min_voxels:
            levels["marrow"] = _median_corrected(region, region.voxels.subset(marrow), coef)
    images = region.images
    if ("fat" in images and "water" in images) or "ff" in images:
        sample = background_sample(region.labels, len(region.voxels), 20_000)
        voxels = VoxelSet(sample, region.voxels.region, region.study.shape)
        if "ff" in images and not ("fat" in images and "water" in images):
            ff = region.gather("ff", voxels)
        else:
            fat, water = region.gather("fat", voxels), region.gather("water", voxels)
            total = fat + water
            with np.errstate(invalid="ignore", divide="ignore"):
                ff = np.where(total > body_floor * np.quantile(total, 0.99), fat / total, np.nan)
        keep = np.flatnonzero(np.nan_to_num(ff, nan=0.0) > cut)
        if keep.size >= min_voxels:
            levels["unlabelled_fat"] = _median_corrected(region, voxels.subset(keep), coef)
    return levels


def _median_corrected(region: LabelledRegion, voxels: VoxelSet, coef: np.ndarray) -> float:
    values = region.gather("stir", voxels) / np.exp(log_bias_at(coef, voxels))
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def _columns(
    region: LabelledRegion, readout: _Readout, qset: dict[str, Any], qc: list[QCFinding]
) -> EdemaMeasure:
    """Per-label fractions and z from a readout; too few voxels leave an empty cell and a flag."""
    n, values = region.n_labels, readout.values
    counts = np.bincount(readout.label, minlength=n + 1).astype(float)
    hit = values > readout.threshold
    hits = np.bincount(readout.label[hit], minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(counts > 0, hits / counts, np.nan)
    values -= np.float32(readout.mode)
    values /= np.float32(readout.sigma)
    np.clip(values, *Z_RANGE, out=values)
    z_median = label_quantiles(readout.label, values, n, (0.5,), Z_RANGE, Z_BINS)[:, 0]
    shell_lab = region.shell_label
    shell_counts = np.bincount(shell_lab, minlength=n + 1).astype(float)
    shell_hits = np.bincount(shell_lab[readout.shell_edema], minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fascial = np.where(shell_counts > 0, shell_hits / shell_counts, np.nan)
    flags: dict[int, list[str]] = {}
    muscle = region.is_muscle & (np.bincount(region.label, minlength=n + 1) > 0)
    few = muscle & (counts < qset["min_edema_voxels"])
    few_shell = muscle & (shell_counts < qset["min_shell_voxels"])
    fraction[few] = z_median[few] = np.nan
    fascial[few_shell] = np.nan
    for index in np.flatnonzero(few):
        flags.setdefault(int(index), []).append(schema.EDEMA_TOO_FEW_VOXELS)
    for index in np.flatnonzero(few_shell):
        flags.setdefault(int(index), []).append(schema.FASCIAL_TOO_FEW_VOXELS)
    cols: dict[str, Any] = {
        "edema_fraction": fraction,
        "edema_z": z_median,
        "fascial_edema_fraction": fascial,
        "edema_source": readout.source,
    }
    if readout.t2_median is not None:
        cols["t2_median_ms"] = readout.t2_median
    # The voxel maps show exactly what the table counted: not the rows left empty.
    edema_voxels = np.zeros(readout.counted.shape, bool)
    edema_voxels[readout.counted] = hit
    counted, shell_edema = readout.counted, readout.shell_edema
    if few.any():
        counted = counted & ~few[region.label]
        edema_voxels &= counted
    if few_shell.any():
        shell_edema = shell_edema & ~few_shell[shell_lab]
    return EdemaMeasure(
        columns=cols,
        reference=readout.reference,
        qc=qc,
        counted=counted,
        edema=edema_voxels,
        shell_edema=shell_edema,
        flags=flags,
    )


def _unmeasured(region: LabelledRegion, readout: _Readout, qc: list[QCFinding]) -> EdemaMeasure:
    """No trustworthy reference: every edema cell empty, every measured muscle flagged."""
    n = region.n_labels
    empty = np.full(n + 1, np.nan)
    cols: dict[str, Any] = {
        "edema_fraction": empty,
        "edema_z": empty.copy(),
        "fascial_edema_fraction": empty.copy(),
        "edema_source": readout.source,
    }
    measured = np.flatnonzero(region.is_muscle & (np.bincount(region.label, minlength=n + 1) > 0))
    flags = {int(i): [schema.EDEMA_REFERENCE_UNTRUSTED] for i in measured}
    return EdemaMeasure(
        columns=cols,
        reference=readout.reference,
        qc=qc,
        counted=None,
        edema=None,
        shell_edema=None,
        flags=flags,
    )
