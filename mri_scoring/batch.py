"""Running many studies: resume fingerprints, a process pool or dask, failures recorded.

Knows nothing of how one study is scored: the caller passes a module-level ``task``
``(StudyFiles, out, BatchOptions) -> Outcome`` (:func:`mri_scoring.pipeline.score_one`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields
from functools import partial
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

from . import __version__
from .config import Settings, configs_sha256
from .errors import MriScoringError, StudyError
from .io.discover import StudyFiles
from .io.inputs import input_digests
from .output.cohort import read_cohort_values
from .output.result import summary_row
from .output.thumbnail import THUMB_NAME
from .output.write import study_out_dir
from .pattern.templates import Template
from .workers import unguarded_main_script, worker_context, worker_started, workers_can_start

__all__ = [
    "RUNTIME_ONLY",
    "BatchOptions",
    "BatchRun",
    "Outcome",
    "Task",
    "failed",
    "fingerprint",
    "fingerprint_changes",
    "remove_stale_temporaries",
    "resume_or_run",
    "resumed",
    "run_batch",
    "run_processes",
    "safe_engine",
]

log = logging.getLogger(__name__)


@dataclass(kw_only=True, frozen=True)
class BatchOptions:
    """What every study of a batch is scored with (picklable: sent to worker processes)."""

    settings: Settings
    template: Template
    prior: float | None = None
    labels: str = "auto"
    resample: bool = False
    report: bool = True
    threads: int | None = None  # threads each study reads and measures with (None: per core)
    maps: bool = False  # write each study's voxel maps (maps/*.nii.gz)
    view: str = "radiological"  # orientation of the reports' slice panels
    population: str | None = None  # preset of p_imnm_population only
    dicom_out: bool = False  # write DICOM SEG/SR/FF map where the study has DICOM references
    further: tuple[Template, ...] = ()  # the panel's templates after ``template``

    @property
    def templates(self) -> tuple[Template, ...]:
        """The whole differential panel, ``template`` first."""
        return (self.template, *self.further)

    def output_options(self) -> dict[str, Any]:
        """Every option that changes an output, as plain values (part of the fingerprint).

        All fields but :data:`RUNTIME_ONLY`, so an option added later is compared unasked: the
        settings and templates by hash, the prior as used (the template's when none is given),
        the view only when a report is drawn; plus the hash of the shipped ``configs/``.
        """
        values: dict[str, Any] = {"configs_sha256": configs_sha256()}
        for item in fields(self):
            if item.name in RUNTIME_ONLY:
                continue
            value = getattr(self, item.name)
            if isinstance(value, Settings | Template):
                values[f"{item.name}_sha256"] = value.sha256
            elif item.name == "further":  # the panel: names and hashes, in order
                values["panel"] = [[t.name, t.sha256] for t in value]
            else:
                values[item.name] = value
        if values["prior"] is None:
            values["prior"] = self.template.prior
        if not self.report:
            values["view"] = None
        return values


RUNTIME_ONLY = frozenset({"threads"})
"""Fields of :class:`BatchOptions` that change how fast a study is scored, never its outputs."""


@dataclass(kw_only=True)
class Outcome:
    """Result of one study in a batch."""

    study_id: str
    path: str
    summary: dict[str, Any] | None = None
    error: str = ""
    skipped: bool = False
    cohort: dict[str, dict[str, float]] | None = None  # for the cohort heat map (with reports)
    subject: str = ""  # the subject the study is a session of (follow-up pages)

    def record(self) -> dict[str, Any]:
        """The study's line in its shard's ``outcomes.jsonl`` (JSON values only)."""
        return {"study_id": self.study_id, "path": self.path, "error": self.error,
                "skipped": self.skipped, "summary": self.summary, "cohort": self.cohort,
                "subject": self.subject}  # fmt: skip


Task = Callable[[StudyFiles, Path, BatchOptions], Outcome]
"""Scores and saves one study; never raises (an error becomes :attr:`Outcome.error`)."""


def failed(files: StudyFiles, exc: BaseException) -> Outcome:
    """The :class:`Outcome` of a study whose scoring raised ``exc``: a one-line error.

    Our own errors keep their message; anything else is recorded as an internal error (the
    traceback goes to the debug log) so that the batch goes on.
    """
    if isinstance(exc, MriScoringError):
        return Outcome(study_id=files.study_id, path=str(files.folder), error=str(exc))
    if isinstance(exc, MemoryError):
        return Outcome(study_id=files.study_id, path=str(files.folder), error="out of memory")
    log.debug("internal error in %s:\n%s", files.folder, traceback.format_exc())
    first = str(exc).splitlines()[0] if str(exc) else ""
    return Outcome(
        study_id=files.study_id,
        path=str(files.folder),
        error=f"internal error ({type(exc).__name__}: {first})",
    )


def fingerprint(
    files: StudyFiles, options: BatchOptions, known: dict[Path, str] | None = None
) -> dict[str, Any]:
    """What a study's outputs are made from: its input files, the batch options, the version.

    Parameters
    ----------
    files : StudyFiles
        The discovered study.
    options : BatchOptions
        The batch's options.
    known : dict of Path -> str, optional
        SHA-256 digests already computed (the loader's, of exactly the bytes it read).

    Returns
    -------
    dict
        ``sha256`` (of the rest, canonical JSON), ``inputs`` (file -> SHA-256), ``options``
        (every option that changes an output) and ``version``; written to ``score.json`` and
        compared by :func:`resumed`.

    Raises
    ------
    OSError
        When an input file cannot be read.
    """
    parts = {
        "inputs": input_digests(files, known),
        "options": options.output_options(),
        "version": __version__,
    }
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), **parts}


def fingerprint_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words (for the log of a re-scored study).

    Examples
    --------
    >>> old = {"inputs": {"stir.nii.gz": "a", "labels.nii.gz": "b"}, "options": {"prior": 0.05},
    ...        "version": "0.1.0"}
    >>> new = {"inputs": {"stir.nii.gz": "c", "labels.nii.gz": "b"}, "options": {"prior": 0.5},
    ...        "version": "0.1.0"}
    >>> fingerprint_changes(old, new)
    ['stir.nii.gz changed', 'prior 0.05 -> 0.5']
    """
    changes = []
    old_in, new_in = old.get("inputs", {}), new.get("inputs", {})
    for name in sorted(set(old_in) | set(new_in)):
        if name not in new_in:
            changes.append(f"{name} is gone")
        elif name not in old_in:
            changes.append(f"{name} is new")
        elif old_in[name] != new_in[name]:
            changes.append(f"{name} changed")
    old_opt, new_opt = old.get("options", {}), new.get("options", {})
    for key in sorted(set(old_opt) | set(new_opt)):
        if old_opt.get(key) != new_opt.get(key):
            changes.append(f"{key} {old_opt.get(key)} -> {new_opt.get(key)}")
    if old.get("version") != new.get("version"):
        changes.append(f"version {old.get('version')} -> {new.get('version')}")
    return changes


def _outputs_complete(folder: Path, options: BatchOptions) -> bool:
    """Every file the options ask for is there (``score.json`` is written last)."""
    needed = ["score.json", "muscles.tsv"] + (["report.html"] if options.report else [])
    needed += [f"maps/{n}.nii.gz" for n in ("core", "shell")] if options.maps else []
    return all((folder / name).is_file() for name in needed)


def resumed(files: StudyFiles, out: Path, options: BatchOptions) -> Outcome | None:
    """The :class:`Outcome` of a study already complete in ``out``, or None to score it.

    Complete means its outputs are all there and the fingerprint in its ``score.json`` equals
    the study's :func:`fingerprint` now: same input bytes (every file), same options, same
    package version. Anything else is scored again (the reason goes to the log).
    """
    try:
        folder = study_out_dir(out, files.study_id)
    except StudyError:
        return None
    if not _outputs_complete(folder, options):
        return None
    try:
        document = json.loads((folder / "score.json").read_text(encoding="utf-8"))
        stored = document.get("fingerprint") or {}
        current = fingerprint(files, options)
        if stored.get("sha256") != current["sha256"]:
            why = fingerprint_changes(stored, current) if stored else ["no fingerprint"]
            log.info("%s: scored again (%s)", files.study_id, "; ".join(why) or "fingerprint")
            return None
        summary = summary_row(document)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if options.report and not (folder / THUMB_NAME).is_file():
        return None  # a folder from before the mosaic: scored again to draw its thumbnail
    values = read_cohort_values(folder / "muscles.tsv") if options.report else None
    subject = str((document.get("session") or {}).get("subject_id") or files.study_id)
    return Outcome(
        study_id=files.study_id,
        path=str(files.folder),
        summary=summary,
        skipped=True,
        cohort=values,
        subject=subject,
    )


def resume_or_run(task: Task, files: StudyFiles, out: Path, options: BatchOptions) -> Outcome:
    """The earlier outcome of a study whose fingerprint is unchanged, else ``task``'s.

    Runs where the task runs (a worker process), so the hashing of a large resumed batch is
    shared by the workers; bind ``task`` with :func:`functools.partial` (picklable).
    """
    try:
        done = resumed(files, out, options)
    except Exception as exc:  # never let a resume check stop the batch: score it instead
        log.debug("resume check of %s failed: %s", files.study_id, exc)
        done = None
    return done if done is not None else task(files, out, options)


def run_processes(
    todo: list[StudyFiles],
    out: Path,
    options: BatchOptions,
    workers: int,
    report: Callable[[Outcome], None],
    task: Task,
) -> None:
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
                            study_id=files.study_id,
                            path=str(files.folder),
                            error=(
                                "worker process died while scoring this study (out of memory or "
                                "crash)"
                            ),
                        )
                    )


def _pool(context: BaseContext, workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers die with this process (see :mod:`mri_scoring.workers`)."""
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=worker_started, initargs=(os.getpid(),)
    )


def _lost(files: StudyFiles, exc: BaseException) -> Outcome:
    """The outcome of a study whose dask worker was lost: it fails, the rest go on."""
    return Outcome(
        study_id=files.study_id,
        path=str(files.folder),
        error=f"worker failed ({type(exc).__name__}: {exc})",
    )


@dataclass
class BatchRun:
    """What a batch did, as counts (each outcome went to the ``record`` sink, nothing kept)."""

    done: int = 0
    failed: int = 0
    reused: int = 0


def safe_engine(engine: str, workers: int, scheduler: str | None) -> tuple[str, int]:
    """The engine and worker count a batch can use from the calling program.

    Local worker processes re-run an unguarded calling script (no ``if __name__ ==
    "__main__":``): then the studies are scored in this process, one at a time, with a warning.

    Raises
    ------
    MriScoringError
        For an engine other than ``"processes"`` or ``"dask"``.
    """
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
        return "processes", 1
    return engine, workers


def run_batch(
    studies: list[StudyFiles],
    out: Path,
    options: BatchOptions,
    task: Task,
    *,
    workers: int = 1,
    engine: str = "processes",
    scheduler: str | None = None,
    resume: bool = True,
    progress: Callable[[Outcome, int, int, int], None] | None = None,
    sink: Callable[[Outcome], None] | None = None,
) -> BatchRun:
    """Run ``task`` over ``studies``, in order or in parallel, and hand on every outcome.

    With ``resume``, studies already complete with the same fingerprint are not run again.

    Parameters
    ----------
    studies : list of StudyFiles
        The discovered studies.
    out : Path
        The batch output folder (exists).
    options : BatchOptions
        Passed to every task.
    task : callable
        Scores and saves one study (:data:`Task`).
    workers : int
        Parallel processes (``engine="processes"``) or dask workers of a local cluster.
    engine : {"processes", "dask"}
        Where the tasks run.
    scheduler : str, optional
        Address of a running dask scheduler (``engine="dask"``).
    resume : bool
        Reuse the outputs of studies whose fingerprint is unchanged (:func:`resumed`).
    progress : callable, optional
        Called after each study as ``progress(outcome, done, failed, total)``.
    sink : callable, optional
        Called with each :class:`Outcome` as it is recorded (e.g. appending it to the shard's
        partial table); the batch keeps nothing per study.

    Returns
    -------
    BatchRun
        Counts of scored, failed and reused studies.
    """
    run = BatchRun()
    total = len(studies)

    def record(outcome: Outcome) -> None:
        if outcome.error:
            run.failed += 1
            log.warning("%s failed: %s", outcome.study_id, outcome.error)
        else:
            run.done += 1
            run.reused += bool(outcome.skipped)
        if sink is not None:
            sink(outcome)
        if progress:
            progress(outcome, run.done, run.failed, total)

    if resume:  # each study's fingerprint is checked where it would be scored
        task = partial(resume_or_run, task)
    if not studies:
        return run
    if engine == "dask":
        from .dask_engine import run_dask

        run_dask(studies, out, options, workers, scheduler, record, task, lost=_lost)
    elif workers <= 1:
        for files in studies:
            record(task(files, out, options))
    else:
        run_processes(studies, out, options, workers, record, task)
    return run


def remove_stale_temporaries(out: Path) -> None:
    """Delete temporary files a killed run left (``.<name>.<random>.tmp``, ours by name)."""
    for pattern in (".*.tmp", "*/.*.tmp"):
        for path in out.glob(pattern):
            if path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
