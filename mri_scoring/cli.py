"""The ``mri-scoring`` command line (DESIGN §4)."""

from __future__ import annotations

import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from . import __version__

app = typer.Typer(
    name="mri-scoring",
    help="Per-muscle thigh MRI scores and an IMNM-vs-DM pattern likelihood. "
    "Research software: not for diagnostic use.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("mri_scoring")


class Pattern(StrEnum):
    imnm = "imnm"
    dm = "dm"
    normal = "normal"


class Layout(StrEnum):
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
) -> None:
    """Write synthetic thigh studies with their ground truth (truth.json)."""
    from . import phantom as phantom_module

    for i in range(n):
        study_seed = seed + i
        study = phantom_module.make_study(pattern.value, seed=study_seed, shape=shape, noise=noise)
        target = out if layout is Layout.bids else out / study.study_id
        folder = phantom_module.write_study(study, target, layout=layout.value)
        typer.echo(f"{study.study_id}\t{folder}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
