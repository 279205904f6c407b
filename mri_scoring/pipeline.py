"""Composing the stages: ``score_study`` for one study, ``score_batch`` for a folder of studies.

discover -> load -> quantify -> grade -> match -> likelihood -> write. This module only wires
the rooms together (:mod:`~mri_scoring.io`, :mod:`~mri_scoring.measure`,
:mod:`~mri_scoring.grading`, :mod:`~mri_scoring.pattern`, :mod:`~mri_scoring.output`,
:mod:`~mri_scoring.batch`); the work is done there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .batch import (
    BatchOptions,
    Outcome,
    failed,
    fingerprint,
    remove_stale_temporaries,
    run_batch,
    safe_engine,
)
from .config import Settings, load_settings
from .errors import MriScoringError, QCFinding
from .grading import grade
from .io.discover import StudyFiles, discover_studies
from .io.study import Study, load_study
from .io.subjects import session_info
from .measure.quantify import quantify
from .output.cohort import cohort_values, write_cohort_report
from .output.dicom_out import dicom_out_problem
from .output.followup import write_followup
from .output.long_tables import write_long_tables
from .output.report import DEFAULT_VIEW
from .output.result import StudyResult
from .output.slices import VIEWS
from .output.write import (
    failure_table,
    inside,
    save_study,
    study_out_dir,
    summary_table,
    write_batch_tables,
)
from .pattern.panel import compare, load_panel
from .pattern.population import check_preset, population_posterior
from .pattern.templates import Template
from .schema import DICOM_OUT_UNAVAILABLE, DISCLAIMER, muscle_columns
from .workers import start_worker_server

__all__ = [
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
        save_study(
            result,
            target,
            report=options.report,
            maps=options.maps,
            view=options.view,
            fingerprint=fingerprint(files, options, loaded),
            dicom=dicom,
        )
        cohort = cohort_values(result.muscles.to_dict("records")) if options.report else None
        return Outcome(
            study_id=files.study_id,
            path=str(files.folder),
            summary=result.summary_row(),
            cohort=cohort,
        )
    except Exception as exc:  # a bad study or a bug: recorded, the batch goes on
        return failed(files, exc)


def _dicom_possible(study: Study) -> bool:
    """Whether the study can have DICOM results; if not, a QC warning on it says why."""
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
) -> pd.DataFrame:
    """Score every study under ``root`` into ``out``.

    Writes ``OUT/<study_id>/`` per study, then ``summary.tsv`` and ``failures.tsv`` (and, with
    ``report``, the cohort figure and ``index.html``). A failing study is recorded and skipped;
    with ``resume``, a study is reused only when its fingerprint is unchanged: the SHA-256 of
    every input file, every option that changes an output (template, settings, shipped
    configs, prior, labels, resample, report, maps, view, population) and the package
    version. Anything else scores it again.

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
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    run = run_batch(
        studies,
        out,
        options,
        score_one,
        workers=workers,
        engine=engine,
        scheduler=scheduler,
        resume=resume,
        progress=progress,
    )
    summary = summary_table(run.rows, options.templates)
    failures = failure_table((f.study_id, f.path, f.error) for f in run.failures.values())
    write_batch_tables(out, summary, failures)
    write_long_tables(out, [study_out_dir(out, i) for i in summary["study_id"]])
    followed = write_followup(
        out, [study_out_dir(out, sid) for sid in sorted(run.rows)], DISCLAIMER
    )
    if report and (not summary.empty or not failures.empty):
        write_cohort_report(
            out, summary, options.templates, run.cohort, failures, subjects=followed
        )
    summary.attrs["failures"] = failures
    summary.attrs["reused"] = sorted(run.reused)
    return summary
