"""Edema-like signal per label and in the fascial shell, from STIR or a water-T2 map.

STIR is compared with the study's own normal muscle after removing a smooth bias field fitted to a
low quantile of muscle signal per block (robust to coil shading and to diffuse edema); a water-T2
map is compared with thresholds in ms. Fatty voxels never count as edema. Fascial edema is the
share of the exclusive shell just outside each muscle with edema-like signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import schema
from ..errors import QCFinding
from .arrays import LabelledRegion, VoxelSet, label_quantiles

Z_RANGE = (-20.0, 40.0)
Z_BINS = 3000


@dataclass
class EdemaReference:
    """How edema-like signal was decided, for the record (``score.json``)."""

    source: str  # "stir", "t2map" or ""
    normal_mode: float = float("nan")
    normal_sigma: float = float("nan")
    threshold: float = float("nan")
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "normal_mode": _finite(self.normal_mode),
                "normal_sigma": _finite(self.normal_sigma), "threshold": _finite(self.threshold),
                **self.details}  # fmt: skip


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _poly_terms(coords: np.ndarray, order: int) -> np.ndarray:
    """Polynomial design matrix (N, terms) of normalised coordinates, up to ``order``."""
    x, y, z = coords
    terms = [np.ones_like(x)]
    if order >= 1:
        terms += [x, y, z]
    if order >= 2:
        terms += [x * x, y * y, z * z, x * y, x * z, y * z]
    return np.stack(terms, axis=1)


@dataclass(frozen=True)
class BlockGrid:
    """An odd number of blocks per axis, centred on the region, so that a flipped volume gets
    the mirrored partition (no block boundary falls on the centre or on a voxel centre)."""

    shape: tuple[int, ...]
    counts: tuple[int, ...]
    width: np.ndarray

    @classmethod
    def make(cls, shape: tuple[int, ...], voxel_size_mm: tuple[float, ...],
             block_mm: float) -> BlockGrid:  # fmt: skip
        block = np.maximum(block_mm / np.asarray(voxel_size_mm, dtype=float), 1.0)
        counts = tuple(int(np.ceil(n / b)) | 1 for n, b in zip(shape, block, strict=True))
        return cls(tuple(shape), counts, block * (1.0 + 1e-7))

    def axis_index(self, axis: int) -> np.ndarray:
        centred = np.arange(self.shape[axis]) - (self.shape[axis] - 1) / 2.0
        index = np.floor(centred / self.width[axis] + self.counts[axis] / 2.0)
        return np.clip(index, 0, self.counts[axis] - 1).astype(np.int32)

    def ids_at(self, voxels: VoxelSet) -> np.ndarray:
        """Block id of each voxel of a :class:`VoxelSet`."""
        bx, by, bz = (self.axis_index(i) for i in range(3))
        i, j, k = voxels.ijk
        _, n1, n2 = self.counts
        return (bx[i] * n1 + by[j]) * n2 + bz[k]

    def centres(self) -> np.ndarray:
        """Voxel coordinates (3, n_blocks) of every block centre."""
        grid = np.array(np.unravel_index(np.arange(int(np.prod(self.counts))), self.counts),
                        dtype=float)  # fmt: skip
        counts = np.asarray(self.counts, dtype=float)[:, None]
        shape = np.asarray(self.shape, dtype=float)[:, None]
        return (grid + 0.5 - counts / 2.0) * self.width[:, None] + (shape - 1) / 2.0


def fit_log_bias(block_ids: np.ndarray, log_signal: np.ndarray, grid: BlockGrid,
                 quantile: float, order: int) -> np.ndarray:  # fmt: skip
    """Coefficients of a smooth log-bias polynomial fitted to block-wise low quantiles.

    Each block holds reference voxels; its ``quantile`` of log signal stands for normal tissue
    there (patchy edema only brightens, so a low quantile is robust to it). A polynomial is fitted
    to the block values, weighted by voxel counts, with two rounds of outlier rejection (blocks
    off by more than 3 robust SD: e.g. diffusely edematous muscle).
    """
    n_blocks = int(np.prod(grid.counts))
    lo, hi = float(log_signal.min()), float(log_signal.max()) + 1e-6
    q = label_quantiles(block_ids + 1, log_signal, n_blocks, (quantile,), (lo, hi), 512)[1:, 0]
    counts = np.bincount(block_ids, minlength=n_blocks).astype(float)
    keep = counts >= 20
    if keep.sum() < 12:
        order = 0 if keep.sum() < 4 else min(order, 1)
    if not keep.any():
        return np.array([float(np.median(log_signal))])
    design = _poly_terms(_normalise_coords(grid.centres(), grid.shape), order)
    weights = np.sqrt(counts)
    mask = keep.copy()
    coef = np.zeros(design.shape[1])
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(design[mask] * weights[mask, None], q[mask] * weights[mask],
                                   rcond=None)  # fmt: skip
        residual = np.where(keep, q - design @ coef, np.inf)
        spread = 1.4826 * np.median(np.abs(residual[mask] - np.median(residual[mask])))
        new_mask = keep & (np.abs(residual) <= max(3.0 * spread, 0.02))
        if new_mask.sum() < design.shape[1] + 2 or np.array_equal(new_mask, mask):
            break
        mask = new_mask
    return coef


def _normalise_coords(coords: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    scale = np.array([max(n - 1, 1) for n in shape], dtype=float)[:, None]
    return 2.0 * coords / scale - 1.0


def log_bias_at(coef: np.ndarray, voxels: VoxelSet) -> np.ndarray:
    """The log-bias polynomial at each voxel of a :class:`VoxelSet` (float32).

    The polynomial is split into an in-plane part and a part linear and quadratic in z, so only
    two small (x, y) tables and one z table are built, whatever the number of voxels.
    """
    padded = np.zeros(10)
    padded[: len(coef)] = coef
    c0, cx, cy, cz, cxx, cyy, czz, cxy, cxz, cyz = padded
    x, y, z = (np.linspace(-1.0, 1.0, n) if n > 1 else np.full(1, -1.0) for n in voxels.shape)
    plane = (
        c0
        + cx * x[:, None]
        + cy * y[None, :]
        + cxx * x[:, None] ** 2
        + cyy * y[None, :] ** 2
        + cxy * x[:, None] * y[None, :]
    ).astype(np.float32)
    slope = (cz + cxz * x[:, None] + cyz * y[None, :]).astype(np.float32)
    zz = z.astype(np.float32)
    i, j, k = voxels.ijk
    return plane[i, j] + slope[i, j] * zz[k] + np.float32(czz) * zz[k] ** 2


def half_sample_mode(values: np.ndarray) -> float:
    """Half-sample mode (Bickel & Fruehwirth 2006): repeatedly keep the densest half."""
    x = np.sort(values)
    while x.size > 3:
        half = (x.size + 1) // 2
        widths = x[half - 1 :] - x[: x.size - half + 1]
        start = int(np.argmin(widths))
        x = x[start : start + half]
    return float(x.mean())


def normal_mode_and_sigma(values: np.ndarray, sample: int = 200_000) -> tuple[float, float]:
    """Mode of normal tissue and its spread from the dark side of the distribution.

    Edema only brightens, so the part of the distribution below the normal peak is normal tissue
    and noise. The mode is the half-sample mode of the values below the 60th percentile; sigma is
    read where the cumulative count reaches 31.7 % of the mass below the mode (one SD for a
    Gaussian), which edema cannot reach.
    """
    step = max(values.size // sample, 1)
    subset = np.sort(values[::step])
    low = subset[: max(int(0.6 * subset.size), 4)]
    mode = half_sample_mode(low)
    below = subset[subset <= mode]
    if below.size < 10:
        return mode, float(np.std(subset))
    one_sd = float(below[int(0.3173 * below.size)])
    return mode, max(mode - one_sd, 1e-6)


@dataclass(frozen=True, eq=False)
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
    """

    columns: dict[str, Any] = field(default_factory=dict)
    reference: EdemaReference = field(default_factory=lambda: EdemaReference(""))
    qc: list[QCFinding] = field(default_factory=list)
    counted: np.ndarray | None = None
    edema: np.ndarray | None = None
    shell_edema: np.ndarray | None = None


def measure_edema(
    region: LabelledRegion, ff_flat: np.ndarray | None, qset: dict[str, Any], eset: dict[str, Any]
) -> EdemaMeasure:
    """Edema fraction, robust z and fascial-edema fraction per label, from STIR or a T2 map.

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
    study, n, lab_flat = region.study, region.n_labels, region.label
    if "stir" not in region.images and "t2map" not in region.images:
        return EdemaMeasure()
    fatty = (ff_flat > qset["fatty_voxel_ff"]) if ff_flat is not None else None
    qc: list[QCFinding] = []
    assessable = region.use_core & region.is_muscle[lab_flat]
    if fatty is not None:
        assessable &= ~fatty
    t2_median = None
    if "t2map" in study.images and "stir" not in study.images:
        source = "t2map"
        t2 = region.gather("t2map")
        ok = assessable & np.isfinite(t2) & (t2 > 0)
        values, lab_ok = t2[ok], lab_flat[ok]
        del t2
        mode, sigma, threshold = eset["t2_normal_ms"], eset["t2_normal_sd_ms"], eset["t2_edema_ms"]
        shell_edema = region.gather("t2map", region.shell) > threshold
        reference = EdemaReference("t2map", mode, sigma, threshold, {"unit": "ms"})
        t2_median = label_quantiles(lab_ok, values, n, (0.5,), (0.0, 200.0), 4000)[:, 0]
        if fatty is None:
            qc.append(
                QCFinding(
                    "info",
                    schema.T2_FAT_NOT_EXCLUDED,
                    "no fat-fraction image: fatty voxels cannot be excluded from the "
                    "T2 edema measure",
                    region.file("t2map"),
                )
            )
    else:
        source = "stir"
        stir = region.gather("stir")
        if ff_flat is not None:
            stir /= np.maximum(
                1.0 - np.nan_to_num(ff_flat, nan=0.0), np.float32(qset["water_fraction_floor"])
            )
        ok = assessable & np.isfinite(stir) & (stir > 0)
        if ok.sum() < 50:
            return EdemaMeasure({}, EdemaReference("stir"), [QCFinding(
                "warning", schema.EDEMA_REFERENCE_MISSING,
                "too few non-fatty muscle voxels to set a normal-muscle STIR reference",
                region.file("stir"))])  # fmt: skip
        grid = BlockGrid.make(region.voxels.shape, study.voxel_size_mm, eset["stir_block_mm"])
        values = np.log(stir[ok]).astype(np.float32)
        del stir
        coef = fit_log_bias(grid.ids_at(region.voxels)[ok], values, grid,
                            eset["stir_block_quantile"], eset["stir_bias_order"])  # fmt: skip
        values -= log_bias_at(coef, region.voxels)[ok]
        np.exp(values, out=values)
        lab_ok = lab_flat[ok]
        mode, sigma = normal_mode_and_sigma(values)
        threshold = max(mode + eset["stir_z_threshold"] * sigma, mode * eset["stir_min_ratio"])
        shell_norm = region.gather("stir", region.shell) / np.exp(log_bias_at(coef, region.shell))
        shell_edema = shell_norm > threshold
        reference = EdemaReference("stir", mode, sigma, threshold, {
            "unit": "STIR / fitted normal-muscle level",
            "bias_coefficients": [float(c) for c in coef]})  # fmt: skip
        normal_share = float(np.mean(values <= threshold))
        if normal_share < 0.3:
            qc.append(QCFinding("warning", schema.EDEMA_REFERENCE_UNCERTAIN,
                                f"only {normal_share:.0%} of muscle reads normal on STIR: the "
                                "normal-muscle reference may itself be edematous",
                                region.file("stir")))  # fmt: skip
    counts = np.bincount(lab_ok, minlength=n + 1).astype(float)
    hit = values > threshold
    hits = np.bincount(lab_ok[hit], minlength=n + 1)
    edema_voxels = np.zeros(ok.shape, bool)
    edema_voxels[ok] = hit
    del hit
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(counts > 0, hits / counts, np.nan)
    values -= np.float32(mode)
    values /= np.float32(sigma)
    np.clip(values, *Z_RANGE, out=values)
    z_median = label_quantiles(lab_ok, values, n, (0.5,), Z_RANGE, Z_BINS)[:, 0]
    shell_lab = region.shell_label
    shell_counts = np.bincount(shell_lab, minlength=n + 1).astype(float)
    shell_hits = np.bincount(shell_lab[shell_edema], minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fascial = np.where(shell_counts > 0, shell_hits / shell_counts, np.nan)
    cols: dict[str, Any] = {"edema_fraction": fraction, "edema_z": z_median,
                            "fascial_edema_fraction": fascial, "edema_source": source}  # fmt: skip
    if t2_median is not None:
        cols["t2_median_ms"] = t2_median
    return EdemaMeasure(cols, reference, qc, ok, edema_voxels, shell_edema)
