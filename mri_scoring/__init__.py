"""mri_scoring: per-muscle thigh MRI scores and an IMNM-vs-DM pattern likelihood.

Research software. Not a medical device; not for diagnosis.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import phantom
from .study import Study

__all__ = ["Study", "__version__", "phantom"]
