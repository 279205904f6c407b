"""Fat fraction per voxel and per label, and the fat-water swap check.

Sources, in order of preference: Dixon F/(F+W) above a noise floor, with the magnitude (Rician)
noise bias removed; a fat-fraction map; or, with only a T1w image, a semi-quantitative two-tissue
estimate calibrated between the leanest muscle and fat, flagged as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any

import numpy as np

from .. import schema
from ..anatomy import REFERENCE
from ..body import LimbOutline
from ..errors import QCFinding
from .fat_scale import fat_scale_outputs
from .masks import background_sample
from .noise import NoiseEstimate, dixon_noise
from .voxel_sets import (
    FF_BINS,
    LabelledRegion,
    VoxelSet,
    chunks,
    histogram_quantiles,
    label_histogram,
    run_parallel,
    sums_by_label,
)

__all__ = [
    "RICIAN_TABLE_TOP",
    "FatMeasure",
    "SwapCheck",
    "dixon_fat_fraction",
    "measure_fat",
    "rician_inverse_lookup",
    "rician_median_unbias",
    "swap_check",
    "t1w_anchors",
    "t1w_fat_fraction",
]

RICIAN_TABLE_TOP = 20.0


@cache
def _rician_median_table() -> tuple[np.ndarray, np.ndarray]:
    """Median of a Rician magnitude (sigma = 1) as a function of the true amplitude A.

    The Rice density x exp(-(x - A)^2 / 2) I0(x A) exp(-x A) is integrated numerically (the
    trapezoid rule, step 0.005) over the part of the grid within 9 sigma of A: the density beyond
    holds less than 1e-18 of the mass. I0(z) exp(-z) is scipy's ``i0e`` (scipy.special comes
    with scipy.ndimage, which the layer geometry needs): numpy's ``i0`` times ``exp(-z)`` gave
    the same density to 1e-16 at a quarter of a second a process.
    """
    from scipy.special import i0e

    amplitude = np.concatenate([np.linspace(0.0, 4.0, 161), np.linspace(4.1, 20.0, 160)])
    step = 0.005
    x = np.linspace(0.0, 30.0, 6001)
    median = np.empty_like(amplitude)
    for n, a in enumerate(amplitude):  # row by row: no 321 x 6001 temporaries
        lo, hi = max(int((a - 9.0) / step), 0), min(int((a + 9.0) / step) + 2, x.size)
        xs = x[lo:hi]
        density = xs * np.exp(-0.5 * (xs - a) ** 2) * i0e(xs * a)
        cdf = np.cumsum((density[1:] + density[:-1]) * (0.5 * step))
        median[n] = np.interp(0.5 * cdf[-1], cdf, xs[1:])
    return median, amplitude


@cache
def rician_inverse_lookup(step: float = 0.005) -> tuple[float, np.ndarray]:
    """Inverse of A -> median(M | A) tabulated on a uniform grid of M (sigma = 1).

    Parameters
    ----------
    step : float
        Grid step (units of sigma).

    Returns
    -------
    tuple of (float, ndarray of float32)
        The step and the amplitude at each grid magnitude.
    """
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

    Parameters
    ----------
    magnitude : ndarray of float32
        Magnitudes (image units).
    sigma : float
        Noise sigma per channel (image units).

    Returns
    -------
    ndarray of float32
        Amplitudes (image units).
    """
    step, table = rician_inverse_lookup()
    scaled = magnitude / np.float32(sigma)
    out = np.sqrt(np.maximum(scaled * scaled - 1.0, 0.0)).astype(np.float32)
    low = np.flatnonzero(scaled < RICIAN_TABLE_TOP)
    position = scaled[low] / np.float32(step)
    index = position.astype(np.int32)
    fraction = position - index
    out[low] = table[index] * (1 - fraction) + table[index + 1] * fraction
    return out * np.float32(sigma)


def dixon_fat_fraction(
    fat: np.ndarray, water: np.ndarray, sigma: float | None, floor_sigma: float, threads: int = 1
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
    threads : int
        Chunks computed at once (each thread writes its own part of the result).

    Returns
    -------
    ndarray of float32
        Fat fraction (0-1) per voxel, NaN where not measurable.
    """
    ff = np.empty(np.shape(fat), np.float32)

    def one_chunk(part: slice) -> None:
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

    if sigma:
        rician_inverse_lookup()  # built once, before the threads would race to build it
    # bounded temporaries (a few chunks at a time), whatever the number of voxels
    run_parallel([partial(one_chunk, part) for part in chunks(ff.size, 1 << 18)], threads)
    return ff


def t1w_anchors(
    t1w_muscle_smoothed: np.ndarray, t1w_other: np.ndarray, lean_quantile: float
) -> dict[str, float]:
    """Lean-muscle and fat levels of a T1w image, for a two-point fat-fraction calibration.

    Fat: the median of the brighter half of the unlabelled body tissue (subcutaneous and
    intermuscular fat; air is dropped below a tenth of the 99th percentile). Lean muscle: the
    ``lean_quantile`` of the muscle-core intensities after a 3 x 3 in-plane mean (which cuts the
    noise, so the quantile is not pulled down by it): the leanest muscle of the study is taken as
    nearly fat-free. The component mean of a mixture, used before, sat at the *typical* muscle
    and read muscle with FF 5-20 % as about 0 (bias -9.6 points on the phantom).

    Parameters
    ----------
    t1w_muscle_smoothed : ndarray
        In-plane 3 x 3 mean T1w of the muscle-core voxels.
    t1w_other : ndarray
        T1w of a sample of unlabelled voxels in the labelled region.
    lean_quantile : float
        Quantile of the smoothed muscle intensities taken as fat-free muscle.

    Returns
    -------
    dict
        ``t1w_lean`` and ``t1w_fat`` (image units).

    Examples
    --------
    >>> muscle = np.linspace(0.30, 0.50, 101)
    >>> other = np.concatenate([np.zeros(50), np.full(50, 1.0), np.full(50, 0.9)])
    >>> t1w_anchors(muscle, other, 0.02)
    {'t1w_lean': 0.304, 't1w_fat': 1.0}
    """
    muscle = t1w_muscle_smoothed[np.isfinite(t1w_muscle_smoothed)]
    other = t1w_other[np.isfinite(t1w_other)]
    body = other[other > 0.1 * np.quantile(other, 0.99)] if other.size else other
    fat = float(np.median(body[body >= np.median(body)])) if body.size else float("nan")
    lean = float(np.quantile(muscle, lean_quantile)) if muscle.size else float("nan")
    return {"t1w_lean": round(lean, 6), "t1w_fat": round(fat, 6)}


def t1w_fat_fraction(t1w: np.ndarray, lean: float, fat: float) -> np.ndarray:
    """Semi-quantitative fat fraction: the linear position of T1w between lean muscle and fat.

    T1w intensity is not proportional to fat content (relaxation, coil shading), so the result
    is semi-quantitative and flagged as such.

    Parameters
    ----------
    t1w : ndarray
        T1w intensities.
    lean, fat : float
        Levels of fat-free muscle and of fat (:func:`t1w_anchors`).

    Returns
    -------
    ndarray of float32
        0-1.

    Examples
    --------
    >>> [round(float(v), 2) for v in t1w_fat_fraction(np.array([0.3, 0.44, 1.2]), 0.3, 1.0)]
    [0.0, 0.2, 1.0]
    """
    ff = (np.asarray(t1w, dtype=np.float32) - lean) / max(fat - lean, 1e-6)
    return np.clip(ff, 0.0, 1.0).astype(np.float32)


@dataclass(kw_only=True, frozen=True, eq=False)
class FatMeasure:
    """Fat fraction of one study.

    Attributes
    ----------
    ff : ndarray of float32 or None
        Fat fraction (0-1) per labelled voxel (NaN: not measurable); None without an FF source.
    source : str
        ``ff_source`` column value (:data:`~mri_scoring.schema.FF_SOURCES`).
    noise_sigma : float or None
        Dixon noise sigma (image units), when estimated.
    noise_source : str
        How ``noise_sigma`` was found (:data:`~.noise.NOISE_SOURCES`; "" without Dixon).
    columns : dict of str to ndarray
        ``ff_mean``, ``ff_median``, ``ff_p90``, ``ff_mean_whole``, ``ff_median_whole`` per
        compact label (index 0 = background).
    qc : list of QCFinding
    """

    ff: np.ndarray | None
    source: str = ""
    noise_sigma: float | None = None
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    qc: list[QCFinding] = field(default_factory=list)
    noise_source: str = ""
    fat_scale: dict[str, Any] | None = None


def measure_fat(
    region: LabelledRegion,
    qset: dict[str, Any],
    scale_cfg: dict[str, Any] | None = None,
    outline: LimbOutline | None = None,
) -> FatMeasure:
    """Per-voxel and per-label fat fraction from the best available source.

    Parameters
    ----------
    region : LabelledRegion
        The study's labelled voxels and images.
    qset : dict
        The ``quantify`` section of the settings.
    scale_cfg : dict, optional
        The ``fat_scale`` section: with Dixon images, subcutaneous fat and marrow are read
        (:mod:`.fat_scale`), and with ``fat_reference`` the ``*_fatref`` columns are added.
    outline : LimbOutline, optional
        The study's limb envelope on its read slices, shared with the compartment measure.

    Returns
    -------
    FatMeasure
    """
    images = region.images
    qc: list[QCFinding] = []
    noise_sigma, noise = None, NoiseEstimate(None, "")
    if "fat" in images and "water" in images:
        noise = dixon_noise(region)
        noise_sigma = noise.sigma
        qc.extend(noise.qc)
        ff_flat = dixon_fat_fraction(
            region.voxels.lazy(images["fat"]),
            region.voxels.lazy(images["water"]),
            noise_sigma,
            qset["dixon_noise_floor_sigma"],
            region.threads,
        )
        source = "dixon"
    elif "ff" in images:
        ff_flat = region.gather("ff")
        source = "ff_map"
    elif "t1w" in images:
        ff_flat, params = _t1w_fat_fraction(region, qset["t1w_lean_quantile"])
        source = "t1w_semiquantitative"
        qc.append(
            QCFinding(
                "warning",
                schema.FF_SEMIQUANTITATIVE,
                "fat fraction estimated from T1w intensities (linear between the leanest muscle, "
                f"{params['t1w_lean']:.4g}, fat {params['t1w_fat']:.4g}): "
                "semi-quantitative, not a Dixon/PDFF measurement",
                region.file("t1w"),
            )
        )
    else:
        return FatMeasure(ff=None)

    columns = _ff_columns(region, ff_flat)
    qc.extend(swap_check(region, ff_flat, noise_sigma, SwapCheck.from_settings(qset)))
    scale = None
    if source == "dixon" and scale_cfg is not None:
        scale_qc, scale, extra = fat_scale_outputs(
            region, ff_flat, noise_sigma, qset, scale_cfg, _ff_columns, outline
        )
        qc.extend(scale_qc)
        columns.update(extra)
    return FatMeasure(
        ff=ff_flat,
        source=source,
        noise_sigma=noise_sigma,
        columns=columns,
        qc=qc,
        noise_source=noise.source,
        fat_scale=scale,
    )


def _ff_columns(region: LabelledRegion, ff_flat: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, median and p90 of FF in each label's core, and mean and median over the whole label.

    One pass over the measurable voxels: each is counted under (label, in core); the whole
    label's sums and histogram are the sums of its two parts, and the histogram's rows give the
    voxel counts.
    """
    n = region.n_labels
    ok = np.isfinite(ff_flat)
    key = region.label[ok].astype(np.intp)
    key <<= 1
    key |= region.use_core[ok]
    values = ff_flat[ok]
    del ok
    sums = sums_by_label(key, values, 2 * n + 1).reshape(n + 1, 2)
    hist = label_histogram(key, values, 2 * n + 1).reshape(n + 1, 2, FF_BINS)
    del key, values
    counts = hist.sum(axis=2).astype(float)  # every value falls in one bin: the voxel counts
    core_q = histogram_quantiles(hist[:, 1], (0.5, 0.9))
    whole_q = histogram_quantiles(hist.sum(axis=1), (0.5,))
    with np.errstate(invalid="ignore", divide="ignore"):
        core_mean = np.where(counts[:, 1] > 0, sums[:, 1] / counts[:, 1], np.nan)
        whole_count = counts.sum(axis=1)
        whole_mean = np.where(whole_count > 0, sums.sum(axis=1) / whole_count, np.nan)
    return {
        "ff_mean": core_mean,
        "ff_median": core_q[:, 0],
        "ff_p90": core_q[:, 1],
        "ff_mean_whole": whole_mean,
        "ff_median_whole": whole_q[:, 0],
    }


def _t1w_fat_fraction(
    region: LabelledRegion, lean_quantile: float
) -> tuple[np.ndarray, dict[str, float]]:
    """Calibrated T1w FF on the muscle voxels (NaN on reference tissues and unknown labels)."""
    from scipy import ndimage

    lab_flat = region.label
    block = np.asarray(region.images["t1w"][region.voxels.region], dtype=np.float32)
    smoothed = ndimage.uniform_filter(block, size=(3, 3, 1)).ravel()[region.voxels.index]
    del block
    core_muscle = region.is_muscle[lab_flat] & region.use_core
    sample = background_sample(region.labels, len(region.voxels))
    other = VoxelSet(sample, region.voxels.region, region.study.shape)
    params = t1w_anchors(smoothed[core_muscle], region.gather("t1w", other), lean_quantile)
    muscle = region.is_muscle[lab_flat]
    full = np.full(lab_flat.size, np.nan, np.float32)
    full[muscle] = t1w_fat_fraction(
        region.gather("t1w")[muscle], params["t1w_lean"], params["t1w_fat"]
    )
    return full, params


@dataclass(frozen=True)
class SwapCheck:
    """Cut-offs of the fat-water swap check (``quantify`` settings).

    Attributes
    ----------
    min_ff : float
        Fat and marrow reading below this FF suggest a swap.
    body_floor_sigma : float
        Unlabelled voxels with F+W above this many noise sigmas are body tissue, not air.
    min_body_voxels : int
        The unlabelled-tissue reading needs more than this many body voxels.
    """

    min_ff: float
    body_floor_sigma: float
    min_body_voxels: int = 100

    @classmethod
    def from_settings(cls, qset: dict[str, Any]) -> SwapCheck:
        """The check the ``quantify`` settings describe."""
        return cls(
            float(qset["swap_check_min_ff"]),
            float(qset["swap_check_body_floor_sigma"]),
            int(qset["swap_check_min_body_voxels"]),
        )


def swap_check(
    region: LabelledRegion, ff_flat: np.ndarray, sigma: float | None, check: SwapCheck
) -> list[QCFinding]:
    """Subcutaneous fat and marrow must read fatty; otherwise fat and water may be swapped.

    Parameters
    ----------
    region : LabelledRegion
    ff_flat : ndarray
        Fat fraction per labelled voxel.
    sigma : float or None
        Dixon noise sigma (sets the body floor of the unlabelled-tissue reading).
    check : SwapCheck

    Returns
    -------
    list of QCFinding
        One ``fat_water_swap_suspected`` warning when every reading is low, else empty.
    """
    study = region.study
    findings = []
    reference = np.isin(region.label, np.flatnonzero(region.kinds == REFERENCE))
    readings = []
    values = ff_flat[reference]
    values = values[np.isfinite(values)]
    if values.size:
        readings.append(("reference tissue (marrow/bone)", float(np.median(values))))
    if "fat" in study.images and "water" in study.images:
        sample = background_sample(region.labels, len(region.voxels))
        outside = VoxelSet(sample, region.voxels.region, study.shape)
        fat, water = region.gather("fat", outside), region.gather("water", outside)
        total = fat + water
        floor = check.body_floor_sigma * sigma if sigma else np.quantile(total, 0.5)
        body = total > floor
        if body.sum() > check.min_body_voxels:
            readings.append(
                (
                    "unlabelled body tissue (subcutaneous/intermuscular fat)",
                    float(np.median(fat[body] / total[body])),
                )
            )
    low = [(what, value) for what, value in readings if np.isfinite(value) and value < check.min_ff]
    if low and len(low) == len(readings):
        detail = "; ".join(f"{what} reads FF {value:.2f}" for what, value in low)
        findings.append(
            QCFinding(
                "warning",
                schema.FAT_WATER_SWAP_SUSPECTED,
                f"fat-water swap suspected: {detail} (expected > {check.min_ff})",
                region.file("fat", "ff"),
            )
        )
    return findings
