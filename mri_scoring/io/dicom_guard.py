"""Reading DICOM headers under guard: what a skipped file is, and how its reason is told.

pydicom converts header values when they are first read, and warns (a Python warning and its
``pydicom`` logger) or raises when one breaks its VR. :func:`heard` collects those warnings instead
of letting them reach the user; :func:`error_text` names the element at fault.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ..errors import MriScoringError

__all__ = [
    "DicomError",
    "DicomUsageError",
    "SkippedFile",
    "error_text",
    "heard",
    "identity",
    "short",
]


class DicomError(MriScoringError):
    """A DICOM folder cannot be converted at all (no DICOM, no converter)."""


class DicomUsageError(DicomError):
    """Several patients and none chosen, or the chosen PatientID is not there (exit 2)."""


@dataclass
class SkippedFile:
    """A file under the export that takes no part in the conversion, and why.

    Attributes
    ----------
    path : Path
        The file.
    reason : str
        One line, e.g. ``not an MR image (RT Dose Storage)``; pydicom's warnings about the file
        are appended to it.
    series_number : int or None
        SeriesNumber, when the header names it and it parses.
    series_description : str
        SeriesDescription (else ProtocolName), when known.
    """

    path: Path
    reason: str
    series_number: int | None = None
    series_description: str = ""


@contextmanager
def heard() -> Iterator[list[str]]:
    """Collect pydicom's warnings (Python warnings and its logger) instead of printing them.

    Yields
    ------
    list of str
        The messages, filled when the block ends.

    Examples
    --------
    >>> import warnings
    >>> with heard() as said:
    ...     warnings.warn("Invalid value for VR IS: '1A'")
    >>> said
    ["Invalid value for VR IS: '1A'"]
    """
    collected: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            collected.append(record.getMessage())

    logger = logging.getLogger("pydicom")
    handler, propagate = _Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield collected
        collected.extend(str(w.message) for w in caught)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def short(text: str) -> str:
    """One line, without pydicom's link to the standard's VR table.

    Parameters
    ----------
    text : str
        A message.

    Returns
    -------
    str

    Examples
    --------
    >>> short("Invalid value for VR IS: '1A'. Please see <https://x> for allowed values for "
    ...       "each VR.")
    "Invalid value for VR IS: '1A'."
    """
    text = re.sub(r"\s*Please see <[^>]*> for allowed values for each VR\.?", "", text)
    return " ".join(text.split())


def identity(ds: Dataset) -> tuple[int | None, str]:
    """SeriesNumber and name as far as they parse (for a skipped file's row).

    Parameters
    ----------
    ds : Dataset
        A header.

    Returns
    -------
    tuple of (int or None, str)
        SeriesNumber (None when absent or unparseable) and SeriesDescription, else ProtocolName.
    """
    try:
        number = ds.get("SeriesNumber")
        number = int(number) if number not in (None, "") else None
    except Exception:  # a SeriesNumber that does not parse names no series
        number = None
    try:
        name = str(ds.get("SeriesDescription", "") or ds.get("ProtocolName", "") or "")
    except Exception:  # an undecodable name: the path still names the file
        name = ""
    return number, name


def error_text(exc: BaseException, ds: Dataset | None = None) -> str:
    """The exception in one line, after the element at fault when one is found.

    Parameters
    ----------
    exc : BaseException
        What reading the header raised.
    ds : Dataset, optional
        The header, searched for the first top-level element whose value does not parse.

    Returns
    -------
    str
        For example ``NumberOfFrames (0028,0008) = '1A': ValueError: invalid literal ...``.
    """
    text = short(f"{type(exc).__name__}: {exc}")
    return f"{_culprit(ds)}: {text}" if ds is not None and _culprit(ds) else text


def _values(element: DataElement) -> list:
    value = element.value
    return list(value) if isinstance(value, (list, MultiValue)) else [value]


def _culprit(ds: Dataset) -> str:
    """The first top-level element whose value does not parse (``EchoTime (0018,0081)``)."""
    for tag in list(ds.keys()):
        name = keyword_for_tag(tag) or "private element"
        try:
            element = ds[tag]
        except Exception:  # this element's value does not convert: it is the one
            return f"{name} {tag}"
        if element.VR in ("IS", "DS") and any(isinstance(v, str) for v in _values(element)):
            return f"{name} {tag} = {element.value!r}"  # kept as text: not a number
    return ""  # the fault is deeper (a sequence item) or not in one element
