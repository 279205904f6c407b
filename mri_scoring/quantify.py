"""Per-muscle measures from arrays: fat fraction, edema, fascial edema, volume, atrophy.

All labels are measured in one pass. The work is confined to the bounding box of the labels
(padded by the shell reach); neighbourhood operations (core erosion, peri-muscular shells) are
separable window minima/maxima over the label map; per-label statistics are ``np.bincount``
reductions, quantiles come from per-label histograms (exact to 1/2000 of the value range).

Measures (DESIGN §6):

* fat fraction: Dixon F/(F+W) above a noise floor, with the magnitude (Rician) noise bias removed;
  or an FF map; or, with only a T1w image, a semi-quantitative two-tissue estimate (Gaussian
  mixture), flagged as such.
* edema: STIR against the study's own normal muscle after removing a smooth bias field fitted to
  a low quantile of muscle signal per block (robust to coil shading and to diffuse edema); or a
  water-T2 map against thresholds in ms. Fatty voxels never count as edema.
* fascial edema: the share of a thin shell just outside each muscle (excluding other muscles,
  reference tissues and fascia shared with a neighbour) with edema-like signal.
* atrophy: the muscle's share of the labelled muscle volume of its side against normative shares.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from .anatomy import GROUP, MUSCLE, REFERENCE, groups
from .config import Settings, load_config_file, load_settings
from .errors import QCFinding
from .study import dense_layout, dense_steps

log = logging.getLogger(__name__)

FF_BINS = 2000
Z_RANGE = (-20.0, 40.0)
Z_BINS = 3000

MUSCLE_COLUMNS = [
    "study_id", "label", "muscle", "side", "group", "kind", "voxels", "volume_ml", "core_voxels",
    "ff_mean", "ff_median", "ff_p90", "ff_mean_whole", "ff_median_whole", "ff_source",
    "mercuri_grade", "edema_fraction", "edema_z", "edema_source", "edema_grade",
    "t2_median_ms", "fascial_edema_fraction", "shell_voxels", "lean_volume_ml", "volume_share",
    "expected_share", "atrophy_index", "atrophy_index_lean", "lr_volume_ratio", "qc_flags",
]  # fmt: skip


# --------------------------------------------------------------------------- geometry


def core_reach_mm(voxel_size_mm: tuple[float, ...], core_mm: float) -> float:
    """Distance from a core voxel's centre to the nearest outside voxel centre (mm)."""
    in_plane = min(voxel_size_mm[0], voxel_size_mm[1])
    return max(core_mm, in_plane) + 0.5 * in_plane


def shell_reach_mm(voxel_size_mm: tuple[float, ...], shell_mm: float) -> float:
    """Outer reach of a peri-muscular shell: ``shell_mm``, but at least one in-plane voxel."""
    return max(shell_mm, max(voxel_size_mm[0], voxel_size_mm[1])) * 1.0001


def _steps(reach_mm: float, voxel_size_mm: tuple[float, ...]) -> tuple[int, ...]:
    """Window half-widths (voxels per axis) reaching every neighbour closer than ``reach_mm``."""
    return tuple(max(int(np.ceil(reach_mm / v - 1e-6)) - 1, 0) for v in voxel_size_mm)


def _steps_within(reach_mm: float, voxel_size_mm: tuple[float, ...]) -> tuple[int, ...]:
    """Window half-widths (voxels per axis) reaching every neighbour at most ``reach_mm`` away."""
    return tuple(int(np.floor(reach_mm / v + 1e-6)) for v in voxel_size_mm)


def _window(array: np.ndarray, half: tuple[int, ...], reduce: np.ufunc, pad: int) -> np.ndarray:
    """Separable moving min/max over a box of half-widths ``half`` (edges padded with ``pad``)."""
    out = array
    for axis, h in enumerate(half):
        if h == 0 or out.shape[axis] == 0:
            continue
        padded = np.concatenate(
            [
                np.full_like(_take(out, axis, 0, h), pad),
                out,
                np.full_like(_take(out, axis, 0, h), pad),
            ],
            axis=axis,
        )
        n = out.shape[axis]
        result = _take(padded, axis, 0, n).copy()
        for shift in range(1, 2 * h + 1):
            reduce(result, _take(padded, axis, shift, shift + n), out=result)
        out = result
    return out


def _take(array: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    index = [slice(None)] * array.ndim
    index[axis] = slice(start, stop)
    return array[tuple(index)]


def core_mask(labels: np.ndarray, voxel_size_mm: tuple[float, ...], core_mm: float) -> np.ndarray:
    """Voxels whose whole box neighbourhood of reach :func:`core_reach_mm` has their own label.

    Parameters
    ----------
    labels : ndarray of int
        Label map (0 = background).
    voxel_size_mm : tuple of float
    core_mm : float
        Erosion depth (mm); at least one in-plane voxel is always removed.

    Returns
    -------
    ndarray of bool
    """
    half = _steps(core_reach_mm(voxel_size_mm, core_mm), voxel_size_mm)
    high = np.iinfo(labels.dtype).max
    lowest = _window(labels, half, np.minimum, 0)
    highest = _window(labels, half, np.maximum, high)
    return (lowest == highest) & (labels > 0)


def exclusive_shell(
    labels: np.ndarray, voxel_size_mm: tuple[float, ...], shell_mm: float
) -> np.ndarray:
    """Label of the single labelled structure within reach of each background voxel.

    A background voxel within :func:`shell_reach_mm` of exactly one label gets that label; voxels
    near two structures (shared fascia, septa between neighbours) and labelled voxels get 0.

    Returns
    -------
    ndarray, same dtype as ``labels``
    """
    half = _steps_within(shell_reach_mm(voxel_size_mm, shell_mm), voxel_size_mm)
    high = np.iinfo(labels.dtype).max
    highest = _window(labels, half, np.maximum, 0)
    lowest = _window(np.where(labels == 0, high, labels), half, np.minimum, high)
    shell = (labels == 0) & (highest > 0) & (lowest == highest)
    return np.where(shell, highest, 0).astype(labels.dtype)


# --------------------------------------------------------------------------- statistics


def label_quantiles(
    labels: np.ndarray,
    values: np.ndarray,
    n_labels: int,
    quantiles: tuple[float, ...],
    value_range: tuple[float, float] = (0.0, 1.0),
    bins: int = FF_BINS,
) -> np.ndarray:
    """Per-label quantiles from one 2-D histogram (label x value bin), linear within a bin.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
        Label of each value, 1..n_labels (0 is ignored).
    values : ndarray, shape (N,)
        Values, clipped to ``value_range``.
    n_labels : int
    quantiles : tuple of float
        In [0, 1].
    value_range, bins
        Histogram range and resolution.

    Returns
    -------
    ndarray, shape (n_labels + 1, len(quantiles))
        NaN for labels with no values.
    """
    lo, hi = value_range
    width = (hi - lo) / bins
    hist = np.zeros((n_labels + 1) * bins, np.int64)
    for part in _chunks(values.size):  # bounded temporaries, whatever the number of voxels
        # intp: the type bincount counts in (any other integer type would be copied to it).
        index = ((values[part] - lo) / width).astype(np.intp)
        np.clip(index, 0, bins - 1, out=index)
        index += labels[part] * np.intp(bins)
        hist += np.bincount(index, minlength=hist.size)
    hist = hist.reshape(n_labels + 1, bins)
    cdf = np.cumsum(hist, axis=1)
    counts = cdf[:, -1]
    out = np.full((n_labels + 1, len(quantiles)), np.nan)
    rows = np.flatnonzero(counts)
    for j, q in enumerate(quantiles):
        target = q * counts[rows]
        b = np.argmax(cdf[rows] >= target[:, None], axis=1)
        before = np.where(b > 0, cdf[rows, b - 1], 0)
        inside = hist[rows, b]
        frac = np.where(inside > 0, (target - before) / np.maximum(inside, 1), 0.5)
        out[rows, j] = lo + (b + np.clip(frac, 0.0, 1.0)) * width
    return out


def _chunks(size: int, chunk: int = 1 << 20) -> list[slice]:
    """Consecutive slices of at most ``chunk`` elements covering ``range(size)``."""
    return [slice(start, start + chunk) for start in range(0, size, chunk)]


def _mean_by_label(labels: np.ndarray, values: np.ndarray, n_labels: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=n_labels + 1).astype(float)
    sums = np.zeros(n_labels + 1)
    for part in _chunks(values.size):  # bincount copies its weights to float64: chunk them
        sums += np.bincount(labels[part], weights=values[part], minlength=n_labels + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


# --------------------------------------------------------------------------- fat fraction


def estimate_noise_sigma(image: np.ndarray, sample: int = 400_000) -> float | None:
    """Rician/Rayleigh noise sigma from the background of a magnitude image.

    The background (air) of a magnitude image is Rayleigh distributed; its mode equals sigma. A
    first estimate is the mode of a histogram of the darkest 30 % of a strided sample; it is
    refined with the median of the background below four times that mode. Returns None when the
    image has no dark background (the 30 % quantile is not below a tenth of bright tissue).
    """
    flat = image.ravel(order="K")
    step = max(flat.size // sample, 1)
    values = flat[::step]
    values = values[np.isfinite(values)]
    if values.size < 1000:
        return None
    cut, bright = np.quantile(values, [0.3, 0.98])
    dark = values[values <= cut]
    if cut <= 0 or cut > 0.1 * bright or dark.size < 500:
        return None
    hist, edges = np.histogram(dark, bins=100, range=(0.0, float(cut)))
    smooth = np.convolve(hist, np.ones(5) / 5, mode="same")
    peak = int(np.argmax(smooth))
    mode = float(0.5 * (edges[peak] + edges[peak + 1]))
    if mode <= 0:
        return None
    # Refine: the median of the Rayleigh background is sigma * sqrt(2 ln 2); take the voxels
    # below 4 x the mode estimate (99.97 % of the background, almost no tissue).
    background = values[values < 4.0 * mode]
    return float(np.median(background) / np.sqrt(2.0 * np.log(2.0)))


@cache
def _rician_median_table() -> tuple[np.ndarray, np.ndarray]:
    """Median of a Rician magnitude (sigma = 1) as a function of the true amplitude A.

    The Rice density x exp(-(x - A)^2 / 2) i0e(x A) is integrated numerically on a fine grid
    (scipy.special only: scipy.stats costs half a second to import).
    """
    from scipy.special import i0e

    amplitude = np.concatenate([np.linspace(0.0, 4.0, 161), np.linspace(4.1, 20.0, 160)])
    x = np.linspace(0.0, 30.0, 6001)
    median = np.empty_like(amplitude)
    for n, a in enumerate(amplitude):  # row by row: no 321 x 6001 temporaries
        density = x * np.exp(-0.5 * (x - a) ** 2) * i0e(x * a)
        cdf = np.cumsum((density[1:] + density[:-1]) * 0.5 * (x[1] - x[0]))
        median[n] = np.interp(0.5 * cdf[-1], cdf, x[1:])
    return median, amplitude


RICIAN_TABLE_TOP = 20.0


@cache
def _rician_inverse_lookup(step: float = 0.005) -> tuple[float, np.ndarray]:
    """Inverse of A -> median(M | A) tabulated on a uniform grid of M (sigma = 1)."""
    median, amplitude = _rician_median_table()
    grid = np.arange(0.0, RICIAN_TABLE_TOP + 2 * step, step)
    return step, np.interp(grid, median, amplitude).astype(np.float32)


def rician_median_unbias(magnitude: np.ndarray, sigma: float) -> np.ndarray:
    """Amplitude whose Rician median equals each magnitude (median-unbiased per voxel).

    A magnitude M of a signal A in Gaussian noise (sigma per channel) is biased upwards where A is
    small (the Rician distribution; Gudbjartsson & Patz, MRM 1995;34:910). Mapping M through the
    inverse of A -> median(M | A) makes the median over a region of constant A exact, because a
    monotonic map commutes with the median. Magnitudes below the median of pure noise
    (1.18 sigma) map to 0; beyond A = 20 sigma, sqrt(M^2 - sigma^2) is used.
    """
    step, table = _rician_inverse_lookup()
    scaled = magnitude / np.float32(sigma)
    out = np.sqrt(np.maximum(scaled * scaled - 1.0, 0.0)).astype(np.float32)
    low = np.flatnonzero(scaled < RICIAN_TABLE_TOP)
    position = scaled[low] / np.float32(step)
    index = position.astype(np.int32)
    fraction = position - index
    out[low] = table[index] * (1 - fraction) + table[index + 1] * fraction
    return out * np.float32(sigma)


def dixon_fat_fraction(
    fat: np.ndarray, water: np.ndarray, sigma: float | None, floor_sigma: float
) -> np.ndarray:
    """Fat fraction F/(F+W) with magnitude-noise bias removed; NaN below the noise floor.

    Both magnitudes are first mapped through :func:`rician_median_unbias`, so that a muscle with
    little fat does not read too fatty at clinical SNR (the fat signal of a muscle with FF 0.04
    is about the noise level at SNR 25).

    Parameters
    ----------
    fat, water : array-like, 1-D
        Dixon magnitudes (same units): arrays, or :meth:`VoxelSet.lazy` views read chunk by
        chunk so that whole copies never exist.
    sigma : float or None
        Noise sigma (None: no correction, no floor).
    floor_sigma : float
        Voxels with F+W below ``floor_sigma * sigma`` are NaN (noise, not tissue).
    """
    ff = np.empty(np.shape(fat), np.float32)
    for part in _chunks(ff.size, 1 << 18):  # bounded temporaries, whatever the number of voxels
        f = np.asarray(fat[part], dtype=np.float32)
        w = np.asarray(water[part], dtype=np.float32)
        total = f + w
        if sigma:
            f = rician_median_unbias(f, sigma)
            w = rician_median_unbias(w, sigma)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = f / (f + w)
        if sigma:
            out[total < floor_sigma * sigma] = np.nan
        out[~np.isfinite(out)] = np.nan
        ff[part] = out
    return ff


def t1w_fat_fraction(
    t1w_muscle: np.ndarray, t1w_other: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, dict[str, float]]:
    """Semi-quantitative fat fraction from T1w intensities (two-tissue Gaussian mixture).

    A 3-component Gaussian mixture (scikit-learn) is fitted to a sample of labelled-muscle and
    surrounding voxels; the brightest component is fat, the component holding most muscle voxels
    (other than fat) is lean muscle, and FF is the linear position between the two means. T1w
    intensity is not proportional to fat content (relaxation, coil shading), so the result is
    semi-quantitative and flagged as such (cf. the MuscleMap toolbox's GMM option).
    """
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    pick = lambda a, n: a[rng.choice(a.size, min(n, a.size), replace=False)]  # noqa: E731
    finite_m = t1w_muscle[np.isfinite(t1w_muscle)]
    finite_o = t1w_other[np.isfinite(t1w_other)]
    sample = np.concatenate([pick(finite_m, 30_000), pick(finite_o, 30_000)])[:, None]
    gmm = GaussianMixture(n_components=3, random_state=seed).fit(sample)
    means = gmm.means_.ravel()
    fat_component = int(np.argmax(means))
    votes = np.bincount(gmm.predict(pick(finite_m, 30_000)[:, None]), minlength=3)
    votes[fat_component] = -1
    lean_component = int(np.argmax(votes))
    lean, fat = float(means[lean_component]), float(means[fat_component])
    ff = np.clip((t1w_muscle - lean) / max(fat - lean, 1e-6), 0.0, 1.0).astype(np.float32)
    return ff, {"t1w_lean": lean, "t1w_fat": fat}


# --------------------------------------------------------------------------- edema


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


# --------------------------------------------------------------------------- the table


@dataclass
class MuscleTable:
    """Result of :func:`quantify`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per label (muscles, compartments, reference tissues, unknown names); columns of
        DESIGN §3 plus the extra columns of ``MUSCLE_COLUMNS``. Missing measures are NaN.
    qc : list of QCFinding
        Findings raised while measuring (fat-water swap, semi-quantitative FF, ...).
    edema_reference : EdemaReference
    noise_sigma : float or None
        Estimated Dixon noise sigma (image units).
    """

    table: pd.DataFrame
    qc: list[QCFinding]
    edema_reference: EdemaReference
    noise_sigma: float | None = None


class VoxelSet:
    """Voxels of a region, given by flat (C-order) indices into the region.

    Region coordinates are computed once; flat indices into the full volume, for the memory
    layout of whichever image is read (C, F or any axis order), are derived from them on demand
    and cached.
    """

    def __init__(self, index: np.ndarray, region: tuple[slice, ...],
                 full_shape: tuple[int, ...]) -> None:  # fmt: skip
        self.region = region
        self.full_shape = tuple(full_shape)
        self.shape = tuple(sl.stop - sl.start for sl in region)
        small = np.int32 if int(np.prod(self.shape)) < 2**31 else np.int64
        self.index = index.astype(small)
        coordinate = np.int16 if max(self.shape) < 2**15 else np.int32
        i, rest = np.divmod(self.index, self.shape[1] * self.shape[2])
        j, k = np.divmod(rest, self.shape[2])
        del rest
        self.ijk = (i.astype(coordinate), j.astype(coordinate), k.astype(coordinate))
        self._full: dict[tuple[int, ...], np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.index.size)

    def full_index(self, steps: tuple[int, ...]) -> np.ndarray:
        """Flat indices of these voxels into an image's memory, given its element steps per
        axis (:func:`~mri_scoring.study.dense_steps`)."""
        if steps not in self._full:
            wide = np.int32 if int(np.prod(self.full_shape)) < 2**31 else np.int64
            starts = [sl.start for sl in self.region]
            # A dense layout's steps are products of the faster axes' lengths, so the index is
            # built in place, slowest axis first (Horner): one array, no temporaries.
            axes = sorted(range(3), key=lambda axis: -steps[axis])
            index = self.ijk[axes[0]].astype(wide)
            index += wide(starts[axes[0]])
            for axis in axes[1:]:
                index *= wide(self.full_shape[axis])
                index += self.ijk[axis]
                index += wide(starts[axis])
            self._full[steps] = index
        return self._full[steps]

    def values(self, image: np.ndarray, part: slice = slice(None)) -> np.ndarray:
        """The image's values at these voxels (or a slice of them), read in place."""
        image = dense_layout(image)  # a flipped or sliced view is copied (quantify does it once)
        return image.ravel(order="K")[self.full_index(dense_steps(image))[part]]

    def lazy(self, image: np.ndarray) -> _LazyValues:
        """A view of the image's values at these voxels that reads only the slices asked for."""
        return _LazyValues(self, image)


class _LazyValues:
    def __init__(self, voxels: VoxelSet, image: np.ndarray) -> None:
        self.voxels, self.image = voxels, image
        self.shape = (len(voxels),)

    def __getitem__(self, part: slice) -> np.ndarray:
        return self.voxels.values(self.image, part)


def background_sample(lab: np.ndarray, labelled: int, target: int = 200_000) -> np.ndarray:
    """Flat (C-order) indices of about ``target`` unlabelled voxels of a region, evenly spaced.

    Every k-th voxel is looked at and the unlabelled ones kept (k from the known number of
    unlabelled voxels), so no index of the whole background is ever built.
    """
    flat = lab.ravel()
    step = max((flat.size - labelled) // target, 1)
    candidates = np.arange(0, flat.size, step, dtype=np.int64)
    return candidates[flat[candidates] == 0]


def _region(boxes: list, shape: tuple[int, ...], pad: tuple[int, ...]) -> tuple[slice, ...]:
    starts = [min(b[i].start for b in boxes if b is not None) for i in range(3)]
    stops = [max(b[i].stop for b in boxes if b is not None) for i in range(3)]
    return tuple(slice(max(s - p, 0), min(e + p, n))
                 for s, e, p, n in zip(starts, stops, pad, shape, strict=True))  # fmt: skip


def quantify(study, settings: Settings | None = None) -> MuscleTable:
    """Measure every label of a study in one pass.

    Parameters
    ----------
    study : Study
        A loaded (or phantom) study.
    settings : Settings, optional
        Default ``configs/settings.yaml``.

    Returns
    -------
    MuscleTable
    """
    settings = settings or load_settings()
    qset, eset = settings["quantify"], settings["edema"]
    voxel = study.voxel_size_mm
    qc: list[QCFinding] = []
    values = study.label_values
    n = len(values)
    infos = [study.label_info[int(v)] for v in values]
    kinds = np.array([""] + [i.kind for i in infos])
    is_muscle = np.isin(kinds, (MUSCLE, GROUP))

    shell_half = _steps_within(shell_reach_mm(voxel, qset["fascial_shell_mm"]), voxel)
    region = _region(study.label_boxes, study.shape, shell_half)
    lab = np.ascontiguousarray(study.compact_labels(region))  # uint8 for up to 255 labels

    core = core_mask(lab, voxel, qset["core_erosion_mm"])
    shell = exclusive_shell(lab, voxel, qset["fascial_shell_mm"])
    shell[~is_muscle[shell]] = 0

    labelled = VoxelSet(np.flatnonzero(lab), region, study.shape)
    lab_flat = lab.ravel()[labelled.index]  # compact dtype (uint8): 1 byte per voxel
    core_flat = core.ravel()[labelled.index]
    shell_voxels = VoxelSet(np.flatnonzero(shell), region, study.shape)
    shell_lab = shell.ravel()[shell_voxels.index]
    del core, shell

    # Voxels are read by flat index in each image's own memory layout; an image that is a
    # flipped or sliced view (never one loaded from files) is copied once into memory order.
    images = {role: dense_layout(image) for role, image in study.images.items()}

    def gather(role: str, voxels: VoxelSet) -> np.ndarray:
        # float32 whatever the storage: loaded images may keep their 16-bit integers.
        return voxels.values(images[role]).astype(np.float32, copy=False)

    voxels = np.bincount(lab_flat, minlength=n + 1)
    core_count = np.bincount(lab_flat[core_flat], minlength=n + 1)
    small_core = (core_count < qset["min_core_voxels"]) & (voxels > 0)
    use_core = core_flat | small_core[lab_flat]

    # ---- fat fraction
    ff_source, noise_sigma = "", None
    ff_flat = None
    if "fat" in images and "water" in images:
        noise_sigma = estimate_noise_sigma(images["water"])
        ff_flat = dixon_fat_fraction(
            labelled.lazy(images["fat"]),
            labelled.lazy(images["water"]),
            noise_sigma,
            qset["dixon_noise_floor_sigma"],
        )
        ff_source = "dixon"
    elif "ff" in images:
        ff_flat = gather("ff", labelled)
        ff_source = "ff_map"
    elif "t1w" in images:
        t1_lab = gather("t1w", labelled)
        other = VoxelSet(background_sample(lab, len(labelled)), region, study.shape)
        t1_other = gather("t1w", other)
        ff_flat, params = t1w_fat_fraction(t1_lab[is_muscle[lab_flat]], t1_other)
        full = np.full(lab_flat.size, np.nan, np.float32)
        full[is_muscle[lab_flat]] = ff_flat
        ff_flat = full
        ff_source = "t1w_gmm"
        qc.append(
            QCFinding(
                "warning",
                "ff_semiquantitative",
                "fat fraction estimated from T1w intensities (Gaussian mixture; lean muscle "
                f"{params['t1w_lean']:.4g}, fat {params['t1w_fat']:.4g}): "
                "semi-quantitative, not a Dixon/PDFF measurement",
                str(study.files.get("t1w", "")),
            )
        )

    ff_cols: dict[str, np.ndarray] = {}
    if ff_flat is not None:
        ok = np.isfinite(ff_flat)
        for mask, suffix, quantiles in ((ok & use_core, "", (0.5, 0.9)), (ok, "_whole", (0.5,))):
            labels_in, values_in = lab_flat[mask], ff_flat[mask]
            ff_cols["ff_mean" + suffix] = _mean_by_label(labels_in, values_in, n)
            q = label_quantiles(labels_in, values_in, n, quantiles)
            ff_cols["ff_median" + suffix] = q[:, 0]
            if len(quantiles) > 1:
                ff_cols["ff_p90"] = q[:, 1]
            del labels_in, values_in
        qc.extend(
            _swap_check(study, lab, labelled, ff_flat, lab_flat, kinds, noise_sigma, qset, gather)
        )

    # ---- edema
    edema_cols: dict[str, np.ndarray] = {}
    reference = EdemaReference("")
    fatty = (ff_flat > qset["fatty_voxel_ff"]) if ff_flat is not None else None
    if "stir" in images or "t2map" in images:
        edema_cols, reference, edema_qc = _edema(
            study, labelled, lab_flat, use_core, fatty, ff_flat, shell_voxels, shell_lab,
            is_muscle, n, qset, eset, gather)  # fmt: skip
        qc.extend(edema_qc)

    table = _assemble(
        study,
        infos,
        n,
        voxels,
        core_count,
        small_core,
        ff_cols,
        ff_source,
        edema_cols,
        reference,
        np.bincount(shell_lab, minlength=n + 1),
    )
    _add_atrophy(table)
    return MuscleTable(table, qc, reference, noise_sigma)


def _swap_check(study, lab, labelled, ff_flat, lab_flat, kinds, sigma, qset,
                gather) -> list[QCFinding]:  # fmt: skip
    """Subcutaneous fat and marrow must read fatty; otherwise fat and water may be swapped."""
    findings = []
    reference = np.isin(lab_flat, np.flatnonzero(kinds == REFERENCE))
    readings = []
    values = ff_flat[reference]
    values = values[np.isfinite(values)]
    if values.size:
        readings.append(("reference tissue (marrow/bone)", float(np.median(values))))
    if "fat" in study.images and "water" in study.images:
        outside = VoxelSet(background_sample(lab, len(labelled)), labelled.region, study.shape)
        fat, water = gather("fat", outside), gather("water", outside)
        total = fat + water
        floor = 10.0 * sigma if sigma else np.quantile(total, 0.5)
        body = total > floor
        if body.sum() > 100:
            readings.append(
                (
                    "unlabelled body tissue (subcutaneous/intermuscular fat)",
                    float(np.median(fat[body] / total[body])),
                )
            )
    low = [
        (what, value)
        for what, value in readings
        if np.isfinite(value) and value < qset["swap_check_min_ff"]
    ]
    if low and len(low) == len(readings):
        detail = "; ".join(f"{what} reads FF {value:.2f}" for what, value in low)
        findings.append(
            QCFinding(
                "warning",
                "fat_water_swap_suspected",
                f"fat-water swap suspected: {detail} (expected > {qset['swap_check_min_ff']})",
                str(study.files.get("fat", study.files.get("ff", ""))),
            )
        )
    return findings


def _edema(study, labelled, lab_flat, use_core, fatty, ff_flat, shell_voxels, shell_lab,
           is_muscle, n, qset, eset, gather):  # fmt: skip
    """Edema fraction, robust z and fascial-edema fraction per label, from STIR or a T2 map."""
    qc: list[QCFinding] = []
    assessable = use_core & is_muscle[lab_flat]
    if fatty is not None:
        assessable &= ~fatty
    t2_median = None
    if "t2map" in study.images and "stir" not in study.images:
        source = "t2map"
        t2 = gather("t2map", labelled)
        ok = assessable & np.isfinite(t2) & (t2 > 0)
        values, lab_ok = t2[ok], lab_flat[ok]
        del t2
        mode, sigma, threshold = eset["t2_normal_ms"], eset["t2_normal_sd_ms"], eset["t2_edema_ms"]
        shell_edema = gather("t2map", shell_voxels) > threshold
        reference = EdemaReference("t2map", mode, sigma, threshold, {"unit": "ms"})
        t2_median = label_quantiles(lab_ok, values, n, (0.5,), (0.0, 200.0), 4000)[:, 0]
        if fatty is None:
            qc.append(
                QCFinding(
                    "info",
                    "t2_fat_not_excluded",
                    "no fat-fraction image: fatty voxels cannot be excluded from the "
                    "T2 edema measure",
                    str(study.files.get("t2map", "")),
                )
            )
    else:
        source = "stir"
        stir = gather("stir", labelled)
        if ff_flat is not None:
            stir /= np.maximum(
                1.0 - np.nan_to_num(ff_flat, nan=0.0), np.float32(qset["water_fraction_floor"])
            )
        ok = assessable & np.isfinite(stir) & (stir > 0)
        if ok.sum() < 50:
            return {}, EdemaReference("stir"), [QCFinding(
                "warning", "edema_reference_missing",
                "too few non-fatty muscle voxels to set a normal-muscle STIR reference",
                str(study.files.get("stir", "")))]  # fmt: skip
        grid = BlockGrid.make(labelled.shape, study.voxel_size_mm, eset["stir_block_mm"])
        values = np.log(stir[ok]).astype(np.float32)
        del stir
        coef = fit_log_bias(grid.ids_at(labelled)[ok], values, grid,
                            eset["stir_block_quantile"], eset["stir_bias_order"])  # fmt: skip
        values -= log_bias_at(coef, labelled)[ok]
        np.exp(values, out=values)
        lab_ok = lab_flat[ok]
        mode, sigma = normal_mode_and_sigma(values)
        threshold = max(mode + eset["stir_z_threshold"] * sigma, mode * eset["stir_min_ratio"])
        shell_norm = gather("stir", shell_voxels) / np.exp(log_bias_at(coef, shell_voxels))
        shell_edema = shell_norm > threshold
        reference = EdemaReference("stir", mode, sigma, threshold, {
            "unit": "STIR / fitted normal-muscle level",
            "bias_coefficients": [float(c) for c in coef]})  # fmt: skip
        normal_share = float(np.mean(values <= threshold))
        if normal_share < 0.3:
            qc.append(QCFinding("warning", "edema_reference_uncertain",
                                f"only {normal_share:.0%} of muscle reads normal on STIR: the "
                                "normal-muscle reference may itself be edematous",
                                str(study.files.get("stir", ""))))  # fmt: skip
    counts = np.bincount(lab_ok, minlength=n + 1).astype(float)
    hits = np.bincount(lab_ok[values > threshold], minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(counts > 0, hits / counts, np.nan)
    values -= np.float32(mode)
    values /= np.float32(sigma)
    np.clip(values, *Z_RANGE, out=values)
    z_median = label_quantiles(lab_ok, values, n, (0.5,), Z_RANGE, Z_BINS)[:, 0]
    shell_counts = np.bincount(shell_lab, minlength=n + 1).astype(float)
    shell_hits = np.bincount(shell_lab[shell_edema], minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fascial = np.where(shell_counts > 0, shell_hits / shell_counts, np.nan)
    cols = {"edema_fraction": fraction, "edema_z": z_median, "fascial_edema_fraction": fascial,
            "edema_source": source}  # fmt: skip
    if t2_median is not None:
        cols["t2_median_ms"] = t2_median
    return cols, reference, qc


def _assemble(study, infos, n, voxels, core_count, small_core, ff_cols, ff_source, edema_cols,
              reference, shell_count) -> pd.DataFrame:  # fmt: skip
    rows = np.arange(1, n + 1)
    data: dict[str, Any] = {
        "study_id": study.study_id,
        "label": study.label_values.astype(int),
        "muscle": [i.muscle for i in infos],
        "side": [i.side for i in infos],
        "group": [i.group for i in infos],
        "kind": [i.kind for i in infos],
        "voxels": voxels[rows].astype(int),
        "volume_ml": voxels[rows] * study.voxel_volume_ml,
        "core_voxels": core_count[rows],
    }
    for column in ("ff_mean", "ff_median", "ff_p90", "ff_mean_whole", "ff_median_whole"):
        data[column] = ff_cols[column][rows] if column in ff_cols else np.nan
    data["ff_source"] = ff_source
    for column in ("edema_fraction", "edema_z", "fascial_edema_fraction", "t2_median_ms"):
        data[column] = edema_cols[column][rows] if column in edema_cols else np.nan
    data["edema_source"] = edema_cols.get("edema_source", "")
    data["shell_voxels"] = shell_count[rows]
    table = pd.DataFrame(data)
    flags = []
    for i in range(n):
        row_flags = []
        if small_core[i + 1]:
            row_flags.append("small_core_whole_mask_used")
        if ff_source == "t1w_gmm":
            row_flags.append("ff_semiquantitative")
        if infos[i].kind == "unknown":
            row_flags.append("unknown_label")
        flags.append(";".join(row_flags))
    table["qc_flags"] = flags
    return table


def normative_shares() -> dict[str, float]:
    """Normative volume shares (``configs/normative.yaml``), groups as sums of their members."""
    shares = dict(load_config_file("normative.yaml")["shares"])
    for group, members in groups().items():
        shares.setdefault(group, sum(shares.get(m, 0.0) for m in members if m != "biceps_femoris"))
    return shares


def _add_atrophy(table: pd.DataFrame) -> None:
    """Observed / expected share of the side's labelled muscle volume (and lean volume)."""
    shares = normative_shares()
    table["lean_volume_ml"] = table["volume_ml"] * (1.0 - table["ff_mean_whole"])
    for column in (
        "volume_share",
        "expected_share",
        "atrophy_index",
        "atrophy_index_lean",
        "lr_volume_ratio",
    ):
        table[column] = np.nan
    eligible = table["kind"].isin((MUSCLE, GROUP)) & table["muscle"].isin(list(shares))
    for _side, part in table[eligible].groupby("side"):
        expected = part["muscle"].map(shares)
        expected = expected / expected.sum()
        observed = part["volume_ml"] / part["volume_ml"].sum()
        lean = part["lean_volume_ml"] / part["lean_volume_ml"].sum()
        table.loc[part.index, "volume_share"] = observed
        table.loc[part.index, "expected_share"] = expected
        table.loc[part.index, "atrophy_index"] = observed / expected
        table.loc[part.index, "atrophy_index_lean"] = lean / expected
    sided = table[eligible & table["side"].isin(("left", "right"))]
    volume = {
        (m, s): v
        for m, s, v in zip(sided["muscle"], sided["side"], sided["volume_ml"], strict=True)
    }
    for index, muscle, side in zip(sided.index, sided["muscle"], sided["side"], strict=True):
        other = volume.get((muscle, "right" if side == "left" else "left"))
        if other:
            table.loc[index, "lr_volume_ratio"] = volume[(muscle, side)] / other
