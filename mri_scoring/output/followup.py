"""Writing the follow-up outputs of a batch: ``longitudinal.tsv`` and ``subjects/<id>.html``.

Also :func:`compare_sessions`, the API entry point (``ms.compare_sessions``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..files import atomic_write
from ..io.discover import sanitise_id
from .longitudinal import (
    SessionComparison,
    SessionRecord,
    compare_records,
    read_record,
    record_from_document,
    subjects_with_followup,
)
from .subject_page import subject_page_html

if TYPE_CHECKING:  # pragma: no cover
    from .result import StudyResult


__all__ = [
    "compare_sessions",
    "write_followup",
]


def _as_record(item: SessionRecord | StudyResult | str | Path) -> SessionRecord | None:
    if isinstance(item, SessionRecord):
        return item
    if isinstance(item, (str, Path)):
        return read_record(Path(item))
    if hasattr(item, "to_dict") and hasattr(item, "muscles"):  # a StudyResult
        return record_from_document(item.to_dict(), item.muscles)
    raise TypeError(f"expected a StudyResult, a study output folder or a SessionRecord: {item!r}")


def compare_sessions(
    results: Iterable[SessionRecord | StudyResult | str | Path],
) -> SessionComparison:
    """Per-muscle change between each subject's sessions, against repeatability bands.

    Parameters
    ----------
    results : iterable
        :class:`~mri_scoring.StudyResult` objects, study output folders (holding
        ``score.json`` and ``muscles.tsv``), or :class:`SessionRecord` objects. Subjects and
        sessions come from each study's ``session`` (BIDS ``sub-*/ses-*``, or ``study.json``
        ``subject_id``/``session_id``/``date``).

    Returns
    -------
    SessionComparison
        ``.muscles`` (the rows of ``longitudinal.tsv``), ``.features`` (template features and
        p(IMNM)), ``.warnings``.
    """
    records = [r for r in (_as_record(item) for item in results) if r is not None]
    return compare_records(records)


def _tsv(table: pd.DataFrame) -> str:
    return table.to_csv(sep="\t", index=False, float_format="%.6g", na_rep="")


def write_followup(out: Path, study_dirs: Iterable[Path], disclaimer: str) -> list[str]:
    """Write the follow-up outputs when any subject has two or more scored sessions.

    Parameters
    ----------
    out : Path
        The batch output folder.
    study_dirs : iterable of Path
        Output folders of every scored or reused study of the batch.
    disclaimer : str
        Research-use statement for the subject pages.

    Returns
    -------
    list of str
        Subject ids that got a page (empty: nothing was written).
    """
    records = [r for r in (read_record(d) for d in study_dirs) if r is not None]
    followed = subjects_with_followup(records)
    pages = out / "subjects"
    keep = {f"{sanitise_id(subject)}.html" for subject in followed}
    for stale in [out / "longitudinal.tsv", out / "longitudinal_features.tsv"] * (not followed):
        stale.unlink(missing_ok=True)  # an earlier run's follow-up must not outlive its subjects
    for page in pages.glob("*.html") if pages.is_dir() else []:
        if page.name not in keep:
            page.unlink(missing_ok=True)
    if not followed:
        return []
    followed_records = [r for sessions in followed.values() for r in sessions]
    comparison = compare_records(followed_records)
    atomic_write(out / "longitudinal.tsv", _tsv(comparison.muscles))
    atomic_write(out / "longitudinal_features.tsv", _tsv(comparison.features))
    pages.mkdir(exist_ok=True)
    for subject, sessions in followed.items():
        mine = SessionComparison(
            comparison.muscles[comparison.muscles["subject_id"] == subject],
            comparison.features[comparison.features["subject_id"] == subject],
            [w for w in comparison.warnings if w.startswith(f"{subject}:")],
        )
        page = subject_page_html(subject, sessions, mine, disclaimer)
        atomic_write(pages / f"{sanitise_id(subject)}.html", page)
    return list(followed)
