"""The ``mri-scoring`` command line (its verbs are a contract: see the README)."""

from __future__ import annotations

import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from . import __version__
from .cli_options import (
    ConfigOption,
    DicomOutOption,
    Engine,
    FatRefOption,
    LabelScheme,
    LabelsOption,
    MapsOption,
    PanelOption,
    ParticipantLabelOption,
    PopulationOption,
    PriorOption,
    ReportOption,
    ResampleOption,
    ShardOption,
    TemplateOption,
    View,
    ViewOption,
)

__all__ = ["app", "main"]  # the verbs are commands of app; the rest is typer plumbing
#: Options of the whole program that are accepted after the verb too (``batch -v ...``).
GLOBAL_FLAGS = ("-v", "--verbose", "-q", "--quiet")


class _Group(TyperGroup):
    """The verb group; moves the global flags given after the verb in front of it."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: a click Context
        end = args.index("--") if "--" in args else len(args)
        flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
        rest = [a for a in args[:end] if a not in GLOBAL_FLAGS]
        return super().parse_args(ctx, [*flags, *rest, *args[end:]])


app = typer.Typer(
    cls=_Group,
    name="mri-scoring",
    help="Per-muscle thigh MRI scores and an IMNM-vs-DM pattern likelihood. "
    "Research software: not for diagnostic use.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("mri_scoring")


class Pattern(StrEnum):
    """Phantom disease patterns (``phantom --pattern``)."""

    imnm = "imnm"
    dm = "dm"
    dystrophy = "dystrophy"
    ass = "ass"
    normal = "normal"


Sex = StrEnum("Sex", ["male", "female"])  # phantom --sex


class Layout(StrEnum):
    """Folder layouts the phantom command writes."""

    simple = "simple"
    bids = "bids"


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(
        level=level, format="%(levelname)s: %(message)s", stream=sys.stderr, force=True
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mri-scoring {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log errors only.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    _setup_logging(verbose, quiet)


@app.command()
def phantom(
    out: Annotated[Path, typer.Argument(help="Folder to write the studies into.")],
    pattern: Annotated[Pattern, typer.Option(help="Disease pattern.")] = Pattern.imnm,
    n: Annotated[int, typer.Option("--n", min=1, help="Number of studies.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the first study (then seed+1, ...).")] = 0,
    shape: Annotated[tuple[int, int, int], typer.Option(help="Grid size X Y Z.")] = (128, 128, 24),
    noise: Annotated[float, typer.Option(min=0.0, help="Rician noise (SNR = 1/noise).")] = 0.02,
    layout: Annotated[Layout, typer.Option(help="Folder layout.")] = Layout.simple,
    age: Annotated[float | None, typer.Option(min=0.0, max=100.0, help="A child's (or adult's) "
                   "age in years: thigh sized by the phantom's own growth rule.")] = None,
    sex: Annotated[Sex | None, typer.Option(help="Sex, with --age.")] = None,
) -> None:
    """Write synthetic thigh studies with their ground truth (truth.json)."""
    from . import phantom as phantom_module

    for i in range(n):
        study_seed = seed + i
        study = phantom_module.make_study(pattern.value, seed=study_seed, shape=shape, noise=noise,
                                          age_years=age, sex=sex.value if sex else None)
        target = out if layout is Layout.bids else out / study.study_id
        folder = phantom_module.write_study(study, target, layout=layout.value)
        typer.echo(f"{study.study_id}\t{folder}")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _check_paths(source: Path, out: Path | None) -> None:
    """Usage errors found before any work: a missing input, an output that is a file."""
    if not source.exists():
        raise _fail(f"{source}: does not exist", 2)
    if out is not None:
        _check_out(out)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise _fail(f"--out {out}: exists and is not a folder; name a new or existing folder", 2)


def _knowledge(
    config: Path | None, templates: list[str] | None, fatref: bool = False
) -> tuple[Any, Any]:
    from .config import load_settings
    from .pattern.panel import load_panel

    return load_settings(config, fat_reference=fatref), load_panel(templates)


@app.command()
def score(
    study: Annotated[Path, typer.Argument(help="Study folder (simple layout or BIDS anat).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    template: PanelOption = None,
    config: ConfigOption = None,
    labels: LabelsOption = LabelScheme.auto,
    resample: ResampleOption = False,
    fat_reference: FatRefOption = False,
    report: ReportOption = True,
    maps: MapsOption = False,
    view: ViewOption = View.radiological,
    prior: PriorOption = None,
    dicom_out: DicomOutOption = False,
    population: PopulationOption = None,
) -> None:
    """Score one study: muscles.tsv, score.json and report.html in OUT.

    Exit 2 when the study cannot be used (the message names the file and what is wrong; with
    --dicom-out also without DICOM references), 1 on other errors (settings, template).
    """
    from .errors import MriScoringError, StudyError
    from .output.render import signed
    from .pipeline import score_study

    _check_paths(study, out)
    if dicom_out:  # before any work: does the study have DICOM references?
        from .output.dicom_out import folder_problem
        if problem := folder_problem(study):
            raise _fail(f"--dicom-out: {study}: {problem}", 2)
    try:
        settings, panel = _knowledge(config, template, fat_reference)
        result = score_study(
            study,
            settings=settings,
            templates=panel,
            prior=prior,
            labels=labels.value,
            resample=resample,
            voxel_maps=report or maps or dicom_out,
            population=population.value if population else None,
        )
        result.save(out, report=report, maps=maps, view=view.value, dicom=dicom_out)
    except StudyError as exc:  # the STUDY argument names unusable input
        raise _fail(str(exc), 2) from None
    except MriScoringError as exc:
        raise _fail(str(exc)) from None
    like = result.likelihood
    for finding in result.qc:
        if finding.level == "warning":  # the log prefix says WARNING already
            where = f" [{Path(finding.file).name}]" if finding.file else ""
            log.warning("%s: %s%s", finding.code, finding.message, where)
    typer.echo(
        f"{result.study_id}\t{like.call}\tp(IMNM)={like.p_imnm:.3f}\t"
        f"log10LR={signed(like.log10_likelihood_ratio)}\t-> {out}"
    )
    for other in result.further:
        typer.echo(f"  {other.template.name}\t{other.likelihood.call}\t"
                   f"p(IMNM)={other.likelihood.p_imnm:.3f}")  # fmt: skip


@app.command()
def batch(
    root: Annotated[Path, typer.Argument(help="Folder of studies (simple layout or BIDS).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    workers: Annotated[int, typer.Option("--workers", "-j", min=1, help="Parallel workers.")] = 1,
    engine: Annotated[Engine, typer.Option(help="Local processes or a dask cluster.")] = (
        Engine.processes
    ),
    scheduler: Annotated[
        str | None, typer.Option(help="dask scheduler address (with --engine dask).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            help="Reuse a study's outputs when its fingerprint (input files, options, version) "
            "matches.",
        ),
    ] = True,
    force: Annotated[
        bool, typer.Option("--force", help="Score every study again (same as --no-resume).")
    ] = False,
    template: PanelOption = None,
    config: ConfigOption = None,
    labels: LabelsOption = LabelScheme.auto,
    resample: ResampleOption = False,
    fat_reference: FatRefOption = False,
    report: ReportOption = True,
    maps: MapsOption = False,
    view: ViewOption = View.radiological,
    prior: PriorOption = None,
    dicom_out: DicomOutOption = False,
    population: PopulationOption = None,
    shard: ShardOption = None,
    participant_label: ParticipantLabelOption = None,
) -> None:
    """Score every study under ROOT; failures are recorded in failures.tsv (exit 1 if any)."""
    from rich import progress as rp

    from .errors import MriScoringError
    from .workers import start_worker_server

    _check_paths(root, out)
    if not root.is_dir():
        raise _fail(f"{root}: is not a folder (expected a folder of studies)", 2)
    if engine.value == "processes" and workers > 1:
        start_worker_server()  # the workers' imports then overlap with this process's
    from .pipeline import score_batch

    columns = (rp.TextColumn("[bold]scoring"), rp.BarColumn(), rp.MofNCompleteColumn(),
               rp.TextColumn("done {task.fields[done]} failed {task.fields[failed]}"),
               rp.TimeElapsedColumn(), rp.TextColumn("ETA"), rp.TimeRemainingColumn())
    quiet = logging.getLogger("mri_scoring").getEffectiveLevel() > logging.WARNING
    with rp.Progress(*columns, disable=quiet, transient=False) as bar:
        task = bar.add_task("scoring", total=None, done=0, failed=0)

        def progress(outcome: object, done: int, failed: int, total: int) -> None:
            bar.update(task, total=total, completed=done + failed, done=done, failed=failed)

        try:
            settings, panel = _knowledge(config, template, fat_reference)
            summary = score_batch(
                root,
                out,
                workers=workers,
                engine=engine.value,
                scheduler=scheduler,
                resume=resume and not force,
                settings=settings,
                templates=panel,
                prior=prior,
                labels=labels.value,
                resample=resample,
                report=report,
                maps=maps,
                view=view.value,
                dicom_out=dicom_out,
                progress=progress,
                population=population.value if population else None,
                shard=shard,
                participant_labels=participant_label or (),
            )
        except MriScoringError as exc:
            raise _fail(str(exc)) from None
    failures = summary.attrs["failures"]
    if summary.empty and failures.empty and not shard:  # a shard's share may be empty
        raise _fail(f"no study found under {root}: a study is a folder holding a label map "
                    "(labels.nii.gz or *_dseg.nii.gz) and its images", 1)  # fmt: skip
    for _, row in failures.iterrows():
        typer.echo(f"failed: {row['study_id']}: {row['error']}", err=True)
    reused = len(summary.attrs.get("reused", ()))
    where = f"{out}/shards (then: mri-scoring merge)" if shard else f"{out}/summary.tsv"
    typer.echo(f"{len(summary) - reused} scored, {reused} reused, {len(failures)} failed "
               f"-> {where}")  # fmt: skip
    if len(failures):
        raise typer.Exit(1)


@app.command()
def merge(out: Annotated[Path, typer.Argument(help="The folder every shard wrote into.")]) -> None:
    """Build the cohort files of a batch scored in shards (batch --shard I/N), as one run would."""
    from .errors import MriScoringError
    from .pipeline import merge_batch

    try:
        summary = merge_batch(out)
    except MriScoringError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{len(summary)} studies, {len(summary.attrs['failures'])} failed, "
               f"{len(summary.attrs['excluded'])} excluded -> {out}/summary.tsv")  # fmt: skip


@app.command()
def convert(
    dicom_dir: Annotated[Path, typer.Argument(help="DICOM export of one patient's study.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="BIDS dataset root to write into.")],
    subject: Annotated[
        str | None, typer.Option(help="BIDS subject label (default: the PatientID).")
    ] = None,
    session: Annotated[str | None, typer.Option(help="BIDS session label.")] = None,
    map_file: Annotated[
        Path | None,
        typer.Option("--map", help="YAML: series number -> role or 'skip'.", dir_okay=False),
    ] = None,
    patient: Annotated[str | None, typer.Option(help="DICOM PatientID to convert.")] = None,
    config: ConfigOption = None,
    dicom_refs: Annotated[bool, typer.Option("--dicom-refs", help="Keep DICOM references "
                          "(identifying) in OUT/sourcedata/dicom_refs/ for --dicom-out.")] = False,
) -> None:
    """DICOM to a BIDS study batch can score, and conversion.tsv (exit 0 done, 1 none, 2 usage)."""
    from .config import load_settings
    from .errors import MriScoringError
    from .io.dicom import DicomUsageError, convert_dicom
    from .io.dicom_roles import read_role_map

    if not dicom_dir.is_dir():
        raise _fail(f"{dicom_dir}: not a folder", 2)
    try:
        role_map = read_role_map(map_file) if map_file else None
    except MriScoringError as exc:  # a bad --map file is a usage error
        raise _fail(str(exc), 2) from None
    try:
        report = convert_dicom(dicom_dir, out, subject=subject, session=session,
                               role_map=role_map, settings=load_settings(config),
                               patient=patient, dicom_refs=dicom_refs)  # fmt: skip
    except MriScoringError as exc:
        raise _fail(str(exc), 2 if isinstance(exc, DicomUsageError) else 1) from None
    for row in report.rows[: len(report.rows) - len(report.skipped)]:  # the series rows
        target = f" -> {row['output']}" if row["output"] else ""
        typer.echo(f"series {row['series_number']}\t{row['series_description']}\t{row['role']}"
                   f"{target}")  # fmt: skip
    for message in report.messages:
        typer.echo(f"not converted: {message}", err=True)
    if report.anat is None:
        raise _fail(f"no series converted; see {out / 'conversion.tsv'}")
    typer.echo(f"-> {report.anat} (add a label map under {out / 'derivatives'}, then batch)")


@app.command()
def fit(
    batch_out: Annotated[Path, typer.Argument(help="A `mri-scoring batch` output folder.")],
    labels: Annotated[
        Path, typer.Argument(help="TSV/CSV with columns study_id and diagnosis.", dir_okay=False)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Fitted template YAML to write.")],
    template: TemplateOption = None,
    folds: Annotated[int, typer.Option("--folds", min=2, help="Cross-validation folds.")] = 5,
    config: ConfigOption = None,
) -> None:
    """Fit the template's probabilities to a labelled cohort; write FITTED.yaml and a report."""
    from .config import load_settings
    from .errors import MriScoringError
    from .pattern.fit import fit_template
    from .pattern.templates import template_path

    _check_paths(batch_out, None)
    _check_paths(labels, None)
    if out.exists() and out.is_dir():
        raise _fail(f"--out {out}: is a folder; name the YAML file to write", 2)
    try:
        result = fit_template(batch_out, labels, out, folds=folds,
                              template=template_path(template) if template else None,
                              settings=load_settings(config))  # fmt: skip
    except MriScoringError as exc:
        raise _fail(str(exc)) from None
    for line in result.warnings:
        typer.echo(f"warning: {line}", err=True)
    cohort = ", ".join(f"{n} {c}" for c, n in result.counts.items())
    typer.echo(f"cohort: {cohort}")
    typer.echo(f"cross-validated ({folds}-fold): AUC {result.cv_auc:.3f}, Brier "
               f"{result.cv_brier:.3f} (elicited template: AUC {result.elicited_auc:.3f}, "
               f"Brier {result.elicited_brier:.3f})")  # fmt: skip
    typer.echo(f"-> {result.template_path} (use with --template); report {result.report_path}")


@app.command()
def templates(template: PanelOption = None) -> None:
    """List the panel's templates with their features, probabilities and sources."""
    from .errors import MriScoringError
    from .pattern.panel import describe, load_panel

    try:
        panel = load_panel(template)
    except MriScoringError as exc:
        raise _fail(str(exc)) from None
    for n, pattern in enumerate(panel):
        typer.echo(("\n" if n else "") + "\n".join(describe(pattern)))


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (replaced results inside).")
    ] = Path("mri-scoring-demo"),
    workers: Annotated[int, typer.Option("--workers", "-j", min=1)] = 1,
) -> None:
    """Score the bundled sample studies into OUT and print the result table.

    OUT defaults to ./mri-scoring-demo.
    """
    from .config import sample_data_dir
    from .errors import MriScoringError
    from .output.render import signed
    from .output.write import iter_results
    from .pipeline import score_batch

    target = out
    _check_out(target)
    try:
        summary = score_batch(sample_data_dir(), target, workers=workers, resume=False)
    except (MriScoringError, OSError) as exc:
        raise _fail(f"{exc}; choose another folder with --out DIR") from None
    typer.echo("Research software: not for diagnostic use.\n")
    typer.echo(f"{'study':<28}{'call':<15}{'p(IMNM)':>8}  top evidence")
    for document in iter_results(target):
        available = [f for f in document["features"] if f["available"]]
        top = max(available, key=lambda f: abs(f["log10_lr_contribution"]), default=None)
        evidence = f"{top['id']} ({signed(top['log10_lr_contribution'])})" if top else "none"
        typer.echo(
            f"{document['study_id']:<28}{document['call']:<15}"
            f"{document['p_imnm']:>8.3f}  {evidence}"
        )
    failures = summary.attrs["failures"]
    typer.echo(f"\n{len(summary)} studies scored, {len(failures)} failed. Per study, in "
               f"{target}/<study>/: report.html (the evidence, for reading), score.json (the "
               "likelihood and every feature), muscles.tsv (per-muscle measures); summary.tsv "
               "has one row per study.")  # fmt: skip
    typer.echo(f"Open {target / 'index.html'} in a browser.")
    if len(failures):
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
