"""``PatternClassifier``: the template's soft-evidence naive Bayes as a scikit-learn estimator.

Kept apart from :mod:`mri_scoring.pattern.likelihood` so that scoring a study never imports
scikit-learn (about a second of start-up per process).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import ConfigError
from .templates import Template


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
