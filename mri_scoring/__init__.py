"""mri_scoring: per-muscle thigh MRI scores and an IMNM-vs-DM pattern likelihood.

Research software. Not a medical device; not for diagnosis.

Examples
--------
>>> import mri_scoring as ms
>>> study = ms.phantom.make_study("imnm", seed=0, shape=(96, 96, 16))
>>> result = ms.score_study(study)
>>> result.likelihood.call
'IMNM'
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import phantom
from .errors import ConfigError, MriScoringError, QCFinding, StudyError
from .likelihood import PatternClassifier
from .pipeline import StudyResult, score_batch, score_study
from .study import Study, discover_studies, load_study
from .templates import load_template

__all__ = [
    "ConfigError",
    "MriScoringError",
    "PatternClassifier",
    "QCFinding",
    "Study",
    "StudyError",
    "StudyResult",
    "__version__",
    "discover_studies",
    "load_study",
    "load_template",
    "phantom",
    "score_batch",
    "score_study",
]
