"""Memory layout of numpy arrays: the low-level helpers that reading (io) and measuring share.

Neutral ground: this module imports only numpy, so both :mod:`mri_scoring.io` and the
measurement code can use it without importing each other.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "dense_layout",
    "dense_steps",
    "smallest_label_dtype",
]


def dense_steps(array: np.ndarray) -> tuple[int, ...] | None:
    """Element steps per axis if the array fills its memory densely with positive strides.

    True of C- and F-ordered arrays and of any axis permutation of them, not of flipped or
    sliced views. For such an array, element ``idx`` is at position ``sum(idx * steps)`` of
    ``array.ravel(order="K")`` (a view in memory order). Returns None otherwise.
    """
    item = array.itemsize
    steps = [0 if n == 1 else s // item for s, n in zip(array.strides, array.shape, strict=True)]
    expected = 1
    for axis in sorted((a for a, n in enumerate(array.shape) if n > 1), key=lambda a: steps[a]):
        if array.strides[axis] != expected * item:
            return None
        expected *= array.shape[axis]
    return tuple(steps)


def dense_layout(array: np.ndarray, dtype: np.dtype | None = None) -> np.ndarray:
    """The array itself if it is dense (and of ``dtype``), else one copy in memory order.

    Dense means :func:`dense_steps` holds; a flipped view becomes positively strided, its axis
    order kept.
    """
    if dense_steps(array) is not None and (dtype is None or array.dtype == dtype):
        return array
    return np.array(array, dtype=dtype, order="K")


def smallest_label_dtype(high: int) -> type:
    """uint8, uint16 or int32: labels take no more memory than their largest value needs."""
    return np.uint8 if high < 256 else np.uint16 if high < 65536 else np.int32
