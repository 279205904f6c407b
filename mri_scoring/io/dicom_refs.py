"""DICOM references of converted images (``convert --dicom-refs``), for results sent back.

dcm2niix is run with anonymised sidecars, so a converted NIfTI no longer says which DICOM
instances it came from. On request, :func:`capture_refs` reads the headers of a converted
series (pydicom, no pixel data) and :func:`write_refs` keeps, per converted image,
``BIDS_ROOT/sourcedata/dicom_refs/sub-L[_ses-S]_<suffix>.json``:

* ``study_instance_uid``, ``series_instance_uid``, ``frame_of_reference_uid``, ``modality``,
  ``series_number``, ``series_description``;
* the grid: ``rows``, ``columns``, ``pixel_spacing`` (row, column spacing, mm),
  ``orientation`` (ImageOrientationPatient), ``slice_thickness``;
* ``frames``: per slice its ``sop_instance_uid``, ``sop_class_uid``, ``frame`` number (1 for a
  classic single-frame file; an enhanced multi-frame file holds many slices in one instance),
  ``position`` (ImagePositionPatient, LPS mm) and ``echo_ms``;
* ``patient`` and ``study``: the Patient and General Study module attributes, so that results
  written back (:mod:`mri_scoring.output.dicom_seg`) join the same patient and study.

The file holds identifying data (patient name, ID, birth date); without the option nothing
identifying is written. :func:`find_refs` finds the references of a study's images again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from ..errors import MriScoringError
from ..files import atomic_write
from .dicom_roles import SeriesInfo

__all__ = [
    "PATIENT_KEYWORDS",
    "REFS_FOLDER",
    "REFS_VERSION",
    "STUDY_KEYWORDS",
    "DicomRefsError",
    "capture_refs",
    "find_refs",
    "keep_refs",
    "refs_path",
    "write_refs",
]

REFS_FOLDER = ("sourcedata", "dicom_refs")
"""Where the references live under a BIDS root."""

REFS_VERSION = 1

PATIENT_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
)
"""Patient module (and patient study) attributes kept."""

STUDY_KEYWORDS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
)
"""General Study module attributes kept."""


class DicomRefsError(MriScoringError):
    """References cannot be captured or read."""


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _module(ds: Dataset, keywords: tuple[str, ...]) -> dict[str, str]:
    return {k: _text(ds.get(k)) for k in keywords if k in ds and ds.get(k) not in (None, "")}


def _frames_of(
    ds: Dataset,
) -> tuple[list[dict[str, Any]], list[float] | None, list[float] | None, float | None]:
    """Per-frame references and the grid of one instance (classic or enhanced)."""
    sop = {"sop_instance_uid": str(ds.SOPInstanceUID), "sop_class_uid": str(ds.SOPClassUID)}
    if "PerFrameFunctionalGroupsSequence" in ds:
        shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
        orientation = spacing = thickness = None
        if "PlaneOrientationSequence" in shared:
            orientation = shared.PlaneOrientationSequence[0].ImageOrientationPatient
        if "PixelMeasuresSequence" in shared:
            spacing = shared.PixelMeasuresSequence[0].PixelSpacing
            thickness = shared.PixelMeasuresSequence[0].get("SliceThickness")
        frames = []
        for number, item in enumerate(ds.PerFrameFunctionalGroupsSequence, start=1):
            if "PlaneOrientationSequence" in item:
                orientation = item.PlaneOrientationSequence[0].ImageOrientationPatient
            if "PixelMeasuresSequence" in item:
                spacing = item.PixelMeasuresSequence[0].PixelSpacing
            echo = None
            if "MREchoSequence" in item:
                echo = float(item.MREchoSequence[0].EffectiveEchoTime)
            position = item.PlanePositionSequence[0].ImagePositionPatient
            frames.append(
                {**sop, "frame": number, "position": [float(v) for v in position], "echo_ms": echo}
            )
        return (
            frames,
            [float(v) for v in orientation] if orientation else None,
            [float(v) for v in spacing] if spacing else None,
            float(thickness) if thickness not in (None, "") else None,
        )
    echo = float(ds.EchoTime) if ds.get("EchoTime") not in (None, "") else None
    frame = {
        **sop,
        "frame": 1,
        "position": [float(v) for v in ds.ImagePositionPatient],
        "echo_ms": echo,
    }
    thickness = ds.get("SliceThickness")
    return (
        [frame],
        [float(v) for v in ds.ImageOrientationPatient],
        [float(v) for v in ds.PixelSpacing],
        float(thickness) if thickness not in (None, "") else None,
    )


def capture_refs(files: list[Path]) -> dict[str, Any]:
    """The references of one series: UIDs, per-slice instance and frame, patient and study.

    Parameters
    ----------
    files : list of Path
        The DICOM files of one series.

    Returns
    -------
    dict
        The document written by :func:`write_refs` (see the module docstring).

    Raises
    ------
    DicomRefsError
        A file lacks its geometry or the series mixes grids.
    """
    frames: list[dict[str, Any]] = []
    first: Dataset | None = None
    grid: tuple | None = None
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        try:
            found, orientation, spacing, thickness = _frames_of(ds)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise DicomRefsError(f"{path.name}: no slice geometry to reference ({exc})") from None
        this = (int(ds.Rows), int(ds.Columns), orientation, spacing)
        if grid is not None and (
            this[:2] != grid[:2]
            or any(
                abs(a - b) > 1e-4 for a, b in zip(this[2] + this[3], grid[2] + grid[3], strict=True)
            )
        ):
            raise DicomRefsError(f"{path.name}: slices of the series lie on different grids")
        if first is None:
            first, grid = ds, this
            slice_thickness = thickness
        frames.extend(found)
    if first is None or grid is None:
        raise DicomRefsError("no DICOM file to reference")
    frames.sort(key=lambda f: f["echo_ms"] or 0.0)  # stable: file and frame order per echo
    return {
        "version": REFS_VERSION,
        "study_instance_uid": str(first.StudyInstanceUID),
        "series_instance_uid": str(first.SeriesInstanceUID),
        "frame_of_reference_uid": _text(first.get("FrameOfReferenceUID")),
        "modality": _text(first.get("Modality")) or "MR",
        "series_number": _text(first.get("SeriesNumber")),
        "series_description": _text(first.get("SeriesDescription")),
        "manufacturer": _text(first.get("Manufacturer")),
        "rows": grid[0],
        "columns": grid[1],
        "orientation": grid[2],
        "pixel_spacing": grid[3],
        "slice_thickness": slice_thickness,
        "enhanced": any(f["frame"] > 1 for f in frames),
        "frames": frames,
        "patient": _module(first, PATIENT_KEYWORDS),
        "study": _module(first, STUDY_KEYWORDS),
    }


def refs_path(bids_root: Path, image_stem: str) -> Path:
    """``BIDS_ROOT/sourcedata/dicom_refs/<image_stem>.json``."""
    return bids_root.joinpath(*REFS_FOLDER, f"{image_stem}.json")


def write_refs(bids_root: Path, image_stem: str, refs: dict[str, Any]) -> Path:
    """Write the references of one converted image (atomically).

    Parameters
    ----------
    bids_root : Path
        The BIDS dataset root.
    image_stem : str
        The converted image's name without ``.nii.gz`` (``sub-L[_ses-S]_<suffix>``).
    refs : dict
        From :func:`capture_refs`.

    Returns
    -------
    Path
    """
    path = refs_path(bids_root, image_stem)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(refs, indent=1) + "\n")
    return path


def _bids_root(image: Path) -> Path | None:
    """The dataset root above ``sub-*/[ses-*/]anat/`` (or a derivatives pipeline's root)."""
    for parent in image.resolve().parents:
        if parent.name.startswith("sub-"):
            return parent.parent
    return None


def find_refs(files: dict[str, Path]) -> tuple[dict[str, dict[str, Any]], str]:
    """The references of a study's images, by role, and why there are none.

    Parameters
    ----------
    files : dict of str -> Path
        Role -> image file (``Study.files``).

    Returns
    -------
    refs : dict of str -> dict
        Role -> references, for each image converted with ``--dicom-refs``.
    reason : str
        When ``refs`` is empty, why (one line), else "".
    """
    found: dict[str, dict[str, Any]] = {}
    looked: list[str] = []
    for role, image in sorted(files.items()):
        image = Path(image)
        if role == "labels" or not image.name.endswith(".nii.gz"):
            continue
        root = _bids_root(image)
        if root is None:
            continue
        path = refs_path(root, image.name[: -len(".nii.gz")])
        looked.append(str(path))
        if path.is_file():
            try:
                found[role] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise DicomRefsError(f"{path}: unreadable DICOM references ({exc})") from None
    if found:
        return found, ""
    if not looked:
        return {}, (
            "the study's images are not in a BIDS folder made by 'mri-scoring convert', "
            "so no DICOM source is known"
        )
    return {}, (
        f"no DICOM references ({looked[0]} and others missing): convert the study with "
        "'mri-scoring convert --dicom-refs'"
    )


def keep_refs(series: SeriesInfo, written: dict[str, Path], out_root: Path) -> list[str]:
    """Write the DICOM references of the images converted from one series (not of fitted maps).

    Parameters
    ----------
    series : SeriesInfo
        The converted series (its files are read again, headers only).
    written : dict of str -> Path
        The NIfTI files converted from it, by role.
    out_root : Path
        The BIDS root the references go under (``sourcedata/dicom_refs/``).

    Returns
    -------
    list of str
        Messages for the conversion log: empty, or why no references were kept.
    """
    try:
        refs = capture_refs(series.files)
    except DicomRefsError as exc:
        return [f"{series.label}: DICOM references not kept: {exc}"]
    for role, path in written.items():
        if role in ("water", "fat", "ff", "stir", "t1w", "mese", "inphase", "opphase"):
            write_refs(out_root, path.name[: -len(".nii.gz")], refs)
    return []
