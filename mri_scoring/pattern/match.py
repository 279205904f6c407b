"""Matching a graded muscle table against a pattern template: one evidence record per feature.

Each feature names a measure (the one registry, :data:`mri_scoring.pattern.measures.MEASURES`),
the muscles or groups it reads, how the two sides combine, and a soft threshold. A feature whose
muscles or inputs are missing is unavailable and says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ..config import Settings, load_settings
from .measures import MEASURES, Unavailable, prepare
from .templates import Template

__all__ = [
    "Evidence",
    "involved_muscles",
    "match",
]


@dataclass(kw_only=True, frozen=True)
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
        """The evidence as plain data."""
        return asdict(self)


def match(
    table: pd.DataFrame,
    template: Template,
    settings: Settings | None = None,
    compartments: pd.DataFrame | None = None,
) -> list[Evidence]:
    """Evaluate every template feature on a graded muscle table.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`mri_scoring.grading.grade` (one row per label).
    template : Template
    settings : Settings, optional
    compartments : pandas.DataFrame, optional
        ``compartments.tsv`` of the study; without it the compartment features are
        unavailable.

    Returns
    -------
    list of Evidence
        In template order.
    """
    settings = settings or load_settings()
    prepared = prepare(table)
    evidence = []
    for feature in template.features:
        spec = MEASURES[feature.measure]
        source = prepared if spec.reads == "muscles" else compartments
        try:
            if source is None:
                raise Unavailable("no compartments table (the subcutaneous fat was not measured)")
            value, used = spec.compute(source, feature, settings)
        except Unavailable as why:
            evidence.append(
                Evidence(
                    id=feature.id,
                    description=feature.description,
                    available=False,
                    value=None,
                    degree=None,
                    muscles_used=[],
                    reason=str(why),
                    source=feature.source,
                )
            )
            continue
        evidence.append(
            Evidence(
                id=feature.id,
                description=feature.description,
                available=True,
                value=float(value),
                degree=feature.cut.degree(value),
                muscles_used=used,
                reason="",
                source=feature.source,
            )
        )
    return evidence


def involved_muscles(table: pd.DataFrame, template: Template) -> list[str]:
    """Muscles (or compartments) meeting any of the template's ``involved_if`` criteria."""
    rows = prepare(table)
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
