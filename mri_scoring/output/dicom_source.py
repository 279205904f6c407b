"""The source series that DICOM results are written onto: its frames, the grid mapping, stand-ins.

Results go back on the frames of one converted source series (water, else fat, fat fraction,
STIR, T1w), as its DICOM references (``convert --dicom-refs``, :mod:`mri_scoring.io.dicom_refs`)
describe them. Every pixel centre of every source frame is mapped into the study's label grid
(RAS+): when all of them fall on voxel centres within :data:`ON_GRID_MM` the label map lies on the
series' grid and is copied voxel for voxel; otherwise it is put there nearest-neighbour (pixels
outside the label grid get background) and :attr:`SourceSeries.resampled` says so, for the SR.

highdicom builds SEG, SR and Parametric Map objects from their source images' headers (pixel
data is not needed): :func:`source_datasets` makes those headers again from the references, so
the study's DICOM files need not be at hand when scoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from ..errors import MriScoringError
from ..io.dicom_refs import PATIENT_KEYWORDS, STUDY_KEYWORDS

__all__ = [
    "ON_GRID_MM",
    "SOURCE_ROLES",
    "DicomOutError",
    "SourceSeries",
    "choose_source",
    "source_datasets",
]

ON_GRID_MM = 1e-3  # [elicited] float32 NIfTI affines carry ~1e-5 mm rounding at 200 mm
SOURCE_ROLES = ("water", "fat", "ff", "stir", "t1w", "inphase", "opphase")
"""Roles that can carry results, in order of preference (single-echo magnitude or FF series)."""
_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])
_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


class DicomOutError(MriScoringError):
    """Results cannot be written as DICOM (no references, no usable source series)."""


@dataclass(kw_only=True)
class SourceSeries:
    """One source series and where each of its pixels lies in the label grid.

    Attributes
    ----------
    role : str
        The image role of the series (``water``, ...).
    refs : dict
        Its DICOM references.
    frames : list of dict
        The referenced frames results are written on (one per slice position).
    flat_index : ndarray of int64, shape (frames, rows, columns)
        Flat C-order index of the label-grid voxel of each source pixel, -1 outside the grid.
    resampled : bool
        The label map was put on the series' grid nearest-neighbour (not already on it).
    max_offset_mm : float
        Largest distance from a source pixel centre to its voxel's centre.
    """

    role: str
    refs: dict[str, Any]
    frames: list[dict[str, Any]]
    flat_index: np.ndarray
    resampled: bool
    max_offset_mm: float

    def sample(self, volume: np.ndarray, fill: float = 0) -> np.ndarray:
        """A label-grid volume on the source frames, shape (frames, rows, columns).

        Parameters
        ----------
        volume : ndarray, shape of the label grid
            Values on the study's RAS+ grid.
        fill : scalar
            Value of pixels outside the label grid.

        Returns
        -------
        ndarray
        """
        flat = volume.reshape(-1)
        out = flat[np.clip(self.flat_index, 0, None)]
        if (self.flat_index < 0).any():
            out = np.where(self.flat_index < 0, np.asarray(fill, out.dtype), out)
        return out


def _slice_frames(refs: dict[str, Any]) -> list[dict[str, Any]]:
    """One frame per slice position: the first echo's (references are sorted by echo)."""
    frames = refs["frames"]
    first_echo = frames[0].get("echo_ms")
    return [f for f in frames if f.get("echo_ms") == first_echo]


def _pixel_index(
    refs: dict[str, Any],
    frames: list[dict[str, Any]],
    affine: np.ndarray,
    shape: tuple[int, int, int],
) -> tuple[np.ndarray, float, bool]:
    """Flat voxel index of every source pixel, the largest offset (mm), any pixel outside.

    Pixels outside the label grid get index -1.
    """
    rows, cols = int(refs["rows"]), int(refs["columns"])
    orientation = np.asarray(refs["orientation"], float)
    row_spacing, col_spacing = (float(v) for v in refs["pixel_spacing"])
    along_row, along_col = orientation[:3], orientation[3:]
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    offsets = c[..., None] * col_spacing * along_row + r[..., None] * row_spacing * along_col
    to_voxel = np.linalg.inv(affine)
    out = np.empty((len(frames), rows, cols), np.int64)
    worst = 0.0
    outside = False
    for k, frame in enumerate(frames):
        world = (np.asarray(frame["position"], float) + offsets) * _LPS_TO_RAS
        voxel = world @ to_voxel[:3, :3].T + to_voxel[:3, 3]
        nearest = np.rint(voxel)
        error = (voxel - nearest) @ affine[:3, :3].T
        worst = max(worst, float(np.sqrt((error**2).sum(-1)).max()))
        idx = nearest.astype(np.int64)
        inside = ((idx >= 0) & (idx < np.asarray(shape))).all(-1)
        outside |= not inside.all()
        flat = np.ravel_multi_index(tuple(np.clip(idx, 0, np.asarray(shape) - 1).T), shape).T
        out[k] = np.where(inside, flat, -1)
    return out, worst, outside


def choose_source(
    refs_by_role: dict[str, dict[str, Any]], affine: np.ndarray, shape: tuple[int, int, int]
) -> SourceSeries:
    """The source series results are written on.

    The first series (in :data:`SOURCE_ROLES` order) whose frames lie on the label grid, else
    the first available (then resampled nearest-neighbour).

    Parameters
    ----------
    refs_by_role : dict of str -> dict
        DICOM references by image role (:func:`mri_scoring.io.dicom_refs.find_refs`).
    affine : ndarray, shape (4, 4)
        The study's RAS+ voxel-to-world affine.
    shape : tuple of int
        The label grid.

    Returns
    -------
    SourceSeries

    Raises
    ------
    DicomOutError
        When no referenced series can carry results.
    """
    candidates = [role for role in SOURCE_ROLES if role in refs_by_role]
    if not candidates:
        raise DicomOutError(
            "no DICOM references of a Dixon, fat-fraction, STIR or T1w series: results cannot "
            f"be placed on a source series (references of: {', '.join(sorted(refs_by_role))})"
        )
    fallback = None
    for role in candidates:
        refs = refs_by_role[role]
        frames = _slice_frames(refs)
        index, worst, outside = _pixel_index(refs, frames, affine, shape)
        series = SourceSeries(
            role=role,
            refs=refs,
            frames=frames,
            flat_index=index,
            resampled=outside or worst > ON_GRID_MM,
            max_offset_mm=worst,
        )
        if not series.resampled:
            return series
        fallback = fallback or series
    assert fallback is not None
    return fallback


def _patient_and_study(ds: Dataset, refs: dict[str, Any]) -> None:
    for keyword in _TYPE2:
        setattr(ds, keyword, "")
    for module, keywords in (("patient", PATIENT_KEYWORDS), ("study", STUDY_KEYWORDS)):
        for keyword, value in refs.get(module, {}).items():
            if keyword in keywords and value != "":
                setattr(ds, keyword, value)
    ds.StudyInstanceUID = refs["study_instance_uid"]


def source_datasets(series: SourceSeries) -> list[Dataset]:
    """Header-only stand-ins of the source images, as highdicom takes them.

    One dataset per classic single-frame instance, or the one enhanced multi-frame instance
    with its per-frame positions (highdicom takes one multi-frame image or many single-frame
    ones).

    Returns
    -------
    list of pydicom.Dataset

    Raises
    ------
    DicomOutError
        The frames come from several multi-frame instances.
    """
    refs = series.refs
    instances = list(dict.fromkeys(f["sop_instance_uid"] for f in series.frames))
    multiframe = len(instances) < len(series.frames)
    if multiframe and len(instances) > 1:
        raise DicomOutError(
            f"the {series.role} series spreads its slices over "
            f"{len(instances)} multi-frame files: not supported"
        )
    if multiframe and [f["frame"] for f in series.frames] != list(range(1, len(series.frames) + 1)):
        raise DicomOutError(
            f"the {series.role} series' multi-frame file holds other frames "
            "besides its slices (echoes?): not supported"
        )

    def base(frame: dict[str, Any]) -> Dataset:
        ds = Dataset()
        _patient_and_study(ds, refs)
        ds.SOPClassUID = frame["sop_class_uid"]
        ds.SOPInstanceUID = frame["sop_instance_uid"]
        ds.SeriesInstanceUID = refs["series_instance_uid"]
        ds.FrameOfReferenceUID = refs["frame_of_reference_uid"]
        ds.Modality = refs.get("modality") or "MR"
        ds.SeriesNumber = refs.get("series_number") or None
        ds.Rows, ds.Columns = int(refs["rows"]), int(refs["columns"])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        return ds

    thickness = refs.get("slice_thickness")
    if multiframe:
        ds = base(series.frames[0])
        ds.NumberOfFrames = len(series.frames)
        measures = Dataset()
        measures.PixelSpacing = refs["pixel_spacing"]
        if thickness:
            measures.SliceThickness = thickness
        plane = Dataset()
        plane.ImageOrientationPatient = refs["orientation"]
        shared = Dataset()
        shared.PixelMeasuresSequence = [measures]
        shared.PlaneOrientationSequence = [plane]
        ds.SharedFunctionalGroupsSequence = [shared]
        per_frame = []
        for frame in series.frames:
            position = Dataset()
            position.ImagePositionPatient = frame["position"]
            item = Dataset()
            item.PlanePositionSequence = [position]
            per_frame.append(item)
        ds.PerFrameFunctionalGroupsSequence = per_frame
        return [ds]
    out = []
    for number, frame in enumerate(series.frames, start=1):
        ds = base(frame)
        ds.InstanceNumber = number
        ds.ImageOrientationPatient = refs["orientation"]
        ds.ImagePositionPatient = frame["position"]
        ds.PixelSpacing = refs["pixel_spacing"]
        if thickness:
            ds.SliceThickness = thickness
        out.append(ds)
    return out
