"""Coverage and cross-sections: which muscles the stack holds whole, and their area per slice.

A muscle with labelled voxels in the first or last slice of the stack, or on an in-plane edge of
the grid, continues beyond the field of view: its labelled volume is a part of the muscle, so
no volume-based measure (atrophy, share of the labelled volume) may be read from it. The label
boxes already say this: a box that reaches a face of the grid has a voxel on that face.

The stack axis is the array axis closest to the world superior-inferior direction (RAS+ z);
per-slice areas are in the plane of the slices (for an oblique stack, not perpendicular to the
muscle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .voxel_sets import LabelledRegion, chunks

__all__ = [
    "FIRST_SLICE",
    "IN_PLANE",
    "LAST_SLICE",
    "Coverage",
    "SliceAreas",
    "label_coverage",
    "slice_areas",
    "stack_axis",
]

FIRST_SLICE, LAST_SLICE, IN_PLANE = "first_slice", "last_slice", "in_plane"


def stack_axis(affine: np.ndarray) -> int:
    """Array axis whose direction is closest to world superior-inferior (z in RAS+).

    Examples
    --------
    >>> stack_axis(np.diag([0.8, 0.8, 5.0, 1.0]))
    2
    """
    columns = np.asarray(affine, float)[:3, :3]
    directions = columns / np.maximum(np.linalg.norm(columns, axis=0), 1e-12)
    return int(np.argmax(np.abs(directions[2])))


@dataclass(frozen=True)
class Coverage:
    """Where each label meets the edge of the grid.

    Attributes
    ----------
    axis : int
        The stack axis (:func:`stack_axis`).
    cuts : list of tuple of str
        Per compact label 1..K (index 0 = label 1): the faces it touches, any of
        ``first_slice``, ``last_slice``, ``in_plane``; empty when the label is fully covered.
    superior_last : bool
        True when the last slice is the superior (proximal) end of the stack.
    """

    axis: int
    cuts: list[tuple[str, ...]]
    superior_last: bool

    def partial(self, index: int) -> bool:
        """True when compact label ``index + 1`` is cut by the field of view."""
        return bool(self.cuts[index])

    def reason(self, index: int) -> str:
        """Plain words for where compact label ``index + 1`` is cut ("" if fully covered)."""
        ends = {FIRST_SLICE: "first", LAST_SLICE: "last"}
        words = []
        for cut in self.cuts[index]:
            if cut == IN_PLANE:
                words.append("the in-plane edge of the field of view")
            else:
                proximal = (cut == LAST_SLICE) == self.superior_last
                end = "proximal" if proximal else "distal"
                words.append(f"the {ends[cut]} slice of the stack ({end} end)")
        if not words:
            return ""
        return "partial coverage: labelled voxels in " + " and ".join(words)


def label_coverage(boxes: list, shape: tuple[int, ...], affine: np.ndarray) -> Coverage:
    """Coverage of every label from its bounding box.

    Parameters
    ----------
    boxes : list of tuple of slice or None
        Bounding box per compact label (``Study.label_boxes``).
    shape : tuple of int
        Grid shape.
    affine : ndarray, shape (4, 4)
        Voxel-to-world transform (RAS+).

    Returns
    -------
    Coverage

    Examples
    --------
    >>> box = (slice(3, 9), slice(2, 5), slice(0, 4))
    >>> label_coverage([box], (20, 20, 10), np.eye(4)).cuts
    [('first_slice',)]
    """
    axis = stack_axis(affine)
    cuts = []
    for box in boxes:
        touched: list[str] = []
        if box is not None:
            if box[axis].start == 0:
                touched.append(FIRST_SLICE)
            if box[axis].stop == shape[axis]:
                touched.append(LAST_SLICE)
            for other in range(len(shape)):
                if other != axis and (box[other].start == 0 or box[other].stop == shape[other]):
                    touched.append(IN_PLANE)
                    break
        cuts.append(tuple(touched))
    return Coverage(axis, cuts, bool(np.asarray(affine)[2, axis] > 0))


@dataclass(frozen=True, eq=False)
class SliceAreas:
    """Per-label, per-slice cross-sections of one study.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per label and slice it appears in: ``label`` (original value), ``slice`` (index
        along the stack axis), ``z_mm`` (world z of the slice centre), ``area_cm2``, ``ff_mean``
        (whole-mask mean fat fraction in that slice; NaN without an FF source).
    max_csa_cm2 : ndarray
        Largest cross-section per compact label (index 0 = background), cm2.
    """

    table: pd.DataFrame
    max_csa_cm2: np.ndarray


def slice_areas(region: LabelledRegion, ff: np.ndarray | None, axis: int) -> SliceAreas:
    """Area and mean fat fraction of every label in every slice (one bincount pass).

    Parameters
    ----------
    region : LabelledRegion
        The study's labelled voxels.
    ff : ndarray or None
        Fat fraction per labelled voxel (NaN: not measured), or None.
    axis : int
        Stack axis.

    Returns
    -------
    SliceAreas
    """
    study = region.study
    n = region.n_labels + 1
    n_slices = study.shape[axis]
    offset = region.voxels.region[axis].start
    count = np.zeros(n * n_slices, np.int64)
    ff_sum = np.zeros(n * n_slices)
    ff_count = np.zeros(n * n_slices, np.int64)
    coordinate = region.voxels.ijk[axis]
    for part in chunks(len(region.voxels)):
        key = region.label[part].astype(np.intp) * n_slices
        key += coordinate[part]
        key += offset
        count += np.bincount(key, minlength=count.size)
        if ff is not None:
            values = ff[part]
            ok = np.isfinite(values)
            ff_sum += np.bincount(key[ok], weights=values[ok], minlength=count.size)
            ff_count += np.bincount(key[ok], minlength=count.size)
    columns = np.asarray(study.affine, float)[:3, :3]
    in_plane = [a for a in range(3) if a != axis]
    voxel_area_cm2 = (
        float(np.linalg.norm(np.cross(columns[:, in_plane[0]], columns[:, in_plane[1]]))) / 100.0
    )
    count = count.reshape(n, n_slices)
    labels, slices = np.nonzero(count[1:])
    centre = (np.asarray(study.shape, float) - 1.0) / 2.0
    z0 = float(study.affine[2, :3] @ centre + study.affine[2, 3])
    z_mm = z0 + (slices - centre[axis]) * float(study.affine[2, axis])
    with np.errstate(invalid="ignore", divide="ignore"):
        ff_mean = (ff_sum / ff_count).reshape(n, n_slices)[labels + 1, slices]
    table = pd.DataFrame(
        {
            "label": study.label_values[labels].astype(int),
            "slice": slices.astype(int),
            "z_mm": z_mm,
            "area_cm2": count[labels + 1, slices] * voxel_area_cm2,
            "ff_mean": ff_mean if ff is not None else np.nan,
        }
    )
    return SliceAreas(table, count.max(axis=1) * voxel_area_cm2)
