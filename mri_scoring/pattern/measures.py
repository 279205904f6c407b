"""The one registry of template measures: name → how it is computed from a muscle table.

A template feature names a measure (``ff_excess``, ``edema_fraction``, ...). :data:`MEASURES`
maps each name to its function and to the muscle-table column it reads; the template loader
validates names against it and :func:`mri_scoring.pattern.match.match` calls through it. To add
a measure, add one entry here (and document it in the template's comments).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import schema
from ..anatomy import GROUP, MUSCLE, group_of, groups
from ..config import Settings

if TYPE_CHECKING:
    from .templates import Feature


__all__ = [
    "FLOOR_COLUMNS",
    "MEASURES",
    "PER_MUSCLE_COLUMNS",
    "Measure",
    "Unavailable",
    "prepare",
]


class Unavailable(Exception):
    """Raised by a measure when the table cannot support it (the reason is the message)."""


PER_MUSCLE_COLUMNS: dict[str, str] = {
    "edema_fraction": "edema_fraction",
    "fascial_edema_fraction": "fascial_edema_fraction",
    "ff_median": "ff_median",
    "atrophy": "atrophy_loss",
}
"""Per-muscle measures a ``share_involved``/``involvement`` feature may threshold, and the
prepared-table column each reads (``atrophy_loss`` = 1 - ``atrophy_index``)."""


def _expand(names: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for name in names:
        for muscle in groups().get(name, (name,)):
            if muscle not in out:
                out.append(muscle)
    return out


def _side_values(table: pd.DataFrame, column: str, rule: str) -> pd.Series:
    """One value per row key (muscle, or group:<name>), the sides combined by ``rule``.

    On numpy arrays (a key has at most its two sides): pandas' groupby per feature and
    template was most of a study's pattern matching.
    """
    values = table[column].to_numpy(float)
    finite = np.isfinite(values)
    if not finite.any():
        return pd.Series(dtype=float)
    keys, at = np.unique(table["key"].to_numpy(str)[finite], return_inverse=True)
    values = values[finite]
    if rule == "mean":
        combined = np.bincount(at, weights=values) / np.bincount(at)
    else:
        combined = np.full(len(keys), -np.inf if rule == "max" else np.inf)
        (np.maximum if rule == "max" else np.minimum).at(combined, at, values)
    return pd.Series(combined, index=pd.Index(keys.tolist(), name="key"), name=column)


def _voxels_per_key(rows: pd.DataFrame, keys: pd.Index) -> np.ndarray:
    """Labelled voxels of each of ``keys`` over all its rows (both sides)."""
    every, at = np.unique(rows["key"].to_numpy(str), return_inverse=True)
    totals = np.bincount(at, weights=rows["voxels"].to_numpy(float))
    return totals[np.searchsorted(every, np.asarray(keys, str))]


def _rows(table: pd.DataFrame, names: tuple[str, ...], fallback: bool) -> pd.DataFrame:
    """Rows for the listed muscles and groups.

    A listed group none of whose muscles is labelled is stood in for by its compartment row
    (e.g. TotalSegmentator's posterior compartment for ``hamstrings``); with ``fallback``, so is
    a listed muscle that is missing, by its group's compartment.
    """
    kind, muscle = table["kind"].to_numpy(str), table["muscle"].to_numpy(str)
    listed = np.flatnonzero((kind == MUSCLE) & np.isin(muscle, _expand(names)))
    present = set(muscle[listed])
    stand_ins = set()
    for name in names:
        members = groups().get(name)
        if members is not None:
            if not present.intersection(members):
                stand_ins.add(name)
        elif fallback and name not in present and group_of(name):
            stand_ins.add(group_of(name))
    compartments = np.flatnonzero((kind == GROUP) & np.isin(muscle, sorted(stand_ins)))
    return table.iloc[np.concatenate([listed, compartments])]


def _why_empty(rows: pd.DataFrame, column: str, names: tuple[str, ...]) -> str:
    """Why no row has a value: cut by the field of view (the table says so), or no input."""
    cut = rows["qc_flags"].astype(str).str.contains(schema.PARTIAL_COVERAGE)
    if column == "atrophy_loss" and cut.all():  # only volume needs the whole muscle
        note = rows["atrophy_note"].iloc[0] if "atrophy_note" in rows else "partial coverage"
        return f"not assessable for {', '.join(sorted(set(rows['key'])))}: {note}"
    return f"no {column} for {', '.join(names)} (input image missing)"


def _aggregate(
    table: pd.DataFrame, feature: Feature, names: tuple[str, ...], column: str
) -> tuple[float, list[str]]:
    """Voxel-weighted mean over the listed muscles of ``column`` (sides combined first)."""
    rows = _rows(table, names, feature.group_fallback)
    if rows.empty:
        raise Unavailable(f"no labelled muscle among {', '.join(names)}")
    values = _side_values(rows, column, feature.sides)
    if values.empty:
        raise Unavailable(_why_empty(rows, column, names))
    weights = _voxels_per_key(rows, values.index)
    return float(np.average(values, weights=weights)), sorted(values.index)


def _ff_difference(
    table: pd.DataFrame, feature: Feature, settings: Settings, excess: bool
) -> tuple[float, list[str]]:
    target, used = _aggregate(table, feature, feature.muscles, "ff_median")
    reference, used_ref = _aggregate(table, feature, feature.reference, "ff_median")
    if excess:
        reference = max(reference, settings["quantify"]["healthy_ff_ceiling"])
    return target - reference, used + [f"reference:{m}" for m in used_ref]


def _share_involved(
    table: pd.DataFrame, feature: Feature, settings: Settings
) -> tuple[float, list[str]]:
    """Mean over the listed muscles of the per-muscle degree (the max over per-muscle cuts)."""
    rows = _rows(table, feature.muscles, feature.group_fallback)
    if rows.empty:
        raise Unavailable(f"no labelled muscle among {', '.join(feature.muscles)}")
    degrees = None
    for measure, cut in feature.per_muscle.items():
        values = _side_values(rows, PER_MUSCLE_COLUMNS[measure], feature.sides)
        if values.empty:
            continue
        d = values.map(cut.degree)
        degrees = d if degrees is None else pd.concat([degrees, d], axis=1).max(axis=1)
    if degrees is None or degrees.empty:
        raise Unavailable(
            f"no {'/'.join(feature.per_muscle)} for the listed muscles (input image missing)"
        )
    return float(degrees.mean()), sorted(degrees.index)


def _per_key(rows: pd.DataFrame, column: str, rule: str) -> pd.Series:
    """One value per key, sides combined by ``rule`` (the empty series when none is measured)."""
    if rows.empty or column not in rows:
        return pd.Series(dtype=float)
    return _side_values(rows, column, rule)


def _asymmetric_pairs(
    table: pd.DataFrame, feature: Feature, settings: Settings
) -> tuple[float, list[str]]:
    """Muscles whose right-minus-left difference passes a noise floor in any floored column.

    A pair is compared only where both sides are measured; its value is the count (0, 1, ...).
    """
    rows = _rows(table, feature.muscles, feature.group_fallback)
    keys, sides = rows["key"].to_numpy(), rows["side"].to_numpy()
    compared: set[str] = set()
    asymmetric: set[str] = set()
    for column, floor in feature.floors.items():
        if column not in rows:
            continue
        by_side: dict[tuple[str, str], float] = {}
        for key, side, value in zip(keys, sides, rows[column].to_numpy(float), strict=True):
            if side in ("left", "right") and np.isfinite(value):
                by_side[(key, side)] = value
        for key in {k for k, _ in by_side}:
            if (key, "left") in by_side and (key, "right") in by_side:
                compared.add(key)
                if abs(by_side[(key, "right")] - by_side[(key, "left")]) >= floor:
                    asymmetric.add(key)
    if not compared:
        raise Unavailable(f"no muscle among {', '.join(feature.muscles)} measured on both sides")
    return float(len(asymmetric)), sorted(compared)


def _sparing_index(
    table: pd.DataFrame, feature: Feature, settings: Settings
) -> tuple[float, list[str]]:
    """Median FF of the listed muscles minus median FF of the reference (spared) muscles."""
    medians, used = [], []
    for names, prefix in ((feature.muscles, ""), (feature.reference, "reference:")):
        values = _per_key(_rows(table, names, feature.group_fallback), "ff_median", feature.sides)
        if values.empty:
            raise Unavailable(f"no fat fraction for any of {', '.join(names)}")
        medians.append(float(np.median(values.to_numpy(float))))
        used += [f"{prefix}{m}" for m in sorted(values.index)]
    return medians[0] - medians[1], used


def _edema_fat_ratio(
    table: pd.DataFrame, feature: Feature, settings: Settings
) -> tuple[float, list[str]]:
    """Muscles with edema (past the edema floor) per muscle with fat (FF-derived grade floor)."""
    rows = _rows(table, feature.muscles, feature.group_fallback)
    edema = _per_key(rows, "edema_fraction", feature.sides)
    grade = _per_key(rows, "mercuri_grade", feature.sides)
    if edema.empty:
        raise Unavailable(f"no edema fraction for {', '.join(feature.muscles)} (no STIR/T2 map)")
    if grade.empty:
        raise Unavailable(f"no fat fraction for {', '.join(feature.muscles)}")
    fatty = int((grade >= feature.floors["mercuri_grade"]).sum())
    if fatty == 0:
        raise Unavailable(
            f"no fatty muscle (FF-derived grade >= {feature.floors['mercuri_grade']:g}) among "
            f"{len(grade)} measured: edema per fatty muscle is undefined"
        )
    edematous = int((edema >= feature.floors["edema_fraction"]).sum())
    return edematous / fatty, sorted(set(edema.index) | set(grade.index))


def _subcutaneous_edema(
    compartments: pd.DataFrame, feature: Feature, settings: Settings
) -> tuple[float, list[str]]:
    """STIR edema share of the subcutaneous fat (``compartments.tsv``), sides by the rule."""
    rows = compartments[compartments["compartment"] == "subcutaneous"]
    values = rows["edema_fraction"].astype(float)
    finite = rows[np.isfinite(values)]
    if finite.empty:
        notes = sorted({str(n) for n in rows.get("note", pd.Series(dtype=str)) if str(n)})
        raise Unavailable("; ".join(notes) or "no subcutaneous fat found: edema not measured")
    value = float(finite["edema_fraction"].astype(float).agg(feature.sides))
    return value, [f"subcutaneous:{side}" for side in sorted(finite["side"])]


def _edema_sparing(
    table: pd.DataFrame, feature: Feature, settings: Settings
) -> tuple[float, list[str]]:
    """Reference muscles' edema minus the listed muscles' (a study with muscle edema only)."""
    target, used = _aggregate(table, feature, feature.muscles, "edema_fraction")
    reference, used_ref = _aggregate(table, feature, feature.reference, "edema_fraction")
    if feature.applies_from is not None and reference < feature.applies_from:
        raise Unavailable(
            f"the comparison muscles' edema fraction is {reference:.2f}, below "
            f"{feature.applies_from:g}: no muscle edema, so sparing is not defined"
        )
    return reference - target, used + [f"reference:{m}" for m in used_ref]


def _symmetry(table: pd.DataFrame, feature: Feature, settings: Settings) -> tuple[float, list[str]]:
    """1 - sum|d_left - d_right| / sum max(d_left, d_right) of per-muscle involvement degrees.

    The degrees are the feature's per-muscle cuts (the maximum over them), read per side; 1 is
    perfectly symmetric involvement, 0 one-sided. Muscles labelled on one side only are left
    out; fewer involved muscles than ``applies_from`` leave it undefined.
    """
    rows = _rows(table, feature.muscles, feature.group_fallback)
    rows = rows[rows["side"].isin(("left", "right"))]
    keys, sides = rows["key"].to_numpy(), rows["side"].to_numpy()
    degree: dict[tuple[str, str], float] = {}  # (key, side) -> the largest degree over the cuts
    for measure, cut in feature.per_muscle.items():
        values = rows[PER_MUSCLE_COLUMNS[measure]].to_numpy(float)
        z = np.clip((values - cut.threshold) / cut.width, -50.0, 50.0)
        degrees = 1.0 / (1.0 + np.exp(-z))  # SoftCut.degree, vectorised
        for key, side, value, d in zip(keys, sides, values, degrees, strict=True):
            if np.isfinite(value):
                degree[(key, side)] = max(degree.get((key, side), 0.0), float(d))
    if not degree:
        raise Unavailable(f"no per-side {'/'.join(feature.per_muscle)} for the listed muscles")
    both = sorted({k for k, _ in degree if (k, "left") in degree and (k, "right") in degree})
    if not both:
        raise Unavailable("no listed muscle measured on both sides")
    left = np.array([degree[(k, "left")] for k in both])
    right = np.array([degree[(k, "right")] for k in both])
    involved = float(np.maximum(left, right).sum())
    if involved < (feature.applies_from or 1e-9):
        raise Unavailable(
            f"involvement {involved:.1f} muscles (sum of degrees) below {feature.applies_from:g}: "
            "symmetry is not defined without involvement"
        )
    return 1.0 - float(np.abs(left - right).sum()) / involved, both


def _column(column: str) -> Callable[..., tuple[float, list[str]]]:
    def measure(
        table: pd.DataFrame, feature: Feature, settings: Settings
    ) -> tuple[float, list[str]]:
        return _aggregate(table, feature, feature.muscles, column)

    return measure


@dataclass(kw_only=True, frozen=True)
class Measure:
    """One registry entry.

    Attributes
    ----------
    compute : callable
        ``compute(prepared_table, feature, settings) -> (value, muscles_used)``; raises
        :class:`Unavailable` when the table cannot support it.
    column : str
        The prepared-table column it reads ("" for the per-muscle-degree measures).
    needs_reference : bool
        The feature must list ``reference`` muscles.
    per_muscle : str
        ``""``; ``"one"`` (``share_involved``: exactly one per-muscle cut) or ``"any"``
        (``involvement``: one or more cuts, the maximum degree counts).
    description : str
        What the value means, with its unit.
    floors : tuple of str
        Columns the feature must give a floor for (``floors: {column: value}``); empty when
        the measure takes none, ``("any",)`` when it takes one or more of :data:`FLOOR_COLUMNS`.
    reads : str
        ``muscles`` (the prepared muscle table) or ``compartments`` (``compartments.tsv``;
        such a feature lists no muscles).
    """

    compute: Callable[..., tuple[float, list[str]]]
    column: str
    needs_reference: bool = False
    per_muscle: str = ""
    description: str = ""
    floors: tuple[str, ...] = ()
    reads: str = "muscles"


MEASURES: dict[str, Measure] = {
    "ff_excess": Measure(
        compute=lambda t, f, s: _ff_difference(t, f, s, excess=True),
        column="ff_median",
        needs_reference=True,
        description="target FF minus max(reference FF, healthy ceiling), fraction",
    ),
    "ff_contrast": Measure(
        compute=lambda t, f, s: _ff_difference(t, f, s, excess=False),
        column="ff_median",
        needs_reference=True,
        description="target FF minus reference FF, fraction",
    ),
    "edema_fraction": Measure(
        compute=_column("edema_fraction"),
        column="edema_fraction",
        description="share of the muscle with edema-like signal, 0-1",
    ),
    "fascial_edema_fraction": Measure(
        compute=_column("fascial_edema_fraction"),
        column="fascial_edema_fraction",
        description="share of the fascial shell with edema-like signal, 0-1",
    ),
    "atrophy": Measure(
        compute=_column("atrophy_loss"),
        column="atrophy_loss",
        description="1 - atrophy index (share of expected volume missing), 0-1",
    ),
    "share_involved": Measure(
        compute=_share_involved,
        column="",
        per_muscle="one",
        description="mean per-muscle degree over the listed muscles, 0-1",
    ),
    "involvement": Measure(
        compute=_share_involved,
        column="",
        per_muscle="any",
        description="mean per-muscle degree (max over cuts), 0-1",
    ),
    "asymmetric_pairs": Measure(
        compute=_asymmetric_pairs,
        column="",
        floors=("any",),
        description="muscles whose right-minus-left difference passes a floor, count",
    ),
    "sparing_index": Measure(
        compute=_sparing_index,
        column="ff_median",
        needs_reference=True,
        description="median FF of the muscles minus median FF of the reference, fraction",
    ),
    "edema_fat_ratio": Measure(
        compute=_edema_fat_ratio,
        column="",
        floors=("edema_fraction", "mercuri_grade"),
        description="muscles with edema per muscle with FF-derived grade at the floor, ratio",
    ),
    "subcutaneous_edema_fraction": Measure(
        compute=_subcutaneous_edema,
        column="edema_fraction",
        reads="compartments",
        description="share of the subcutaneous fat with edema-like STIR signal, 0-1",
    ),
    "edema_sparing": Measure(
        compute=_edema_sparing,
        column="edema_fraction",
        needs_reference=True,
        description="reference muscles' edema fraction minus the listed muscles', 0-1",
    ),
    "lr_symmetry": Measure(
        compute=_symmetry,
        column="",
        per_muscle="any",
        description="1 - summed left/right difference of per-muscle involvement over the "
        "summed worse side, 0-1 (1 = symmetric)",
    ),
}
"""Every measure a template feature may name."""

FLOOR_COLUMNS = ("ff_median", "edema_fraction", "mercuri_grade")
"""Columns a feature's ``floors`` may name (a per-muscle value counts at or above its floor)."""


def prepare(table: pd.DataFrame) -> pd.DataFrame:
    """Muscle and group rows of a graded table with the ``key`` and ``atrophy_loss`` columns."""
    out = table[table["kind"].isin((MUSCLE, GROUP))].copy()
    out["key"] = np.where(out["kind"] == GROUP, "group:" + out["muscle"], out["muscle"])
    out["atrophy_loss"] = 1.0 - out["atrophy_index"].astype(float)
    return out
