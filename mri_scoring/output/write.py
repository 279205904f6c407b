"""Writing results: TSV tables, ``score.json``, the per-study folder, the batch tables.

Every file is written atomically (:func:`~mri_scoring.files.atomic_write`); ``score.json`` is
written last and marks a study as complete, so a batch killed at any point resumes where it
stopped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import MriScoringError, StudyError
from ..files import atomic_write
from ..frames import python_strings
from ..grading import pooled_tables
from ..io.discover import sanitise_id
from ..pattern.panel import panel_columns
from ..schema import SUMMARY_FIXED, SUMMARY_POPULATION
from .map_files import write_maps
from .report import DEFAULT_VIEW, study_report_html

if TYPE_CHECKING:  # pragma: no cover
    from ..pattern.templates import Template
    from .result import StudyResult

__all__ = [
    "FAILURE_COLUMNS",
    "failure_table",
    "inside",
    "iter_results",
    "save_study",
    "study_out_dir",
    "summary_table",
    "table_text",
    "write_batch_tables",
]

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
    return table.to_csv(sep="\t", index=False, na_rep="", float_format="%.6g", lineterminator="\n")


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


@python_strings
def save_study(
    result: StudyResult,
    out: str | Path,
    report: bool = True,
    maps: bool = False,
    view: str = DEFAULT_VIEW,
    fingerprint: dict[str, Any] | None = None,
    dicom: bool = False,
) -> Path:
    """Write one study's outputs into ``out``.

    ``muscles.tsv`` (per muscle and side), ``slices.tsv`` (per slice), ``compartments.tsv``
    (subcutaneous fat per side), ``muscles_pooled.tsv``
    (sides pooled), ``groups.tsv`` (per group), ``report.html`` (optional), ``maps/*.nii.gz``
    (optional) and, last,
    ``score.json`` (with the batch's resume fingerprint). An earlier ``score.json`` is removed
    first, so a run killed midway never leaves old numbers marked complete; a report or maps
    left from an earlier run with other switches are removed too.

    Parameters
    ----------
    result : StudyResult
        The scored study.
    out : path
        The study's output folder (created if needed).
    report : bool
        Also write ``report.html``.
    maps : bool
        Also write the voxel maps (:mod:`~mri_scoring.output.map_files`); needs the result's study
        and voxel maps in memory.
    view : {"radiological", "neurological"}
        Orientation of the report's slice panels.
    fingerprint : dict, optional
        What the outputs were made from (:func:`mri_scoring.batch.fingerprint`), for resume.
    dicom : bool
        Also write the results as DICOM into ``dicom/`` (:mod:`~mri_scoring.output.dicom_out`;
        needs the study's DICOM references, ``convert --dicom-refs``).

    Returns
    -------
    Path
        The folder written.

    Raises
    ------
    MriScoringError
        ``maps`` or ``dicom`` for a result without its voxel maps (e.g. one rebuilt from
        files); ``dicom`` for a study without DICOM references.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "score.json").unlink(missing_ok=True)  # written last: marks the folder complete
    atomic_write(out / "muscles.tsv", table_text(result.muscles))
    if result.slices is not None:
        atomic_write(out / "slices.tsv", table_text(result.slices))
    else:
        (out / "slices.tsv").unlink(missing_ok=True)
    if result.compartments is not None:
        atomic_write(out / "compartments.tsv", table_text(result.compartments))
    else:
        (out / "compartments.tsv").unlink(missing_ok=True)
    per_muscle, per_group = pooled_tables(result.muscles)
    for name, table in (("muscles_pooled.tsv", per_muscle), ("groups.tsv", per_group)):
        atomic_write(out / name, table_text(_with_study_id(table, result.study_id)))
    if report:
        atomic_write(out / "report.html", study_report_html(result, view))
    else:
        (out / "report.html").unlink(missing_ok=True)
    if maps:
        if result.voxel_maps is None or result.study is None:
            raise MriScoringError(
                "voxel maps need the study and its voxel maps in memory (score_study keeps them)"
            )
        write_maps(out / "maps", result.study, result.voxel_maps)
    else:
        _remove_maps(out / "maps")
    if dicom:
        from .dicom_out import write_dicom

        write_dicom(out / "dicom", result)
    elif (out / "dicom").is_dir():  # an earlier run's (the DICOM writers not imported otherwise)
        from .dicom_out import remove_dicom

        remove_dicom(out / "dicom")
    document = result.to_dict()
    document["outputs"] = {
        "report_view": view if report else None,
        "maps": bool(maps),
        "dicom": bool(dicom),
    }
    if fingerprint is not None:
        document["fingerprint"] = fingerprint
    text = json.dumps(document, indent=2, sort_keys=False, allow_nan=False)
    atomic_write(out / "score.json", text + "\n")
    return out


def _remove_maps(folder: Path) -> None:
    """Delete the voxel maps an earlier run wrote (``*.nii.gz`` only), and the folder if empty."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for path in folder.glob("*.nii.gz"):
        if path.is_file() and not path.is_symlink():
            path.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


def _with_study_id(table: pd.DataFrame, study_id: str) -> pd.DataFrame:
    """The table with ``study_id`` as its first column (rows of many studies stay apart)."""
    return pd.concat(
        [pd.DataFrame({"study_id": [study_id] * len(table)}, index=table.index), table], axis=1
    )


def summary_table(
    rows: dict[str, dict[str, Any]], templates: Template | Sequence[Template]
) -> pd.DataFrame:
    """The ``summary.tsv`` table: one row per study id (sorted).

    The fixed columns and one column per feature of the panel's first template, then each
    further template's columns (:func:`~mri_scoring.pattern.panel.panel_columns`).
    """
    panel = list(templates) if isinstance(templates, Sequence) else [templates]
    columns = SUMMARY_FIXED + [f.id for f in panel[0].features] + panel_columns(panel)
    if any(SUMMARY_POPULATION[0] in row for row in rows.values()):
        columns += SUMMARY_POPULATION
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
