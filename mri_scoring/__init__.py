"""mri_scoring: per-muscle thigh MRI scores and an IMNM-vs-DM pattern likelihood.

Research software. Not a medical device; not for diagnosis.

Names are imported on first use, so ``import mri_scoring`` stays cheap for the command line.

Subpackages (stages in data-flow order): :mod:`.io`, :mod:`.measure`, :mod:`.pattern`,
:mod:`.output`, and :mod:`.phantom` (synthetic studies). Modules: :mod:`.grading` (grades),
:mod:`.batch` (many studies), :mod:`.dask_engine` (its dask engine), :mod:`.workers` and
:mod:`._forkserver_warmup` (the batch's processes), :mod:`.pipeline` (composes the stages),
:mod:`.cli` (the command line) and :mod:`.cli_options` (its shared options); neutral ground any
stage may use: :mod:`.schema` (output columns, QC codes), :mod:`.config`, :mod:`.anatomy`,
:mod:`.body`, :mod:`.errors`, :mod:`.files`, :mod:`.frames`, :mod:`.memory_layout`,
:mod:`.svg`.
``docs/architecture.md`` lists every module with its job.

Examples
--------
>>> import mri_scoring as ms
>>> study = ms.phantom.make_study("imnm", seed=0, shape=(96, 96, 16))
>>> result = ms.score_study(study)
>>> result.likelihood.call
'IMNM'
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "ConfigError": ".errors",
    "MriScoringError": ".errors",
    "QCFinding": ".errors",
    "StudyError": ".errors",
    "PatternClassifier": ".pattern.classifier",
    "StudyResult": ".output.result",
    "score_batch": ".pipeline",
    "score_study": ".pipeline",
    "Study": ".io.study",
    "discover_studies": ".io.discover",
    "load_study": ".io.study",
    "load_template": ".pattern.templates",
    "load_panel": ".pattern.panel",
    "compare_sessions": ".output.followup",
    "fit_template": ".pattern.fit",
}
_SUBMODULES = (
    "phantom",
    "config",
    "anatomy",
    "measure",
    "schema",
    "grading",
    "pattern",
    "pipeline",
    "output",
    "batch",
    "io",
    "memory_layout",
    "errors",
    "files",
    "svg",
    "workers",
    "cli",
)

__all__ = [*_LAZY, "__version__", "phantom"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'mri_scoring' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
