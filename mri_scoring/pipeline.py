"""Composing the stages: ``score_study`` for one study, ``score_batch`` for a folder of studies.

discover -> load -> quantify -> grade -> match -> likelihood -> write. Every output file is written
atomically (a temporary file in the same folder, then ``os.replace``); ``score.json`` is written
last and marks a study as complete, so a batch killed at any point resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .config import Settings, load_settings
from .errors import MriScoringError, QCFinding, StudyError
from .files import atomic_write
from .grading import grade, pooled_tables
from .io.discover import StudyFiles, discover_studies, sanitise_id
from .io.study import Study, load_study
from .io.subjects import SessionInfo, session_info
from .measure.quantify import quantify
from .output.followup import write_followup
from .pattern.likelihood import Likelihood, combine
from .pattern.match import involved_muscles, match
from .pattern.templates import Template, load_template
from .report import cohort_values, read_cohort_values, study_report_html, write_cohort_report
from .schema import MUSCLE_COLUMNS
from .workers import (
    start_worker_server,
    unguarded_main_script,
    worker_context,
    worker_started,
    workers_can_start,
)

log = logging.getLogger(__name__)

DISCLAIMER = ("Research software: pattern similarity to published IMNM and DM imaging findings. "
              "Not a diagnostic device; not for clinical decisions.")  # fmt: skip
SUMMARY_FIXED = ["study_id", "p_imnm", "p_imnm_lo", "p_imnm_hi", "log10_likelihood_ratio", "call"]
FAILURE_COLUMNS = ["study_id", "path", "error"]
SOFTWARE = ("numpy", "scipy", "nibabel", "pandas", "scikit-learn", "scikit-image", "PyYAML")


# --------------------------------------------------------------------------- writing


def table_text(table: pd.DataFrame) -> str:
    """TSV text with fixed float formatting and empty cells for missing values."""
    return table.to_csv(sep="\t", index=False, na_rep="", float_format="%.6g",
                        lineterminator="\n")  # fmt: skip


def _clean(value: Any) -> Any:
    """JSON-safe plain data: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
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


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def study_out_dir(out: Path, study_id: str) -> Path:
    """``OUT/<sanitised id>``, refusing anything that would resolve outside ``OUT``."""
    target = out / sanitise_id(study_id)
    if not _inside(target, out) or target.resolve() == out.resolve():
        raise StudyError(f"study id {study_id!r} does not give a folder inside {out}")
    return target


# --------------------------------------------------------------------------- one study


@dataclass
class StudyResult:
    """Everything scored for one study.

    Attributes
    ----------
    study_id : str
    muscles : pandas.DataFrame
        Graded per-muscle table (columns of DESIGN §3, ``muscles.tsv``).
    likelihood : Likelihood
    qc : list of QCFinding
        Loading and measurement findings.
    inputs : dict
        Role -> ``{"file": path relative to the study folder, "sha256": ...}``.
    config_sha256 : str
        Hash of the effective settings.
    template : Template
    edema_reference : dict
    noise_sigma : float or None
        Dixon magnitude noise sigma (image units); None without Dixon images or when it could
        not be found. In ``score.json`` as ``noise.sigma`` with ``noise.source``.
    noise_source : str
        How the sigma was found (``background``, ``tissue_differences``, ``none``, "").
    study : Study or None
        The loaded study (kept in memory for figures; not serialised).
    session : SessionInfo or None
        Subject, session and date (``score.json`` ``session``), for follow-up comparisons.
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
    study: Study | None = field(default=None, repr=False)
    session: SessionInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``score.json`` document (DESIGN §3)."""
        like = self.likelihood
        features = [{
            "id": c.id, "description": c.description, "available": c.available,
            "value": c.value, "degree": c.degree,
            "log10_lr_contribution": c.log10_lr_contribution, "source": c.source,
            "p_imnm": c.p_imnm, "p_dm": c.p_dm, "muscles_used": c.muscles_used,
            "reason": c.reason, "weight": c.weight,
        } for c in like.features]  # fmt: skip
        return _clean(
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
                "session": self.session.to_dict() if self.session else None,
                "inputs": self.inputs,
                "software": software_versions(),
                "config_sha256": self.config_sha256,
                "disclaimer": DISCLAIMER,
            }
        )

    def summary_row(self) -> dict[str, Any]:
        """One ``summary.tsv`` row: id, p(IMNM), log10 LR, call, then each feature's degree."""
        return summary_row(self.to_dict())

    def save(self, out: str | Path, report: bool = True) -> Path:
        """Write ``muscles.tsv`` (per muscle and side), ``muscles_pooled.tsv`` (sides pooled),
        ``groups.tsv`` (per group), ``report.html`` (optional) and, last, ``score.json``.

        Returns
        -------
        Path
            The folder written.
        """
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "muscles.tsv", table_text(self.muscles))
        per_muscle, per_group = pooled_tables(self.muscles)
        atomic_write(out / "muscles_pooled.tsv", table_text(per_muscle))
        atomic_write(out / "groups.tsv", table_text(per_group))
        if report:
            atomic_write(out / "report.html", study_report_html(self))
        document = json.dumps(self.to_dict(), indent=2, sort_keys=False, allow_nan=False)
        atomic_write(out / "score.json", document + "\n")
        return out


def _inputs(study: Study) -> dict[str, dict[str, str]]:
    base = study.path
    out = {}
    for role, path in sorted(study.files.items()):
        name = os.path.relpath(path, base) if base else Path(path).name
        out[role] = {"file": name, "sha256": study.input_sha256.get(role, "")}
    return out


def score_study(
    study: Study | str | Path,
    *,
    settings: Settings | None = None,
    template: Template | None = None,
    prior: float | None = None,
    labels: str = "auto",
    resample: bool = False,
) -> StudyResult:
    """Score one study: quantify, grade, match the template, combine the likelihood.

    Parameters
    ----------
    study : Study or path
        A loaded study, or a study folder to load.
    settings : Settings, optional
        Default ``configs/settings.yaml``.
    template : Template, optional
        Default ``configs/templates/imnm_vs_dm.yaml``.
    prior : float, optional
        Prior p(IMNM); default the template's.
    labels, resample
        Loading options when ``study`` is a path (see :func:`mri_scoring.load_study`).

    Returns
    -------
    StudyResult
    """
    settings = settings or load_settings()
    template = template or load_template()
    if not isinstance(study, Study):
        study = load_study(study, labels=labels, resample=resample, settings=settings)
    measured = quantify(study, settings)
    table = grade(measured.table, settings)
    evidence = match(table, template, settings)
    likelihood = combine(evidence, template, involved_muscles(table, template), prior)
    columns = [c for c in MUSCLE_COLUMNS if c in table.columns]
    return StudyResult(
        study_id=study.study_id,
        muscles=table[columns],
        likelihood=likelihood,
        qc=[*study.qc, *measured.qc],
        inputs=_inputs(study),
        config_sha256=settings.sha256,
        template=template,
        edema_reference=measured.edema_reference.to_dict(),
        noise_sigma=measured.noise_sigma,
        noise_source=measured.noise_source,
        study=study,
        session=session_info(study.path, study.metadata, study.study_id),
    )


# --------------------------------------------------------------------------- batch


@dataclass(frozen=True)
class BatchOptions:
    """What every study of a batch is scored with (picklable: sent to worker processes)."""

    settings: Settings
    template: Template
    prior: float | None = None
    labels: str = "auto"
    resample: bool = False
    report: bool = True
    read_threads: int | None = None  # files each study reads at once (None: one per core)


@dataclass
class Outcome:
    """Result of one study in a batch."""

    study_id: str
    path: str
    summary: dict[str, Any] | None = None
    error: str = ""
    skipped: bool = False
    cohort: dict[str, dict[str, float]] | None = None  # for the cohort heat map (with reports)


def score_one(files: StudyFiles, out: Path, options: BatchOptions) -> Outcome:
    """Score and save one discovered study; errors become an :class:`Outcome`, never raise."""
    try:
        target = study_out_dir(out, files.study_id)
        result = score_study(load_study(files, labels=options.labels, resample=options.resample,
                                        settings=options.settings,
                                        read_threads=options.read_threads),
                             settings=options.settings, template=options.template,
                             prior=options.prior)  # fmt: skip
        result.save(target, report=options.report)
        cohort = cohort_values(result.muscles.to_dict("records")) if options.report else None
        return Outcome(files.study_id, str(files.folder), result.summary_row(), cohort=cohort)
    except MriScoringError as exc:
        return Outcome(files.study_id, str(files.folder), error=str(exc))
    except MemoryError:
        return Outcome(files.study_id, str(files.folder), error="out of memory")
    except Exception as exc:  # a bug or an unforeseen input: recorded, the batch goes on
        log.debug("internal error in %s:\n%s", files.folder, traceback.format_exc())
        first = str(exc).splitlines()[0] if str(exc) else ""
        return Outcome(
            files.study_id,
            str(files.folder),
            error=f"internal error ({type(exc).__name__}: {first})",
        )


def summary_row(document: dict[str, Any]) -> dict[str, Any]:
    """The ``summary.tsv`` row of a ``score.json`` document (missing values as NaN)."""
    low, high = document["p_imnm_interval"]
    row = {key: document[key] for key in SUMMARY_FIXED if key not in ("p_imnm_lo", "p_imnm_hi")}
    row = {"study_id": row.pop("study_id"), "p_imnm": row.pop("p_imnm"),
           "p_imnm_lo": low, "p_imnm_hi": high, **row}  # fmt: skip
    for feature in document["features"]:
        row[feature["id"]] = feature["degree"] if feature["available"] else None
    return {k: (np.nan if v is None else v) for k, v in row.items()}


def completed_summary(folder: Path, options: BatchOptions) -> dict[str, Any] | None:
    """The summary row of a study already scored with the same settings, else None."""
    score_path, muscles_path = folder / "score.json", folder / "muscles.tsv"
    if not score_path.is_file() or not muscles_path.is_file():
        return None
    if options.report and not (folder / "report.html").is_file():
        return None
    try:
        document = json.loads(score_path.read_text(encoding="utf-8"))
        if (
            document.get("config_sha256") != options.settings.sha256
            or document.get("template_sha256") != options.template.sha256
            or (options.prior is not None and document.get("prior_imnm") != options.prior)
        ):
            return None
        return summary_row(document)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_processes(todo: list[StudyFiles], out: Path, options: BatchOptions, workers: int,
                  report: Callable[[Outcome], None],
                  task: Callable[[StudyFiles, Path, BatchOptions], Outcome] = score_one,
                  ) -> None:  # fmt: skip
    """Process pool with a bounded window of submitted studies.

    A worker that dies (e.g. killed for memory) breaks the pool: the studies in flight are then
    re-run one by one, each in a fresh single-worker pool, so only the study that kills its
    worker fails; the rest of the queue continues in a new pool.
    """
    queue = deque(todo)
    context = worker_context()
    while queue:
        suspects: list[StudyFiles] = []
        broken = False
        with _pool(context, workers) as pool:
            in_flight: dict[Future, StudyFiles] = {}
            while (queue or in_flight) and not broken:
                while queue and len(in_flight) < 2 * workers and not broken:
                    files = queue.popleft()
                    try:
                        in_flight[pool.submit(task, files, out, options)] = files
                    except (BrokenProcessPool, OSError):  # the pool broke while starting one
                        queue.appendleft(files)
                        broken = True
                if not in_flight:
                    break
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    files = in_flight.pop(future)
                    try:
                        report(future.result())
                    except BrokenProcessPool:
                        suspects.append(files)
                        broken = True
                if broken:
                    suspects.extend(in_flight.values())
        if broken and not workers_can_start(context):
            raise MriScoringError(
                "worker processes exit while starting, before scoring any study (any error "
                "they print is above); from a script, call score_batch under "
                "'if __name__ == \"__main__\":', or use one worker"
            )
        for files in suspects:
            with _pool(context, 1) as single:
                try:
                    report(single.submit(task, files, out, options).result())
                except BrokenProcessPool:
                    report(
                        Outcome(
                            files.study_id,
                            str(files.folder),
                            error=(
                                "worker process died while scoring this study (out of memory or "
                                "crash)"
                            ),
                        )
                    )


def _pool(context: Any, workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers die with this process (see :mod:`mri_scoring.workers`)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=worker_started, initargs=(os.getpid(),))  # fmt: skip


def _run_dask(todo: list[StudyFiles], out: Path, options: BatchOptions, workers: int,
              scheduler: str | None, report: Callable[[Outcome], None]) -> None:  # fmt: skip
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise MriScoringError(
            "--engine dask needs the optional extra: pip install 'mri-scoring[distributed]'"
        ) from None
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=max(workers, 1), threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    try:
        futures = client.map(score_one, todo, [out] * len(todo), [options] * len(todo), pure=False)
        for future, files in zip(futures, todo, strict=True):
            future.files = files  # type: ignore[attr-defined]
        for future in as_completed(futures):
            try:
                report(future.result())
            except Exception as exc:  # a lost worker: that study fails, the rest go on
                files = future.files  # type: ignore[attr-defined]
                report(
                    Outcome(
                        files.study_id,
                        str(files.folder),
                        error=f"worker failed ({type(exc).__name__}: {exc})",
                    )
                )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def score_batch(
    root: str | Path,
    out: str | Path,
    *,
    workers: int = 1,
    engine: str = "processes",
    scheduler: str | None = None,
    resume: bool = True,
    settings: Settings | None = None,
    template: Template | None = None,
    prior: float | None = None,
    labels: str = "auto",
    resample: bool = False,
    report: bool = True,
    progress: Callable[[Outcome, int, int, int], None] | None = None,
) -> pd.DataFrame:
    """Score every study under ``root`` into ``out``.

    Writes ``OUT/<study_id>/`` per study, then ``summary.tsv`` and ``failures.tsv`` (and, with
    ``report``, the cohort figure and ``index.html``). A failing study is recorded and skipped;
    with ``resume``, studies whose outputs are complete and were made with the same settings and
    template are not scored again.

    Parameters
    ----------
    root, out : path
    workers : int
        Parallel processes (``engine="processes"``) or dask workers of a local cluster.
    engine : {"processes", "dask"}
    scheduler : str, optional
        Address of a running dask scheduler (``engine="dask"``).
    resume : bool
    settings, template, prior, labels, resample, report
        As for :func:`score_study`; ``report`` writes ``report.html`` files.
    progress : callable, optional
        Called after each study as ``progress(outcome, done, failed, total)``.

    Returns
    -------
    pandas.DataFrame
        The summary table (one row per scored or reused study); ``.attrs["failures"]`` holds
        the failures, ``.attrs["reused"]`` the ids of the studies whose earlier results were
        reused.
    """
    root, out = Path(root), Path(out)
    if out.exists() and not out.is_dir():
        raise MriScoringError(f"--out {out}: exists and is not a folder")
    if engine not in ("processes", "dask"):
        raise MriScoringError(f"--engine must be 'processes' or 'dask', got {engine!r}")
    local_processes = workers > 1 if engine == "processes" else scheduler is None
    if local_processes and (script := unguarded_main_script()):
        log.warning(
            "%s calls score_batch outside 'if __name__ == \"__main__\":': worker processes "
            "would run the script again, so the studies are scored in this process, one at a "
            "time; put the call under that guard to use %d workers",
            script,
            workers,
        )
        engine, workers = "processes", 1
    if engine == "processes" and workers > 1:
        start_worker_server()  # its imports overlap with discovery and the resume checks
    # Parallel studies use the cores: each then reads its files one at a time.
    parallel = workers > 1 or engine == "dask"
    options = BatchOptions(settings or load_settings(), template or load_template(), prior,
                           labels, resample, report, 1 if parallel else None)  # fmt: skip
    studies = [s for s in discover_studies(root) if not _inside(s.folder, out)]
    for study in studies:
        if _inside(out, study.folder):
            raise MriScoringError(
                f"--out {out} lies inside the study folder {study.folder}: "
                "outputs are never written into input folders"
            )
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    rows: dict[str, dict[str, Any]] = {}
    cohort_by_study: dict[str, dict[str, dict[str, float]]] = {}
    failures: dict[str, Outcome] = {}
    reused: list[str] = []
    total = len(studies)
    counts = {"done": 0, "failed": 0}

    def record(outcome: Outcome) -> None:
        if outcome.error:
            failures[outcome.study_id] = outcome
            counts["failed"] += 1
            log.warning("%s failed: %s", outcome.study_id, outcome.error)
        else:
            rows[outcome.study_id] = outcome.summary or {}
            if outcome.skipped:
                reused.append(outcome.study_id)
            if outcome.cohort is not None:
                cohort_by_study[outcome.study_id] = outcome.cohort
            counts["done"] += 1
        if progress:
            progress(outcome, counts["done"], counts["failed"], total)

    todo = []
    for files in studies:
        summary = None
        if resume:
            try:
                summary = completed_summary(study_out_dir(out, files.study_id), options)
            except StudyError:
                summary = None
        if summary is not None:
            saved = study_out_dir(out, files.study_id) / "muscles.tsv"
            values = read_cohort_values(saved) if report else None
            record(Outcome(files.study_id, str(files.folder), summary, skipped=True, cohort=values))
        else:
            todo.append(files)
    if todo:
        if engine == "dask":
            _run_dask(todo, out, options, workers, scheduler, record)
        elif workers <= 1:
            for files in todo:
                record(score_one(files, out, options))
        else:
            run_processes(todo, out, options, workers, record)
    summary = _summary_table(rows, options.template)
    failure_table = pd.DataFrame([[f.study_id, f.path, f.error] for f in
                                  sorted(failures.values(), key=lambda f: f.study_id)],
                                 columns=FAILURE_COLUMNS)  # fmt: skip
    atomic_write(out / "summary.tsv", table_text(summary))
    atomic_write(out / "failures.tsv", table_text(failure_table))
    followed = write_followup(out, [study_out_dir(out, sid) for sid in sorted(rows)], DISCLAIMER)
    if report and not summary.empty:
        write_cohort_report(out, summary, options.template, cohort_by_study, subjects=followed)
    summary.attrs["failures"] = failure_table
    summary.attrs["reused"] = sorted(reused)
    return summary


def _remove_stale_temporaries(out: Path) -> None:
    """Delete temporary files a killed run left (``.<name>.<random>.tmp``, ours by name)."""
    for pattern in (".*.tmp", "*/.*.tmp"):
        for path in out.glob(pattern):
            if path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)


def _summary_table(rows: dict[str, dict[str, Any]], template: Template) -> pd.DataFrame:
    columns = SUMMARY_FIXED + [f.id for f in template.features]
    table = pd.DataFrame([rows[k] for k in sorted(rows)], columns=columns)
    return table


def iter_results(out: str | Path) -> Iterable[dict[str, Any]]:
    """The ``score.json`` documents of a batch output folder, by study id."""
    for path in sorted(Path(out).glob("*/score.json")):
        yield json.loads(path.read_text(encoding="utf-8"))
