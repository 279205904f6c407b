"""``PatternClassifier``: the template's evidence model as a scikit-learn estimator.

Kept apart from :mod:`mri_scoring.pattern.likelihood` so that scoring a study never imports
scikit-learn (about a second of start-up per process). Both use the one soft-evidence formula,
:func:`mri_scoring.pattern.likelihood.log_virtual_evidence`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Self

import numpy as np
import yaml
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import Tags
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import ConfigError
from .likelihood import log_virtual_evidence
from .templates import Template, effective_number

__all__ = [
    "PatternClassifier",
]

_EM_ITERATIONS = 50
_MIN_ROWS_FOR_CORRELATION = 8  # per class: fewer rows keep the template's elicited correlation


class PatternClassifier(ClassifierMixin, BaseEstimator):
    """Virtual-evidence naive Bayes over template features, with the template as a Beta prior.

    ``X`` holds one column per feature: its degree 0-1 (NaN = unavailable, contributes nothing;
    values outside 0-1 are clipped). With ``gate_column=True`` a last column holds each study's
    involvement gate g (0-1, see :func:`mri_scoring.pattern.likelihood.involvement_gate`): each
    class then predicts a feature with ``g * p``.

    ``fit`` re-estimates each class's P(feature present) as the posterior mean of a Beta prior
    centred on the template's probability with the template's pseudo-count strength (or
    ``prior_strength``), updated with the class's expected counts (EM over the gate: an absent
    feature in a weakly involved study is mostly "not expressed", not "absent"). A small cohort
    moves the numbers a little, a large one a lot; the fitted strengths are prior plus counts.
    Group correlations (the template's dependence groups) are re-measured from the cohort's
    degrees when every class has enough studies. Without a template every prior probability is
    0.5, every feature is its own group and the strength is ``prior_strength`` (default 2).

    Parameters
    ----------
    template : str or None
        Path to a template YAML, ``"default"`` for the shipped one, or None.
    prior_strength : float or None
        Pseudo-observations of the Beta prior per class and feature; None = the template's own
        strengths (2 without a template).
    class_prior : str or float
        ``"template"`` (the template's prior_imnm), ``"fit"`` (class frequencies of y) or a
        probability of the positive class.
    gate_column : bool
        The last column of ``X`` is the involvement gate, not a feature.
    """

    def __init__(
        self,
        template: str | None = "default",
        prior_strength: float | None = None,
        class_prior: str | float = "template",
        gate_column: bool = False,
    ) -> None:
        self.template = template
        self.prior_strength = prior_strength
        self.class_prior = class_prior
        self.gate_column = gate_column

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def _template(self) -> Template | None:
        from .templates import load_template

        if self.template is None:
            return None
        return load_template(None if self.template == "default" else self.template)

    def _split(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Degrees (clipped, NaN kept) and the gate column (ones without ``gate_column``)."""
        if self.gate_column:
            if X.shape[1] < 2:
                raise ValueError(
                    "gate_column=True needs a feature column before the gate; got "
                    f"n_features = {X.shape[1]}"
                )
            gate = np.nan_to_num(np.clip(X[:, -1], 0.0, 1.0), nan=1.0)
            return np.clip(X[:, :-1], 0.0, 1.0), gate
        return np.clip(X, 0.0, 1.0), np.ones(X.shape[0])

    def _prior(self, template: Template | None, n_features: int) -> tuple[np.ndarray, ...]:
        k = len(self.classes_)
        p0 = np.full((k, n_features), 0.5)
        s0 = np.full((k, n_features), 2.0 if self.prior_strength is None else 0.0)
        if template is not None:
            if n_features != len(template.features):
                raise ValueError(
                    f"X has {n_features} feature columns; template {template.name} has "
                    f"{len(template.features)} features"
                )
            for i in range(k):
                positive = i == self._positive_index(template)
                p0[i] = [f.p_positive if positive else f.p_negative for f in template.features]
                s0[i] = [
                    f.strength_positive if positive else f.strength_negative
                    for f in template.features
                ]
        if self.prior_strength is not None:
            s0[:] = float(self.prior_strength)
        return p0, s0

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Estimate per-class feature probabilities, strengths and group weights.

        Parameters
        ----------
        X : array-like of shape (n_studies, n_features [+ 1])
            Feature degrees 0-1 (NaN = unavailable), then the gate if ``gate_column``.
        y : array-like of shape (n_studies,)
            Class labels (the template's class names, or 1/True for the positive class).

        Returns
        -------
        PatternClassifier
            self.
        """
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(
                "PatternClassifier needs at least two classes in y; got 1 class "
                f"({self.classes_[0]!r})"
            )
        template = self._template()
        degrees, gate = self._split(X)
        n_features = degrees.shape[1]
        self.feature_names_ = (
            np.array([f.id for f in template.features])
            if template is not None
            else np.array([f"x{j}" for j in range(n_features)])
        )
        p0, s0 = self._prior(template, n_features)
        self.feature_prob_ = np.empty_like(p0)
        self.feature_strength_ = np.empty_like(p0)
        for i, cls in enumerate(self.classes_):
            rows, g = degrees[y == cls], gate[y == cls, None]
            observed = np.isfinite(rows)
            d = np.where(observed, rows, 0.0)
            count = observed.sum(axis=0)
            p = p0[i].copy()
            for _ in range(_EM_ITERATIONS):
                q = np.clip(g * p, 1e-12, 1 - 1e-12)
                expressed = d + (1.0 - d) * np.clip((1.0 - g) * p / (1.0 - q), 0.0, 1.0)
                present = np.where(observed, expressed, 0.0).sum(axis=0)
                p = (s0[i] * p0[i] + present) / np.maximum(s0[i] + count, 1e-12)
                p = np.clip(p, 1e-6, 1 - 1e-6)
            self.feature_prob_[i] = p
            self.feature_strength_[i] = s0[i] + count
        self.weights_, self.group_correlation_ = self._weights(template, degrees, y)
        self.class_prior_ = self._class_prior(template, y)
        return self

    def _weights(
        self, template: Template | None, degrees: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, dict[str, float]]:
        weights = np.ones(degrees.shape[1])
        if template is None:
            return weights, {}
        index = {f.id: j for j, f in enumerate(template.features)}
        correlations: dict[str, float] = {}
        for group in template.groups:
            columns = [index[m] for m in group.features]
            r = group.correlation
            measured = [_mean_correlation(degrees[y == c][:, columns]) for c in self.classes_]
            sizes = [(y == c).sum() for c in self.classes_]
            if all(m is not None for m in measured) and min(sizes) >= _MIN_ROWS_FOR_CORRELATION:
                r = float(np.clip(np.average(measured, weights=sizes), 0.0, 1.0))
            correlations[group.id] = r
            weights[columns] = effective_number(len(columns), r) / len(columns)
        return weights, correlations

    def _class_prior(self, template: Template | None, y: np.ndarray) -> np.ndarray:
        counts = np.array([(y == c).sum() for c in self.classes_], dtype=float)
        k = len(self.classes_)
        if self.class_prior == "fit":
            return counts / counts.sum()
        if self.class_prior == "template" and template is not None and k == 2:
            out = np.empty(2)
            positive = self._positive_index(template)
            out[positive], out[1 - positive] = template.prior, 1.0 - template.prior
            return out
        if isinstance(self.class_prior, (int, float)) and not isinstance(self.class_prior, bool):
            if k == 2:
                return np.array([1.0 - float(self.class_prior), float(self.class_prior)])
        return np.full(k, 1.0 / k)

    def _positive_index(self, template: Template) -> int:
        names = [str(c) for c in self.classes_]
        if template.positive in names:
            return names.index(template.positive)
        for i, c in enumerate(self.classes_):
            if c is True or (isinstance(c, (int, np.integer)) and c == 1):
                return i
        return len(names) - 1

    def _joint_log(self, X: ArrayLike) -> np.ndarray:
        check_is_fitted(self, "feature_prob_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        d, gate = self._split(X)
        available = np.isfinite(d)
        d = np.where(available, d, 0.5)
        out = np.empty((X.shape[0], len(self.classes_)))
        for i, p in enumerate(self.feature_prob_):
            per_feature = self.weights_ * log_virtual_evidence(d, p, gate[:, None])
            out[:, i] = np.where(available, per_feature, 0.0).sum(axis=1)
        return out + np.log(self.class_prior_)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Posterior class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_studies, n_columns)

        Returns
        -------
        numpy.ndarray of shape (n_studies, n_classes)
        """
        joint = self._joint_log(X)
        joint -= joint.max(axis=1, keepdims=True)
        proba = np.exp(joint)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Most probable class per study.

        Parameters
        ----------
        X : array-like of shape (n_studies, n_columns)

        Returns
        -------
        numpy.ndarray of shape (n_studies,)
        """
        joint = self._joint_log(X)  # first: raises NotFittedError before classes_ is read
        return self.classes_[np.argmax(joint, axis=1)]

    def get_learned_parameters(self) -> dict:
        """Fitted parameters as plain data (for YAML/JSON; never pickle)."""
        check_is_fitted(self, "feature_prob_")
        return {
            "format": "mri_scoring.PatternClassifier/2",
            "params": self.get_params(),
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes_],
            "feature_names": [str(f) for f in self.feature_names_],
            "n_features_in": int(self.n_features_in_),
            "feature_prob": self.feature_prob_.tolist(),
            "feature_strength": self.feature_strength_.tolist(),
            "weights": self.weights_.tolist(),
            "group_correlation": dict(self.group_correlation_),
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
        if not isinstance(data, dict) or data.get("format") != "mri_scoring.PatternClassifier/2":
            raise ConfigError(f"{path}: not a PatternClassifier parameter file (format 2)")
        model = cls(**data["params"])
        model.classes_ = np.array(data["classes"])
        model.feature_names_ = np.array(data["feature_names"])
        model.n_features_in_ = int(data["n_features_in"])
        model.feature_prob_ = np.array(data["feature_prob"], dtype=float)
        model.feature_strength_ = np.array(data["feature_strength"], dtype=float)
        model.weights_ = np.array(data["weights"], dtype=float)
        model.group_correlation_ = dict(data["group_correlation"])
        model.class_prior_ = np.array(data["class_prior"], dtype=float)
        return model


def _mean_correlation(block: np.ndarray) -> float | None:
    """Mean pairwise Pearson correlation of the columns (complete rows); None if undefined."""
    rows = block[np.isfinite(block).all(axis=1)]
    if len(rows) < 3 or block.shape[1] < 2:
        return None
    spread = rows.std(axis=0)
    if np.any(spread < 1e-9):
        return None
    r = np.corrcoef(rows, rowvar=False)
    return float(r[np.triu_indices_from(r, k=1)].mean())
