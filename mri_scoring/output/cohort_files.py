"""A batch's cohort files, built from its shards' partial tables.

The finish of every batch run and the whole of ``mri-scoring merge``: the outcome records of
``OUT/shards/I-of-N/outcomes.jsonl`` (:mod:`~mri_scoring.output.partials`) become
``summary.tsv`` (sorted by ``study_id``), ``failures.tsv``, the long tables, their Parquet
copies, the follow-up files, ``outliers.tsv``, ``mosaic.html``, the heat map, ``index.html``
and ``dataset_description.json``. Studies ``qc_ratings.tsv`` excludes leave every table and
figure (their folders stay). Only an index of (shard, offset) is kept per study while the
records are read back in order, so the same files come from one run or from N shards.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import MriScoringError
from ..files import atomic_write
from ..io.qc_ratings import read_ratings
from ..schema import DISCLAIMER, SUMMARY_POPULATION
from .cohort import COHORT_MEASURES, PanelEntry, write_cohort_report
from .followup import write_followup
from .long_tables import write_long_tables
from .partials import RecordReader, finished_shards, iter_records, read_run
from .qc_queue import find_outliers, write_mosaic
from .write import failure_table, study_out_dir, table_text, write_batch_tables

__all__ = [
    "BIDS_VERSION",
    "CHUNK_ROWS",
    "LONG_TABLES",
    "collect",
    "dataset_description",
    "write_cohort_files",
]

CHUNK_ROWS = 20_000  # summary rows turned into a table at a time
LONG_TABLES = ("summary.tsv", "muscles_long.tsv", "features_long.tsv")
BIDS_VERSION = "1.10.0"


def _check_runs(shards: list[Path]) -> dict[str, Any]:
    """The shards' common ``run.json``; different options in one batch are an error."""
    runs = [read_run(s) for s in shards]
    for shard, run in zip(shards[1:], runs[1:], strict=True):
        if run.get("options") != runs[0].get("options") or run.get("columns") != runs[0].get(
            "columns"
        ):
            raise MriScoringError(f"{shard}: scored with other options than {shards[0].name} "
                                  "(settings, template, prior or version); score every shard "
                                  "with the same command")  # fmt: skip
    return runs[0]


def _summary_frame(chunks: list[list[dict[str, Any]]], columns: list[str]) -> pd.DataFrame:
    frames = [pd.DataFrame(chunk, columns=columns) for chunk in chunks] or [
        pd.DataFrame([], columns=columns)
    ]
    if len(frames) == 1:
        return frames[0]
    table = pd.concat(frames, ignore_index=True)
    for column in [c for c in table.columns if table[c].dtype.kind == "O"]:  # an all-NaN chunk
        converted = pd.to_numeric(table[column], errors="coerce")
        if converted.notna().sum() == table[column].notna().sum():
            table[column] = converted
    return table


def collect(out: Path, shards: list[Path] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The batch's summary table and what the cohort files need, read from the shards.

    Returns
    -------
    (pandas.DataFrame, dict)
        The summary (one row per scored, not excluded study, sorted by id; ``.attrs`` holds
        ``failures``, ``reused`` and ``excluded``) and ``run`` (the shards' ``run.json``),
        ``ratings``, ``cohort`` (one study x muscle table per heat-map measure) and
        ``subjects`` (subject -> study ids).
    """
    out = Path(out)
    shards = shards or finished_shards(out)
    run = _check_runs(shards)
    ratings = read_ratings(out)
    excluded = {k for k, r in ratings.items() if r.exclude}
    where: dict[str, tuple[int, int]] = {}
    failures: dict[str, tuple[str, str, str]] = {}
    subjects: dict[str, list[str]] = {}
    reused, left_out = [], []
    population = False  # a population posterior in any row: its columns, as summary_table adds
    for number, offset, record in iter_records(shards):
        study_id = record["study_id"]
        if study_id in where or study_id in failures:
            continue
        if record.get("error"):
            failures[study_id] = (study_id, record.get("path", ""), record["error"])
        elif study_id in excluded:
            left_out.append(study_id)
        else:
            where[study_id] = (number, offset)
            subjects.setdefault(record.get("subject") or study_id, []).append(study_id)
            if record.get("skipped"):
                reused.append(study_id)
            population = population or SUMMARY_POPULATION[0] in (record.get("summary") or {})
    ids = sorted(where)
    muscles: dict[str, int] = {}
    cells = {m: (array("l"), array("l"), array("d")) for m in COHORT_MEASURES}
    chunks: list[list[dict[str, Any]]] = []
    reader = RecordReader(shards)
    try:
        for row, study_id in enumerate(ids):
            record = reader.read(*where[study_id])
            if row % CHUNK_ROWS == 0:
                chunks.append([])
            chunks[-1].append(record.get("summary") or {})
            for measure, by_muscle in (record.get("cohort") or {}).items():
                if measure not in cells:
                    continue
                rows, cols, values = cells[measure]
                for muscle, value in by_muscle.items():
                    rows.append(row)
                    cols.append(muscles.setdefault(muscle, len(muscles)))
                    values.append(float(value))
    finally:
        reader.close()
    columns = list(run["columns"])
    columns += [c for c in SUMMARY_POPULATION if population and c not in columns]
    summary = _summary_frame(chunks, columns)
    names = list(muscles)
    cohort = []
    for measure in COHORT_MEASURES:
        rows, cols, values = (np.frombuffer(a, dtype=a.typecode if a.typecode == "d" else "l")
                              for a in cells[measure])  # fmt: skip
        matrix = np.full((len(ids), len(names)), np.nan)
        matrix[rows, cols] = values
        used = [j for j in range(len(names)) if np.isfinite(matrix[:, j]).any()]
        cohort.append(pd.DataFrame(matrix[:, used], index=ids, columns=[names[j] for j in used]))
    summary.attrs["failures"] = failure_table(failures.values())
    summary.attrs["reused"] = sorted(reused)
    summary.attrs["excluded"] = sorted(left_out)
    return summary, {"run": run, "ratings": ratings, "cohort": cohort, "subjects": subjects}


def dataset_description(run: dict[str, Any]) -> dict[str, Any]:
    """``dataset_description.json`` of a batch output: a BIDS derivative dataset.

    ``SettingsHash`` is the SHA-256 of every option that changes an output (settings,
    template, shipped configs, prior, labels, ...: the resume fingerprint's ``options``).
    """
    options = run.get("options", {})
    digest = hashlib.sha256(json.dumps(options, sort_keys=True,
                                       separators=(",", ":")).encode()).hexdigest()  # fmt: skip
    return {
        "Name": "mri_scoring thigh muscle scores",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "mri_scoring",
                "Version": run.get("version", __version__),
                "Description": "per-muscle fat fraction, edema and atrophy; IMNM-vs-DM pattern "
                "likelihood (research use)",
            }
        ],
        "SettingsHash": digest,
        "SettingsSHA256": options.get("settings_sha256"),
        "TemplateSHA256": options.get("template_sha256"),
        "ConfigsSHA256": options.get("configs_sha256"),
    }


def write_cohort_files(out: str | Path, shards: list[Path] | None = None) -> pd.DataFrame:
    """Build every cohort file of a batch output folder from its (finished) shards.

    Parameters
    ----------
    out : path
        The batch output folder.
    shards : list of Path, optional
        Default: every shard of ``OUT/shards`` (:func:`finished_shards`).

    Returns
    -------
    pandas.DataFrame
        The summary table written to ``summary.tsv`` (``.attrs``: ``failures``, ``reused``,
        ``excluded``).

    Raises
    ------
    MriScoringError
        When a shard is missing or unfinished, or shards were scored with other options.
    """
    out = Path(out)
    summary, parts = collect(out, shards)
    run, failures = parts["run"], summary.attrs["failures"]
    ids = list(summary["study_id"])
    write_batch_tables(out, summary, failures)
    write_long_tables(out, [study_out_dir(out, i) for i in ids])
    _write_parquet(out)
    _give_back_memory()
    followed_dirs = [study_out_dir(out, i) for sessions in parts["subjects"].values()
                     if len(sessions) > 1 for i in sorted(sessions)]  # fmt: skip
    followed = write_followup(out, followed_dirs, DISCLAIMER)
    outliers = find_outliers(out / "muscles_long.tsv")
    atomic_write(out / "outliers.tsv", table_text(outliers))
    _give_back_memory()
    if run.get("report"):
        write_mosaic(out, ids, outliers, parts["ratings"], len(summary.attrs["excluded"]))
        if not summary.empty or not failures.empty:
            panel = [PanelEntry(name, tuple(classes)) for name, classes in run["panel"]]
            write_cohort_report(out, summary, panel, parts["cohort"], failures,
                                subjects=followed,
                                excluded=len(summary.attrs["excluded"]))  # fmt: skip
    atomic_write(out / "dataset_description.json",
                 json.dumps(dataset_description(run), indent=2) + "\n")  # fmt: skip
    return summary


def _give_back_memory() -> None:
    """Return the memory freed by a finished step to the system (the batch driver lives on).

    The cohort steps each read a whole cohort table (pandas, pyarrow); what they free stays in
    the allocators' pools unless handed back: pyarrow's pool keeps the Parquet step's pages
    and glibc keeps the pandas steps' (``malloc_trim``). At 10,000 studies the finish had
    raised a batch driver from 194 to 435 MiB; with this and the leaner outlier screen,
    ``merge`` of that batch peaks at 277 MiB instead of 384.
    """
    import ctypes
    import gc
    import sys

    gc.collect()
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass


def _write_parquet(out: Path, names: Sequence[str] = LONG_TABLES) -> None:
    """The Parquet copy of each cohort table (pyarrow imported only here)."""
    from .parquet import write_parquet

    for name in names:
        if (out / name).is_file():
            write_parquet(out / name)
