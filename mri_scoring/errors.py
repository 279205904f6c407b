"""Errors and QC findings shared by every stage.

A :class:`StudyError` is a problem that makes a study unusable; its message is one line that names
the file or field and what was expected, so the CLI can print it without a traceback. A
:class:`QCFinding` is a problem the study survives; findings travel with the study into
``score.json`` and the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "ConfigError",
    "MriScoringError",
    "QCFinding",
    "StudyError",
]


class MriScoringError(Exception):
    """Base class of the errors this package raises on purpose."""


class StudyError(MriScoringError):
    """A study cannot be scored; the message says which file or field and what was expected."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        text = message if path is None or str(path) in message else f"{path}: {message}"
        super().__init__(text)


class ConfigError(MriScoringError):
    """A configuration or template file is invalid; the message names the file, key and value."""


@dataclass(frozen=True)
class QCFinding:
    """One quality-control finding.

    Attributes
    ----------
    level : str
        ``"warning"`` (the result stands, read it with care) or ``"info"``.
    code : str
        Stable machine-readable code, e.g. ``"label_unknown"``.
    message : str
        One line for a human reader.
    file : str
        The file concerned, or ``""``.
    """

    level: str
    code: str
    message: str
    file: str = ""

    def to_dict(self) -> dict[str, str]:
        """The finding as plain data (``score.json`` ``qc``)."""
        return asdict(self)

    def __str__(self) -> str:
        where = f" [{Path(self.file).name}]" if self.file else ""
        return f"{self.level}: {self.code}: {self.message}{where}"
