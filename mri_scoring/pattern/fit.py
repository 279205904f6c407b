"""Fitting a template's probabilities to a centre's own labelled cohort (``mri-scoring fit``).

Reads a batch output folder (each study's ``muscles.tsv``) and a labels file (``study_id``,
``diagnosis``), recomputes every template feature from the measured tables, cross-validates
:class:`~mri_scoring.pattern.classifier.PatternClassifier` on them and writes the fitted
template: the same features and thresholds, the fitted probabilities with their cohort
pseudo-counts as strengths, the measured group correlations, and a ``provenance`` block (cohort
size per class, fingerprint, CV figures). A fit report (ROC, calibration, fitted vs elicited
probabilities with 90 % intervals) is written beside it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import yaml

from .. import __version__
from ..config import Settings, load_settings, load_yaml
from ..errors import ConfigError
from ..files import atomic_write
from ..grading import grade
from ..io.qc_ratings import excluded_ids
from .likelihood import combine, evidence_frame
from .match import involved_muscles, match
from .templates import Template, load_template

if TYPE_CHECKING:  # the classifier imports scikit-learn: fit_template imports it when called
    from .classifier import PatternClassifier

__all__ = [
    "CohortEvidence",
    "FitResult",
    "cohort_evidence",
    "fit_template",
    "fitted_template_data",
    "read_labels",
]

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class CohortEvidence:
    """The labelled cohort's feature degrees.

    Attributes
    ----------
    study_ids : list of str
    diagnosis : numpy.ndarray of str
    X : numpy.ndarray
        One column per template feature (degree, NaN = unavailable), then the absence gate.
    p_elicited : numpy.ndarray
        p(positive) of each study under the template as given.
    fingerprint : str
        sha256 over the sorted (study id, diagnosis, muscles.tsv sha256) triples.
    warnings : list of str
        Skipped rows and studies, one line each.
    """

    study_ids: list[str]
    diagnosis: np.ndarray
    X: np.ndarray
    p_elicited: np.ndarray
    fingerprint: str
    warnings: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class FitResult:
    """What :func:`fit_template` wrote and measured.

    Attributes
    ----------
    template_path, report_path : Path
    counts : dict of str -> int
        Studies per class.
    cv_auc, cv_brier : float
        Out-of-fold AUC and Brier score of the fitted model.
    elicited_auc, elicited_brier : float
        The same on the same cohort with the template as given (nothing fitted).
    warnings : list of str
    """

    template_path: Path
    report_path: Path
    counts: dict[str, int]
    cv_auc: float
    cv_brier: float
    elicited_auc: float
    elicited_brier: float
    warnings: list[str]


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read a TSV/CSV labels file with columns ``study_id`` and ``diagnosis``.

    Parameters
    ----------
    path : path
        Tab- or comma-separated (detected).

    Returns
    -------
    pandas.DataFrame
        Columns ``study_id``, ``diagnosis`` (strings, stripped).

    Raises
    ------
    ConfigError
        One line naming the file and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: labels file not found")
    try:
        table = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ConfigError(f"{path}: not a readable TSV/CSV table ({exc})") from None
    missing = {"study_id", "diagnosis"} - set(table.columns)
    if missing:
        raise ConfigError(
            f"{path}: needs columns study_id and diagnosis (missing: {', '.join(sorted(missing))})"
        )
    return table[["study_id", "diagnosis"]].apply(lambda c: c.str.strip())


def _batch_tables(batch_out: Path) -> dict[str, Path]:
    """study_id -> muscles.tsv of every study folder in a batch output."""
    out = {}
    for path in sorted(batch_out.glob("*/muscles.tsv")):
        ids = pd.read_csv(path, sep="\t", usecols=["study_id"], dtype=str, nrows=1)["study_id"]
        out[str(ids.iloc[0]) if len(ids) else path.parent.name] = path
    return out


def cohort_evidence(
    batch_out: str | Path,
    labels: str | Path | pd.DataFrame,
    template: Template,
    settings: Settings | None = None,
) -> CohortEvidence:
    """Recompute the template's features for every labelled study of a batch output.

    Parameters
    ----------
    batch_out : path
        A ``mri-scoring batch`` output folder (``<study_id>/muscles.tsv``); studies its
        ``qc_ratings.tsv`` excludes are skipped with a warning.
    labels : path or pandas.DataFrame
        ``study_id``, ``diagnosis``; diagnoses other than the template's two classes are
        skipped with a warning, as are labelled studies missing from the batch.
    template : Template
    settings : Settings, optional

    Returns
    -------
    CohortEvidence
    """
    batch_out = Path(batch_out)
    if not batch_out.is_dir():
        raise ConfigError(f"{batch_out}: batch output folder not found")
    settings = settings or load_settings()
    table = labels if isinstance(labels, pd.DataFrame) else read_labels(labels)
    classes = (template.positive, template.negative)
    warnings = []
    other = table[~table["diagnosis"].isin(classes)]
    if len(other):
        values = ", ".join(sorted(set(other["diagnosis"])))
        warnings.append(
            f"skipped {len(other)} studies whose diagnosis is not {' or '.join(classes)}: {values}"
        )
    tables = _batch_tables(batch_out)
    excluded = excluded_ids(batch_out)  # the reviewer's qc_ratings.tsv
    ids, diagnosis, likelihoods, digests = [], [], [], []
    for study_id, dx in table[table["diagnosis"].isin(classes)].itertuples(index=False):
        if study_id in excluded:
            warnings.append(f"skipped {study_id}: excluded by {batch_out / 'qc_ratings.tsv'}")
            continue
        path = tables.get(study_id)
        if path is None:
            warnings.append(f"skipped {study_id}: no {study_id}/muscles.tsv in {batch_out}")
            continue
        muscles = grade(
            pd.read_csv(
                path,
                sep="\t",
                keep_default_na=True,
                dtype={"qc_flags": str, "side": str, "group": str},
            ),
            settings,
        )
        muscles[["side", "group"]] = muscles[["side", "group"]].fillna("")
        compartments_path = path.with_name("compartments.tsv")
        compartments = (
            pd.read_csv(
                compartments_path,
                sep="\t",
                keep_default_na=True,
                dtype={"note": str, "edema_source": str},
            ).fillna({"note": ""})
            if compartments_path.is_file()
            else None
        )
        likelihoods.append(
            combine(
                match(muscles, template, settings, compartments=compartments),
                template,
                involved_muscles(muscles, template),
            )
        )
        ids.append(study_id)
        diagnosis.append(dx)
        digests.append(f"{study_id}\t{dx}\t{hashlib.sha256(path.read_bytes()).hexdigest()}")
    for line in warnings:
        log.warning(line)
    X = evidence_frame(likelihoods, template).to_numpy(dtype=float)
    fingerprint = hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()
    return CohortEvidence(
        study_ids=ids,
        diagnosis=np.array(diagnosis, dtype=str),
        X=X,
        p_elicited=np.array([x.p_imnm for x in likelihoods]),
        fingerprint=fingerprint,
        warnings=warnings,
    )


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def fitted_template_data(
    template: Template,
    model: PatternClassifier,
    cohort: CohortEvidence,
    figures: dict[str, float],
    folds: int,
) -> dict:
    """The fitted template as YAML-ready data: the original with fitted numbers and provenance."""
    data = load_yaml(Path(template.path))
    positive = list(model.classes_).index(template.positive)
    negative = 1 - positive
    counts = {c: int((cohort.diagnosis == c).sum()) for c in (template.positive, template.negative)}
    tag = (
        f"[fitted: cohort {cohort.fingerprint[:12]}, n = {counts[template.positive]} "
        f"{template.positive} + {counts[template.negative]} {template.negative}]"
    )
    named = isinstance(data.get("classes"), list)  # classes: [A, B]; else the first schema
    keys = template.classes if named else ("imnm", "dm")
    for j, feature in enumerate(data["features"]):
        probabilities = [round(float(model.feature_prob_[i, j]), 4) for i in (positive, negative)]
        if named:
            feature["p"] = dict(zip(keys, probabilities, strict=True))
        else:
            feature["p_imnm"], feature["p_dm"] = probabilities
        feature["strength"] = {
            keys[0]: round(float(model.feature_strength_[positive, j]), 2),
            keys[1]: round(float(model.feature_strength_[negative, j]), 2),
        }
        feature["source"] = f"{str(feature.get('source', '')).strip()} {tag}".strip()
    for group in data.get("dependence", {}).get("groups", []):
        if group["id"] in model.group_correlation_:
            group["correlation"] = round(float(model.group_correlation_[group["id"]]), 4)
            group["source"] = f"{str(group.get('source', '')).strip()} {tag}".strip()
    data["name"] = f"{template.name}_fitted"
    data["provenance"] = {
        "fitted_from": {"template": template.name, "sha256": template.sha256},
        "cohort": {"studies_per_class": counts, "fingerprint": cohort.fingerprint},
        "cross_validation": {"folds": folds, **{k: round(v, 4) for k, v in figures.items()}},
        "software": f"mri_scoring {__version__}",
    }
    return data


def fit_template(
    batch_out: str | Path,
    labels: str | Path | pd.DataFrame,
    out: str | Path,
    *,
    template: str | Path | Template | None = None,
    folds: int = 5,
    settings: Settings | None = None,
) -> FitResult:
    """Fit a template's probabilities to a labelled cohort, cross-validated; write it and a report.

    Parameters
    ----------
    batch_out : path
        A batch output folder (``<study_id>/muscles.tsv``).
    labels : path or pandas.DataFrame
        Columns ``study_id`` and ``diagnosis``: the template's two class names (``IMNM`` and
        ``DM`` for imnm_vs_dm, ``IMNM`` and ``dystrophy`` for imnm_vs_dystrophy, ...).
    out : path
        The fitted template YAML to write (usable with ``--template``); the fit report is
        written beside it as ``<stem>_report.html``.
    template : path or Template, optional
        The template to start from (its probabilities are the Beta prior); default the shipped.
    folds : int
        Cross-validation folds (stratified, shuffled with a fixed seed).
    settings : Settings, optional

    Returns
    -------
    FitResult
    """
    from sklearn.model_selection import StratifiedKFold

    from .classifier import PatternClassifier
    from .fit_report import fit_report_html

    if not isinstance(template, Template):
        template = load_template(template)
    cohort = cohort_evidence(batch_out, labels, template, settings)
    counts = {c: int((cohort.diagnosis == c).sum()) for c in (template.positive, template.negative)}
    if min(counts.values()) < max(folds, 2):
        raise ConfigError(
            f"{labels if not isinstance(labels, pd.DataFrame) else 'labels'}: need at least "
            f"{max(folds, 2)} studies of each class for {folds}-fold cross-validation, found "
            + ", ".join(f"{n} {c}" for c, n in counts.items())
        )
    y = (cohort.diagnosis == template.positive).astype(float)

    def model() -> PatternClassifier:
        return PatternClassifier(template=template.path, gate_column=True)

    out_of_fold = np.empty(len(y))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    for train, test in splitter.split(cohort.X, cohort.diagnosis):
        fitted = model().fit(cohort.X[train], cohort.diagnosis[train])
        column = list(fitted.classes_).index(template.positive)
        out_of_fold[test] = fitted.predict_proba(cohort.X[test])[:, column]
    figures = {
        "auc": _auc(y, out_of_fold),
        "brier": _brier(y, out_of_fold),
        "elicited_auc": _auc(y, cohort.p_elicited),
        "elicited_brier": _brier(y, cohort.p_elicited),
    }
    final = model().fit(cohort.X, cohort.diagnosis)
    data = fitted_template_data(template, final, cohort, figures, folds)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Fitted by `mri-scoring fit` from {template.name} on a labelled cohort (see "
        "provenance). Research use only; not a diagnostic rule.\n"
    )
    atomic_write(out, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    fitted_template = load_template(out)
    report = out.with_name(f"{out.stem}_report.html")
    atomic_write(
        report,
        fit_report_html(
            template, fitted_template, y, out_of_fold, cohort.p_elicited, figures, counts
        ),
    )
    return FitResult(
        template_path=out,
        report_path=report,
        counts=counts,
        cv_auc=figures["auc"],
        cv_brier=figures["brier"],
        elicited_auc=figures["elicited_auc"],
        elicited_brier=figures["elicited_brier"],
        warnings=cohort.warnings,
    )
