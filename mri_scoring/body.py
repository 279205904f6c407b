"""The body around the labelled muscles: body mask, muscle envelope and the subcutaneous layer.

Geometry only, slice by slice (axis 2 is the slice axis of a RAS+ study): the body is the signal
above a floor with its holes filled; the muscle envelope is the convex hull of each limb's
labelled region (its deep fascia); the subcutaneous layer is the body outside the envelope. Its
core (voxels touching neither air nor the envelope, which keeps the skin and partial-volume
edges out) is where fat is read. Used by the role-content checks
(:mod:`mri_scoring.io.role_content`) and the fat-scale check (:mod:`mri_scoring.measure.fat_scale`,
which also leaves a layer thinner than a minimum unread); no stage of the pipeline is imported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "SubcutaneousLayer",
    "body_mask",
    "muscle_envelope",
    "subcutaneous_layer",
]

_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[:, :, 1] = ndimage.generate_binary_structure(2, 1)


def body_mask(total: np.ndarray, floor: float) -> np.ndarray:
    """Voxels above ``floor`` with the holes of each slice filled.

    Parameters
    ----------
    total : ndarray
        A magnitude image (for Dixon: fat + water).
    floor : float
        Signal above which a voxel is tissue.

    Returns
    -------
    ndarray of bool

    Examples
    --------
    >>> img = np.zeros((5, 5, 1)); img[1:4, 1:4] = 1.0; img[2, 2] = 0.0
    >>> int(body_mask(img, 0.5).sum())
    9
    """
    above = np.nan_to_num(np.asarray(total, np.float32)) > floor
    return ndimage.binary_fill_holes(above, structure=_IN_PLANE)


def muscle_envelope(
    inside: np.ndarray, voxel_mm: tuple[float, float, float], join_mm: float = 6.0
) -> np.ndarray:
    """The convex hull of each limb's labelled region, slice by slice.

    Labelled voxels closer than ``join_mm`` belong to one limb (the muscles of a thigh, apart
    by septa); each limb's hull stands for its deep fascia, so intermuscular fat and the septa
    are inside and the subcutaneous layer outside.

    Examples
    --------
    >>> m = np.zeros((12, 7, 1), bool); m[1:4, 1:6] = m[8:11, 1:6] = True; m[2, 3] = False
    >>> env = muscle_envelope(m, (1.0, 1.0, 5.0), join_mm=2.0)
    >>> bool(env[2, 3]), bool(env[6, 3]), int(env.sum())
    (True, False, 30)
    """
    from skimage.morphology import convex_hull_image

    mask = np.asarray(inside, bool)
    out = np.zeros_like(mask)
    radius = max(1, round(join_mm / 2.0 / min(voxel_mm[0], voxel_mm[1])))
    disk = ndimage.generate_binary_structure(2, 1)
    for k in range(mask.shape[2]):
        plane = mask[..., k]
        if not plane.any():
            continue
        joined = ndimage.binary_dilation(plane, structure=disk, iterations=radius)
        limbs, n = ndimage.label(joined)
        for limb in range(1, n + 1):
            part = plane & (limbs == limb)
            if part.sum() >= 3:
                out[..., k] |= convex_hull_image(part)
            else:
                out[..., k] |= part
    return out


@dataclass(frozen=True)
class SubcutaneousLayer:
    """The body outside the muscle envelope.

    Attributes
    ----------
    core : ndarray of bool
        Layer voxels touching neither air nor the envelope (in plane).
    thickness_mm : float
        Typical layer thickness: twice the 95th percentile of the in-plane distance from a layer
        voxel to the nearest non-layer voxel (within about a voxel).
    n_layer : int
        Voxels in the whole layer.
    """

    core: np.ndarray
    thickness_mm: float
    n_layer: int


def subcutaneous_layer(
    inside: np.ndarray,
    body: np.ndarray,
    voxel_mm: tuple[float, float, float],
    min_slice_share: float = 0.5,
) -> SubcutaneousLayer:
    """The subcutaneous layer of a body around its labelled region.

    Parameters
    ----------
    inside : ndarray of bool
        Labelled voxels (muscles, bone, marrow).
    body : ndarray of bool
        From :func:`body_mask`.
    voxel_mm : tuple of float
        Voxel size.
    min_slice_share : float
        Slices whose labelled area is below this share of the largest one's are left out.

    Returns
    -------
    SubcutaneousLayer
    """
    envelope = muscle_envelope(inside, voxel_mm)
    # only slices labelled about as fully as the best one: where the segmentation stops (the hip,
    # the knee) unlabelled muscle outside the envelope would pass for subcutaneous fat
    area = inside.sum(axis=(0, 1))
    full = area >= min_slice_share * area.max() if area.max() > 0 else area > 0
    layer = body & ~envelope & full[None, None, :]
    n_layer = int(layer.sum())
    if n_layer == 0:
        return SubcutaneousLayer(layer, 0.0, 0)
    core = ndimage.binary_erosion(layer, structure=_IN_PLANE)
    distance = ndimage.distance_transform_edt(layer, sampling=(voxel_mm[0], voxel_mm[1], 1e6))
    thickness = 2.0 * float(np.percentile(distance[layer], 95))
    return SubcutaneousLayer(core, thickness, n_layer)
