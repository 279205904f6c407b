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
from ..pattern.templates import Template
from ..schema import DISCLAIMER, SUMMARY_FIXED

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
        The IMNM-vs-DM likelihood with every feature's evidence.
    qc : list of QCFinding
        Loading and measurement findings.
    inputs : dict
        Role -> ``{"file": path relative to the study folder, "sha256": ...}``.
    config_sha256 : str
        Hash of the effective settings.
    template : Template
        The pattern template matched.
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
        """The ``score.json`` document: plain JSON data, missing values as None."""
        like = self.likelihood
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
                "p_dm": c.p_dm,
                "muscles_used": c.muscles_used,
                "reason": c.reason,
                "weight": c.weight,
            }
            for c in like.features
        ]
        return json_safe(
            {
                "study_id": self.study_id,
                "template": self.template.name,
                "template_sha256": self.template.sha256,
                "prior_imnm": like.prior_imnm,
                "p_imnm": like.p_imnm,
                "p_imnm_interval": like.p_imnm_interval,
                "p_dm": like.p_dm,
                "log10_likelihood_ratio": like.log10_likelihood_ratio,
                "call": like.call,
                "applicable": like.applicable,
                "involved_muscles": like.involved_muscles,
                "absence_gate": like.absence_gate,
                "notes": like.notes,
                "features": features,
                "qc": [q.to_dict() for q in self.qc],
                "edema_reference": self.edema_reference,
                "noise": {"sigma": self.noise_sigma, "source": self.noise_source},
                "fat_scale": self.fat_scale,
                "session": self.session.to_dict() if self.session else None,
                "inputs": self.inputs,
                "software": software_versions(),
                "config_sha256": self.config_sha256,
                "disclaimer": DISCLAIMER,
            }
        )

    def summary_row(self) -> dict[str, Any]:
        """One ``summary.tsv`` row: id, p(IMNM) and interval, log10 LR, call, feature degrees."""
        return summary_row(self.to_dict())

    def save(
        self, out: str | Path, report: bool = True, maps: bool = False, view: str = "radiological"
    ) -> Path:
        """Write the study's tables, report, maps and ``score.json`` into ``out``.

        ``muscles.tsv``, ``muscles_pooled.tsv``, ``groups.tsv``, ``report.html`` (optional),
        the voxel maps (optional, ``maps/``) and, last, ``score.json``.

        A convenience for :func:`mri_scoring.output.write.save_study` (imported here, when
        called, so that this data type does not depend on the writers).

        Returns
        -------
        Path
            The folder written.
        """
        from .write import save_study

        return save_study(self, out, report=report, maps=maps, view=view)


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
        then each feature's degree (NaN when the feature was unavailable).
    """
    low, high = document["p_imnm_interval"]
    derived = {"p_imnm_lo": low, "p_imnm_hi": high, "qc": qc_codes(document.get("qc", []))}
    row = {key: derived[key] if key in derived else document[key] for key in SUMMARY_FIXED}
    for feature in document["features"]:
        row[feature["id"]] = feature["degree"] if feature["available"] else None
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
