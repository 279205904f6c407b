"""Smooth multiplicative bias fields of STIR, fitted to block-wise low quantiles of muscle.

A coil's receive sensitivity shades an image smoothly; a low quantile of muscle signal per block
(patchy edema only brightens) stands for normal muscle there, and a low-order polynomial in log
signal through the block values is the bias. The block partition is centred and has an odd
number of blocks per axis, so a flipped volume gets the mirrored partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .voxel_sets import VoxelSet, label_quantiles

__all__ = [
    "BiasFit",
    "BlockGrid",
    "fit_log_bias",
    "log_bias_at",
]


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
    """An odd number of blocks per axis, centred on the region.

    A flipped volume so gets the mirrored partition (no block boundary falls on the centre or
    on a voxel centre).
    """

    shape: tuple[int, ...]
    counts: tuple[int, ...]
    width: np.ndarray

    @classmethod
    def make(
        cls, shape: tuple[int, ...], voxel_size_mm: tuple[float, ...], block_mm: float
    ) -> BlockGrid:
        """The grid of blocks about ``block_mm`` wide over a region of ``shape`` voxels."""
        block = np.maximum(block_mm / np.asarray(voxel_size_mm, dtype=float), 1.0)
        counts = tuple(int(np.ceil(n / b)) | 1 for n, b in zip(shape, block, strict=True))
        return cls(tuple(shape), counts, block * (1.0 + 1e-7))

    def axis_index(self, axis: int) -> np.ndarray:
        """Block number of each voxel position along ``axis``."""
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
        grid = np.array(
            np.unravel_index(np.arange(int(np.prod(self.counts))), self.counts), dtype=float
        )
        counts = np.asarray(self.counts, dtype=float)[:, None]
        shape = np.asarray(self.shape, dtype=float)[:, None]
        return (grid + 0.5 - counts / 2.0) * self.width[:, None] + (shape - 1) / 2.0


@dataclass(kw_only=True, frozen=True)
class BiasFit:
    """How the log-bias polynomial is fitted (``edema`` settings, ``stir_bias_*``).

    Attributes
    ----------
    quantile : float
        Quantile of log signal per block taken as normal tissue.
    order : int
        Polynomial order (0-2).
    min_block_voxels : int
        Blocks with fewer reference voxels are not fitted.
    outlier_sd : float
        Blocks off the fit by more than this many robust SD are rejected.
    outlier_floor : float
        ... but never blocks within this distance (log units) of the fit.
    """

    quantile: float
    order: int
    min_block_voxels: int = 20
    outlier_sd: float = 3.0
    outlier_floor: float = 0.02

    @classmethod
    def from_settings(cls, eset: dict[str, Any], quantile: float) -> BiasFit:
        """The fit the ``edema`` settings describe, at block quantile ``quantile``."""
        return cls(
            quantile=quantile,
            order=int(eset["stir_bias_order"]),
            min_block_voxels=int(eset["stir_bias_min_block_voxels"]),
            outlier_sd=float(eset["stir_bias_outlier_sd"]),
            outlier_floor=float(eset["stir_bias_outlier_floor"]),
        )


# Number of polynomial terms per order: a fit needs a few more blocks than terms.
_TERMS = {0: 1, 1: 4, 2: 10}


def fit_log_bias(
    block_ids: np.ndarray, log_signal: np.ndarray, grid: BlockGrid, fit: BiasFit
) -> np.ndarray:
    """Coefficients of a smooth log-bias polynomial fitted to block-wise low quantiles.

    Each block holds reference voxels; its ``fit.quantile`` of log signal stands for normal
    tissue there (patchy edema only brightens, so a low quantile is robust to it). A polynomial
    is fitted to the block values, weighted by voxel counts, with up to two rounds of outlier
    rejection (blocks off by more than ``fit.outlier_sd`` robust SD: e.g. diffusely edematous
    muscle). With fewer usable blocks than the quadratic's 10 terms + 2 the order drops to 1,
    below the linear's 4 terms to 0.

    Parameters
    ----------
    block_ids : ndarray of int
        Block of each reference voxel.
    log_signal : ndarray
        Log signal of each reference voxel.
    grid : BlockGrid
    fit : BiasFit

    Returns
    -------
    ndarray
        Polynomial coefficients (log units).
    """
    order = fit.order
    n_blocks = int(np.prod(grid.counts))
    lo, hi = float(log_signal.min()), float(log_signal.max()) + 1e-6
    q = label_quantiles(block_ids + 1, log_signal, n_blocks, (fit.quantile,), (lo, hi), 512)
    q = q[1:, 0]
    counts = np.bincount(block_ids, minlength=n_blocks).astype(float)
    keep = counts >= fit.min_block_voxels
    if keep.sum() < _TERMS[2] + 2:
        order = 0 if keep.sum() < _TERMS[1] else min(order, 1)
    if not keep.any():
        return np.array([float(np.median(log_signal))])
    design = _poly_terms(_normalise_coords(grid.centres(), grid.shape), order)
    weights = np.sqrt(counts)
    mask = keep.copy()
    coef = np.zeros(design.shape[1])
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(
            design[mask] * weights[mask, None], q[mask] * weights[mask], rcond=None
        )
        residual = np.where(keep, q - design @ coef, np.inf)
        spread = 1.4826 * np.median(np.abs(residual[mask] - np.median(residual[mask])))
        new_mask = keep & (np.abs(residual) <= max(fit.outlier_sd * spread, fit.outlier_floor))
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
    in_plane = i.astype(np.int32) * np.int32(plane.shape[1])
    in_plane += j  # flat (x, y) index: one computation for both tables
    bias = slope.ravel()[in_plane]
    bias *= zz[k]
    bias += plane.ravel()[in_plane]
    bias += (np.float32(czz) * zz**2)[k]
    return bias
