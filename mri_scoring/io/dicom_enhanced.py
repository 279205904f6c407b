"""Enhanced MR headers: the classic facts the role rules use, read from the functional groups.

Enhanced MR Image Storage (current Siemens XA, Philips) carries no top-level ScanningSequence,
TR or TI (PS3.3 C.8.13): EchoPulseSequence says spin or gradient echo, the MR modifier group
says inversion recovery and holds the inversion times, the timing group holds TR. Per-frame
echo times and FrameType are read where the frames are (:mod:`.dicom_series`).
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from .dicom_roles import SeriesInfo

__all__ = ["enhanced_timing", "group_item", "header_tokens", "scanning_sequence"]


def header_tokens(value: object) -> tuple[str, ...]:
    """Upper-case tokens of a (multi-valued, backslash-separated) header value."""
    if value is None:
        return ()
    values = value if isinstance(value, (list, tuple, MultiValue)) else [value]
    out = []
    for v in values:
        out.extend(t.strip().upper() for t in str(v).split("\\") if t.strip())
    return tuple(out)


def _float(value: Any) -> float | None:
    """A present value that does not parse raises: its file is skipped, not read as absent."""
    return float(value) if value not in (None, "") else None


def group_item(ds: Dataset, keyword: str) -> Dataset | None:
    """The first item of functional group ``keyword``: per-frame (first frame), else shared."""
    for groups in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        try:
            group = ds.get(groups)[0]
            if keyword in group and len(group[keyword].value):
                return group[keyword].value[0]
        except (TypeError, IndexError, KeyError, AttributeError):
            continue
    return None


# Enhanced MR files carry no ScanningSequence (PS3.3 C.8.13.4, MR Pulse Sequence module):
# EchoPulseSequence says spin or gradient echo and the MR Modifier functional group says
# inversion recovery. They are read into the classic tokens the role rules use.
_ECHO_PULSE_TOKENS = {"SPIN": ("SE",), "GRADIENT": ("GR",), "BOTH": ("SE", "GR")}


def scanning_sequence(ds: Dataset) -> tuple[str, ...]:
    """ScanningSequence tokens, for enhanced files made from their pulse-sequence facts.

    ``EchoPulseSequence`` ``SPIN`` -> ``SE``, ``GRADIENT`` -> ``GR``; the MR modifier group's
    ``InversionRecovery`` ``YES`` -> ``IR``.
    """
    tokens = list(header_tokens(ds.get("ScanningSequence")))
    if tokens:
        return tuple(tokens)
    pulse = str(ds.get("EchoPulseSequence", "") or "").strip().upper()
    tokens += _ECHO_PULSE_TOKENS.get(pulse, ())
    modifier = group_item(ds, "MRModifierSequence")
    if modifier is not None and str(modifier.get("InversionRecovery", "")).upper() == "YES":
        tokens.append("IR")
    return tuple(tokens)


def enhanced_timing(ds: Dataset, info: SeriesInfo) -> None:
    """TR and TI of an enhanced file from its timing and MR modifier functional groups."""
    if info.repetition_time_ms is None:
        timing = group_item(ds, "MRTimingAndRelatedParametersSequence")
        if timing is not None:
            info.repetition_time_ms = _float(timing.get("RepetitionTime"))
    if info.inversion_time_ms is None:
        modifier = group_item(ds, "MRModifierSequence")
        times = modifier.get("InversionTimes") if modifier is not None else None
        if times not in (None, ""):
            values = times if isinstance(times, (list, tuple, MultiValue)) else [times]
            info.inversion_time_ms = _float(values[0]) if len(values) else None
