"""Follow-up: per-muscle change between a subject's scored sessions, against repeatability bands.

Input is what a batch wrote for each study (``score.json`` and ``muscles.tsv``), so scored and
resumed studies count alike; :func:`compare_sessions` also takes in-memory results. Sessions
of one subject are ordered by date (ISO), else by session label. Every consecutive pair and
the first → last pair are compared.

A change counts only beyond its band (``configs/longitudinal.yaml``, sources there); inside it
the muscle is ``stable``. A muscle labelled or measured in one session only, or cut by the
field of view (its volume), is ``not assessable`` — never a change. Fat fraction or edema going
up is ``worse``, down ``better``; volume going down is ``worse`` (atrophy). In a growing child
(either session on the ``body_size_paediatric`` basis) the volume is read against the norm at
each session's age: the relative change of ``volume_ratio``, so a child who grew as expected is
``stable`` and one whose muscles did not grow is ``worse``. Template features and p(IMNM) are
not good or bad in themselves: they are ``higher`` / ``lower``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..config import load_config_file

__all__ = [
    "FEATURE_COLUMNS",
    "MUSCLE_COLUMNS",
    "NOT_ASSESSABLE",
    "SessionComparison",
    "SessionRecord",
    "bands",
    "compare_records",
    "read_record",
    "record_from_document",
    "subjects_with_followup",
]

MUSCLE_COLUMNS = (
    "subject_id",
    "muscle",
    "side",
    "pair",
    "session_from",
    "session_to",
    "days",
    "delta_ff",
    "delta_edema_fraction",
    "delta_volume_ml",
    "delta_volume_ratio",
    "change_ff",
    "change_edema",
    "change_volume",
    "note",
)
FEATURE_COLUMNS = (
    "subject_id",
    "feature",
    "pair",
    "session_from",
    "session_to",
    "days",
    "value_from",
    "value_to",
    "delta",
    "change",
    "note",
)
NOT_ASSESSABLE = "not assessable"
PAEDIATRIC = "body_size_paediatric"
GROWING_NOTE = "child: volume change read against the norm at each session's age"


@dataclass(kw_only=True)
class SessionRecord:
    """One scored session of a subject, as the comparison needs it.

    Attributes
    ----------
    study_id, subject_id, session_id : str
    date : str
        ISO date or ``""``.
    muscles : pandas.DataFrame
        The study's ``muscles.tsv`` rows.
    features : dict of str -> float or None
        Template feature degree (None when unavailable), plus ``p_imnm``.
    template_sha256, config_sha256 : str
        What the session was scored with (sessions scored differently are compared with a note).
    """

    study_id: str
    subject_id: str
    session_id: str
    date: str
    muscles: pd.DataFrame
    features: dict[str, float | None] = field(default_factory=dict)
    template_sha256: str = ""
    config_sha256: str = ""


@dataclass
class SessionComparison:
    """The outcome of :func:`compare_sessions`.

    Attributes
    ----------
    muscles : pandas.DataFrame
        One row per subject, muscle, side and pair (columns :data:`MUSCLE_COLUMNS`).
    features : pandas.DataFrame
        One row per subject, template feature (and ``p_imnm``) and pair.
    warnings : list of str
        Subjects whose sessions were scored with different templates or settings.
    """

    muscles: pd.DataFrame
    features: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


def bands() -> dict[str, float]:
    """The repeatability bands of ``configs/longitudinal.yaml``."""
    return {k: float(v) for k, v in load_config_file("longitudinal.yaml")["bands"].items()}


def read_record(study_dir: Path) -> SessionRecord | None:
    """A :class:`SessionRecord` from a study output folder; None if it is incomplete."""
    try:
        document = json.loads((study_dir / "score.json").read_text(encoding="utf-8"))
        muscles = pd.read_csv(study_dir / "muscles.tsv", sep="\t", keep_default_na=True)
    except (OSError, ValueError):
        return None
    return record_from_document(document, muscles)


def record_from_document(document: dict[str, Any], muscles: pd.DataFrame) -> SessionRecord:
    """A :class:`SessionRecord` from a ``score.json`` document and its muscle table."""
    session = document.get("session") or {}
    features: dict[str, float | None] = {
        f["id"]: (f["degree"] if f.get("available") else None) for f in document["features"]
    }
    features["p_imnm"] = document.get("p_imnm")
    study_id = document["study_id"]
    return SessionRecord(
        study_id=study_id,
        subject_id=str(session.get("subject_id") or study_id),
        session_id=str(session.get("session_id") or study_id),
        date=str(session.get("date") or ""),
        muscles=muscles,
        features=features,
        template_sha256=str(document.get("template_sha256", "")),
        config_sha256=str(document.get("config_sha256", "")),
    )


def _natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _order(records: list[SessionRecord]) -> list[SessionRecord]:
    """By date when every session has one, else by session label (natural order)."""
    if all(r.date for r in records):
        return sorted(records, key=lambda r: (r.date, _natural_key(r.session_id)))
    return sorted(records, key=lambda r: _natural_key(r.session_id))


def _days(a: SessionRecord, b: SessionRecord) -> float:
    if a.date and b.date:
        return float((dt.date.fromisoformat(b.date) - dt.date.fromisoformat(a.date)).days)
    return math.nan


def _classify(delta: float, band: float, up: str, down: str) -> str:
    if not np.isfinite(delta):
        return NOT_ASSESSABLE
    return up if delta > band else down if delta < -band else "stable"


def _measured(muscles: pd.DataFrame) -> pd.DataFrame:
    """Rows of muscles and compartments, keyed by (muscle, side); duplicates merged by label."""
    kinds = muscles["kind"] if "kind" in muscles.columns else pd.Series("muscle", muscles.index)
    rows = muscles[kinds.isin(("muscle", "group"))].copy()
    rows["side"] = rows["side"].fillna("").astype(str)
    return rows.drop_duplicates(["muscle", "side"]).set_index(["muscle", "side"])


def _value(row: pd.Series | None, column: str) -> float:
    if row is None or column not in row.index:
        return math.nan
    value = pd.to_numeric(row[column], errors="coerce")
    return float(value) if pd.notna(value) else math.nan


def _text(row: pd.Series | None, column: str) -> str:
    if row is None or column not in row.index or pd.isna(row[column]):
        return ""
    return str(row[column])


def _partial(row: pd.Series | None) -> bool:
    flags = "" if row is None else str(row.get("qc_flags", "") or "")
    return schema.PARTIAL_COVERAGE in flags.split(";")


def _muscle_rows(
    a: SessionRecord, b: SessionRecord, pair: str, note: str, band: dict[str, float]
) -> list[dict[str, Any]]:
    first, second = _measured(a.muscles), _measured(b.muscles)
    rows = []
    for key in sorted(set(first.index) | set(second.index)):
        ra = first.loc[key] if key in first.index else None
        rb = second.loc[key] if key in second.index else None
        d_ff = _value(rb, "ff_median") - _value(ra, "ff_median")
        d_edema = _value(rb, "edema_fraction") - _value(ra, "edema_fraction")
        volume_a, volume_b = _value(ra, "volume_ml"), _value(rb, "volume_ml")
        d_volume = volume_b - volume_a
        if _partial(ra) or _partial(rb):
            d_volume = math.nan
        relative = d_volume / volume_a if volume_a > 0 else math.nan
        ratio_a, ratio_b = _value(ra, "volume_ratio"), _value(rb, "volume_ratio")
        growing = PAEDIATRIC in (_text(ra, "atrophy_basis"), _text(rb, "atrophy_basis"))
        if growing:  # against the norm at each session's age (NaN if either has none)
            usable = ratio_a > 0 and np.isfinite(d_volume)
            relative = ratio_b / ratio_a - 1.0 if usable else math.nan
        rows.append(
            {
                "subject_id": a.subject_id,
                "muscle": key[0],
                "side": key[1],
                "pair": pair,
                "session_from": a.session_id,
                "session_to": b.session_id,
                "days": _days(a, b),
                "delta_ff": d_ff,
                "delta_edema_fraction": d_edema,
                "delta_volume_ml": d_volume,
                "delta_volume_ratio": ratio_b - ratio_a,
                "change_ff": _classify(d_ff, band["ff"], "worse", "better"),
                "change_edema": _classify(d_edema, band["edema_fraction"], "worse", "better"),
                "change_volume": _classify(relative, band["volume_relative"], "better", "worse"),
                "note": "; ".join(n for n in (note, GROWING_NOTE if growing else "") if n),
            }
        )
    return rows


def _feature_rows(
    a: SessionRecord, b: SessionRecord, pair: str, note: str, band: dict[str, float]
) -> list[dict[str, Any]]:
    rows = []
    for feature in sorted(set(a.features) | set(b.features)):
        va, vb = a.features.get(feature), b.features.get(feature)
        va = math.nan if va is None else float(va)
        vb = math.nan if vb is None else float(vb)
        width = band["p_imnm"] if feature == "p_imnm" else band["feature_degree"]
        rows.append(
            {
                "subject_id": a.subject_id,
                "feature": feature,
                "pair": pair,
                "session_from": a.session_id,
                "session_to": b.session_id,
                "days": _days(a, b),
                "value_from": va,
                "value_to": vb,
                "delta": vb - va,
                "change": _classify(vb - va, width, "higher", "lower"),
                "note": note,
            }
        )
    return rows


def _pairs(ordered: list[SessionRecord]) -> list[tuple[SessionRecord, SessionRecord, str]]:
    pairs = [(a, b, "consecutive") for a, b in itertools.pairwise(ordered)]
    if len(ordered) > 2:
        pairs.append((ordered[0], ordered[-1], "first_last"))
    return pairs


def compare_records(records: Iterable[SessionRecord]) -> SessionComparison:
    """Compare every subject's sessions (see the module text for the rules).

    Parameters
    ----------
    records : iterable of SessionRecord
        Sessions of any number of subjects; subjects with one session give no rows.

    Returns
    -------
    SessionComparison
    """
    band = bands()
    by_subject: dict[str, list[SessionRecord]] = {}
    for record in records:
        by_subject.setdefault(record.subject_id, []).append(record)
    muscle_rows: list[dict[str, Any]] = []
    feature_rows: list[dict[str, Any]] = []
    warnings = []
    for subject in sorted(by_subject):
        ordered = _order(by_subject[subject])
        for a, b, pair in _pairs(ordered):
            note = ""
            if a.template_sha256 != b.template_sha256:
                note = "scored with different templates"
            elif a.config_sha256 != b.config_sha256:
                note = "scored with different settings"
            if note:
                warnings.append(f"{subject}: {a.session_id} and {b.session_id} {note}")
            muscle_rows += _muscle_rows(a, b, pair, note, band)
            feature_rows += _feature_rows(a, b, pair, note, band)
    return SessionComparison(
        pd.DataFrame(muscle_rows, columns=list(MUSCLE_COLUMNS)),
        pd.DataFrame(feature_rows, columns=list(FEATURE_COLUMNS)),
        sorted(set(warnings)),
    )


def subjects_with_followup(records: Iterable[SessionRecord]) -> dict[str, list[SessionRecord]]:
    """Subjects with two or more sessions -> their sessions in order."""
    by_subject: dict[str, list[SessionRecord]] = {}
    for record in records:
        by_subject.setdefault(record.subject_id, []).append(record)
    return {s: _order(r) for s, r in sorted(by_subject.items()) if len(r) >= 2}
