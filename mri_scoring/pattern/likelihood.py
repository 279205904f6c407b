"""Combining feature evidence into a likelihood ratio, posterior, interval and call.

A template compares two classes (``Template.classes``, the first positive: IMNM against DM,
IMNM against a muscular dystrophy, ...). ``p_imnm`` is the posterior of the first class and
``p_dm`` that of the second (the names of the first template, kept for its outputs).

The evidence model, in four steps (each feature's share stays visible in the evidence table):

1. **Virtual evidence.** A feature measured with degree d (0-1) is Pearl's *virtual evidence*
   on the binary feature F (Pearl 1988, Probabilistic Reasoning in Intelligent Systems, §2.2.2):
   the measurement is d : (1 - d) times as likely if F is present as if it is absent, so
   ``P(e | class) = d * P(F | class) + (1 - d) * (1 - P(F | class))``. This is not Jeffrey's
   rule, which would instead *set* P(F) = d and discard the class's own prediction of F.
2. **Absence counts only where the study is clearly involved.** A pattern is judged relative
   to overall involvement: in a study with few involved muscles most features are absent under
   either diagnosis. The template's ``absence_counts_from`` gate g (a soft cut on the number of
   involved muscles) scales what each class predicts: ``P(F | class) = g * p_class``. With
   g = 1 the template's probabilities apply unchanged; as g falls to 0, absence stops being
   evidence for either class, while a clearly present feature keeps its ratio
   ``p_imnm / p_dm``. Unavailable features contribute nothing.
3. **Dependence correction.** Features that read overlapping evidence (e.g. two features on
   hamstrings + adductor magnus fat) form a template group; each member's log-likelihood is
   raised to the power ``M_eff / M`` (Nyholt 2004's effective number of independent features,
   see :func:`mri_scoring.pattern.templates.effective_number`), so a group of M fully
   correlated features counts as one.
4. **Stated uncertainty.** Every probability (and the prior) is a Beta distribution with its
   pseudo-count strength (elicited ones weak, fitted ones from their cohort counts). The
   [5 %, 95 %] credible interval of p(IMNM) is a Monte Carlo over ``INTERVAL_DRAWS`` joint Beta
   draws with the fixed seed ``INTERVAL_SEED`` (so outputs are reproducible). It is reported
   with every answer, not used to make it.
5. **The call.** A class is called when the study is applicable and the point posterior lies
   past that class's call bound (``call_bounds`` of the template; rule-level numbers shared by
   every template, chosen for calibrated calls in ``docs/likelihood.md`` §4); otherwise the
   study is indeterminate. ``reading`` grades the same posterior in words ("leans IMNM" past
   ``lean_beyond`` from 0.5) without ever changing ``call``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .match import Evidence
from .templates import Template

__all__ = [
    "INDETERMINATE",
    "INTERVAL_DRAWS",
    "INTERVAL_LEVELS",
    "INTERVAL_SEED",
    "FeatureContribution",
    "Likelihood",
    "combine",
    "credible_interval",
    "evidence_frame",
    "involvement_gate",
    "log_virtual_evidence",
    "posterior",
    "reading",
    "soft_log10_lr",
]

INDETERMINATE = "indeterminate"
INTERVAL_DRAWS = 4000
"""Monte Carlo draws for the credible interval (the 5 % quantile's error is ~0.3 % at this n)."""
INTERVAL_SEED = 15
"""Seed of the interval's Beta draws: the same study and template give the same interval."""
INTERVAL_LEVELS = (0.05, 0.95)
_GATE_FLOOR = 1e-9  # keeps ln(g * p) finite; a gate this small makes absence count for nothing


def log_virtual_evidence(
    degree: np.ndarray | float, p_present: np.ndarray | float, gate: np.ndarray | float = 1.0
) -> np.ndarray:
    """Natural-log likelihood of soft evidence ``degree`` under one class (virtual evidence).

    The single implementation of the soft-evidence formula, used by
    :func:`combine` and by :class:`mri_scoring.pattern.classifier.PatternClassifier`.

    Parameters
    ----------
    degree : array_like
        Degree 0-1 that the feature is present (finite; callers drop unavailable features).
    p_present : array_like
        The class's P(feature present) when the study is clearly involved, in (0, 1).
    gate : array_like
        Involvement gate g in [0, 1]: the class predicts the feature with ``g * p_present``.

    Returns
    -------
    numpy.ndarray
        ``ln(d * g * p + (1 - d) * (1 - g * p))``, broadcast over the inputs.

    Examples
    --------
    >>> import numpy as np
    >>> float(np.round(log_virtual_evidence(1.0, 0.7) - log_virtual_evidence(1.0, 0.3), 3))
    0.847
    >>> abs(float(log_virtual_evidence(0.0, 0.7, gate=0.0))) < 1e-8  # absence, no involvement
    True
    """
    d = np.asarray(degree, dtype=float)
    q = np.clip(np.asarray(gate, dtype=float), _GATE_FLOOR, 1.0) * np.asarray(p_present, float)
    return np.log(d * q + (1.0 - d) * (1.0 - q))


def soft_log10_lr(degree: float, p_positive: float, p_negative: float, gate: float = 1.0) -> float:
    """log10 likelihood ratio of one feature with soft evidence ``degree`` (no group weight).

    Examples
    --------
    >>> round(soft_log10_lr(1.0, 0.7, 0.3), 3)
    0.368
    >>> round(soft_log10_lr(0.0, 0.7, 0.3), 3)
    -0.368
    >>> abs(soft_log10_lr(0.0, 0.7, 0.3, gate=0.0)) < 1e-8  # nothing (up to rounding)
    True
    """
    ln_ratio = log_virtual_evidence(degree, p_positive, gate) - log_virtual_evidence(
        degree, p_negative, gate
    )
    return float(ln_ratio) / math.log(10.0)


def posterior(log10_lr: float, prior: float) -> float:
    """Posterior probability of the positive class from log10 LR and a prior probability."""
    log_odds = log10_lr * math.log(10.0) + math.log(prior / (1.0 - prior))
    return 1.0 / (1.0 + math.exp(-max(min(log_odds, 700.0), -700.0)))


def involvement_gate(template: Template, involved: list[str]) -> float:
    """Gate g (0-1): how far absence of a feature counts, from the number of involved muscles.

    1 when the template defines no ``absence_counts_from`` gate.
    """
    if template.absence_gate is None:
        return 1.0
    return template.absence_gate.degree(float(len(involved)))


def _beta_draws(
    rng: np.random.Generator, mean: np.ndarray, strength: np.ndarray, n: int
) -> np.ndarray:
    mean = np.clip(mean, 1e-6, 1 - 1e-6)
    a, b = strength * mean, strength * (1.0 - mean)
    return np.clip(rng.beta(a, b, size=(n, len(mean))), 1e-9, 1 - 1e-9)


def credible_interval(
    degrees: np.ndarray,
    template: Template,
    gate: float,
    prior: float,
    prior_strength: float | None = None,
) -> tuple[float, float]:
    """[5 %, 95 %] credible bounds of p(positive) over the Beta uncertainty of every probability.

    Parameters
    ----------
    degrees : numpy.ndarray
        One degree per template feature, NaN where unavailable (contributes nothing).
    template : Template
        Probabilities, their pseudo-count strengths, group weights, prior strength.
    gate : float
        The study's involvement gate (:func:`involvement_gate`).
    prior : float
        Centre of the prior p(positive).
    prior_strength : float, optional
        Its Beta pseudo-count strength; default the template's ``prior_strength`` (a
        population preset brings its own, :mod:`.population`).

    Returns
    -------
    tuple of float
        (lower, upper) posterior probability bounds, Monte Carlo with a fixed seed.
    """
    rng = np.random.default_rng(INTERVAL_SEED)
    f = template.features
    p_pos = _beta_draws(
        rng,
        np.array([x.p_positive for x in f]),
        np.array([x.strength_positive for x in f]),
        INTERVAL_DRAWS,
    )
    p_neg = _beta_draws(
        rng,
        np.array([x.p_negative for x in f]),
        np.array([x.strength_negative for x in f]),
        INTERVAL_DRAWS,
    )
    strength = template.prior_strength if prior_strength is None else prior_strength
    pi = _beta_draws(rng, np.array([prior]), np.array([strength]), INTERVAL_DRAWS)[:, 0]
    d = np.asarray(degrees, dtype=float)
    use = np.isfinite(d)
    weight = np.array([x.weight for x in f])
    ln_lr = (
        weight[use]
        * (
            log_virtual_evidence(d[use], p_pos[:, use], gate)
            - log_virtual_evidence(d[use], p_neg[:, use], gate)
        )
    ).sum(axis=1)
    log_odds = np.clip(ln_lr + np.log(pi / (1.0 - pi)), -700.0, 700.0)
    p = 1.0 / (1.0 + np.exp(-log_odds))
    low, high = np.quantile(p, INTERVAL_LEVELS)
    return float(low), float(high)


@dataclass(kw_only=True)
class FeatureContribution:
    """One row of the evidence shown to the user (``score.json`` ``features``).

    ``log10_lr_contribution`` is the feature's share of the total after the involvement gate
    and its group's dependence ``weight`` (0 when unavailable).
    """

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
    weight: float = 1.0
    # P(present | first class) and P(present | second class) are p_imnm and p_dm.


@dataclass(kw_only=True)
class Likelihood:
    """The likelihood result of one study.

    Attributes
    ----------
    log10_likelihood_ratio : float
        Sum of the available features' contributions (first class over second).
    prior_imnm, p_imnm, p_dm : float
        Prior and posterior of the first class (IMNM), posterior of the second.
    call : str
        A class name of the template (e.g. ``IMNM``, ``DM``) or ``indeterminate``.
    applicable : bool
        False when too few muscles are involved for the template's question to apply.
    involved_muscles : list of str
    features : list of FeatureContribution
    notes : list of str
        Why the call is what it is, in words.
    template : str
        Template name.
    p_imnm_interval : list of float
        [5 %, 95 %] credible bounds of p(IMNM).
    absence_gate : float
        Involvement gate g (0-1): how far absent features counted.
    classes : list of str
        The template's two classes, the first (positive) one first.
    reading : str
        The posterior graded in words, separate from ``call``: the called class, ``leans
        <class>``, ``no lean`` or ``not applicable``.
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
    p_imnm_interval: list[float] = field(default_factory=lambda: [0.0, 1.0])
    absence_gate: float = 1.0
    classes: list[str] = field(default_factory=lambda: ["IMNM", "DM"])
    reading: str = ""

    def to_dict(self) -> dict:
        """Plain-data copy (lists and dicts only)."""
        return asdict(self)


def _involved_phrase(n: int, only: bool = False) -> str:
    """How many muscles are involved, in words that read right for 0, 1 and more.

    Examples
    --------
    >>> _involved_phrase(0, only=True), _involved_phrase(1, only=True), _involved_phrase(3)
    ('no involved muscle', 'only 1 involved muscle', '3 involved muscles')
    """
    if n == 0:
        return "no involved muscle"
    return f"{'only ' if only else ''}{n} involved muscle{'' if n == 1 else 's'}"


def _decide(
    template: Template,
    applicable: bool,
    involved: list[str],
    p_imnm: float,
    low: float,
    high: float,
) -> tuple[str, list[str]]:
    pos, neg = template.call_positive_at_least, template.call_negative_at_most
    if not applicable:
        return INDETERMINATE, [
            f"{_involved_phrase(len(involved), only=True)} (the template needs at least "
            f"{template.min_involved_muscles}): no meaningful muscle involvement, so "
            f"the {template.positive}-vs-{template.negative} question does not apply"
        ]
    interval = f"90 % credible interval {low:.2f}-{high:.2f}"
    if p_imnm >= pos:
        return template.positive, [f"p({template.positive}) {p_imnm:.2f} >= {pos} ({interval})"]
    if p_imnm <= neg:
        return template.negative, [f"p({template.positive}) {p_imnm:.2f} <= {neg} ({interval})"]
    return INDETERMINATE, [
        f"p({template.positive}) {p_imnm:.2f} lies between the call bounds "
        f"({template.positive} at >= {pos}, {template.negative} at <= {neg}; {interval})"
    ]


def reading(template: Template, applicable: bool, call: str, p_imnm: float) -> str:
    """The posterior in words, separate from the call (``call`` never takes these values).

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> t = NS(positive="IMNM", negative="DM", lean_beyond=0.15)
    >>> reading(t, True, "indeterminate", 0.7), reading(t, True, "indeterminate", 0.55)
    ('leans IMNM', 'no lean')
    >>> reading(t, True, "DM", 0.1), reading(t, False, "indeterminate", 0.9)
    ('DM', 'not applicable')
    """
    if not applicable:
        return "not applicable"
    if call != INDETERMINATE:
        return call
    if p_imnm >= 0.5 + template.lean_beyond:
        return f"leans {template.positive}"
    if p_imnm <= 0.5 - template.lean_beyond:
        return f"leans {template.negative}"
    return "no lean"


def combine(
    evidence: list[Evidence], template: Template, involved: list[str], prior: float | None = None
) -> Likelihood:
    """Combine per-feature evidence into a likelihood ratio, posterior, interval and call.

    Parameters
    ----------
    evidence : list of Evidence
        From :func:`mri_scoring.pattern.match.match`.
    template : Template
    involved : list of str
        Involved muscles (:func:`mri_scoring.pattern.match.involved_muscles`).
    prior : float, optional
        Prior p(first class); default the template's.

    Returns
    -------
    Likelihood
    """
    prior = template.prior if prior is None else float(prior)
    if not 0.0 < prior < 1.0:
        raise ConfigError(f"prior p(IMNM) must be strictly between 0 and 1, got {prior}")
    gate = involvement_gate(template, involved)
    contributions = []
    degrees = np.full(len(template.features), np.nan)
    index = {f.id: i for i, f in enumerate(template.features)}
    for item in evidence:
        feature = template.feature(item.id)
        contribution = 0.0
        if item.available and item.degree is not None:
            degrees[index[item.id]] = item.degree
            contribution = feature.weight * soft_log10_lr(
                item.degree, feature.p_positive, feature.p_negative, gate
            )
        contributions.append(
            FeatureContribution(
                id=item.id,
                description=item.description,
                available=item.available,
                value=item.value,
                degree=item.degree,
                log10_lr_contribution=contribution,
                p_imnm=feature.p_positive,
                p_dm=feature.p_negative,
                muscles_used=item.muscles_used,
                reason=item.reason,
                source=item.source,
                weight=feature.weight,
            )
        )
    total = float(sum(c.log10_lr_contribution for c in contributions))
    p_imnm = posterior(total, prior)
    low, high = credible_interval(degrees, template, gate, prior)
    applicable = len(involved) >= template.min_involved_muscles
    call, notes = _decide(template, applicable, involved, p_imnm, low, high)
    if gate < 0.5:
        share = "almost nothing" if gate < 0.005 else f"only {gate:.0%} of their weight"
        notes.append(f"{_involved_phrase(len(involved))}: absent features count {share}")
    missing = [c.id for c in contributions if not c.available]
    if missing:
        notes.append(f"unavailable features (contribute nothing): {', '.join(missing)}")
    return Likelihood(
        log10_likelihood_ratio=total,
        prior_imnm=prior,
        p_imnm=p_imnm,
        p_dm=1.0 - p_imnm,
        call=call,
        applicable=applicable,
        involved_muscles=involved,
        features=contributions,
        notes=notes,
        template=template.name,
        p_imnm_interval=[low, high],
        absence_gate=gate,
        classes=list(template.classes),
        reading=reading(template, applicable, call, p_imnm),
    )


def evidence_frame(likelihoods: list[Likelihood], template: Template) -> pd.DataFrame:
    """Feature degrees of many studies as a classifier input (NaN = unavailable).

    The last column, ``absence_gate``, is each study's involvement gate
    (use ``PatternClassifier(gate_column=True)``).
    """
    rows = []
    for item in likelihoods:
        degrees = {c.id: (c.degree if c.available else np.nan) for c in item.features}
        rows.append([degrees.get(f.id, np.nan) for f in template.features] + [item.absence_gate])
    return pd.DataFrame(rows, columns=[f.id for f in template.features] + ["absence_gate"])
