"""Cohort-level long tables of a batch: what a statistician loads first.

* ``muscles_long.tsv`` — every study's ``muscles.tsv`` rows stacked (``study_id`` first).
* ``features_long.tsv`` — one row per study, template and feature: ``study_id``, ``template``,
  ``feature``, ``available``, ``value``, ``degree``, ``log10_lr_contribution`` (from each
  ``score.json``; every template of the panel, in order).

Both are built from the files each study folder holds (scored now or reused on resume), streamed
row by row into a temporary file that replaces the table at the end: memory stays flat whatever
the number of studies, and a reader never sees a partial table.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = [
    "FEATURE_COLUMNS",
    "write_long_tables",
]

FEATURE_COLUMNS = [
    "study_id",
    "template",
    "feature",
    "available",
    "value",
    "degree",
    "log10_lr_contribution",
]


@contextmanager
def _atomic_text(path: Path) -> Iterator[IO[str]]:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_long_tables(out: str | Path, folders: Iterable[Path]) -> tuple[int, int]:
    """Write ``muscles_long.tsv`` and ``features_long.tsv`` into a batch output folder.

    Parameters
    ----------
    out : path
        The batch output folder.
    folders : iterable of Path
        The scored studies' output folders (each with ``muscles.tsv`` and ``score.json``), in
        the order of the rows (``summary.tsv``'s). Folders missing a file are skipped.

    Returns
    -------
    (int, int)
        Rows written to each table.
    """
    out = Path(out)
    folders = [Path(f) for f in folders]
    columns: list[str] = []
    for folder in folders:  # the union of the headers, in order of appearance
        try:
            with open(folder / "muscles.tsv", encoding="utf-8") as handle:
                header = handle.readline().rstrip("\n").split("\t")
        except OSError:
            continue
        columns += [c for c in header if c not in columns]
    if "study_id" in columns:
        columns.remove("study_id")
    columns.insert(0, "study_id")
    n_muscles = n_features = 0
    with _atomic_text(out / "muscles_long.tsv") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        for folder in folders:
            try:
                with open(folder / "muscles.tsv", encoding="utf-8", newline="") as table:
                    for row in csv.DictReader(table, delimiter="\t"):
                        writer.writerow([row.get(c) or "" for c in columns])
                        n_muscles += 1
            except OSError:
                continue
    with _atomic_text(out / "features_long.tsv") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(FEATURE_COLUMNS)
        for folder in folders:
            try:
                document = json.loads((folder / "score.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            entries = document.get("templates") or [document]
            for entry in entries:
                for feature in entry.get("features", []):
                    writer.writerow(
                        [
                            _cell(document.get("study_id")),
                            _cell(entry.get("template")),
                            _cell(feature.get("id")),
                            _cell(bool(feature.get("available"))),
                            _cell(feature.get("value")),
                            _cell(feature.get("degree")),
                            _cell(feature.get("log10_lr_contribution")),
                        ]
                    )
                    n_features += 1
    return n_muscles, n_features
