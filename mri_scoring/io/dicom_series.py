"""Finding the series of a DICOM export and checking them (pydicom reads headers only).

Every file with the DICOM preamble is read without its pixel data and grouped by
SeriesInstanceUID; per series the header facts the role rules need are kept
(:class:`~.dicom_roles.SeriesInfo`). No file stops the scan: a file whose header does not parse,
a truncated file, a non-image or non-MR object is a :class:`SkippedFile` with its reason and
makes no series. Problems that make a series unusable are recorded on it: missing slices (a gap
in the slice positions of any echo, echoes with different slice counts, or image files of the
series skipped), frames of several image types in one file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from .dicom_enhanced import enhanced_timing as _enhanced_timing
from .dicom_enhanced import group_item as _group_item
from .dicom_enhanced import header_tokens as _tokens
from .dicom_enhanced import scanning_sequence as _scanning_sequence
from .dicom_guard import (
    DicomError,
    DicomUsageError,
    SkippedFile,
    error_text,
    heard,
    identity,
    short,
)
from .dicom_roles import SeriesInfo

__all__ = [
    "Scan",
    "choose_patient",
    "discover_series",
    "keep_patient",
    "skip_messages",
]

log = logging.getLogger(__name__)

_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


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
            echo = _effective_echo(frame) if "MREchoSequence" in frame else None
            if echo is None and shared is not None and "MREchoSequence" in shared:
                echo = _effective_echo(shared)
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


def _effective_echo(group: Dataset) -> float | None:
    value = group.MREchoSequence[0].get("EffectiveEchoTime")
    return float(value) if value not in (None, "") else None


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
    """Everything :func:`discover_series` found under a folder.

    Attributes
    ----------
    series : list of SeriesInfo
        The MR image series, made of the files that could be read.
    not_dicom : int
        Files ignored without a row: no DICOM marker and a name no DICOM file has (``DICOMDIR``,
        ``README.txt``, a viewer's files).
    skipped : list of SkippedFile
        Every other file that takes no part: a header that does not parse, a non-image or
        non-MR object, another patient's file (:func:`keep_patient`).
    lost : dict of str -> str
        SeriesInstanceUID -> how many of its image files were skipped and whether the series is
        still complete (an incomplete one also has the problem on its ``problems``).
    """

    series: list[SeriesInfo]
    not_dicom: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    lost: dict[str, str] = field(default_factory=dict)

    def patients(self) -> dict[str, int]:
        """PatientID -> number of series (skipped files count toward no patient).

        Returns
        -------
        dict of str -> int
        """
        counts: dict[str, int] = {}
        for s in self.series:
            counts[s.patient_id] = counts.get(s.patient_id, 0) + 1
        return dict(sorted(counts.items()))


@dataclass
class _Header:
    info: SeriesInfo
    slices: list[_Slice]
    mixed: str | None


@dataclass
class _Reading:
    """One file's outcome: a header to group, or a skipped file (and the slices it held)."""

    header: _Header | None = None
    skipped: SkippedFile | None = None
    lost_uid: str = ""
    lost_slices: list[_Slice] | None = None


# Storage classes converted (DICOM PS3.4 Annex B.5): everything else (RT dose and plans, SR,
# secondary capture, spectroscopy, presentation states, ...) is no image to measure.
_MR_STORAGE = {"1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1",
               "1.2.840.10008.5.1.4.1.1.4.4"}  # fmt: skip
# Names under which a file without the DICOM marker is still listed (a PACS names files so).
_DICOM_SUFFIXES = {".dcm", ".dicom", ".ima", ".img", ""}


def _read(path: Path, folder: Path) -> _Reading | None:
    """Read one file's header (never raises); None for a non-DICOM file not worth a row."""
    with heard() as said_by_pydicom:
        reading = _parse(path)
    if reading is None:
        return None
    said = "; ".join(dict.fromkeys(short(h) for h in said_by_pydicom))
    if said and reading.skipped is not None:
        reading.skipped.reason += f" [pydicom: {said}]"
    elif said:
        log.warning("%s: pydicom: %s", path.relative_to(folder), said)  # once per file
    return reading


def _parse(path: Path) -> _Reading | None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        return _Reading(skipped=SkippedFile(path, f"cannot be read ({exc.strerror})"))
    if path.name.upper() == "DICOMDIR":
        return None
    if size > 0 and not _is_dicom_file(path):
        if path.suffix.lower() not in _DICOM_SUFFIXES:
            return None
        reason = "not a DICOM file (no 'DICM' marker at byte 128)"
        return _Reading(skipped=SkippedFile(path, reason))
    if size == 0:
        return _Reading(skipped=SkippedFile(path, "empty file"))
    try:
        with open(path, "rb") as handle:
            ds = pydicom.dcmread(handle, stop_before_pixels=True)
            pixels_at = handle.tell()  # the pixel data element starts here (or the file ends)
    except Exception as exc:  # any fault of one file's header: that file is skipped
        return _Reading(skipped=SkippedFile(path, f"unreadable DICOM header ({error_text(exc)})"))
    number, name = identity(ds)

    def skip(reason: str, uid: str = "", slices: list[_Slice] | None = None) -> _Reading:
        return _Reading(None, SkippedFile(path, reason, number, name), uid, slices)

    try:
        sop = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
        modality = str(ds.get("Modality", "") or "")
        if sop and sop not in _MR_STORAGE:
            return skip(f"not an MR image ({UID(sop).name})")
        if not sop and not modality:
            return skip("damaged or incomplete header (no SOPClassUID, no Modality)")
        if not sop and modality != "MR":
            return skip(f"not an MR image (Modality {modality}, no SOPClassUID)")
        if "Rows" not in ds:
            return skip("not an image (no Rows)")
        uid = str(ds.get("SeriesInstanceUID", "") or "")
    except Exception as exc:  # a type or UID that does not parse
        return skip(f"header does not parse ({error_text(exc, ds)})")
    if not uid:
        return skip("no SeriesInstanceUID: it belongs to no series (damaged?)")
    try:
        slices = _frames(ds)
    except Exception as exc:  # a position, orientation or echo time that does not parse
        return skip(f"slice geometry does not parse ({error_text(exc, ds)})", uid, None)
    try:
        info = SeriesInfo(
            uid=uid,
            number=_int(ds.get("SeriesNumber")),
            description=str(ds.get("SeriesDescription", "") or ""),
            protocol=str(ds.get("ProtocolName", "") or ""),
            scanning_sequence=_scanning_sequence(ds),
            inversion_time_ms=_float(ds.get("InversionTime")),
            repetition_time_ms=_float(ds.get("RepetitionTime")),
            sequence_name=str(
                ds.get("PulseSequenceName", "") or ds.get("SequenceName", "") or ""
            ).strip(),
            manufacturer=str(ds.get("Manufacturer", "") or ""),
            patient_id=str(ds.get("PatientID", "") or ""),
            image_type=_image_type(ds),
            multiframe="PerFrameFunctionalGroupsSequence" in ds,
        )
        _enhanced_timing(ds, info)
        expected = _pixel_bytes(ds)
        if expected is not None:  # + the element's tag, VR and length: 8 or 12 bytes
            expected += pixels_at + (8 if ds.original_encoding[0] else 12)
        mixed = _mixed_frame_types(ds)
    except Exception as exc:  # VR violations, wrong types: this file is skipped
        return skip(f"header value does not parse ({error_text(exc, ds)})", uid, slices)
    if expected is not None and size < expected:
        return skip(f"truncated (its header and pixel data need {expected} bytes, the file has "
                    f"{size}); export the series again", uid, slices)  # fmt: skip
    return _Reading(header=_Header(info, slices, mixed))


def discover_series(folder: str | Path) -> Scan:
    """Group the DICOM files under ``folder`` by series and read their header facts.

    No file stops the scan: a file whose header does not parse (a VR violation, a missing tag,
    a wrong type), a truncated file, a non-image or non-MR object (RT dose, SR, secondary
    capture) is skipped with its reason and creates no series; pydicom's warnings about a file
    go into its reason, or to the log once per file when the file is kept. A series that loses
    image files this way is still converted only when the slices it lost are held by other
    files; otherwise it has the problem ``missing slices``.

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
    lost: dict[str, list[list[_Slice] | None]] = {}
    scan = Scan([])
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        reading = _read(path, folder)
        if reading is None:
            scan.not_dicom += 1
            continue
        if reading.skipped is not None:
            scan.skipped.append(reading.skipped)
            if reading.lost_uid:
                lost.setdefault(reading.lost_uid, []).append(reading.lost_slices)
            continue
        header = reading.header
        assert header is not None  # a reading is a header or a skipped file
        uid = header.info.uid
        info = groups.get(uid)
        if info is None:
            info = groups[uid] = header.info
            slices[uid] = []
        info.files.append(path)
        if header.mixed:
            info.problems.append(
                f"file {path.name} holds frames of several image types ({header.mixed}) in one "
                "series; it is not split here (export the Dixon images as separate series)"
            )
        slices[uid].extend(header.slices)
    for uid, info in groups.items():
        echoes = sorted({s.echo_ms for s in slices[uid] if s.echo_ms is not None})
        info.echo_times_ms = tuple(round(e, 3) for e in echoes)
        gap = _missing_slices(slices[uid])
        if uid in lost:
            n, total = len(lost[uid]), len(info.files) + len(lost[uid])
            held = gap is None and all(
                frames is not None and all(_held(f, slices[uid]) for f in frames)
                for frames in lost[uid]
            )
            scan.lost[uid] = f"+{n} skipped, " + ("still complete" if held else "incomplete")
            if not held:
                gap = (f"missing slices: {n} of {total} files skipped (listed in their own "
                       "rows); the series is incomplete")  # fmt: skip
        if gap:
            info.problems.append(gap)
    scan.series = sorted(groups.values(), key=lambda s: (s.number is None, s.number or 0, s.uid))
    return scan


def keep_patient(scan: Scan, patient: str) -> Scan:
    """The scan of one patient: the series of other PatientIDs become skipped files.

    Parameters
    ----------
    scan : Scan
        From :func:`discover_series`.
    patient : str
        The DICOM PatientID to keep.

    Returns
    -------
    Scan
        A new scan; ``scan`` is not changed.
    """
    kept = [s for s in scan.series if s.patient_id == patient]
    skipped = list(scan.skipped)
    for s in scan.series:
        if s.patient_id != patient:
            reason = f"another patient (PatientID {s.patient_id or '(empty)'})"
            name = s.description or s.protocol
            skipped += [SkippedFile(path, reason, s.number, name) for path in s.files]
    lost = {uid: note for uid, note in scan.lost.items() if any(s.uid == uid for s in kept)}
    return Scan(kept, scan.not_dicom, sorted(skipped, key=lambda f: f.path), lost)


def _held(frame: _Slice, kept: list[_Slice]) -> bool:
    """Whether a kept file has the slice position and echo of ``frame`` (a duplicate)."""
    return any(
        k.echo_ms == frame.echo_ms and np.allclose(k.position, frame.position, atol=0.01)
        for k in kept
    )


def _int(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def _float(value: Any) -> float | None:
    """A present value that does not parse raises: its file is skipped, not read as absent."""
    return float(value) if value not in (None, "") else None


def _image_type(ds: Dataset) -> tuple[str, ...]:
    tokens = list(_tokens(ds.get("ImageType")))
    frame_type = _group_item(ds, "MRImageFrameTypeSequence")
    if frame_type is not None:
        tokens += _tokens(frame_type.get("FrameType"))
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


def choose_patient(scan: Scan, dicom_dir: Path, patient: str | None) -> Scan:
    """The scan of the one patient to convert, or the error that says how to choose one."""
    if not scan.series and scan.skipped:
        shown = "; ".join(f"{f.path.relative_to(dicom_dir)}: {f.reason}" for f in scan.skipped[:3])
        more = f" and {len(scan.skipped) - 3} more" if len(scan.skipped) > 3 else ""
        raise DicomError(
            f"{dicom_dir}: no MR image series to convert; {len(scan.skipped)} files "
            f"skipped ({shown}{more})"
        )
    if not scan.series:
        raise DicomError(
            f"{dicom_dir}: no DICOM files found ({scan.not_dicom} other files); point at the "
            "folder of the scanner export"
        )
    counts = scan.patients()
    listed = ", ".join(f"PatientID {pid or '(empty)'} ({n} series)" for pid, n in counts.items())
    if patient is not None:
        if patient not in counts:
            raise DicomUsageError(
                f"{dicom_dir}: no series of PatientID {patient}; it holds {listed}"
            )
        return keep_patient(scan, patient)
    if len(counts) > 1:
        raise DicomUsageError(
            f"{dicom_dir}: holds series of {len(counts)} patients: {listed}; convert one with "
            "--patient ID (the DICOM PatientID; --subject stays the BIDS label)"
        )
    return scan


def skip_messages(skipped: list[SkippedFile], dicom_dir: Path) -> list[str]:
    """One line per skipped file; another patient's files in one line per patient."""
    lines: list[str] = []
    others: dict[str, int] = {}
    for f in skipped:
        if f.reason.startswith("another patient"):
            others[f.reason] = others.get(f.reason, 0) + 1
        else:
            lines.append(f"{f.path.relative_to(dicom_dir)}: {f.reason}")
    lines += [f"{n} files of {reason} (listed in conversion.tsv)" for reason, n in others.items()]
    return lines
