"""Composing the stages: ``score_study`` for one study, ``score_batch`` for a folder of studies.

discover -> load -> quantify -> grade -> match -> likelihood -> write. This module only wires
the rooms together (:mod:`~mri_scoring.io`, :mod:`~mri_scoring.measure`,
:mod:`~mri_scoring.grading`, :mod:`~mri_scoring.pattern`, :mod:`~mri_scoring.output`,
:mod:`~mri_scoring.batch`); the work is done there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from . import __version__
from .config import Settings, load_settings
from .errors import MriScoringError, QCFinding
from .frames import python_strings
from .grading import grade
from .io.discover import StudyFiles, discover_studies
from .io.study import Study, load_study
from .io.subjects import session_info
from .measure.quantify import quantify
from .output.report import DEFAULT_VIEW
from .output.result import StudyResult
from .output.slices import VIEWS
from .output.write import inside, save_study, study_out_dir, summary_table
from .pattern.panel import compare, load_panel
from .pattern.population import check_preset, population_posterior
from .pattern.templates import Template
from .schema import DICOM_OUT_UNAVAILABLE, muscle_columns

if TYPE_CHECKING:  # pragma: no cover - the batch machinery is imported where a batch runs
    from .batch import BatchOptions, Outcome

__all__ = [
    "merge_batch",
    "score_batch",
    "score_one",
    "score_study",
]


def _inputs(study: Study) -> dict[str, dict[str, str]]:
    """Role -> source file (relative to the study folder) and its SHA-256, for ``score.json``."""
    base = study.path
    out = {}
    for role, path in sorted(study.files.items()):
        name = os.path.relpath(path, base) if base else Path(path).name
        out[role] = {"file": name, "sha256": study.input_sha256.get(role, "")}
    return out


@python_strings
def score_study(
    study: Study | str | Path,
    *,
    settings: Settings | None = None,
    template: Template | None = None,
    templates: tuple[Template, ...] | list[Template] | None = None,
    prior: float | None = None,
    labels: str = "auto",
    resample: bool = False,
    voxel_maps: bool = True,
    threads: int | None = None,
    population: str | None = None,
) -> StudyResult:
    """Score one study: quantify, grade, match each template of the panel, combine.

    Parameters
    ----------
    study : Study or path
        A loaded study, or a study folder to load.
    settings : Settings, optional
        Default ``configs/settings.yaml``.
    template : Template, optional
        A panel of this one template.
    templates : sequence of Template, optional
        The differential panel, in order (the first fills ``result.likelihood``). Default
        (neither given): :data:`~mri_scoring.pattern.templates.DEFAULT_PANEL`.
    prior : float, optional
        Prior p(IMNM) for every template; default each template's.
    labels, resample
        Loading options when ``study`` is a path (see :func:`mri_scoring.load_study`).
    voxel_maps : bool
        Keep the per-voxel masks and FF behind the table (``result.voxel_maps``) for the
        report's slice figures and ``save(maps=True)``; a few bytes per labelled voxel.
    threads : int, optional
        Threads to read and measure with (default: one per core); the numbers do not depend
        on it.
    population : str, optional
        Population prior preset (``juvenile``, ``juvenile_asian``, ``adult``) for the population
        posterior only; default ``study.json`` ``population``, else by age
        (:mod:`~mri_scoring.pattern.population`). ``p_imnm`` and the call never use it.

    Returns
    -------
    StudyResult
    """
    settings = settings or load_settings()
    panel = _panel(template, templates)
    if not isinstance(study, Study):
        study = load_study(
            study, labels=labels, resample=resample, settings=settings, read_threads=threads
        )
    measured = quantify(study, settings, voxel_maps=voxel_maps, threads=threads)
    table = grade(measured.table, settings)
    first, *further = compare(table, panel, settings, prior, compartments=measured.compartments)
    by_population = population_posterior(
        first.likelihood, first.template, population, study.metadata
    )
    columns = [c for c in muscle_columns() if c in table.columns]
    return StudyResult(
        study_id=study.study_id,
        muscles=table[columns],
        likelihood=first.likelihood,
        qc=[*study.qc, *measured.qc],
        inputs=_inputs(study),
        config_sha256=settings.sha256,
        template=first.template,
        further=further,
        edema_reference=measured.edema_reference.to_dict(),
        noise_sigma=measured.noise_sigma,
        noise_source=measured.noise_source,
        fat_scale=measured.fat_scale,
        study=study,
        session=session_info(study.path, study.metadata, study.study_id),
        voxel_maps=measured.voxel_maps,
        settings=settings,
        slices=measured.slices,
        norms=measured.norms,
        population=by_population,
        compartments=measured.compartments,
    )


def _panel(
    template: Template | None, templates: tuple[Template, ...] | list[Template] | None
) -> tuple[Template, ...]:
    """The panel asked for: ``templates``, else ``template`` alone, else the default panel."""
    if templates:
        return tuple(templates)
    return (template,) if template is not None else load_panel()


def score_one(files: StudyFiles, out: Path, options: BatchOptions) -> Outcome:
    """Load, score and save one discovered study; errors become an :class:`Outcome`, never raise.

    The batch task (:data:`mri_scoring.batch.Task`), run in worker processes.
    """
    # Imported here, not by `score` (one study needs no batch machinery); a batch's fork
    # server imports them once before it forks the workers (workers.PRELOAD).
    from .batch import Outcome, failed, fingerprint
    from .output.cohort import read_cohort_values
    from .output.thumbnail import write_thumbnail

    try:
        target = study_out_dir(out, files.study_id)
        study = load_study(
            files,
            labels=options.labels,
            resample=options.resample,
            settings=options.settings,
            read_threads=options.threads,
        )
        dicom = options.dicom_out and _dicom_possible(study)
        loaded = {
            Path(study.files[role]): digest
            for role, digest in study.input_sha256.items()
            if role in study.files
        }
        result = score_study(
            study,
            settings=options.settings,
            templates=options.templates,
            prior=options.prior,
            voxel_maps=options.report or options.maps or dicom,
            threads=options.threads,
            population=options.population,
        )
        if options.report:  # the mosaic's thumbnail, drawn here while the arrays are in memory
            write_thumbnail(target, result.study, result.voxel_maps, options.view)
        save_study(
            result,
            target,
            report=options.report,
            maps=options.maps,
            view=options.view,
            fingerprint=fingerprint(files, options, loaded),
            dicom=dicom,
        )
        # From the table as written, as a resumed study reads it: the same heat map either way.
        cohort = read_cohort_values(target / "muscles.tsv") if options.report else None
        return Outcome(
            study_id=files.study_id,
            path=str(files.folder),
            summary=result.summary_row(),
            cohort=cohort,
            subject=result.session.subject_id,
        )
    except Exception as exc:  # a bad study or a bug: recorded, the batch goes on
        return failed(files, exc)


def _dicom_possible(study: Study) -> bool:
    """Whether the study can have DICOM results; if not, a QC warning on it says why."""
    from .output.dicom_out import dicom_out_problem

    problem = dicom_out_problem(study.files)
    if problem:
        study.qc.append(
            QCFinding(
                "warning", DICOM_OUT_UNAVAILABLE, f"no DICOM results (--dicom-out): {problem}"
            )
        )
    return not problem


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
    templates: tuple[Template, ...] | list[Template] | None = None,
    prior: float | None = None,
    labels: str = "auto",
    resample: bool = False,
    report: bool = True,
    maps: bool = False,
    view: str = DEFAULT_VIEW,
    dicom_out: bool = False,
    progress: Callable[[Outcome, int, int, int], None] | None = None,
    population: str | None = None,
    shard: tuple[int, int] | str | None = None,
    participant_labels: Sequence[str] = (),
) -> pd.DataFrame:
    """Score every study under ``root`` into ``out``.

    Writes ``OUT/<study_id>/`` per study, each study's outcome to ``OUT/shards/I-of-N/`` as it
    finishes, then (unless this is one shard of several) the cohort files
    (:func:`mri_scoring.output.cohort_files.write_cohort_files`): ``summary.tsv``,
    ``failures.tsv``, the long tables and their Parquet copies, ``outliers.tsv``,
    ``dataset_description.json`` and, with ``report``, ``mosaic.html``, the cohort figure and
    ``index.html``. A failing study is recorded and skipped; with ``resume``, a study is reused
    only when its fingerprint is unchanged: the SHA-256 of every input file, every option that
    changes an output (template, settings, shipped configs, prior, labels, resample, report,
    maps, view, population) and the package version. Anything else scores it again.

    Parameters
    ----------
    root, out : path
        The folder of studies and the output folder (never inside a study folder).
    workers : int
        Parallel processes (``engine="processes"``) or dask workers of a local cluster.
    engine : {"processes", "dask"}
        Where the studies are scored.
    scheduler : str, optional
        Address of a running dask scheduler (``engine="dask"``).
    resume : bool
        Reuse unchanged studies (see above); False scores every study again.
    settings, template, templates, prior, labels, resample, report
        As for :func:`score_study`; ``report`` writes ``report.html`` files. The panel is
        part of the resume fingerprint: another panel scores every study again.
    maps : bool
        Write each study's voxel maps (``OUT/<study>/maps/*.nii.gz``).
    dicom_out : bool
        Write each study's results as DICOM (``OUT/<study>/dicom/``); a study without DICOM
        references (``convert --dicom-refs``) gets a QC warning and its other outputs.
    view : {"radiological", "neurological"}
        Orientation of the reports' slice panels.
    progress : callable, optional
        Called after each study as ``progress(outcome, done, failed, total)``.
    population : str, optional
        Population prior preset for every study (see :func:`score_study`).
    shard : (int, int) or str, optional
        ``(I, N)`` or ``"I/N"``: score shard I of N (studies assigned by a hash of their
        subject, :mod:`mri_scoring.io.shards`) and write only its partial tables; run
        :func:`merge_batch` when every shard is done.
    participant_labels : sequence of str
        Score only these participants (BIDS label without ``sub-``, or the simple layout's
        ``subject_id`` or folder name).

    Returns
    -------
    pandas.DataFrame
        The summary table (one row per scored or reused study of this run, excluded studies
        left out); ``.attrs["failures"]`` holds the failures, ``.attrs["reused"]`` the ids of
        the studies whose earlier results were reused, ``.attrs["excluded"]`` those
        ``qc_ratings.tsv`` excludes.
    """
    # The batch and cohort machinery is imported here, not by `score` (one study needs none).
    from .batch import BatchOptions, remove_stale_temporaries, run_batch, safe_engine
    from .io.shards import parse_shard, select_studies
    from .output.cohort_files import collect, write_cohort_files
    from .output.partials import OutcomeLog, shard_dir
    from .workers import start_worker_server

    root, out = Path(root), Path(out)
    if out.exists() and not out.is_dir():
        raise MriScoringError(f"--out {out}: exists and is not a folder")
    part = parse_shard(shard) if isinstance(shard, str) else (shard or (1, 1))
    parse_shard(f"{part[0]}/{part[1]}")
    engine, workers = safe_engine(engine, workers, scheduler)
    if engine == "processes" and workers > 1:
        start_worker_server()  # its imports overlap with discovery and the resume checks
    # Parallel studies use the cores: each then reads and measures in one thread.
    parallel = workers > 1 or engine == "dask"
    if view not in VIEWS:
        raise MriScoringError(f"--view must be one of {', '.join(VIEWS)}, got {view!r}")
    first, *further = _panel(template, templates)
    options = BatchOptions(
        settings=settings or load_settings(),
        template=first,
        prior=prior,
        labels=labels,
        resample=resample,
        report=report,
        threads=1 if parallel else None,
        maps=maps,
        view=view,
        dicom_out=dicom_out,
        further=tuple(further),
        population=check_preset(population) if population else None,
    )
    studies = [s for s in discover_studies(root) if not inside(s.folder, out)]
    for study in studies:
        if inside(out, study.folder):
            raise MriScoringError(
                f"--out {out} lies inside the study folder {study.folder}: "
                "outputs are never written into input folders"
            )
    studies = select_studies(studies, root, part, participant_labels)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    meta = {"shard": list(part), "columns": list(summary_table({}, options.templates).columns),
            "panel": [[t.name, list(t.classes)] for t in options.templates], "report": report,
            "version": __version__, "options": options.output_options(),
            "studies": len(studies)}  # fmt: skip
    outcomes = OutcomeLog(out, part, meta)
    try:
        run_batch(studies, out, options, score_one, workers=workers, engine=engine,
                  scheduler=scheduler, resume=resume, progress=progress,
                  sink=lambda outcome: outcomes.append(outcome.record()))  # fmt: skip
    except BaseException:
        outcomes.close()  # the shard stays unfinished: merge refuses it
        raise
    outcomes.finish()
    if part[1] > 1:
        summary, _ = collect(out, [shard_dir(out, *part)])
        return summary
    return write_cohort_files(out, [shard_dir(out, *part)])


def merge_batch(out: str | Path) -> pd.DataFrame:
    """Build the cohort files of a batch scored as ``N`` shards (``batch --shard I/N``).

    The same files as one unsharded run of the same studies, except timestamps.

    Parameters
    ----------
    out : path
        The output folder every shard wrote into.

    Returns
    -------
    pandas.DataFrame
        The summary table (``.attrs`` as for :func:`score_batch`).

    Raises
    ------
    MriScoringError
        When a shard is missing or unfinished, or shards were scored with other options.
    """
    from .batch import remove_stale_temporaries
    from .output.cohort_files import write_cohort_files

    out = Path(out)
    if not out.is_dir():
        raise MriScoringError(f"{out}: not a batch output folder")
    remove_stale_temporaries(out)
    return write_cohort_files(out)
