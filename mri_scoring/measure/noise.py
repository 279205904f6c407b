"""Dixon magnitude noise sigma: from the image background, or from muscle when there is none.

The Rician correction and the noise floor of the Dixon fat fraction need sigma. The background
(air) of a magnitude image is the best witness; scanners often mask it to zero, and then sigma is
read from differences of neighbouring voxels inside muscle, where the signal varies slowly and the
noise does not. When neither works, the correction is skipped and a QC warning says so. Sigma
and how it was found go into ``score.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import schema
from ..errors import QCFinding
from .masks import core_mask
from .voxel_sets import LabelledRegion

__all__ = [
    "BACKGROUND",
    "NOISE_SOURCES",
    "NONE",
    "TISSUE",
    "NoiseEstimate",
    "dixon_noise",
    "estimate_noise_sigma",
    "tissue_noise_sigma",
]

BACKGROUND, TISSUE, NONE = "background", "tissue_differences", "none"
NOISE_SOURCES = (BACKGROUND, TISSUE, NONE, "")
"""How a noise sigma was found ("" = no Dixon images)."""


@dataclass(frozen=True)
class NoiseEstimate:
    """A Dixon noise sigma and how it was found.

    Attributes
    ----------
    sigma : float or None
        Noise sigma per channel (image units); None when it could not be found.
    source : str
        One of :data:`NOISE_SOURCES`.
    qc : list of QCFinding
        Why the background was not used, or that the correction was skipped.
    """

    sigma: float | None
    source: str
    qc: list[QCFinding] = field(default_factory=list)


def estimate_noise_sigma(image: np.ndarray, sample: int = 400_000) -> float | None:
    """Rician/Rayleigh noise sigma from the background of a magnitude image.

    The background (air) of a magnitude image is Rayleigh distributed; its mode equals sigma. A
    first estimate is the mode of a histogram of the darkest 30 % of a strided sample; it is
    refined with the median of the background below four times that mode.

    Parameters
    ----------
    image : ndarray
        Magnitude image (any layout, any real dtype).
    sample : int
        About this many voxels are looked at (strided).

    Returns
    -------
    float or None
        Sigma in image units; None when the image has no dark background (the 30 % quantile is
        not below a tenth of bright tissue).
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


def tissue_noise_sigma(
    water: np.ndarray,
    labels: np.ndarray,
    is_muscle: np.ndarray,
    voxel_size_mm: tuple[float, ...],
    max_slices: int = 16,
) -> float | None:
    """Noise sigma from differences of in-plane neighbours inside muscle (no background needed).

    Inside a muscle, away from its border, the water signal varies over several millimetres
    while the noise of two neighbouring voxels is independent: their difference is noise times
    sqrt(2) plus a little texture. The robust SD (1.4826 x the median absolute deviation) of the
    differences, divided by sqrt(2), is sigma. Only lean voxels (water above half the muscle
    median) are used, where the magnitude noise is Gaussian. Noise that is correlated between
    neighbours (interpolated or filtered images) makes this an underestimate.

    Parameters
    ----------
    water : ndarray
        The water image over the same region as ``labels`` (any layout).
    labels : ndarray of int
        Compact label map of the region.
    is_muscle : ndarray of bool
        Per compact label: a muscle or a muscle group.
    voxel_size_mm : tuple of float
    max_slices : int
        At most this many slices (evenly spaced) are read.

    Returns
    -------
    float or None
        Sigma in image units; None with fewer than 2,000 voxel pairs.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> water = (10.0 + rng.normal(0.0, 0.5, (40, 40, 4))).astype(np.float32)
    >>> labels = np.zeros((40, 40, 4), np.uint8)
    >>> labels[2:38, 2:38] = 1
    >>> round(tissue_noise_sigma(water, labels, np.array([False, True]), (1.0, 1.0, 5.0)), 1)
    0.5
    """
    nz = labels.shape[2]
    ks = np.unique(np.linspace(0, nz - 1, min(nz, max_slices)).round().astype(int))
    lab = np.ascontiguousarray(labels[:, :, ks])
    inner = core_mask(lab, (*voxel_size_mm[:2], 1e6), 0.0) & is_muscle[lab]
    w = np.asarray(water[:, :, ks], dtype=np.float32)
    if not inner.any():
        return None
    lean = inner & (w > 0.5 * float(np.median(w[inner])))
    differences = []
    for axis in (0, 1):
        first = [slice(None)] * 3
        second = [slice(None)] * 3
        first[axis], second[axis] = slice(None, -1), slice(1, None)
        first_t, second_t = tuple(first), tuple(second)
        pair = lean[first_t] & lean[second_t] & (lab[first_t] == lab[second_t])
        differences.append((w[second_t] - w[first_t])[pair])
    d = np.concatenate(differences)
    if d.size < 2000:
        return None
    mad = float(np.median(np.abs(d - np.median(d))))
    return float(1.4826 * mad / np.sqrt(2.0)) if mad > 0 else None


def dixon_noise(region: LabelledRegion) -> NoiseEstimate:
    """Sigma of the Dixon water image: background first, then muscle, else none (warned).

    Parameters
    ----------
    region : LabelledRegion
        The study's labelled region and images (``water`` must be present).

    Returns
    -------
    NoiseEstimate
    """
    water = region.images["water"]
    sigma = estimate_noise_sigma(water)
    if sigma is not None:
        return NoiseEstimate(sigma, BACKGROUND)
    file = region.file("water")
    sigma = tissue_noise_sigma(
        water[region.voxels.region], region.labels, region.is_muscle, region.study.voxel_size_mm
    )
    if sigma is not None:
        message = (
            "the water image has no dark background (masked to zero or cut off): noise sigma "
            f"{sigma:.4g} was read from differences of neighbouring muscle voxels (an "
            "underestimate if the image was interpolated or filtered)"
        )
        return NoiseEstimate(
            sigma, TISSUE, [QCFinding("info", schema.NOISE_FROM_TISSUE, message, file)]
        )
    message = (
        "no noise sigma: the water image has no dark background and too little uniform "
        "muscle; the Rician bias correction and the noise floor of the fat fraction were "
        "skipped (lean muscle reads fattier, by about 0.02 at SNR 25)"
    )
    return NoiseEstimate(
        None, NONE, [QCFinding("warning", schema.NOISE_SIGMA_UNKNOWN, message, file)]
    )
