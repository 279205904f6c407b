"""Per-muscle measures from arrays: fat fraction, edema, fascial edema, volume, atrophy."""

from __future__ import annotations

import numpy as np


def core_from_distance(
    distance_mm: np.ndarray, voxel_size_mm: tuple[float, ...], core_mm: float
) -> np.ndarray:
    """Core of a mask from its inside distance map.

    ``distance_mm`` is the Euclidean distance (mm) from each voxel centre to the nearest centre
    outside the mask; the mask boundary lies half a voxel closer. A voxel is in the core when its
    centre is at least ``core_mm`` from the boundary, and never less than one in-plane voxel
    (partial volume reaches about a voxel, whatever ``core_mm`` says).
    """
    in_plane = min(voxel_size_mm[0], voxel_size_mm[1])
    return distance_mm >= max(core_mm, in_plane) + 0.5 * in_plane


def shell_reach_mm(voxel_size_mm: tuple[float, ...], shell_mm: float) -> float:
    """Outer reach of a peri-muscular shell: ``shell_mm``, but at least one in-plane voxel."""
    return max(shell_mm, max(voxel_size_mm[0], voxel_size_mm[1])) * 1.0001
