"""Where labels lie: the body midline, sides from anatomy, and unsided labels split in two.

Pure functions of a label map on the RAS+ grid (voxel axis 0 runs from the patient's left to
right, axis 1 from posterior to anterior) and its affine. Nothing here reads files.

The midline is found from the anatomy, not assumed at world x = 0: a patient lying off-centre
moves both thighs and the gap between them. Two thighs leave a gap (or a deep trough) in the
left-right profile of labelled voxels; the midline is its deepest point. When both sides carry
named labels, the midpoint between the left- and right-named muscles' centres stands in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import schema
from ..anatomy import GROUP, MUSCLE, SIDES, LabelInfo, SchemeMatch
from ..config import Settings
from ..errors import QCFinding, StudyError
from .label_profiles import LabelProfiles, label_profiles
from .tables import shown_values

__all__ = [
    "SideCheck",
    "check_sides",
    "midline_index",
    "resolve_geometry",
    "split_offset",
    "split_unsided",
    "world_x",
]


def midline_index(profile: np.ndarray, trough_ratio: float) -> float | None:
    """The voxel index (axis 0) of the gap between two thighs, or None if there is no gap.

    Parameters
    ----------
    profile : ndarray, shape (X,)
        Labelled muscle voxels per left-right slab.
    trough_ratio : float
        The deepest point between the two masses must hold at most this share of the smaller
        of the two peaks (0.25 in the settings): a profile without such a trough is one thigh.

    Returns
    -------
    float or None
        Index of the deepest point (the middle of a flat run of zeros).

    Examples
    --------
    >>> midline_index(np.array([0, 5, 9, 4, 0, 0, 3, 8, 6, 0]), 0.25)
    4.5
    >>> midline_index(np.array([0, 5, 9, 9, 5, 0]), 0.25) is None
    True
    """
    profile = np.asarray(profile, dtype=float)
    total = profile.sum()
    if total <= 0:
        return None
    cumulative = np.cumsum(profile) / total
    lo = int(np.searchsorted(cumulative, 0.2))
    hi = int(np.searchsorted(cumulative, 0.8))
    if hi - lo < 2:
        return None
    inner = profile[lo : hi + 1]
    deepest = inner.min()
    where = np.flatnonzero(inner == deepest) + lo
    # The run of deepest slabs nearest the middle of the mass.
    middle = int(np.searchsorted(cumulative, 0.5))
    runs = np.split(where, np.flatnonzero(np.diff(where) > 1) + 1)
    run = min(runs, key=lambda r: abs((r[0] + r[-1]) / 2 - middle))
    centre = (run[0] + run[-1]) / 2
    left_peak = profile[: run[0] + 1].max()
    right_peak = profile[run[-1] :].max()
    if deepest > trough_ratio * min(left_peak, right_peak):
        return None
    return float(centre)


def world_x(affine: np.ndarray, index_x: float, shape: tuple[int, ...]) -> float:
    """World x (mm) of voxel-axis-0 position ``index_x`` at the centre of the other axes."""
    point = np.array([index_x, (shape[1] - 1) / 2, (shape[2] - 1) / 2, 1.0])
    return float(affine[0] @ point)


@dataclass(frozen=True)
class SideCheck:
    """The outcome of comparing label names' sides with where the labels lie.

    Attributes
    ----------
    midline_index : float or None
        Voxel index (axis 0) of the body midline, None when it could not be found.
    midline_source : str
        ``"gap"`` (the trough between the thighs), ``"named_sides"`` (midpoint between the
        left- and right-named muscles) or ``""``.
    wrong : tuple of int
        Sided label values lying mostly on the other side of the midline.
    both_sides : tuple of int
        Sided label values with a large share of their voxels on each side.
    """

    midline_index: float | None
    midline_source: str
    wrong: tuple[int, ...]
    both_sides: tuple[int, ...]


def check_sides(
    profiles: LabelProfiles,
    sides: dict[int, str],
    muscle_values: set[int],
    trough_ratio: float,
    straddle_share: float,
) -> SideCheck:
    """Compare each sided label with the body midline found from the anatomy.

    Parameters
    ----------
    profiles : LabelProfiles
        From :func:`label_profiles`.
    sides : dict of int -> str
        Label value -> ``"left"``, ``"right"`` or ``""`` (unsided).
    muscle_values : set of int
        Values that are muscles or compartments (the midline is found from these).
    trough_ratio : float
        See :func:`midline_index`.
    straddle_share : float
        A sided label with more than this share of its voxels on each side of the midline lies
        in both thighs.

    Returns
    -------
    SideCheck
        RAS+: voxel index below the midline is the patient's left.
    """
    rows = {int(v): i for i, v in enumerate(profiles.values)}
    muscle_rows = [rows[v] for v in muscle_values if v in rows]
    midline, source = None, ""
    if muscle_rows:
        midline = midline_index(profiles.lr[muscle_rows].sum(axis=0), trough_ratio)
        source = "gap" if midline is not None else ""
    if midline is None:
        centres = {
            side: [profiles.centre_index(rows[v]) for v, s in sides.items() if s == side]
            for side in ("left", "right")
        }
        if centres["left"] and centres["right"]:
            midline = (np.mean(centres["left"]) + np.mean(centres["right"])) / 2
            source = "named_sides"
    if midline is None:
        return SideCheck(None, "", (), ())
    wrong, both = [], []
    cut = int(np.floor(midline)) + 1  # slabs [0, cut) lie on the left
    for value, side in sorted(sides.items()):
        if side not in ("left", "right") or value not in rows:
            continue
        counts = profiles.lr[rows[value]]
        total = max(int(counts.sum()), 1)
        left_share = float(counts[:cut].sum()) / total
        if min(left_share, 1.0 - left_share) > straddle_share:
            both.append(value)
        elif (side == "left") != (left_share > 0.5):
            wrong.append(value)
    return SideCheck(float(midline), source, tuple(wrong), tuple(both))


def split_unsided(
    labels: np.ndarray, values: list[int], midline: float, offset: int
) -> dict[int, tuple[int, int]]:
    """Split labels that cover both thighs into a left and a right label, in place.

    Voxels at voxel-axis-0 index up to the midline (the patient's left in RAS+) get the value
    ``value + offset``; the right side keeps ``value``.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        Label map on the RAS+ grid; modified in place (its dtype must hold ``value + offset``).
    values : list of int
        Unsided label values to split.
    midline : float
        Voxel index (axis 0) of the body midline.
    offset : int
        Added to the value of each label's left part.

    Returns
    -------
    dict of int -> (int, int)
        Original value -> (left value, right value), for the labels that had voxels on both
        sides; a label found on one side only is left as it is.

    Examples
    --------
    >>> labels = np.array([[[3]], [[3]], [[0]], [[3]]])
    >>> split_unsided(labels, [3], 1.5, 100)
    {3: (103, 3)}
    >>> labels.ravel().tolist()
    [103, 103, 0, 3]
    """
    cut = int(np.floor(midline)) + 1
    left_part, right_part = labels[:cut], labels[cut:]
    split = {}
    for value in values:
        on_left = left_part == value
        if on_left.any() and (right_part == value).any():
            left_part[on_left] = value + offset
            split[value] = (value + offset, value)
    return split


def split_offset(values: set[int]) -> int:
    """The power of ten above every label value: the offset given to split left labels.

    Examples
    --------
    >>> split_offset({1, 11}), split_offset({5, 99})
    (100, 100)
    """
    high = max(values, default=0)
    return int(10 ** len(str(high)))


def resolve_geometry(
    labels: np.ndarray,
    profiles: LabelProfiles,
    affine: np.ndarray,
    info: dict[int, LabelInfo],
    identified: SchemeMatch | None,
    label_path: Path,
    qc: list[QCFinding],
    settings: Settings,
) -> tuple[np.ndarray, dict[int, LabelInfo], LabelProfiles]:
    """Check sides against the anatomy; split unsided labels; confirm a guessed scheme.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        The label map on the RAS+ grid (unsided labels are split in place, or in a wider copy
        when the left values would not fit its dtype).
    profiles : LabelProfiles
        Counts of the map as given (:func:`.label_profiles.label_profiles`; rows for at least
        the values present).
    affine : ndarray, shape (4, 4)
        Voxel -> world (RAS+, mm).
    info : dict of int -> LabelInfo
        Meaning of every value (extended with the split labels).
    identified : SchemeMatch or None
        The scheme guessed from the values alone, if it was.
    label_path : Path
        Named in messages.
    qc : list of QCFinding
        Findings are appended here.
    settings : Settings
        ``load.midline_trough_ratio``, ``load.side_straddle_share``.

    Returns
    -------
    labels : ndarray
    info : dict of int -> LabelInfo
    profiles : LabelProfiles
        Counts of the returned map, one row per value of ``info`` in sorted order (counted
        again when labels were split).

    Raises
    ------
    StudyError
        A small-integer scheme guessed without a table whose geometry disagrees.

    Notes
    -----
    Sides are judged against the body midline found from the labels (the gap between the
    thighs), never against world x = 0, so a patient lying off-centre is not a side mismatch.
    A small-integer scheme guessed from the values alone is refused when its sided labels do
    not lie where the scheme says (an unsided map read as one side, or sides reversed).
    Unsided muscle labels that lie in both thighs are split at the midline into a left part
    (value + offset) and a right part (value).
    """
    load = settings["load"]
    values = np.array(sorted(info), dtype=np.int64)
    profiles = profiles.select(values)
    muscles = {v for v, i in info.items() if i.kind in (MUSCLE, GROUP)}
    sides = {v: i.side for v, i in info.items() if i.kind in (MUSCLE, GROUP)}
    check = check_sides(
        profiles, sides, muscles, load["midline_trough_ratio"], load["side_straddle_share"]
    )
    if identified is not None and identified.small_integer and (check.wrong or check.both_sides):
        problems = check.both_sides or check.wrong
        where = "lie in both thighs" if check.both_sides else "lie on the other side"
        raise StudyError(
            f"no label table, and the values look like the {identified.name} scheme, but its "
            f"sided labels {where} (values {shown_values(list(problems), 6)}): the map may use "
            "another scheme (e.g. unsided labels 1-11); add its label table (labels.tsv, columns "
            "index and name) or name the scheme with --labels",
            label_path,
        )
    unsided = sorted(v for v, s in sides.items() if s == "")
    if unsided and check.midline_index is not None:
        offset = split_offset(set(info))
        if int(values.max()) + offset > np.iinfo(labels.dtype).max:
            labels = labels.astype(np.int32)
        split = split_unsided(labels, unsided, check.midline_index, offset)
        for value, (left_value, right_value) in split.items():
            base = info[value]
            info[left_value] = dataclasses.replace(base, value=left_value, side="left")
            info[right_value] = dataclasses.replace(base, side="right")
        if split:
            x_mm = world_x(affine, check.midline_index, labels.shape)
            source = check.midline_source.replace("_", " ")
            qc.append(
                QCFinding(
                    "info",
                    schema.UNSIDED_LABELS_SPLIT,
                    f"{len(split)} unsided labels lie in both thighs and were split at the body "
                    f"midline (x = {x_mm:+.0f} mm, from the {source}): right parts keep their "
                    f"values, left parts carry value + {offset}",
                    str(label_path),
                )
            )
            profiles = label_profiles(labels, np.array(sorted(info), dtype=np.int64))
        return labels, info, profiles
    if check.midline_index is None:
        if any(s in SIDES for s in sides.values()):
            qc.append(
                QCFinding(
                    "info",
                    schema.SIDE_CHECK_SKIPPED,
                    "sides not checked: no gap between two thighs and no muscles named on both "
                    "sides to find the body midline from",
                    str(label_path),
                )
            )
        return labels, info, profiles
    wrong = [*check.wrong, *check.both_sides]
    if wrong:
        x_mm = world_x(affine, check.midline_index, labels.shape)
        names = [info[v].name for v in wrong]
        qc.append(
            QCFinding(
                "warning",
                schema.SIDE_MISMATCH,
                "muscles lie on the other side of the body midline (x = "
                f"{x_mm:+.0f} mm, RAS+: the patient's left is toward -x) from their name: "
                f"{shown_values(names, 8)}; check the label table or the image orientation",
                str(label_path),
            )
        )
    return labels, info, profiles
