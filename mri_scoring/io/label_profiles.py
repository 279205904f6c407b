"""Per-label voxel counts along each voxel axis, from one walk over the label map.

The counts answer three questions of the loader without another pass over the volume: which
label values are present, where each label lies left-right and front-back (the side check,
:mod:`.label_geometry`), and each label's bounding box (the region quantification works in).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DIRECT_VALUE_LIMIT",
    "LabelProfiles",
    "label_profiles",
    "present_values",
]

# Label values below this are counted under their own value in one walk; a map with larger
# values is walked twice (the values present first, then the counts of those values only).
DIRECT_VALUE_LIMIT = 256


@dataclass(frozen=True)
class LabelProfiles:
    """Per-label voxel counts along the three voxel axes.

    Attributes
    ----------
    values : ndarray of int64, shape (K,)
        Label values, in the order of the rows (row ``i`` is ``values[i]``).
    lr : ndarray of int64, shape (K, X)
        Voxels of each label in each slab of voxel axis 0 (left -> right in RAS+).
    pa : ndarray of int64, shape (K, Y)
        Voxels of each label in each slab of voxel axis 1 (posterior -> anterior).
    si : ndarray of int64, shape (K, Z)
        Voxels of each label in each slice of voxel axis 2 (inferior -> superior).
    """

    values: np.ndarray
    lr: np.ndarray
    pa: np.ndarray
    si: np.ndarray

    def centre_index(self, row: int, axis: str = "lr") -> float:
        """Mean voxel index of label row ``row`` along ``axis`` (``"lr"``, ``"pa"`` or ``"si"``)."""
        counts = getattr(self, axis)[row]
        return float(counts @ np.arange(counts.size) / max(int(counts.sum()), 1))

    def select(self, values: np.ndarray) -> LabelProfiles:
        """The rows of ``values`` in their order; a value without voxels gets a row of zeros.

        Examples
        --------
        >>> labels = np.zeros((2, 2, 1), np.uint8)
        >>> labels[1, 0, 0] = 4
        >>> picked = label_profiles(labels).select(np.array([4, 9]))
        >>> picked.values.tolist(), picked.lr.tolist()
        ([4, 9], [[0, 1], [0, 0]])
        """
        values = np.asarray(values, dtype=np.int64)
        row_of = {int(v): i for i, v in enumerate(self.values)}
        picked = []
        for counts in (self.lr, self.pa, self.si):
            rows = np.zeros((values.size, counts.shape[1]), np.int64)
            for j, value in enumerate(values):
                if int(value) in row_of:
                    rows[j] = counts[row_of[int(value)]]
            picked.append(rows)
        return LabelProfiles(values, *picked)

    def boxes(self) -> list[tuple[slice, slice, slice] | None]:
        """Bounding box of each row's voxels (None for a label without voxels).

        The boxes ``scipy.ndimage.find_objects`` gives for a map renumbered 1..K in row order.

        Examples
        --------
        >>> labels = np.zeros((4, 3, 2), np.uint8)
        >>> labels[1:3, 2, 1] = 7
        >>> label_profiles(labels, np.array([3, 7])).boxes()
        [None, (slice(1, 3, None), slice(2, 3, None), slice(1, 2, None))]
        """
        out: list[tuple[slice, slice, slice] | None] = []
        for row in range(self.values.size):
            spans = []
            for counts in (self.lr[row], self.pa[row], self.si[row]):
                occupied = np.flatnonzero(counts)
                if not occupied.size:
                    break
                spans.append(slice(int(occupied[0]), int(occupied[-1]) + 1))
            out.append((spans[0], spans[1], spans[2]) if len(spans) == 3 else None)
        return out


def present_values(labels: np.ndarray) -> np.ndarray:
    """Label values present in the map (0 excluded), sorted, without sorting the volume.

    Examples
    --------
    >>> present_values(np.array([[[0, 7], [3, 7]]])).tolist()
    [3, 7]
    """
    high = int(labels.max(initial=0))
    if high < 1 << 24:
        seen = np.zeros(high + 1, bool)
        for slab in _slabs(labels):
            seen[slab[slab != 0]] = True  # a boolean mask: fast nonzero
        return np.flatnonzero(seen).astype(np.int64)
    values = np.unique(labels)
    return values[values != 0].astype(np.int64)


def label_profiles(labels: np.ndarray, values: np.ndarray | None = None) -> LabelProfiles:
    """Count every label's voxels per slab of each voxel axis, walking the map once.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        Label map on the RAS+ grid (0 = background).
    values : ndarray of int, optional
        The label values to count (sorted, 0 excluded). Default: every value present (one walk
        when every value is below 256, otherwise one more walk to find them).

    Returns
    -------
    LabelProfiles

    Examples
    --------
    >>> labels = np.zeros((4, 3, 1), int)
    >>> labels[0, 0, 0] = labels[1, 2, 0] = 5
    >>> profiles = label_profiles(labels, np.array([5]))
    >>> profiles.lr.tolist(), profiles.pa.tolist(), profiles.si.tolist()
    ([[1, 1, 0, 0]], [[1, 0, 1]], [[2]])
    >>> label_profiles(labels).values.tolist()
    [5]
    """
    high = int(labels.max(initial=0))
    direct = values is None and high < DIRECT_VALUE_LIMIT
    if values is None and not direct:
        values = present_values(labels)
    if direct:  # rows are the values themselves: no table of values needed first
        lut, k = None, high + 1
    else:
        values = np.asarray(values, dtype=np.int64)
        lut = np.zeros(max(high, int(values.max(initial=0))) + 1, np.int64)
        lut[values] = np.arange(1, values.size + 1)
        k = values.size + 1
    sizes = labels.shape
    counts = [np.zeros(k * n, np.int64) for n in sizes]
    # One slab of the axis outermost in memory at a time (bounded memory, contiguous reads), and
    # only its labelled voxels: a thigh map is mostly background.
    outer = _outer_axis(labels)
    for i, slab in enumerate(_slabs(labels)):
        flat, (slow_axis, fast_axis), fast_size = _flat_slab(slab, outer)
        # nonzero of a boolean array is several times faster than of an integer one
        index = np.flatnonzero(flat != 0)
        slow, fast = np.divmod(index, fast_size)
        rows = flat[index].astype(np.intp) if lut is None else lut[flat[index]]
        counts[outer][i :: sizes[outer]] += np.bincount(rows, minlength=k)
        for axis, where in ((slow_axis, slow), (fast_axis, fast)):
            counts[axis] += np.bincount(rows * sizes[axis] + where, minlength=k * sizes[axis])
    lr, pa, si = (c.reshape(k, n)[1:] for c, n in zip(counts, sizes, strict=True))
    if direct:
        keep = si.sum(axis=1) > 0
        return LabelProfiles(np.flatnonzero(keep) + 1, lr[keep], pa[keep], si[keep])
    return LabelProfiles(values, lr, pa, si)


def _flat_slab(slab: np.ndarray, outer: int) -> tuple[np.ndarray, tuple[int, int], int]:
    """A slab as a flat array in memory order, with the axes of its slow and fast index.

    Also returns the length of the fast axis. A slab that is neither C- nor F-contiguous (a
    flipped view) is copied.
    """
    axes = [axis for axis in range(3) if axis != outer]
    if slab.flags.f_contiguous and not slab.flags.c_contiguous:
        slab, axes = slab.T, axes[::-1]
    slab = np.ascontiguousarray(slab)
    return slab.reshape(-1), (axes[0], axes[1]), slab.shape[1]


def _slabs(labels: np.ndarray) -> list[np.ndarray]:
    """Views of the slabs of the axis outermost in memory, in index order (np.take would copy)."""
    outer = _outer_axis(labels)
    return [labels[(slice(None),) * outer + (i,)] for i in range(labels.shape[outer])]


def _outer_axis(labels: np.ndarray) -> int:
    """The axis with the largest memory step: its slabs are contiguous (or nearly) in memory."""
    return int(np.argmax(np.abs(labels.strides)))
