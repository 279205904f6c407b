"""What a study was read against, for the report: the norms used and the population prior.

Two paragraphs of ``report.html`` (:mod:`.report`): which norms (adult or children's, their
sources and the age) and, with a population prior, its posterior beside the template's.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .result import StudyResult

__all__ = ["norms_note", "population_section"]


def population_section(result: StudyResult) -> str:
    """Both posteriors: the template prior's (the call) and the population prior's (if any)."""
    population, like, esc = result.population, result.likelihood, html.escape
    if population is None:
        return ""
    low, high = population.interval
    why = f" ({esc(population.note)})" if population.note else f" (by {esc(population.chosen_by)})"
    return (
        f"<p class=population>With the <b>{esc(population.name)}</b> population prior"
        f"{why}: p(IMNM) = {population.p_imnm:.3f} (90 % interval {low:.2f}–{high:.2f}) "
        f"at prior {population.prior:.3f}, beside p(IMNM) = {like.p_imnm:.3f} at the template "
        f"prior {like.prior_imnm:.2f}, which the call uses. The same likelihood ratio; only the "
        f"prior differs.</p><p class=small>population prior: {esc(population.source)}</p>"
    )


def norms_note(result: StudyResult) -> str:
    """Which norms (adult or children's), their sources and the age the study was read at."""
    if not result.norms:
        return ""
    rows = ""
    for kind, key in (("volume", "volume"), ("fat", "fat"), ("T2", "t2")):
        norm = result.norms.get(key, {})
        age = f" at {norm['age_years']:g} y" if norm.get("age_years") is not None else ""
        rows += (
            f"<li>{kind}: <b>{html.escape(str(norm.get('basis')))}</b>{age} "
            f"({html.escape(str(norm.get('source')))})</li>"
        )
    return (
        "<p class=small><b>Norms</b> the measures are compared with (expected volumes with "
        f"their 10th-90th centile band, ff_excess, the T2-map normal):</p><ul class=small>"
        f"{rows}</ul>"
    )
