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
    "LimbOutline",
    "SubcutaneousLayer",
    "body_mask",
    "convex_hull_fill",
    "full_slices",
    "limb_outline",
    "muscle_envelope",
    "outline_of_labels",
    "plane_box",
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
    # what scipy's binary_fill_holes does with this structure (background not connected in plane
    # to a slice's edge), by one labelling instead of a dilation iterated to convergence
    outside, _ = ndimage.label(~above, structure=_IN_PLANE)
    edge = np.unique(
        np.concatenate(
            [outside[0].ravel(), outside[-1].ravel(), outside[:, 0].ravel(), outside[:, -1].ravel()]
        )
    )
    keep = np.ones(int(outside.max()) + 1, bool)
    keep[edge[edge > 0]] = False
    return keep[outside]


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
    mask = np.asarray(inside, bool)
    out = np.zeros_like(mask)
    radius = max(1, round(join_mm / 2.0 / min(voxel_mm[0], voxel_mm[1])))
    disk = ndimage.generate_binary_structure(2, 1)
    for k in np.flatnonzero(mask.any(axis=(0, 1))):
        # each slice is worked on its labelled bounding box widened by the joining radius (and
        # each hull on its limb's box): a hull never leaves the box of its points
        box = plane_box(mask[..., k], radius + 1)
        plane = mask[(*box, k)]
        joined = ndimage.binary_dilation(plane, structure=disk, iterations=radius)
        limbs, _ = ndimage.label(joined)
        hulls = out[(*box, k)]
        for limb, limb_box in enumerate(ndimage.find_objects(limbs), start=1):
            part = plane[limb_box] & (limbs[limb_box] == limb)
            if part.sum() >= 3:
                hulls[limb_box] |= convex_hull_fill(part)
            else:
                hulls[limb_box] |= part
    return out


def convex_hull_fill(plane: np.ndarray) -> np.ndarray:
    """The pixels inside or on the convex hull of a 2-D mask's pixels (each a unit square).

    The hull is that of the midpoints of every True pixel's four edges, and a pixel belongs to
    it when its centre is inside or on the hull: the definition of scikit-image's
    ``convex_hull_image`` (``offset_coordinates`` and ``include_borders`` on), computed in
    integers. On the doubled grid every hull vertex and pixel centre is an integer point, so each
    row's run of hull pixels is exact from the hull's edges as half-planes, where
    ``grid_points_in_poly`` tests every pixel of the box against every edge (0.57 s for the
    24 limb hulls of a dense 512x512 study's 12 read slices).

    Parameters
    ----------
    plane : ndarray of bool
        2-D, at least one True pixel.

    Returns
    -------
    ndarray of bool

    Examples
    --------
    >>> m = np.zeros((5, 5), bool); m[0, 2] = m[4, 0] = m[4, 4] = True
    >>> convex_hull_fill(m).astype(int).sum(axis=1).tolist()
    [1, 3, 3, 5, 5]
    """
    from scipy.spatial import ConvexHull

    plane = np.asarray(plane, bool)
    rows, cols = plane.shape
    # candidate points: each row's and column's first and last True pixel (the hull of a set is
    # the hull of these), as doubled coordinates, with the midpoints of their four edges
    r_any, c_any = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
    first_c, last_c = plane[r_any].argmax(axis=1), cols - 1 - plane[r_any, ::-1].argmax(axis=1)
    first_r, last_r = plane[:, c_any].argmax(axis=0), rows - 1 - plane[::-1, c_any].argmax(axis=0)
    points = (
        np.concatenate(
            [
                np.stack([r_any, first_c], 1),
                np.stack([r_any, last_c], 1),
                np.stack([first_r, c_any], 1),
                np.stack([last_r, c_any], 1),
            ]
        ).astype(np.int64)
        * 2
    )
    diamond = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], np.int64)
    points = (points[:, None, :] + diamond).reshape(-1, 2) + 1  # >= 0
    width = 2 * cols + 2
    key = np.unique(points[:, 0] * width + points[:, 1])  # repeated points trouble qhull
    points = np.stack([key // width, key % width], 1) - 1
    vertices = points[ConvexHull(points).vertices]  # counter-clockwise in (row, col)
    start, step = vertices, np.roll(vertices, -1, axis=0) - vertices
    # inside or on edge i: step_r * (2c - start_c) - step_c * (2r - start_r) >= 0
    two_r = 2 * np.arange(rows, dtype=np.int64)[:, None]
    bound = step[:, 0] * start[:, 1] + step[:, 1] * (two_r - start[:, 0])  # vs 2c * step_r
    up, down, flat = step[:, 0] > 0, step[:, 0] < 0, step[:, 0] == 0
    low = np.full(rows, np.iinfo(np.int64).min // 4)
    high = np.full(rows, np.iinfo(np.int64).max // 4)
    if up.any():  # 2c * step_r >= bound: c >= ceil(bound / (2 step_r))
        low = np.max(-(-bound[:, up] // (2 * step[up, 0])), axis=1)
    if down.any():  # dividing by a negative flips: c <= floor(bound / (2 step_r))
        high = np.min(bound[:, down] // (2 * step[down, 0]), axis=1)
    if flat.any():  # a row edge: every pixel of a row on the wrong side is out
        high = np.where(np.all(bound[:, flat] <= 0, axis=1), high, -1)
    columns = np.arange(cols)
    return (columns >= low[:, None]) & (columns <= high[:, None])


def plane_box(plane: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The bounding box of a non-empty plane's True pixels, widened by ``margin`` (clipped).

    Examples
    --------
    >>> p = np.zeros((6, 6), bool); p[2, 3] = True
    >>> plane_box(p, 1)
    (slice(1, 4, None), slice(2, 5, None))
    """
    rows = np.flatnonzero(plane.any(axis=1))
    cols = np.flatnonzero(plane.any(axis=0))
    return (
        slice(max(int(rows[0]) - margin, 0), min(int(rows[-1]) + margin + 1, plane.shape[0])),
        slice(max(int(cols[0]) - margin, 0), min(int(cols[-1]) + margin + 1, plane.shape[1])),
    )


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
    layer : ndarray of bool or None
        The whole layer (the body outside the envelope, in the slices read).
    """

    core: np.ndarray
    thickness_mm: float
    n_layer: int
    layer: np.ndarray | None = None


def full_slices(
    inside: np.ndarray, min_slice_share: float = 0.5, max_slices: int | None = None
) -> np.ndarray:
    """The slices labelled about as fully as the best one, evenly thinned to ``max_slices``.

    Where the segmentation stops (the hip, the knee) unlabelled muscle outside the envelope
    would pass for subcutaneous fat, so only slices whose labelled area reaches
    ``min_slice_share`` of the largest one's are used (any labelled slice when it is 0).

    Parameters
    ----------
    inside : ndarray of bool
        Labelled voxels (muscles, bone, marrow); axis 2 is the slice axis.
    min_slice_share : float
        Share of the largest labelled area a slice must reach.
    max_slices : int, optional
        At most this many slices, evenly spaced over the full ones.

    Returns
    -------
    ndarray of int
        Slice indices, ascending (empty when nothing is labelled).

    Examples
    --------
    >>> m = np.zeros((4, 4, 6), bool); m[:2, :2, 1:] = True; m[2, :2, 3] = True
    >>> full_slices(m).tolist(), full_slices(m, max_slices=2).tolist()
    ([1, 2, 3, 4, 5], [2, 4])
    """
    area = np.asarray(inside, bool).sum(axis=(0, 1))
    if area.max(initial=0) == 0:
        return np.zeros(0, int)
    index = np.flatnonzero((area > 0) & (area >= min_slice_share * area.max()))
    if max_slices is not None and index.size > max_slices:
        # the middle slice of each of max_slices equal runs: the ends of a stack (thickest
        # and thinnest layer) weigh as much as any other run, no more
        index = index[((np.arange(max_slices) + 0.5) * index.size / max_slices).astype(int)]
    return index


@dataclass(frozen=True)
class LimbOutline:
    """The labelled region and each limb's envelope on the slices a layer is read on.

    Found once per study (:func:`limb_outline`) and shared by every reading of the
    subcutaneous layer that uses the same slices (the fat-scale check and the compartment
    measure differ only in their body floor).

    Attributes
    ----------
    slices : ndarray of int
        Slice indices read (:func:`full_slices` with ``max_slices``).
    max_slices : int
        The cap the slices were chosen with.
    inside : ndarray of bool
        Labelled voxels on those slices.
    envelope : ndarray of bool
        :func:`muscle_envelope` of ``inside``.
    """

    slices: np.ndarray
    max_slices: int
    inside: np.ndarray
    envelope: np.ndarray


def limb_outline(
    inside: np.ndarray, voxel_mm: tuple[float, float, float], max_slices: int
) -> LimbOutline:
    """The :class:`LimbOutline` of a labelled volume on its fully labelled slices.

    Examples
    --------
    >>> m = np.zeros((8, 8, 5), bool); m[2:6, 2:6, 1:4] = True
    >>> outline = limb_outline(m, (1.0, 1.0, 5.0), max_slices=2)
    >>> outline.slices.tolist(), outline.envelope.shape, int(outline.envelope.sum())
    ([1, 3], (8, 8, 2), 32)
    """
    slices = full_slices(inside, max_slices=max_slices)
    sub = np.asarray(inside[..., slices], bool)
    return LimbOutline(slices, max_slices, sub, muscle_envelope(sub, voxel_mm))


def outline_of_labels(
    labels: np.ndarray,
    voxel_mm: tuple[float, float, float],
    max_slices: int,
    found: LimbOutline | None = None,
) -> LimbOutline:
    """``found`` when it was read with ``max_slices``, else :func:`limb_outline` of ``labels > 0``.

    Examples
    --------
    >>> labels = np.zeros((8, 8, 5), np.uint8); labels[2:6, 2:6, 1:4] = 3
    >>> first = outline_of_labels(labels, (1.0, 1.0, 5.0), 2)
    >>> outline_of_labels(labels, (1.0, 1.0, 5.0), 2, first) is first
    True
    >>> outline_of_labels(labels, (1.0, 1.0, 5.0), 3, first).slices.tolist()
    [1, 2, 3]
    """
    if found is not None and found.max_slices == max_slices:
        return found
    return limb_outline(labels > 0, voxel_mm, max_slices)


def subcutaneous_layer(
    inside: np.ndarray,
    body: np.ndarray,
    voxel_mm: tuple[float, float, float],
    min_slice_share: float = 0.5,
    envelope: np.ndarray | None = None,
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
        Slices whose labelled area is below this share of the largest one's are left out
        (:func:`full_slices`).
    envelope : ndarray of bool, optional
        :func:`muscle_envelope` of ``inside`` when already found (a :class:`LimbOutline`'s).

    Returns
    -------
    SubcutaneousLayer
    """
    if envelope is None:
        envelope = muscle_envelope(inside, voxel_mm)
    full = np.zeros(inside.shape[2], bool)
    full[full_slices(inside, min_slice_share)] = True
    layer = body & ~envelope & full[None, None, :]
    n_layer = int(layer.sum())
    if n_layer == 0:
        return SubcutaneousLayer(layer, 0.0, 0, layer)
    core = np.zeros_like(layer)
    distances = []
    for k in np.flatnonzero(layer.any(axis=(0, 1))):
        # slice by slice on the layer's box widened by one pixel: the pixels just outside the box
        # are background (or the slice's edge, as before), so the in-plane erosion and distances
        # are those of the whole slice
        box = plane_box(layer[..., k], 1)
        plane = layer[(*box, k)]
        core[(*box, k)] = ndimage.binary_erosion(plane, structure=_IN_PLANE[:, :, 1])
        distances.append(ndimage.distance_transform_edt(plane, sampling=voxel_mm[:2])[plane])
    thickness = 2.0 * float(np.percentile(np.concatenate(distances), 95))
    return SubcutaneousLayer(core, thickness, n_layer, layer)
