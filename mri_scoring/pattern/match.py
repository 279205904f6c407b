"""Matching a graded muscle table against a pattern template: one evidence record per feature.

Each feature names a measure (an explicit registry below, no name-based reflection), the muscles
or groups it reads, how the two sides combine, and a soft threshold. A feature whose muscles or
inputs are missing is unavailable and says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ..anatomy import GROUP, MUSCLE, group_of, groups
from ..config import Settings, load_settings
from .templates import Feature, Template


@dataclass(frozen=True)
class Evidence:
    """What one feature found in one study.

    Attributes
    ----------
    id, description, source : str
        From the template.
    available : bool
        False when the muscles or the input the measure needs are missing.
    value : float or None
        The measured value (units of the measure).
    degree : float or None
        Soft degree 0-1 that the feature is present.
    muscles_used : list of str
        Rows that entered the value (``muscle`` or ``group:<name>`` for compartment labels).
    reason : str
        Why the feature is unavailable (empty otherwise).
    """

    id: str
    description: str
    available: bool
    value: float | None
    degree: float | None
    muscles_used: list[str]
    reason: str
    source: str

    def to_dict(self) -> dict:
        return asdict(self)


class Unavailable(Exception):
    """Raised by a measure when the table cannot support it."""


def _expand(names: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for name in names:
        for muscle in groups().get(name, (name,)):
            if muscle not in out:
                out.append(muscle)
    return out


def _side_values(table: pd.DataFrame, column: str, rule: str) -> pd.Series:
    """One value per row key (muscle, or group:<name>), the sides combined by ``rule``."""
    finite = table[np.isfinite(table[column].astype(float))]
    if finite.empty:
        return pd.Series(dtype=float)
    return finite.groupby("key")[column].agg(rule)


def _rows(table: pd.DataFrame, names: tuple[str, ...], fallback: bool) -> pd.DataFrame:
    """Rows for the listed muscles and groups.

    A listed group none of whose muscles is labelled is stood in for by its compartment row
    (e.g. TotalSegmentator's posterior compartment for ``hamstrings``); with ``fallback``, so is
    a listed muscle that is missing, by its group's compartment.
    """
    muscles = table[(table["kind"] == MUSCLE) & table["muscle"].isin(_expand(names))]
    present = set(muscles["muscle"])
    stand_ins = set()
    for name in names:
        members = groups().get(name)
        if members is not None:
            if not present.intersection(members):
                stand_ins.add(name)
        elif fallback and name not in present and group_of(name):
            stand_ins.add(group_of(name))
    compartments = table[(table["kind"] == GROUP) & table["muscle"].isin(stand_ins)]
    return pd.concat([muscles, compartments])


def _aggregate(table: pd.DataFrame, feature: Feature, names: tuple[str, ...], column: str,
               weight_column: str = "voxels") -> tuple[float, list[str]]:  # fmt: skip
    rows = _rows(table, names, feature.group_fallback)
    if rows.empty:
        raise Unavailable(f"no labelled muscle among {', '.join(names)}")
    values = _side_values(rows, column, feature.sides)
    if values.empty:
        raise Unavailable(f"no {column} for {', '.join(names)} (input image missing)")
    weights = rows.groupby("key")[weight_column].sum().reindex(values.index).astype(float)
    return float(np.average(values, weights=weights)), sorted(values.index)


def _ff_contrast(table, feature, settings, excess: bool):
    target, used = _aggregate(table, feature, feature.muscles, "ff_median")
    reference, used_ref = _aggregate(table, feature, feature.reference, "ff_median")
    if excess:
        reference = max(reference, settings["quantify"]["healthy_ff_ceiling"])
    return target - reference, used + [f"reference:{m}" for m in used_ref]


def _single(column: str) -> Callable:
    def measure(table, feature, settings):
        return _aggregate(table, feature, feature.muscles, column)

    return measure


def _atrophy(table, feature, settings):
    value, used = _aggregate(table, feature, feature.muscles, "atrophy_loss")
    return value, used


def _per_muscle_degrees(table, feature) -> tuple[pd.Series, list[str]]:
    rows = _rows(table, feature.muscles, feature.group_fallback)
    if rows.empty:
        raise Unavailable(f"no labelled muscle among {', '.join(feature.muscles)}")
    degrees = None
    for column, cut in feature.per_muscle.items():
        source = "atrophy_loss" if column == "atrophy" else column
        values = _side_values(rows, source, feature.sides)
        if values.empty:
            continue
        d = values.map(cut.degree)
        degrees = d if degrees is None else pd.concat([degrees, d], axis=1).max(axis=1)
    if degrees is None or degrees.empty:
        raise Unavailable(
            f"no {'/'.join(feature.per_muscle)} for the listed muscles (input image missing)"
        )
    return degrees, sorted(degrees.index)


def _share_involved(table, feature, settings):
    degrees, used = _per_muscle_degrees(table, feature)
    return float(degrees.mean()), used


MEASURE_FUNCTIONS: dict[str, Callable] = {
    "ff_excess": lambda t, f, s: _ff_contrast(t, f, s, excess=True),
    "ff_contrast": lambda t, f, s: _ff_contrast(t, f, s, excess=False),
    "edema_fraction": _single("edema_fraction"),
    "fascial_edema_fraction": _single("fascial_edema_fraction"),
    "atrophy": _atrophy,
    "share_involved": _share_involved,
    "involvement": _share_involved,
}


def _prepared(table: pd.DataFrame) -> pd.DataFrame:
    out = table[table["kind"].isin((MUSCLE, GROUP))].copy()
    out["key"] = np.where(out["kind"] == GROUP, "group:" + out["muscle"], out["muscle"])
    out["atrophy_loss"] = 1.0 - out["atrophy_index"].astype(float)
    return out


def match(table: pd.DataFrame, template: Template,
          settings: Settings | None = None) -> list[Evidence]:  # fmt: skip
    """Evaluate every template feature on a graded muscle table.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`mri_scoring.grading.grade` (one row per label).
    template : Template
    settings : Settings, optional

    Returns
    -------
    list of Evidence
        In template order.
    """
    settings = settings or load_settings()
    prepared = _prepared(table)
    evidence = []
    for feature in template.features:
        try:
            value, used = MEASURE_FUNCTIONS[feature.measure](prepared, feature, settings)
        except Unavailable as why:
            evidence.append(
                Evidence(
                    feature.id, feature.description, False, None, None, [], str(why), feature.source
                )
            )
            continue
        evidence.append(
            Evidence(
                feature.id,
                feature.description,
                True,
                float(value),
                feature.cut.degree(value),
                used,
                "",
                feature.source,
            )
        )
    return evidence


def involved_muscles(table: pd.DataFrame, template: Template) -> list[str]:
    """Muscles (or compartments) meeting any of the template's ``involved_if`` criteria."""
    rows = _prepared(table)
    criteria = template.involved_if
    hit = np.zeros(len(rows), bool)
    if "mercuri_grade_at_least" in criteria:
        hit |= rows["mercuri_grade"].to_numpy(float) >= criteria["mercuri_grade_at_least"]
    if "edema_grade_at_least" in criteria:
        hit |= rows["edema_grade"].to_numpy(float) >= criteria["edema_grade_at_least"]
    if "fascial_edema_fraction_at_least" in criteria:
        hit |= (
            rows["fascial_edema_fraction"].to_numpy(float)
            >= criteria["fascial_edema_fraction_at_least"]
        )
    return sorted(set(rows["key"][hit]))
