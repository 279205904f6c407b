"""Which subject and session a study is, and when it was acquired.

BIDS: ``sub-<label>[/ses-<label>]/anat`` gives both; the date comes from ``study.json`` /
the image sidecar's ``date`` or from the subject's ``sub-<label>_sessions.tsv`` (``acq_time``).
Simple layout: ``study.json`` ``subject_id``, ``session_id`` and ``date`` (ISO); a study without a
``subject_id`` is a subject of its own (one session, never compared).
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SessionInfo",
    "iso_date",
    "session_info",
    "sessions_file",
]


@dataclass(frozen=True)
class SessionInfo:
    """One study's place in a subject's follow-up.

    Attributes
    ----------
    subject_id : str
        ``sub-<label>`` in BIDS, ``study.json``'s ``subject_id``, or the study id.
    session_id : str
        ``ses-<label>`` in BIDS, ``study.json``'s ``session_id``, or the study id.
    date : str
        ISO date (``YYYY-MM-DD``) of the acquisition, ``""`` when unknown.
    """

    subject_id: str
    session_id: str
    date: str = ""

    def to_dict(self) -> dict[str, str]:
        """The three fields, for ``score.json``."""
        return {"subject_id": self.subject_id, "session_id": self.session_id, "date": self.date}


def iso_date(value: object) -> str:
    """The ``YYYY-MM-DD`` part of an ISO date or date-time, ``""`` if it is not one.

    Examples
    --------
    >>> iso_date("2024-03-05T10:12:00"), iso_date("5 March"), iso_date(None)
    ('2024-03-05', '', '')
    """
    text = str(value or "").strip()[:10]
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        return ""


def _bids_parts(folder: Path) -> tuple[str, str, Path | None]:
    """(``sub-*``, ``ses-*``, subject folder) from a BIDS ``anat`` folder; blanks otherwise."""
    subject, session, subject_dir = "", "", None
    for part in [folder, *folder.parents][:3]:
        if part.name.startswith("ses-") and not session:
            session = part.name
        elif part.name.startswith("sub-"):
            subject, subject_dir = part.name, part
            break
    return subject, session, subject_dir


def sessions_file(folder: Path) -> Path | None:
    """The subject's ``sub-<label>_sessions.tsv`` for a BIDS session folder (may not exist).

    None when ``folder`` is not inside a ``sub-*/ses-*`` folder.

    Examples
    --------
    >>> sessions_file(Path("/data/sub-07/ses-2/anat")).as_posix()
    '/data/sub-07/sub-07_sessions.tsv'
    >>> sessions_file(Path("/data/a")) is None
    True
    """
    subject, session, subject_dir = _bids_parts(Path(folder))
    if subject_dir is None or not session:
        return None
    return subject_dir / f"{subject}_sessions.tsv"


def _sessions_tsv_date(subject_dir: Path, subject: str, session: str) -> str:
    """``acq_time`` of ``session`` in ``sub-<label>_sessions.tsv`` (BIDS), ``""`` if absent."""
    path = subject_dir / f"{subject}_sessions.tsv"
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                if row.get("session_id") == session:
                    return iso_date(row.get("acq_time"))
    except (OSError, csv.Error):
        return ""
    return ""


def session_info(folder: Path | None, metadata: dict, study_id: str) -> SessionInfo:
    """Subject, session and date of a study from its folder and ``study.json``.

    Parameters
    ----------
    folder : Path or None
        The study folder (BIDS: the ``anat`` folder).
    metadata : dict
        ``study.json`` contents (``subject_id``, ``session_id``, ``date`` are read).
    study_id : str
        Used when nothing names the subject or session.

    Returns
    -------
    SessionInfo

    Examples
    --------
    >>> session_info(Path("/data/sub-07/ses-2/anat"), {}, "sub-07_ses-2")
    SessionInfo(subject_id='sub-07', session_id='ses-2', date='')
    >>> session_info(Path("/data/a"), {"subject_id": "P1", "date": "2024-01-31"}, "a")
    SessionInfo(subject_id='P1', session_id='a', date='2024-01-31')
    """
    subject, session, subject_dir = _bids_parts(folder) if folder else ("", "", None)
    date = iso_date(metadata.get("date"))
    if not date and subject_dir is not None and session:
        date = _sessions_tsv_date(subject_dir, subject, session)
    subject = str(metadata.get("subject_id") or subject or study_id)
    session = str(metadata.get("session_id") or session or study_id)
    return SessionInfo(subject, session, date)
