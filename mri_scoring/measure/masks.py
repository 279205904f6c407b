"""Neighbourhoods of a label map: eroded cores, peri-muscular shells, label boxes.

Neighbourhood operations are separable window minima/maxima over the label map (one pass for all
labels, whatever their number); reaches are in mm and converted to voxels per axis.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "background_sample",
    "core_mask",
    "core_reach_mm",
    "exclusive_shell",
    "padded_region",
    "shell_reach_mm",
    "steps_below",
    "steps_within",
    "window",
]


def core_reach_mm(voxel_size_mm: tuple[float, ...], core_mm: float) -> float:
    """Distance from a core voxel's centre to the nearest outside voxel centre.

    Parameters
    ----------
    voxel_size_mm : tuple of float
        Voxel size (mm) per axis.
    core_mm : float
        Requested erosion depth (mm).

    Returns
    -------
    float
        Reach (mm): ``core_mm`` but at least one in-plane voxel, plus half an in-plane voxel.
    """
    in_plane = min(voxel_size_mm[0], voxel_size_mm[1])
    return max(core_mm, in_plane) + 0.5 * in_plane


def shell_reach_mm(voxel_size_mm: tuple[float, ...], shell_mm: float) -> float:
    """Outer reach of a peri-muscular shell: ``shell_mm``, but at least one in-plane voxel.

    Parameters
    ----------
    voxel_size_mm : tuple of float
        Voxel size (mm) per axis.
    shell_mm : float
        Requested shell thickness (mm).

    Returns
    -------
    float
        Reach (mm).
    """
    return max(shell_mm, max(voxel_size_mm[0], voxel_size_mm[1])) * 1.0001


def steps_below(reach_mm: float, voxel_size_mm: tuple[float, ...]) -> tuple[int, ...]:
    """Window half-widths (voxels per axis) reaching every neighbour closer than ``reach_mm``."""
    return tuple(max(int(np.ceil(reach_mm / v - 1e-6)) - 1, 0) for v in voxel_size_mm)


def steps_within(reach_mm: float, voxel_size_mm: tuple[float, ...]) -> tuple[int, ...]:
    """Window half-widths (voxels per axis) reaching every neighbour at most ``reach_mm`` away."""
    return tuple(int(np.floor(reach_mm / v + 1e-6)) for v in voxel_size_mm)


def window(array: np.ndarray, half: tuple[int, ...], reduce: np.ufunc, pad: int) -> np.ndarray:
    """Separable moving min/max over a box of half-widths ``half`` (edges padded with ``pad``).

    Parameters
    ----------
    array : ndarray
        Input (any integer dtype).
    half : tuple of int
        Half-width (voxels) of the box per axis.
    reduce : numpy.ufunc
        ``np.minimum`` or ``np.maximum``.
    pad : int
        Value assumed outside the array.

    Returns
    -------
    ndarray
        Same shape and dtype as ``array``.
    """
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
        Voxel size (mm) per axis.
    core_mm : float
        Erosion depth (mm); at least one in-plane voxel is always removed.

    Returns
    -------
    ndarray of bool
        The core of every label at once.
    """
    half = steps_below(core_reach_mm(voxel_size_mm, core_mm), voxel_size_mm)
    high = np.iinfo(labels.dtype).max
    lowest = window(labels, half, np.minimum, 0)
    highest = window(labels, half, np.maximum, high)
    return (lowest == highest) & (labels > 0)


def exclusive_shell(
    labels: np.ndarray, voxel_size_mm: tuple[float, ...], shell_mm: float
) -> np.ndarray:
    """Label of the single labelled structure within reach of each background voxel.

    A background voxel within :func:`shell_reach_mm` of exactly one label gets that label; voxels
    near two structures (shared fascia, septa between neighbours) and labelled voxels get 0.

    Parameters
    ----------
    labels : ndarray of int
        Label map (0 = background).
    voxel_size_mm : tuple of float
        Voxel size (mm) per axis.
    shell_mm : float
        Shell thickness (mm).

    Returns
    -------
    ndarray
        Same dtype as ``labels``.
    """
    half = steps_within(shell_reach_mm(voxel_size_mm, shell_mm), voxel_size_mm)
    high = np.iinfo(labels.dtype).max
    highest = window(labels, half, np.maximum, 0)
    lowest = window(np.where(labels == 0, high, labels), half, np.minimum, high)
    shell = (labels == 0) & (highest > 0) & (lowest == highest)
    return np.where(shell, highest, 0).astype(labels.dtype)


def padded_region(boxes: list, shape: tuple[int, ...], pad: tuple[int, ...]) -> tuple[slice, ...]:
    """Bounding box of all label boxes, padded by ``pad`` voxels per axis, clipped to the volume.

    Parameters
    ----------
    boxes : list of tuple of slice or None
        Per-label boxes (``scipy.ndimage.find_objects`` style; None = absent label).
    shape : tuple of int
        Volume shape.
    pad : tuple of int
        Padding (voxels) per axis.

    Returns
    -------
    tuple of slice
    """
    starts = [min(b[i].start for b in boxes if b is not None) for i in range(3)]
    stops = [max(b[i].stop for b in boxes if b is not None) for i in range(3)]
    return tuple(
        slice(max(s - p, 0), min(e + p, n))
        for s, e, p, n in zip(starts, stops, pad, shape, strict=True)
    )


def background_sample(lab: np.ndarray, labelled: int, target: int = 200_000) -> np.ndarray:
    """Flat (C-order) indices of about ``target`` unlabelled voxels of a region, evenly spaced.

    Every k-th voxel is looked at and the unlabelled ones kept (k from the known number of
    unlabelled voxels), so no index of the whole background is ever built.

    Parameters
    ----------
    lab : ndarray of int
        Label map of the region.
    labelled : int
        Number of labelled voxels in it.
    target : int
        Wanted sample size.

    Returns
    -------
    ndarray of int64
    """
    flat = lab.ravel()
    step = max((flat.size - labelled) // target, 1)
    candidates = np.arange(0, flat.size, step, dtype=np.int64)
    return candidates[flat[candidates] == 0]
