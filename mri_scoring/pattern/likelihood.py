"""Combining feature evidence into an IMNM-vs-DM likelihood ratio, posterior and call.

Soft evidence: a feature present with degree d (0-1) has likelihood
``P(e | class) = d * p_class + (1 - d) * (1 - p_class)`` under each class, so its contribution to
log10 LR is ``log10(P(e | IMNM) / P(e | DM))``: the full weight of presence at d = 1, of absence
at d = 0, and a smooth path between (Jeffrey's rule on a binary feature). Features are combined
as independent given the class (naive Bayes); unavailable features contribute nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .match import Evidence
from .templates import Template

INDETERMINATE = "indeterminate"


def soft_log10_lr(degree: float, p_positive: float, p_negative: float) -> float:
    """log10 likelihood ratio of one feature with soft evidence ``degree``.

    Examples
    --------
    >>> round(soft_log10_lr(1.0, 0.7, 0.3), 3)
    0.368
    >>> round(soft_log10_lr(0.0, 0.7, 0.3), 3)
    -0.368
    """
    positive = degree * p_positive + (1.0 - degree) * (1.0 - p_positive)
    negative = degree * p_negative + (1.0 - degree) * (1.0 - p_negative)
    return math.log10(positive / negative)


def posterior(log10_lr: float, prior: float) -> float:
    """Posterior probability of the positive class from log10 LR and a prior probability."""
    log_odds = log10_lr * math.log(10.0) + math.log(prior / (1.0 - prior))
    return 1.0 / (1.0 + math.exp(-max(min(log_odds, 700.0), -700.0)))


@dataclass
class FeatureContribution:
    """One row of the evidence shown to the user (``score.json`` ``features``)."""

    id: str
    description: str
    available: bool
    value: float | None
    degree: float | None
    log10_lr_contribution: float
    p_imnm: float
    p_dm: float
    muscles_used: list[str]
    reason: str
    source: str


@dataclass
class Likelihood:
    """The likelihood result of one study.

    Attributes
    ----------
    log10_likelihood_ratio : float
        Sum of the available features' contributions (IMNM over DM).
    prior_imnm, p_imnm, p_dm : float
    call : str
        ``IMNM``, ``DM`` or ``indeterminate``.
    applicable : bool
        False when too few muscles are involved for the IMNM-vs-DM question to apply.
    involved_muscles : list of str
    features : list of FeatureContribution
    notes : list of str
        Why the call is what it is, in words.
    template : str
        Template name.
    """

    log10_likelihood_ratio: float
    prior_imnm: float
    p_imnm: float
    p_dm: float
    call: str
    applicable: bool
    involved_muscles: list[str]
    features: list[FeatureContribution] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    template: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def combine(evidence: list[Evidence], template: Template, involved: list[str],
            prior: float | None = None) -> Likelihood:  # fmt: skip
    """Combine per-feature evidence into a likelihood ratio, posterior and call.

    Parameters
    ----------
    evidence : list of Evidence
        From :func:`mri_scoring.pattern.match.match`.
    template : Template
    involved : list of str
        Involved muscles (:func:`mri_scoring.pattern.match.involved_muscles`).
    prior : float, optional
        Prior p(IMNM); default the template's ``prior_imnm``.
    """
    prior = template.prior if prior is None else float(prior)
    if not 0.0 < prior < 1.0:
        raise ConfigError(f"prior p(IMNM) must be strictly between 0 and 1, got {prior}")
    contributions = []
    total = 0.0
    for item in evidence:
        feature = template.feature(item.id)
        contribution = 0.0
        if item.available and item.degree is not None:
            contribution = soft_log10_lr(item.degree, feature.p_positive, feature.p_negative)
        total += contribution
        contributions.append(
            FeatureContribution(
                item.id,
                item.description,
                item.available,
                item.value,
                item.degree,
                contribution,
                feature.p_positive,
                feature.p_negative,
                item.muscles_used,
                item.reason,
                item.source,
            )
        )
    p_imnm = posterior(total, prior)
    applicable = len(involved) >= template.min_involved_muscles
    notes = []
    if not applicable:
        call = INDETERMINATE
        notes.append(
            f"only {len(involved)} involved muscle(s) (template needs "
            f"{template.min_involved_muscles}): no meaningful muscle involvement, so "
            "the IMNM-vs-DM question does not apply"
        )
    elif p_imnm >= template.call_positive_at_least:
        call = template.positive
    elif p_imnm <= template.call_negative_at_most:
        call = template.negative
    else:
        call = INDETERMINATE
        notes.append(
            f"p({template.positive}) {p_imnm:.2f} lies between the call bounds "
            f"{template.call_negative_at_most} and {template.call_positive_at_least}"
        )
    missing = [c.id for c in contributions if not c.available]
    if missing:
        notes.append(f"unavailable features (contribute nothing): {', '.join(missing)}")
    return Likelihood(
        total,
        prior,
        p_imnm,
        1.0 - p_imnm,
        call,
        applicable,
        involved,
        contributions,
        notes,
        template.name,
    )


def evidence_frame(likelihoods: list[Likelihood], template: Template) -> pd.DataFrame:
    """Feature degrees of many studies as a classifier input (NaN = unavailable)."""
    rows = []
    for item in likelihoods:
        degrees = {c.id: (c.degree if c.available else np.nan) for c in item.features}
        rows.append([degrees.get(f.id, np.nan) for f in template.features])
    return pd.DataFrame(rows, columns=[f.id for f in template.features])
