"""Finding the series of a DICOM export and checking them (pydicom reads headers only).

Every file with the DICOM preamble is read without its pixel data and grouped by
SeriesInstanceUID; per series the header facts the role rules need are kept
(:class:`~.dicom_roles.SeriesInfo`), and problems that make a series unusable are recorded on it:
a truncated or unreadable file, missing slices (a gap in the slice positions of any echo, or
echoes with different slice counts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from .dicom_roles import SeriesInfo

__all__ = [
    "Scan",
    "discover_series",
]

_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def _tokens(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    values = value if isinstance(value, (list, tuple, MultiValue)) else [value]
    out = []
    for v in values:
        out.extend(t.strip().upper() for t in str(v).split("\\") if t.strip())
    return tuple(out)


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


@dataclass
class _Slice:
    position: np.ndarray
    normal: np.ndarray
    echo_ms: float | None


def _frames(ds: Dataset) -> list[_Slice]:
    """Slice geometry and echo time of every frame (classic: one; enhanced: per frame)."""
    if "PerFrameFunctionalGroupsSequence" in ds:
        shared = (
            ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
        )
        orientation = None
        if shared is not None and "PlaneOrientationSequence" in shared:
            orientation = shared.PlaneOrientationSequence[0].ImageOrientationPatient
        out = []
        for frame in ds.PerFrameFunctionalGroupsSequence:
            if "PlaneOrientationSequence" in frame:
                orientation = frame.PlaneOrientationSequence[0].ImageOrientationPatient
            position = frame.PlanePositionSequence[0].ImagePositionPatient
            echo = None
            if "MREchoSequence" in frame:
                echo = float(frame.MREchoSequence[0].EffectiveEchoTime)
            out.append(_Slice(np.asarray(position, float), _normal(orientation), echo))
        return out
    echo = float(ds.EchoTime) if "EchoTime" in ds and ds.EchoTime != "" else None
    if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
        return [_Slice(np.zeros(3), np.zeros(3), echo)]
    return [
        _Slice(
            np.asarray(ds.ImagePositionPatient, float), _normal(ds.ImageOrientationPatient), echo
        )
    ]


def _normal(orientation: Sequence[float] | None) -> np.ndarray:
    if orientation is None:
        return np.zeros(3)
    o = np.asarray(orientation, float)
    return np.cross(o[:3], o[3:])


def _pixel_bytes(ds: Dataset) -> int | None:
    syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", ""))
    if syntax not in _UNCOMPRESSED or "Rows" not in ds:
        return None  # compressed or not an image: leave it to dcm2niix
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    return int(ds.Rows) * int(ds.Columns) * frames * samples * int(ds.BitsAllocated) // 8


@dataclass
class Scan:
    """Everything :func:`discover_series` found under a folder."""

    series: list[SeriesInfo]
    not_dicom: int = 0
    unreadable: list[str] = field(default_factory=list)


def discover_series(folder: str | Path) -> Scan:
    """Group the DICOM files under ``folder`` by series and read their header facts.

    Files without the DICOM preamble are counted and ignored; a DICOM file that cannot be read
    or is truncated marks its series (when its header names one) with the problem.

    Parameters
    ----------
    folder : path
        A scanner or PACS export (any depth).

    Returns
    -------
    Scan
    """
    folder = Path(folder)
    groups: dict[str, SeriesInfo] = {}
    slices: dict[str, list[_Slice]] = {}
    scan = Scan([])
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.upper() == "DICOMDIR" or not _is_dicom_file(path):
            scan.not_dicom += 1
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError, KeyError) as exc:
            scan.unreadable.append(f"{path}: unreadable DICOM ({exc})")
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        if not uid or "Rows" not in ds:
            scan.unreadable.append(f"{path}: DICOM file without a series UID or image (damaged?)")
            continue
        info = groups.get(uid)
        if info is None:
            number = ds.get("SeriesNumber")
            info = groups[uid] = SeriesInfo(
                uid=uid,
                number=int(number) if number not in (None, "") else None,
                description=str(ds.get("SeriesDescription", "") or ""),
                protocol=str(ds.get("ProtocolName", "") or ""),
                scanning_sequence=_tokens(ds.get("ScanningSequence")),
                inversion_time_ms=_float(ds.get("InversionTime")),
                repetition_time_ms=_float(ds.get("RepetitionTime")),
                manufacturer=str(ds.get("Manufacturer", "") or ""),
                patient_id=str(ds.get("PatientID", "") or ""),
            )
            info.image_type = _image_type(ds)
            slices[uid] = []
        info.files.append(path)
        expected = _pixel_bytes(ds)
        if expected is not None and path.stat().st_size < expected:
            info.problems.append(
                f"file {path.name} is truncated (pixel data needs {expected} bytes, the file has "
                f"{path.stat().st_size}); export the series again"
            )
        mixed = _mixed_frame_types(ds)
        if mixed:
            info.problems.append(
                f"file {path.name} holds frames of several image types ({mixed}) in one series; "
                "it is not split here (export the Dixon images as separate series)"
            )
        try:
            slices[uid].extend(_frames(ds))
        except (AttributeError, KeyError, IndexError, ValueError, TypeError) as exc:
            info.problems.append(f"file {path.name} has no usable slice geometry ({exc})")
    for uid, info in groups.items():
        echoes = sorted({s.echo_ms for s in slices[uid] if s.echo_ms is not None})
        info.echo_times_ms = tuple(round(e, 3) for e in echoes)
        gap = _missing_slices(slices[uid])
        if gap:
            info.problems.append(gap)
    scan.series = sorted(groups.values(), key=lambda s: (s.number is None, s.number or 0, s.uid))
    return scan


def _float(value: object) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _image_type(ds: Dataset) -> tuple[str, ...]:
    tokens = list(_tokens(ds.get("ImageType")))
    try:
        frame = ds.PerFrameFunctionalGroupsSequence[0]
        tokens += _tokens(frame.MRImageFrameTypeSequence[0].FrameType)
    except (AttributeError, IndexError, KeyError):
        pass
    if "PHILIPS" in str(ds.get("Manufacturer", "")).upper():
        element = ds.get((0x2005, 0x1011))
        if element is not None:
            tokens += _tokens(element.value)
    return tuple(dict.fromkeys(tokens))


def _mixed_frame_types(ds: Dataset) -> str | None:
    """The distinct FrameType values of an enhanced file when there are several, else None.

    One Philips enhanced mDixon file may hold water, fat and fat-fraction frames (dcm2niix issue
    #1022); classifying it by one frame would be a guess.
    """
    seen: dict[str, None] = {}
    for frame in ds.get("PerFrameFunctionalGroupsSequence") or []:
        try:
            seen["\\".join(_tokens(frame.MRImageFrameTypeSequence[0].FrameType))] = None
        except (AttributeError, IndexError, KeyError):
            continue
    return ", ".join(seen) if len(seen) > 1 else None


def _missing_slices(frames: list[_Slice]) -> str | None:
    """A one-line problem when slice positions of any echo leave a gap, else None."""
    by_echo: dict[float | None, list[_Slice]] = {}
    for s in frames:
        by_echo.setdefault(s.echo_ms, []).append(s)
    counts = {echo: len(group) for echo, group in by_echo.items()}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"TE {e:g} ms: {n}" for e, n in sorted(counts.items(), key=str))
        return f"missing slices: echoes have different slice counts ({shown})"
    for group in by_echo.values():
        normal = group[0].normal
        if len(group) < 3 or not normal.any():
            continue
        positions = np.sort([float(s.position @ normal) for s in group])
        steps = np.diff(positions)
        typical = float(np.median(steps))
        if typical <= 0:
            continue
        worst = int(np.argmax(steps))
        if steps[worst] > 1.5 * typical:
            return (
                f"missing slices: a gap of {steps[worst]:.1f} mm between slice positions "
                f"{positions[worst]:.1f} and {positions[worst + 1]:.1f} mm (spacing "
                f"{typical:.1f} mm); export the whole series again"
            )
    return None
