"""Combining feature evidence into an IMNM-vs-DM likelihood ratio, posterior and call.

Soft evidence: a feature present with degree d (0-1) has likelihood
``P(e | class) = d * p_class + (1 - d) * (1 - p_class)`` under each class, so its contribution to
log10 LR is ``log10(P(e | IMNM) / P(e | DM))``: the full weight of presence at d = 1, of absence
at d = 0, and a smooth path between (Jeffrey's rule on a binary feature). Features are combined
as independent given the class (naive Bayes); unavailable features contribute nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .errors import ConfigError
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
        From :func:`mri_scoring.match.match`.
    template : Template
    involved : list of str
        Involved muscles (:func:`mri_scoring.match.involved_muscles`).
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


# --------------------------------------------------------------------------- classifier


class PatternClassifier(ClassifierMixin, BaseEstimator):
    """Soft-evidence naive Bayes over template features, with the template as a Beta prior.

    ``X`` holds one column per feature: its degree 0-1 (NaN = unavailable, contributes nothing).
    ``fit`` re-estimates each class's P(feature present) as the posterior mean of a Beta prior
    centred on the template's probability with ``prior_strength`` pseudo-observations, updated
    with the summed degrees of that class: a small cohort moves the numbers a little, a large one
    a lot. Without a template every prior probability is 0.5.

    Parameters
    ----------
    template : str or None
        Path to a template YAML, ``"default"`` for the shipped one, or None.
    prior_strength : float
        Pseudo-observations of the Beta prior per class and feature.
    class_prior : str or float
        ``"template"`` (the template's prior_imnm), ``"fit"`` (class frequencies of y) or a
        probability of the positive class.
    """

    def __init__(self, template: str | None = "default", prior_strength: float = 10.0,
                 class_prior: str | float = "template") -> None:  # fmt: skip
        self.template = template
        self.prior_strength = prior_strength
        self.class_prior = class_prior

    def _template(self) -> Template | None:
        from .templates import load_template

        if self.template is None:
            return None
        return load_template(None if self.template == "default" else self.template)

    def fit(self, X, y):
        """Estimate per-class feature probabilities. Returns self."""
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError("PatternClassifier needs at least two classes in y")
        template = self._template()
        n_features = X.shape[1]
        prior_p = np.full((len(self.classes_), n_features), 0.5)
        self.feature_names_ = (
            np.array([f.id for f in template.features])
            if template is not None
            else np.array([], dtype=str)
        )
        if template is not None:
            if n_features != len(template.features):
                raise ValueError(
                    f"X has {n_features} columns; template {template.name} has "
                    f"{len(template.features)} features"
                )
            for i, cls in enumerate(self.classes_):
                name = str(cls)
                if name == template.positive or cls in (1, True):
                    prior_p[i] = [f.p_positive for f in template.features]
                elif name == template.negative or cls in (0, False):
                    prior_p[i] = [f.p_negative for f in template.features]
        degrees = np.clip(X, 0.0, 1.0)
        strength = float(self.prior_strength)
        self.feature_prob_ = np.empty_like(prior_p)
        for i, cls in enumerate(self.classes_):
            rows = degrees[y == cls]
            observed = np.isfinite(rows)
            present = np.where(observed, rows, 0.0).sum(axis=0)
            count = observed.sum(axis=0)
            alpha = strength * prior_p[i] + present
            beta = strength * (1.0 - prior_p[i]) + (count - present)
            self.feature_prob_[i] = np.clip(alpha / (alpha + beta), 1e-6, 1 - 1e-6)
        counts = np.array([(y == c).sum() for c in self.classes_], dtype=float)
        if self.class_prior == "fit":
            self.class_prior_ = counts / counts.sum()
        elif self.class_prior == "template" and template is not None and len(self.classes_) == 2:
            positive = 1 if self._positive_index(template) == 1 else 0
            self.class_prior_ = np.empty(2)
            self.class_prior_[positive] = template.prior
            self.class_prior_[1 - positive] = 1.0 - template.prior
        elif isinstance(self.class_prior, (int, float)) and len(self.classes_) == 2:
            self.class_prior_ = np.array([1.0 - float(self.class_prior), float(self.class_prior)])
        else:
            self.class_prior_ = np.full(len(self.classes_), 1.0 / len(self.classes_))
        return self

    def _positive_index(self, template: Template) -> int:
        names = [str(c) for c in self.classes_]
        if template.positive in names:
            return names.index(template.positive)
        return len(names) - 1

    def _joint_log(self, X) -> np.ndarray:
        check_is_fitted(self, "feature_prob_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        d = np.clip(X, 0.0, 1.0)
        available = np.isfinite(d)
        d = np.where(available, d, 0.0)
        out = np.empty((X.shape[0], len(self.classes_)))
        for i, p in enumerate(self.feature_prob_):
            per_feature = np.log(d * p + (1.0 - d) * (1.0 - p))
            out[:, i] = np.where(available, per_feature, 0.0).sum(axis=1)
        return out + np.log(self.class_prior_)

    def predict_proba(self, X) -> np.ndarray:
        """Posterior class probabilities, columns in the order of ``classes_``."""
        joint = self._joint_log(X)
        joint -= joint.max(axis=1, keepdims=True)
        proba = np.exp(joint)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self._joint_log(X), axis=1)]

    def get_learned_parameters(self) -> dict:
        """Fitted parameters as plain data (for YAML/JSON; never pickle)."""
        check_is_fitted(self, "feature_prob_")
        return {
            "format": "mri_scoring.PatternClassifier/1",
            "params": {
                "template": self.template,
                "prior_strength": self.prior_strength,
                "class_prior": self.class_prior,
            },
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes_],
            "feature_names": [str(f) for f in self.feature_names_],
            "n_features_in": int(self.n_features_in_),
            "feature_prob": self.feature_prob_.tolist(),
            "class_prior": self.class_prior_.tolist(),
        }

    def save(self, path: str | Path) -> None:
        """Write the fitted parameters as JSON (``.json``) or YAML (anything else)."""
        data = self.get_learned_parameters()
        path = Path(path)
        text = (
            json.dumps(data, indent=2)
            if path.suffix == ".json"
            else yaml.safe_dump(data, sort_keys=False)
        )
        path.write_text(text, encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> PatternClassifier:
        """Read parameters written by :meth:`save` (safe YAML/JSON parsing only)."""
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
        if not isinstance(data, dict) or data.get("format") != "mri_scoring.PatternClassifier/1":
            raise ConfigError(f"{path}: not a PatternClassifier parameter file")
        model = cls(**data["params"])
        model.classes_ = np.array(data["classes"])
        model.feature_names_ = np.array(data["feature_names"])
        model.n_features_in_ = int(data["n_features_in"])
        model.feature_prob_ = np.array(data["feature_prob"], dtype=float)
        model.class_prior_ = np.array(data["class_prior"], dtype=float)
        return model


def evidence_frame(likelihoods: list[Likelihood], template: Template) -> pd.DataFrame:
    """Feature degrees of many studies as a classifier input (NaN = unavailable)."""
    rows = []
    for item in likelihoods:
        degrees = {c.id: (c.degree if c.available else np.nan) for c in item.features}
        rows.append([degrees.get(f.id, np.nan) for f in template.features])
    return pd.DataFrame(rows, columns=[f.id for f in template.features])
