"""Geometry and image formation of the synthetic thigh phantom.

The anatomy (``configs/phantom.yaml``, section ``anatomy``): per axial slice, both thighs with
skin, subcutaneous fat, a femur (cortex and fatty marrow) and the muscles at their level,
separated by thin fat septa; atrophy shrinks a muscle towards its centre. The image-formation
helpers: standardised smooth random fields (texture, edema patches), a smooth multiplicative coil
bias and Rician noise. Nothing here reads the measurement code or its settings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ..config import load_config_file

__all__ = [
    "AIR",
    "CORTEX",
    "DEFAULT_FOV_MM",
    "FASCIAL_FLUID",
    "MARROW",
    "MUSCLE",
    "SEPTUM_FAT",
    "SKIN",
    "SUBCUT_FAT",
    "TISSUE_CODES",
    "apply_atrophy",
    "band_reach_mm",
    "bias_field",
    "build_anatomy",
    "phantom_config",
    "phantom_muscles",
    "rician",
    "smooth_field",
]

# Tissue codes of the phantom's tissue map.
AIR, SKIN, SUBCUT_FAT, SEPTUM_FAT, CORTEX, MARROW, MUSCLE, FASCIAL_FLUID = range(8)
# Tissue names of ``configs/phantom.yaml`` (``tissue.ff``, ``tissue.pd``) -> tissue code.
TISSUE_CODES = {
    "air": AIR,
    "skin": SKIN,
    "subcutaneous_fat": SUBCUT_FAT,
    "septum_fat": SEPTUM_FAT,
    "cortex": CORTEX,
    "marrow": MARROW,
}
DEFAULT_FOV_MM = (420.0, 420.0, 400.0)


def phantom_config() -> dict[str, Any]:
    """The phantom's knowledge file, ``configs/phantom.yaml`` (cached; treat as read-only)."""
    return load_config_file("phantom.yaml")


def phantom_muscles() -> list[str]:
    """Muscles the phantom draws, in label order."""
    return list(phantom_config()["anatomy"]["muscles"])


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: tuple[float, ...]
) -> np.ndarray:
    """Standardised Gaussian random field (float32, mean 0, sd 1)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    smooth = ndimage.gaussian_filter(noise, sigma=sigma_vox, mode="wrap")
    return ((smooth - smooth.mean()) / (smooth.std() + 1e-12)).astype(np.float32)


def bias_field(rng: np.random.Generator, shape: tuple[int, ...], amplitude: float) -> np.ndarray:
    """Smooth multiplicative field 1 + amplitude * g, g in [-1, 1] (low-order polynomial)."""
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    terms = [x, y, z, x * y, x * x - 0.33, y * y - 0.33, x * z, y * z]
    coefficients = rng.uniform(-1.0, 1.0, len(terms))
    g = sum(c * t for c, t in zip(coefficients, terms, strict=True))
    g = np.broadcast_to(g, shape).astype(np.float32)
    g /= max(float(np.abs(g).max()), 1e-6)
    return 1.0 + amplitude * g


def rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of ``signal`` plus complex Gaussian noise of sd ``sigma`` (float32)."""
    if sigma <= 0:
        return signal.astype(np.float32)
    real = signal + rng.normal(0.0, sigma, signal.shape).astype(np.float32)
    imag = rng.normal(0.0, sigma, signal.shape).astype(np.float32)
    return np.hypot(real, imag).astype(np.float32)


def _level_profile(t: float, t0: float, t1: float) -> float:
    """Radius scale at level t (0 outside [t0, t1]; a muscle cut at t0 = 0 stays wide above)."""
    if t < t0 or t > t1:
        return 0.0
    start = t0 if t0 > 0.01 else t0 - 0.4 * (t1 - t0)
    return 0.45 + 0.55 * float(np.sin(np.pi * (t - start) / (t1 - start)))


def build_anatomy(
    shape: tuple[int, ...], voxel: tuple[float, ...], subcutaneous_fat_mm: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label map, tissue map and normalised radius of each muscle voxel (for atrophy ranking).

    ``subcutaneous_fat_mm`` (default ``anatomy.subcutaneous_fat_mm``) moves the skin, not the
    muscles: a thinner layer is a smaller body around the same muscles.
    """
    anatomy = phantom_config()["anatomy"]
    muscles = anatomy["muscles"]
    nx, ny, nz = shape
    dx, dy, _dz = voxel
    x_mm = (np.arange(nx) - (nx - 1) / 2.0) * dx
    y_mm = (np.arange(ny) - (ny - 1) / 2.0) * dy
    xx, yy = np.meshgrid(x_mm, y_mm, indexing="ij")
    labels = np.zeros(shape, np.int16)
    tissue = np.zeros(shape, np.uint8)
    radius = np.zeros(shape, np.float32)
    septum = max(anatomy["septum_mm"], 0.75 * min(dx, dy))
    names = list(muscles)
    for k in range(nz):
        t = 1.0 - k / max(nz - 1, 1)  # k = nz-1 is the most proximal (superior) slice
        skin_prox, skin_dist = anatomy["skin_radius_mm"]
        skin_r = skin_prox + (skin_dist - skin_prox) * t
        muscle_r = skin_r - anatomy["subcutaneous_fat_mm"]
        if subcutaneous_fat_mm is not None:
            skin_r = muscle_r + subcutaneous_fat_mm
        for side_index, (sign, centre) in enumerate(
            ((-1.0, -anatomy["thigh_centre_x_mm"]), (1.0, anatomy["thigh_centre_x_mm"]))
        ):
            u = sign * (xx - centre)
            v = yy
            rho = np.hypot(u, v)
            body = rho < skin_r
            sl_tissue = np.where(body, SUBCUT_FAT, AIR).astype(np.uint8)
            sl_tissue[(rho >= skin_r - anatomy["skin_mm"]) & body] = SKIN
            compartment = rho < muscle_r
            sl_tissue[compartment] = SEPTUM_FAT
            distances, radii, values = [], [], []
            for i, name in enumerate(names):
                u0, v0, u1, v1, a, b, t0, t1 = muscles[name]
                scale = _level_profile(t, t0, t1)
                if scale <= 0:
                    continue
                f = (t - t0) / max(t1 - t0, 1e-6)
                cu, cv = u0 + (u1 - u0) * f, v0 + (v1 - v0) * f
                r = np.hypot((u - cu) / (a * scale), (v - cv) / (b * scale))
                distances.append((r - 1.0) * np.sqrt(a * b) * scale)
                radii.append(r)
                values.append(2 * i + 1 + side_index)
            d = np.stack(distances)
            order = np.argsort(d, axis=0)
            d1 = np.take_along_axis(d, order[:1], 0)[0]
            d2 = np.take_along_axis(d, order[1:2], 0)[0] if len(d) > 1 else d1 + 1e6
            r1 = np.take_along_axis(np.stack(radii), order[:1], 0)[0]
            owner = np.asarray(values)[order[0]]
            is_muscle = compartment & (d1 < anatomy["gap_fill_mm"]) & (d2 - d1 >= septum)
            is_muscle &= rho >= anatomy["femur_radius_mm"]
            sl_tissue[is_muscle] = MUSCLE
            sl_tissue[rho < anatomy["femur_radius_mm"]] = CORTEX
            sl_tissue[rho < anatomy["marrow_radius_mm"]] = MARROW
            in_side = body
            tissue[..., k][in_side] = sl_tissue[in_side]
            labels[..., k][in_side & is_muscle] = owner[in_side & is_muscle]
            labels[..., k][in_side & (rho < anatomy["marrow_radius_mm"])] = 91 + side_index
            radius[..., k][in_side & is_muscle] = r1[in_side & is_muscle]
    return labels, tissue, radius


def apply_atrophy(
    labels: np.ndarray, tissue: np.ndarray, radius: np.ndarray, value: int, factor: float
) -> None:
    """Keep the share ``factor`` of the muscle nearest its centre per slice; fat fills the rest."""
    for k in range(labels.shape[2]):
        where = np.nonzero(labels[..., k] == value)
        n = where[0].size
        if n == 0:
            continue
        keep = round(factor * n)
        order = np.argsort(radius[..., k][where], kind="stable")
        drop = order[keep:]
        labels[where[0][drop], where[1][drop], k] = 0
        tissue[where[0][drop], where[1][drop], k] = SEPTUM_FAT


def subcutaneous_edema(
    rng: np.random.Generator, tissue: np.ndarray, voxel: tuple[float, ...], share: float
) -> np.ndarray:
    """Patchy edema in the subcutaneous fat: the share ``share`` of each thigh's fat voxels.

    A smooth random field (``subcutaneous.edema_patch_mm``) is cut at each side's own quantile
    (side = sign of the grid's first axis about its centre, the phantom's two thighs).
    """
    spec = phantom_config()["subcutaneous"]
    fat = tissue == SUBCUT_FAT
    edema = np.zeros(tissue.shape, bool)
    if share <= 0:
        return edema
    field = smooth_field(rng, tissue.shape, tuple(spec["edema_patch_mm"] / v for v in voxel))
    half = tissue.shape[0] // 2
    for part in (slice(0, half), slice(half, None)):
        inside = fat[part]
        if inside.any():
            cut = np.quantile(field[part][inside], 1.0 - min(share, 1.0))
            edema[part] |= inside & (field[part] > cut)
    return edema


def band_reach_mm(voxel_size_mm: tuple[float, ...], band_mm: float) -> float:
    """Fascial band reach: ``band_mm``, at least one in-plane voxel (+1e-4 for rounding)."""
    return max(band_mm, max(voxel_size_mm[0], voxel_size_mm[1])) * (1.0 + 1e-4)
