"""A differential panel: one study compared against several two-class templates.

Each template asks one question (IMNM or DM? IMNM or a muscular dystrophy? ...); the panel asks
them all of the same graded muscle table, in order. The first template is the study's main
comparison (the top level of ``score.json`` and the fixed ``summary.tsv`` columns); every
further one adds its own columns (:func:`panel_columns`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config import Settings, load_settings
from ..errors import ConfigError
from .likelihood import Likelihood, combine
from .match import involved_muscles, match
from .templates import Template, load_template, template_path

DEFAULT_PANEL = ("imnm_vs_dm", "imnm_vs_dystrophy", "imnm_vs_ass")
"""The templates a study is compared against by default (``--template`` may repeat), in order:
the first fills the top level of ``score.json`` and the fixed ``summary.tsv`` columns."""
__all__ = [
    "DEFAULT_PANEL",
    "PANEL_SUFFIXES",
    "Comparison",
    "class_key",
    "compare",
    "describe",
    "load_panel",
    "panel_columns",
]

PANEL_SUFFIXES = ("p_imnm", "p_imnm_lo", "p_imnm_hi", "call")
"""The ``summary.tsv`` columns of each further template, after its id: ``<id>_p_imnm``, ..."""


def load_panel(
    names: list[str | Path] | tuple[str | Path, ...] | None = None,
) -> tuple[Template, ...]:
    """The templates of a differential panel, in order (default :data:`DEFAULT_PANEL`).

    Parameters
    ----------
    names : sequence of str or path, optional
        Template names (``configs/templates/<name>.yaml``) or YAML files.

    Raises
    ------
    ConfigError
        A template that does not load, or two templates of the same name (their
        ``summary.tsv`` columns would collide).
    """
    panel = tuple(load_template(template_path(n)) for n in (names or DEFAULT_PANEL))
    seen = [t.name for t in panel]
    twice = sorted({n for n in seen if seen.count(n) > 1})
    if twice:
        raise ConfigError(f"--template: the panel names {', '.join(twice)} twice")
    return panel


@dataclass(frozen=True)
class Comparison:
    """One template's answer for one study.

    Attributes
    ----------
    template : Template
    likelihood : Likelihood
    """

    template: Template
    likelihood: Likelihood


def compare(
    table: pd.DataFrame,
    templates: Sequence[Template],
    settings: Settings | None = None,
    prior: float | None = None,
    compartments: pd.DataFrame | None = None,
) -> list[Comparison]:
    """Match a graded muscle table against every template of a panel.

    Parameters
    ----------
    table : pandas.DataFrame
        A graded muscle table (:func:`mri_scoring.grading.grade`).
    templates : sequence of Template
        The panel, in order.
    settings : Settings, optional
    prior : float, optional
        Prior p(first class) for every template; default each template's own.
    compartments : pandas.DataFrame, optional
        The study's ``compartments.tsv`` (:mod:`mri_scoring.measure.compartments`); without it
        the compartment features (subcutaneous edema) are unavailable.

    Returns
    -------
    list of Comparison
        In panel order.
    """
    settings = settings or load_settings()
    return [
        Comparison(
            t,
            combine(
                match(table, t, settings, compartments=compartments),
                t,
                involved_muscles(table, t),
                prior,
            ),
        )
        for t in templates
    ]


def class_key(name: str) -> str:
    """The ``score.json`` key of a class's posterior: ``p_`` and the name in lower case.

    Examples
    --------
    >>> class_key("DM"), class_key("dystrophy"), class_key("Becker MD")
    ('p_dm', 'p_dystrophy', 'p_becker_md')
    """
    return "p_" + re.sub(r"\W+", "_", name.strip().lower()).strip("_")


def panel_columns(templates: Sequence[Template]) -> list[str]:
    """The ``summary.tsv`` columns the further templates of a panel add (none for the first).

    Examples
    --------
    >>> panel_columns(load_panel(["imnm_vs_dm", "imnm_vs_dystrophy"]))[:2]
    ['imnm_vs_dystrophy_p_imnm', 'imnm_vs_dystrophy_p_imnm_lo']
    >>> panel_columns(load_panel(["imnm_vs_dm"]))
    []
    """
    return [f"{t.name}_{suffix}" for t in templates[1:] for suffix in PANEL_SUFFIXES]


def describe(template: Template) -> list[str]:
    """Lines of text listing a template: classes, prior, call bounds, each feature's source."""
    first, second = template.classes
    lines = [
        f"template {template.name} ({template.path})",
        f"  {template.description}",
        f"  classes {first} (positive) and {second}; prior p({first}) = {template.prior}; "
        f"call {first} at p >= {template.call_positive_at_least}, {second} at p <= "
        f"{template.call_negative_at_most}",
    ]
    for alternative in template.prior_alternatives:
        lines.append(f"  prior alternative {alternative.get('value')}: {alternative.get('note')}")
    for f in template.features:
        lines += [
            f"\n- {f.id}: {f.description}",
            f"    measure {f.measure} of {', '.join(f.muscles) or 'its compartment'}"
            + (f" vs {', '.join(f.reference)}" if f.reference else "")
            + (f"; floors {f.floors}" if f.floors else "")
            + f"; sides {f.sides}; soft threshold {f.cut.threshold} (width {f.cut.width})"
            + (f"; defined from {f.applies_from:g}" if f.applies_from is not None else ""),
            f"    P(present|{first}) = {f.p_positive}   P(present|{second}) = {f.p_negative}   "
            f"(Beta pseudo-counts {f.strength_positive:g} / {f.strength_negative:g})",
            f"    source: {f.source}",
        ]
    return lines
