"""Writing results: TSV tables, ``score.json``, the per-study folder, the batch tables.

Every file is written atomically (:func:`~mri_scoring.files.atomic_write`); ``score.json`` is
written last and marks a study as complete, so a batch killed at any point resumes where it
stopped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import StudyError
from ..files import atomic_write
from ..grading import pooled_tables
from ..io.discover import sanitise_id
from ..schema import SUMMARY_FIXED
from .report import study_report_html

if TYPE_CHECKING:  # pragma: no cover
    from ..pattern.templates import Template
    from .result import StudyResult

FAILURE_COLUMNS = ["study_id", "path", "error"]
"""Columns of ``failures.tsv``."""


def table_text(table: pd.DataFrame) -> str:
    r"""TSV text with fixed float formatting and empty cells for missing values.

    Parameters
    ----------
    table : pandas.DataFrame
        Any table; the index is not written.

    Returns
    -------
    str
        Tab-separated text, ``\n`` line ends, floats to 6 significant digits.

    Examples
    --------
    >>> table = pd.DataFrame({"muscle": ["gracilis", "sartorius"], "ff_median": [0.1234567, None]})
    >>> table_text(table).splitlines()
    ['muscle\tff_median', 'gracilis\t0.123457', 'sartorius\t']
    """
    return table.to_csv(sep="\t", index=False, na_rep="", float_format="%.6g",
                        lineterminator="\n")  # fmt: skip


def inside(path: Path, folder: Path) -> bool:
    """True if ``path`` resolves to ``folder`` or somewhere below it."""
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def study_out_dir(out: Path, study_id: str) -> Path:
    """``OUT/<sanitised id>``, refusing anything that would resolve outside ``OUT``.

    Raises
    ------
    StudyError
        When the id gives no folder strictly inside ``out``.
    """
    target = out / sanitise_id(study_id)
    if not inside(target, out) or target.resolve() == out.resolve():
        raise StudyError(f"study id {study_id!r} does not give a folder inside {out}")
    return target


def save_study(result: StudyResult, out: str | Path, report: bool = True) -> Path:
    """Write one study's outputs into ``out``.

    ``muscles.tsv`` (per muscle and side), ``muscles_pooled.tsv`` (sides pooled), ``groups.tsv``
    (per group), ``report.html`` (optional) and, last, ``score.json``.

    Parameters
    ----------
    result : StudyResult
        The scored study.
    out : path
        The study's output folder (created if needed).
    report : bool
        Also write ``report.html``.

    Returns
    -------
    Path
        The folder written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "muscles.tsv", table_text(result.muscles))
    per_muscle, per_group = pooled_tables(result.muscles)
    atomic_write(out / "muscles_pooled.tsv", table_text(per_muscle))
    atomic_write(out / "groups.tsv", table_text(per_group))
    if report:
        atomic_write(out / "report.html", study_report_html(result))
    document = json.dumps(result.to_dict(), indent=2, sort_keys=False, allow_nan=False)
    atomic_write(out / "score.json", document + "\n")
    return out


def summary_table(rows: dict[str, dict[str, Any]], template: Template) -> pd.DataFrame:
    """The ``summary.tsv`` table: one row per study id (sorted), one column per feature."""
    columns = SUMMARY_FIXED + [f.id for f in template.features]
    return pd.DataFrame([rows[k] for k in sorted(rows)], columns=columns)


def failure_table(failures: Iterable[tuple[str, str, str]]) -> pd.DataFrame:
    """The ``failures.tsv`` table from ``(study_id, path, error)`` triples, sorted by id."""
    return pd.DataFrame(sorted(failures, key=lambda f: f[0]), columns=FAILURE_COLUMNS)


def write_batch_tables(out: Path, summary: pd.DataFrame, failures: pd.DataFrame) -> None:
    """Write ``summary.tsv`` and ``failures.tsv`` into a batch output folder."""
    atomic_write(out / "summary.tsv", table_text(summary))
    atomic_write(out / "failures.tsv", table_text(failures))


def iter_results(out: str | Path) -> Iterable[dict[str, Any]]:
    """The ``score.json`` documents of a batch output folder, by study id."""
    for path in sorted(Path(out).glob("*/score.json")):
        yield json.loads(path.read_text(encoding="utf-8"))
