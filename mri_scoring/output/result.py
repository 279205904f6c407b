"""The result of scoring one study, as data: :class:`StudyResult` and its ``score.json`` document.

Knows nothing of files or HTML: :meth:`StudyResult.save` hands the result to
:func:`mri_scoring.output.write.save_study`, which writes the tables, the report and the JSON.
"""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, overload

import numpy as np
import pandas as pd

from .. import __version__
from ..config import Settings
from ..errors import QCFinding
from ..files import JSONValue
from ..io.study import Study
from ..io.subjects import SessionInfo
from ..measure.voxel_maps import VoxelMaps
from ..pattern.likelihood import Likelihood
from ..pattern.panel import Comparison, class_key
from ..pattern.population import PopulationPosterior
from ..pattern.templates import Template
from ..schema import DISCLAIMER, SUMMARY_FIXED, SUMMARY_POPULATION

__all__ = [
    "SOFTWARE",
    "StudyResult",
    "json_safe",
    "qc_codes",
    "software_versions",
    "summary_row",
]

SOFTWARE = ("numpy", "scipy", "nibabel", "pandas", "scikit-learn", "scikit-image", "PyYAML")


@overload
def json_safe(value: dict[Any, Any]) -> dict[str, JSONValue]: ...
@overload
def json_safe(value: object) -> JSONValue: ...
def json_safe(value: object) -> JSONValue:
    """Plain JSON data: NaN and infinities become None, numpy scalars Python numbers.

    Parameters
    ----------
    value : object
        Nested dicts, lists and tuples of numbers, strings, None and numpy scalars.

    Returns
    -------
    JSONValue
        The same structure, safe for ``json.dumps(..., allow_nan=False)``.

    Examples
    --------
    >>> json_safe({"a": float("nan"), "b": [np.int64(2), np.float32(0.5)]})
    {'a': None, 'b': [2, 0.5]}
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


@cache
def software_versions() -> dict[str, str]:
    """Versions of this package, Python and the numerical libraries (``score.json``)."""
    versions = {"mri_scoring": __version__, "python": platform.python_version()}
    for name in SOFTWARE:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass(kw_only=True)
class StudyResult:
    """Everything scored for one study.

    Attributes
    ----------
    study_id : str
        The study's sanitised identifier.
    muscles : pandas.DataFrame
        Graded per-muscle table (the columns of ``muscles.tsv``).
    likelihood : Likelihood
        The likelihood of the first template of the panel (IMNM vs DM by default) with every
        feature's evidence.
    qc : list of QCFinding
        Loading and measurement findings.
    inputs : dict
        Role -> ``{"file": path relative to the study folder, "sha256": ...}``.
    config_sha256 : str
        Hash of the effective settings.
    template : Template
        The first template of the panel.
    further : list of Comparison
        The further templates of the panel and their likelihoods, in order (empty for a panel
        of one); :attr:`comparisons` lists all of them, the first included.
    edema_reference : dict
        The normal-muscle STIR reference the edema measures used.
    noise_sigma : float or None
        Dixon magnitude noise sigma (image units); None without Dixon images or when it could
        not be found. In ``score.json`` as ``noise.sigma`` with ``noise.source``.
    noise_source : str
        How the sigma was found (``background``, ``tissue_differences``, ``none``, "").
    fat_scale : dict or None
        Subcutaneous-fat and marrow FF readings of a Dixon study (``score.json`` ``fat_scale``;
        None without Dixon images).
    study : Study or None
        The loaded study (kept in memory for figures; not serialised).
    session : SessionInfo or None
        Subject, session and date (``score.json`` ``session``), for follow-up comparisons.
    voxel_maps : VoxelMaps or None
        The per-voxel masks and FF the table was counted from (figures, ``--maps``; not
        serialised).
    settings : Settings or None
        The effective settings (grade bands and normal ranges for the report; not serialised).
    slices : pandas.DataFrame or None
        Per-slice cross-sections (``slices.tsv``; columns of
        :data:`~mri_scoring.schema.SLICE_COLUMNS`).
    norms : dict
        Where each norm came from (``score.json`` ``norms``: ``volume``, ``fat``, ``t2``, each
        ``{basis, source, age_years}``).
    population : PopulationPosterior or None
        The likelihood ratio read with a population prior (``score.json`` ``population``);
        ``p_imnm`` and the call do not use it.
    compartments : pandas.DataFrame or None
        Tissue compartments outside the muscles, one row per compartment and side
        (``compartments.tsv``; columns of :data:`~mri_scoring.schema.COMPARTMENT_COLUMNS`).
    """

    study_id: str
    muscles: pd.DataFrame
    likelihood: Likelihood
    qc: list[QCFinding]
    inputs: dict[str, dict[str, str]]
    config_sha256: str
    template: Template
    edema_reference: dict[str, Any] = field(default_factory=dict)
    noise_sigma: float | None = None
    noise_source: str = ""
    fat_scale: dict[str, Any] | None = None
    study: Study | None = field(default=None, repr=False)
    session: SessionInfo | None = None
    voxel_maps: VoxelMaps | None = field(default=None, repr=False)
    settings: Settings | None = field(default=None, repr=False)
    slices: pd.DataFrame | None = field(default=None, repr=False)
    norms: dict[str, Any] = field(default_factory=dict)
    population: PopulationPosterior | None = None
    further: list[Comparison] = field(default_factory=list, repr=False)
    compartments: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def comparisons(self) -> list[Comparison]:
        """Every template of the panel with its likelihood, the first one first."""
        return [Comparison(self.template, self.likelihood), *self.further]

    def __repr__(self) -> str:
        """One line: id, call, p(IMNM) with its interval, muscle rows and warnings."""
        like = self.likelihood
        low, high = like.p_imnm_interval
        warnings = sum(q.level == "warning" for q in self.qc)
        return (
            f"StudyResult({self.study_id!r}, call={like.call!r}, p_imnm={like.p_imnm:.3f} "
            f"[{low:.2f}, {high:.2f}], muscles={len(self.muscles)} rows, "
            f"qc_warnings={warnings})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``score.json`` document: plain JSON data, missing values as None.

        The first template's answer fills the top level (``p_imnm``, ``p_dm``, ``call``, ...);
        ``templates`` holds one entry per template of the panel, the first included, with the
        same keys plus ``classes`` (the second class's posterior is ``p_<class>``, e.g.
        ``p_dm``, ``p_dystrophy``).
        """
        entries = [comparison_dict(c.template, c.likelihood) for c in self.comparisons]
        top = {k: v for k, v in entries[0].items() if k != "classes"}
        return json_safe(
            {
                "study_id": self.study_id,
                **top,
                "qc": [q.to_dict() for q in self.qc],
                "norms": self.norms,
                "population": self.population.to_dict() if self.population else None,
                "edema_reference": self.edema_reference,
                "noise": {"sigma": self.noise_sigma, "source": self.noise_source},
                "fat_scale": self.fat_scale,
                "session": self.session.to_dict() if self.session else None,
                "inputs": self.inputs,
                "software": software_versions(),
                "config_sha256": self.config_sha256,
                "templates": entries,
                "disclaimer": DISCLAIMER,
            }
        )

    def summary_row(self) -> dict[str, Any]:
        """One ``summary.tsv`` row: id, p(IMNM) and interval, log10 LR, call, feature degrees."""
        return summary_row(self.to_dict())

    def save(
        self,
        out: str | Path,
        report: bool = True,
        maps: bool = False,
        view: str = "radiological",
        dicom: bool = False,
    ) -> Path:
        """Write the study's tables, report, maps and ``score.json`` into ``out``.

        ``muscles.tsv``, ``muscles_pooled.tsv``, ``groups.tsv``, ``report.html`` (optional),
        the voxel maps (optional, ``maps/``), DICOM SEG, SR and FF map (optional, ``dicom/``;
        needs ``convert --dicom-refs``) and, last, ``score.json``.

        A convenience for :func:`mri_scoring.output.write.save_study` (imported here, when
        called, so that this data type does not depend on the writers).

        Returns
        -------
        Path
            The folder written.
        """
        from .write import save_study

        return save_study(self, out, report=report, maps=maps, view=view, dicom=dicom)


def comparison_dict(template: Template, like: Likelihood) -> dict[str, Any]:
    """One template's answer as ``score.json`` keys (top level and ``templates`` entries).

    Parameters
    ----------
    template : Template
    like : Likelihood
        The study's likelihood under ``template``.

    Returns
    -------
    dict
        ``template``, ``template_sha256``, ``prior_imnm``, ``p_imnm``, ``p_imnm_interval``,
        ``p_<second class>``, ``log10_likelihood_ratio``, ``call``, ``reading`` (the posterior in
        words, never the call), ``applicable``,
        ``involved_muscles``, ``absence_gate``, ``notes``, ``features``, ``classes``.
    """
    negative = class_key(template.negative)
    features = [
        {
            "id": c.id,
            "description": c.description,
            "available": c.available,
            "value": c.value,
            "degree": c.degree,
            "log10_lr_contribution": c.log10_lr_contribution,
            "source": c.source,
            "p_imnm": c.p_imnm,
            negative: c.p_dm,
            "muscles_used": c.muscles_used,
            "reason": c.reason,
            "weight": c.weight,
        }
        for c in like.features
    ]
    return {
        "template": template.name,
        "template_sha256": template.sha256,
        "prior_imnm": like.prior_imnm,
        "p_imnm": like.p_imnm,
        "p_imnm_interval": like.p_imnm_interval,
        negative: like.p_dm,
        "log10_likelihood_ratio": like.log10_likelihood_ratio,
        "call": like.call,
        "reading": like.reading,
        "applicable": like.applicable,
        "involved_muscles": like.involved_muscles,
        "absence_gate": like.absence_gate,
        "notes": like.notes,
        "features": features,
        "classes": list(template.classes),
    }


def summary_row(document: dict[str, Any]) -> dict[str, Any]:
    """The ``summary.tsv`` row of a ``score.json`` document (missing values as NaN).

    Parameters
    ----------
    document : dict
        A ``score.json`` document (:meth:`StudyResult.to_dict`).

    Returns
    -------
    dict
        ``study_id``, ``p_imnm`` with its interval (``p_imnm_lo``, ``p_imnm_hi``),
        ``log10_likelihood_ratio``, ``call``, ``qc`` (the warning codes, :func:`qc_codes`),
        then each feature's degree of the first template (NaN when the feature was
        unavailable), then each further template's ``<name>_p_imnm``, ``<name>_p_imnm_lo``,
        ``<name>_p_imnm_hi`` and ``<name>_call``;
        then, with a population prior, ``population``, ``p_imnm_population`` and its interval.
    """
    low, high = document["p_imnm_interval"]
    derived = {"p_imnm_lo": low, "p_imnm_hi": high, "qc": qc_codes(document.get("qc", []))}
    row = {key: derived[key] if key in derived else document[key] for key in SUMMARY_FIXED}
    for feature in document["features"]:
        row[feature["id"]] = feature["degree"] if feature["available"] else None
    for entry in document.get("templates", [])[1:]:
        low, high = entry["p_imnm_interval"]
        name = entry["template"]
        row.update(
            {
                f"{name}_p_imnm": entry["p_imnm"],
                f"{name}_p_imnm_lo": low,
                f"{name}_p_imnm_hi": high,
                f"{name}_call": entry["call"],
            }
        )
    population = document.get("population")
    if population:
        values = [population["name"], population["p_imnm"], *population["interval"]]
        row.update(zip(SUMMARY_POPULATION, values, strict=True))
    return {k: (np.nan if v is None else v) for k, v in row.items()}


def qc_codes(findings: list[dict[str, Any]]) -> str:
    """The ``qc`` cell of a study: its warning codes, ``;``-separated, each once ("" if none).

    Examples
    --------
    >>> qc_codes([{"level": "warning", "code": "a"}, {"level": "info", "code": "b"},
    ...           {"level": "warning", "code": "a"}])
    'a'
    """
    codes = [f["code"] for f in findings if f.get("level") == "warning"]
    return ";".join(dict.fromkeys(codes))
