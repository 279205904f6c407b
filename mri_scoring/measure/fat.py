"""Fat fraction per voxel and per label, and the fat-water swap check.

Sources, in order of preference: Dixon F/(F+W) above a noise floor, with the magnitude (Rician)
noise bias removed; a fat-fraction map; or, with only a T1w image, a semi-quantitative two-tissue
estimate (Gaussian mixture), flagged as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from .. import schema
from ..anatomy import REFERENCE
from ..errors import QCFinding
from .arrays import LabelledRegion, VoxelSet, chunks, label_quantiles, mean_by_label
from .masks import background_sample
from .noise import NoiseEstimate, dixon_noise

RICIAN_TABLE_TOP = 20.0


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

    Returns
    -------
    ndarray of float32
        Fat fraction (0-1) per voxel, NaN where not measurable.
    """
    ff = np.empty(np.shape(fat), np.float32)
    for part in chunks(ff.size, 1 << 18):  # bounded temporaries, whatever the number of voxels
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

    Parameters
    ----------
    t1w_muscle : ndarray
        T1w intensities of the muscle voxels.
    t1w_other : ndarray
        T1w intensities of a sample of unlabelled voxels (fat, other tissue).
    seed : int
        Seed of the sampling and of the mixture fit.

    Returns
    -------
    ff : ndarray of float32
        Fat fraction (0-1) per muscle voxel.
    params : dict
        ``t1w_lean`` and ``t1w_fat``: the component means (image units).
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


@dataclass(frozen=True, eq=False)
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


def measure_fat(region: LabelledRegion, qset: dict[str, Any]) -> FatMeasure:
    """Per-voxel and per-label fat fraction from the best available source.

    Parameters
    ----------
    region : LabelledRegion
        The study's labelled voxels and images.
    qset : dict
        The ``quantify`` section of the settings.

    Returns
    -------
    FatMeasure
    """
    images, n = region.images, region.n_labels
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
        )
        source = "dixon"
    elif "ff" in images:
        ff_flat = region.gather("ff")
        source = "ff_map"
    elif "t1w" in images:
        ff_flat, params = _t1w_fat_fraction(region)
        source = "t1w_gmm"
        qc.append(
            QCFinding(
                "warning",
                schema.FF_SEMIQUANTITATIVE,
                "fat fraction estimated from T1w intensities (Gaussian mixture; lean muscle "
                f"{params['t1w_lean']:.4g}, fat {params['t1w_fat']:.4g}): "
                "semi-quantitative, not a Dixon/PDFF measurement",
                region.file("t1w"),
            )
        )
    else:
        return FatMeasure(None)

    columns: dict[str, np.ndarray] = {}
    ok = np.isfinite(ff_flat)
    lab_flat = region.label
    for mask, suffix, quantiles in ((ok & region.use_core, "", (0.5, 0.9)), (ok, "_whole", (0.5,))):
        labels_in, values_in = lab_flat[mask], ff_flat[mask]
        columns["ff_mean" + suffix] = mean_by_label(labels_in, values_in, n)
        q = label_quantiles(labels_in, values_in, n, quantiles)
        columns["ff_median" + suffix] = q[:, 0]
        if len(quantiles) > 1:
            columns["ff_p90"] = q[:, 1]
        del labels_in, values_in
    qc.extend(swap_check(region, ff_flat, noise_sigma, qset["swap_check_min_ff"]))
    return FatMeasure(ff_flat, source, noise_sigma, columns, qc, noise.source)


def _t1w_fat_fraction(region: LabelledRegion) -> tuple[np.ndarray, dict[str, float]]:
    """T1w mixture FF on the muscle voxels (NaN on reference tissues and unknown labels)."""
    lab_flat = region.label
    t1_lab = region.gather("t1w")
    sample = background_sample(region.labels, len(region.voxels))
    other = VoxelSet(sample, region.voxels.region, region.study.shape)
    t1_other = region.gather("t1w", other)
    muscle = region.is_muscle[lab_flat]
    ff_muscle, params = t1w_fat_fraction(t1_lab[muscle], t1_other)
    full = np.full(lab_flat.size, np.nan, np.float32)
    full[muscle] = ff_muscle
    return full, params


def swap_check(
    region: LabelledRegion, ff_flat: np.ndarray, sigma: float | None, min_ff: float
) -> list[QCFinding]:
    """Subcutaneous fat and marrow must read fatty; otherwise fat and water may be swapped.

    Parameters
    ----------
    region : LabelledRegion
    ff_flat : ndarray
        Fat fraction per labelled voxel.
    sigma : float or None
        Dixon noise sigma (sets the body floor of the unlabelled-tissue reading).
    min_ff : float
        Fat and marrow reading below this FF suggest a swap.

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
        floor = 10.0 * sigma if sigma else np.quantile(total, 0.5)
        body = total > floor
        if body.sum() > 100:
            readings.append(
                (
                    "unlabelled body tissue (subcutaneous/intermuscular fat)",
                    float(np.median(fat[body] / total[body])),
                )
            )
    low = [(what, value) for what, value in readings if np.isfinite(value) and value < min_ff]
    if low and len(low) == len(readings):
        detail = "; ".join(f"{what} reads FF {value:.2f}" for what, value in low)
        findings.append(
            QCFinding(
                "warning",
                schema.FAT_WATER_SWAP_SUSPECTED,
                f"fat-water swap suspected: {detail} (expected > {min_ff})",
                region.file("fat", "ff"),
            )
        )
    return findings
