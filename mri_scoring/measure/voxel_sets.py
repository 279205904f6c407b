"""Voxel sets and per-label reductions: the array core every measure reads through.

Per-label statistics are ``np.bincount`` reductions; quantiles come from per-label histograms
(exact to 1/``bins`` of the value range). Temporaries are bounded by reading in chunks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ..memory_layout import dense_layout, dense_steps

__all__ = [
    "FF_BINS",
    "MAX_THREADS",
    "LabelledRegion",
    "LazyValues",
    "T",
    "VoxelSet",
    "chunks",
    "histogram_quantiles",
    "label_histogram",
    "label_quantiles",
    "run_parallel",
    "sums_by_label",
    "thread_count",
]

FF_BINS = 2000
MAX_THREADS = 4
"""Threads one study is measured with at most: the independent steps are few and short."""

T = TypeVar("T")


def thread_count(threads: int | None) -> int:
    """Threads to measure with: ``threads``, or one per core (at most :data:`MAX_THREADS`)."""
    return max(1, threads if threads else min(os.cpu_count() or 1, MAX_THREADS))


def run_parallel(tasks: Sequence[Callable[[], T]], threads: int) -> list[T]:
    """Results of independent tasks, run in up to ``threads`` threads (in order when 1).

    Worth it for tasks that spend their time in numpy calls that release the GIL (ufuncs,
    gathers, sorting); the results come back in the order of ``tasks``.

    Examples
    --------
    >>> run_parallel([lambda: 1, lambda: 2], threads=2)
    [1, 2]
    """
    if threads <= 1 or len(tasks) <= 1:
        return [task() for task in tasks]
    with ThreadPoolExecutor(min(threads, len(tasks)), thread_name_prefix="mri_scoring") as pool:
        return list(pool.map(lambda task: task(), tasks))


def chunks(size: int, chunk: int = 1 << 20) -> list[slice]:
    """Consecutive slices of at most ``chunk`` elements covering ``range(size)``."""
    return [slice(start, start + chunk) for start in range(0, size, chunk)]


def label_quantiles(
    labels: np.ndarray,
    values: np.ndarray,
    n_labels: int,
    quantiles: tuple[float, ...],
    value_range: tuple[float, float] = (0.0, 1.0),
    bins: int = FF_BINS,
) -> np.ndarray:
    """Per-label quantiles from one 2-D histogram (label x value bin), linear within a bin.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
        Label of each value, 1..n_labels (0 is ignored).
    values : ndarray, shape (N,)
        Values, clipped to ``value_range``.
    n_labels : int
        Highest label.
    quantiles : tuple of float
        In [0, 1].
    value_range : tuple of float
        Histogram range (units of ``values``).
    bins : int
        Histogram resolution.

    Returns
    -------
    ndarray, shape (n_labels + 1, len(quantiles))
        NaN for labels with no values.
    """
    hist = label_histogram(labels, values, n_labels, value_range, bins)
    return histogram_quantiles(hist, quantiles, value_range)


def label_histogram(
    labels: np.ndarray,
    values: np.ndarray,
    n_labels: int,
    value_range: tuple[float, float] = (0.0, 1.0),
    bins: int = FF_BINS,
) -> np.ndarray:
    """Counts per label and value bin (values outside ``value_range`` go to the end bins).

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
        Label of each value, 0..n_labels.
    values : ndarray, shape (N,)
    n_labels : int
        Highest label.
    value_range : tuple of float
        Histogram range (units of ``values``).
    bins : int
        Histogram resolution.

    Returns
    -------
    ndarray of int64, shape (n_labels + 1, bins)
    """
    lo, hi = value_range
    width = (hi - lo) / bins
    hist = np.zeros((n_labels + 1) * bins, np.int64)
    for part in chunks(values.size):  # bounded temporaries, whatever the number of voxels
        # intp: the type bincount counts in (any other integer type would be copied to it).
        index = ((values[part] - lo) / width).astype(np.intp)
        np.clip(index, 0, bins - 1, out=index)
        index += labels[part] * np.intp(bins)
        hist += np.bincount(index, minlength=hist.size)
    return hist.reshape(n_labels + 1, bins)


def histogram_quantiles(
    hist: np.ndarray, quantiles: tuple[float, ...], value_range: tuple[float, float] = (0.0, 1.0)
) -> np.ndarray:
    """Quantiles of each row of a :func:`label_histogram`, linear within a bin.

    Parameters
    ----------
    hist : ndarray of int, shape (rows, bins)
    quantiles : tuple of float
        In [0, 1].
    value_range : tuple of float
        The histogram's range.

    Returns
    -------
    ndarray, shape (rows, len(quantiles))
        NaN for empty rows.

    Examples
    --------
    >>> hist = np.array([[0, 0, 0, 0], [1, 1, 1, 1]])
    >>> histogram_quantiles(hist, (0.5,)).tolist()
    [[nan], [0.5]]
    """
    lo, hi = value_range
    width = (hi - lo) / hist.shape[1]
    cdf = np.cumsum(hist, axis=1)
    counts = cdf[:, -1]
    out = np.full((hist.shape[0], len(quantiles)), np.nan)
    rows = np.flatnonzero(counts)
    for j, q in enumerate(quantiles):
        target = q * counts[rows]
        b = np.argmax(cdf[rows] >= target[:, None], axis=1)
        before = np.where(b > 0, cdf[rows, b - 1], 0)
        inside = hist[rows, b]
        frac = np.where(inside > 0, (target - before) / np.maximum(inside, 1), 0.5)
        out[rows, j] = lo + (b + np.clip(frac, 0.0, 1.0)) * width
    return out


def sums_by_label(labels: np.ndarray, values: np.ndarray, n_labels: int) -> np.ndarray:
    """Sum of ``values`` per label 0..n_labels (float64).

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    values : ndarray, shape (N,)
    n_labels : int

    Returns
    -------
    ndarray of float64, shape (n_labels + 1,)
    """
    sums = np.zeros(n_labels + 1)
    for part in chunks(values.size):  # bincount copies its weights to float64: chunk them
        sums += np.bincount(labels[part], weights=values[part], minlength=n_labels + 1)
    return sums


class VoxelSet:
    """Voxels of a region, given by flat (C-order) indices into the region.

    Region coordinates are computed once; flat indices into the full volume, for the memory
    layout of whichever image is read (C, F or any axis order), are derived from them on demand
    and cached.

    Parameters
    ----------
    index : ndarray of int
        Flat C-order indices into the region.
    region : tuple of slice
        The region inside the full volume.
    full_shape : tuple of int
        Shape of the full volume.
    """

    def __init__(
        self, index: np.ndarray, region: tuple[slice, ...], full_shape: tuple[int, ...]
    ) -> None:
        self.region = region
        self.full_shape = tuple(full_shape)
        self.shape = tuple(sl.stop - sl.start for sl in region)
        small = np.int32 if int(np.prod(self.shape)) < 2**31 else np.int64
        self.index = index.astype(small)
        coordinate = np.int16 if max(self.shape) < 2**15 else np.int32
        i, rest = np.divmod(self.index, self.shape[1] * self.shape[2])
        j, k = np.divmod(rest, self.shape[2])
        del rest
        self.ijk = (i.astype(coordinate), j.astype(coordinate), k.astype(coordinate))
        self._full: dict[tuple[int, ...], np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.index.size)

    def subset(self, keep: np.ndarray) -> VoxelSet:
        """The voxels a boolean mask or an index array selects (coordinates kept, not recomputed).

        Examples
        --------
        >>> cube = (slice(0, 2),) * 3
        >>> voxels = VoxelSet(np.array([0, 5, 7]), cube, (2, 2, 2))
        >>> chosen = voxels.subset(np.array([False, True, True]))
        >>> chosen.index.tolist(), [c.tolist() for c in chosen.ijk]
        ([5, 7], [[1, 1], [0, 1], [1, 1]])
        """
        chosen = object.__new__(VoxelSet)
        chosen.region, chosen.full_shape, chosen.shape = self.region, self.full_shape, self.shape
        chosen.index = self.index[keep]
        chosen.ijk = tuple(c[keep] for c in self.ijk)
        chosen._full = {}
        return chosen

    def full_index(self, steps: tuple[int, ...]) -> np.ndarray:
        """Flat indices of these voxels into an image's memory.

        ``steps`` are the image's element steps per axis
        (:func:`~mri_scoring.memory_layout.dense_steps`).
        """
        if steps not in self._full:
            wide = np.int32 if int(np.prod(self.full_shape)) < 2**31 else np.int64
            starts = [sl.start for sl in self.region]
            # A dense layout's steps are products of the faster axes' lengths, so the index is
            # built in place, slowest axis first (Horner): one array, no temporaries.
            axes = sorted(range(3), key=lambda axis: -steps[axis])
            index = self.ijk[axes[0]].astype(wide)
            index += wide(starts[axes[0]])
            for axis in axes[1:]:
                index *= wide(self.full_shape[axis])
                index += self.ijk[axis]
                index += wide(starts[axis])
            self._full[steps] = index
        return self._full[steps]

    def values(self, image: np.ndarray, part: slice = slice(None)) -> np.ndarray:
        """The image's values at these voxels (or a slice of them), read in place.

        A flipped or sliced view is copied first (quantify makes its images dense once).
        """
        return LazyValues(self, image)[part]

    def lazy(self, image: np.ndarray) -> LazyValues:
        """A view of the image's values at these voxels that reads only the slices asked for."""
        return LazyValues(self, image)


class LazyValues:
    """Values of an image at a :class:`VoxelSet`, read slice by slice on indexing.

    The image's flat indices are resolved when the view is made, so slices may be read from
    several threads at once.
    """

    def __init__(self, voxels: VoxelSet, image: np.ndarray) -> None:
        dense = dense_layout(image)
        self._memory = dense.ravel(order="K")
        self._index = voxels.full_index(dense_steps(dense))
        self.shape = (len(voxels),)

    def __getitem__(self, part: slice) -> np.ndarray:
        return self._memory[self._index[part]]


@dataclass(kw_only=True, frozen=True, eq=False)
class LabelledRegion:
    """What every measure reads of one study, built once by :func:`~.quantify.quantify`.

    Attributes
    ----------
    study : Study
        The study measured (files, voxel size, images).
    labels : ndarray of int
        Compact label map (1..n_labels) of the region around all labels.
    voxels : VoxelSet
        The labelled voxels of the region.
    label : ndarray of int
        Compact label of each labelled voxel.
    use_core : ndarray of bool
        Per labelled voxel: inside the eroded core (or in a label whose core is too small).
    kinds : ndarray of str
        Label kind per compact label (index 0 = background).
    is_muscle : ndarray of bool
        Per compact label: a muscle or a muscle group.
    shell : VoxelSet
        Background voxels of the exclusive peri-muscular shell of a muscle.
    shell_label : ndarray of int
        Compact label owning each shell voxel.
    images : dict of str to ndarray
        Images by role, each in a dense memory layout.
    n_labels : int
        Number of labels.
    threads : int
        Threads the measures may use for independent steps (1: none).
    """

    study: Any
    labels: np.ndarray
    voxels: VoxelSet
    label: np.ndarray
    use_core: np.ndarray
    kinds: np.ndarray
    is_muscle: np.ndarray
    shell: VoxelSet
    shell_label: np.ndarray
    images: dict[str, np.ndarray]
    n_labels: int
    threads: int = 1

    def gather(self, role: str, voxels: VoxelSet | None = None) -> np.ndarray:
        """float32 values of image ``role`` at ``voxels`` (default: the labelled voxels).

        Loaded images may keep their 16-bit integers; values are converted on reading.
        """
        voxels = self.voxels if voxels is None else voxels
        return voxels.values(self.images[role]).astype(np.float32, copy=False)

    def file(self, role: str, fallback: str | None = None) -> str:
        """The file an image role was read from, for QC findings ("" for in-memory studies)."""
        files = self.study.files
        if fallback is not None:
            return str(files.get(role, files.get(fallback, "")))
        return str(files.get(role, ""))
