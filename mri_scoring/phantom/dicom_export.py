"""Synthetic DICOM exports of phantom studies, as Siemens, Philips and GE scanners name them.

Written with pydicom from the arrays and affine of a :class:`~mri_scoring.phantom.PhantomStudy`
(or any RAS+ array), as classic single-frame MR Image Storage or enhanced multi-frame MR Image
Storage files. The series names and image-type tokens follow each vendor's convention (see
``configs/dicom_roles.yaml`` for the sources); a multi-echo spin-echo (MESE) series is simulated
(:mod:`.mese`) from water and fat proton densities and a water-T2 map by an isochromat (Bloch)
simulation of a CPMG train, independent of the EPG fit in :mod:`mri_scoring.measure.t2fit`.

Like the phantom this module imports no measurement code: tests use it as the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from .mese import cpmg_isochromats, mese_echoes

if TYPE_CHECKING:  # pragma: no cover (annotations only: at run time no package code is imported)
    from ..io.study import Study

__all__ = [
    "ENHANCED_MR_IMAGE", "MR_IMAGE", "VENDOR_SERIES", "ExportContext", "SeriesSpec",
    "cpmg_isochromats", "export_study", "mese_echoes", "vendor_series", "write_series",
]  # fmt: skip  (hand-laid module, see pyproject.toml; the MESE simulation lives in .mese)

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4.1"
_LPS = np.diag([-1.0, -1.0, 1.0])

# Per vendor and role: (series description, image type, scanning sequence, TI in ms).
VENDOR_SERIES: dict[str, dict[str, tuple]] = {
    "siemens": {
        "water": ("t1_vibe_dixon_tra_W", "DERIVED\\PRIMARY\\DIXON\\WATER", "GR", None),
        "fat": ("t1_vibe_dixon_tra_F", "DERIVED\\PRIMARY\\DIXON\\FAT", "GR", None),
        "inphase": ("t1_vibe_dixon_tra_in", "DERIVED\\PRIMARY\\DIXON\\IN_PHASE", "GR", None),
        "opphase": ("t1_vibe_dixon_tra_opp", "DERIVED\\PRIMARY\\DIXON\\OPP_PHASE", "GR", None),
        "stir": ("t2_tirm_tra", "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D", "SE\\IR", 220.0),
        "t1w": ("t1_tse_tra", "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D", "SE", None),
        "mese": ("se_mc_t2_16echoes", "ORIGINAL\\PRIMARY\\M\\ND", "SE", None),
        "localizer": ("localizer", "ORIGINAL\\PRIMARY\\LOCALIZER", "GR", None),
    },
    "philips": {
        "water": ("mDIXON_TSE_W", "DERIVED\\PRIMARY\\W\\W\\DERIVED", "SE", None),
        "fat": ("mDIXON_TSE_F", "DERIVED\\PRIMARY\\F\\F\\DERIVED", "SE", None),
        "inphase": ("mDIXON_TSE_IP", "ORIGINAL\\PRIMARY\\IP\\IP\\DERIVED", "SE", None),
        "opphase": ("mDIXON_TSE_OP", "ORIGINAL\\PRIMARY\\OP\\OP\\DERIVED", "SE", None),
        "stir": ("STIR_TSE_tra", "ORIGINAL\\PRIMARY\\M_IR\\M\\IR", "SE\\IR", 200.0),
        "t1w": ("T1W_TSE_tra", "ORIGINAL\\PRIMARY\\M_SE\\M\\SE", "SE", None),
        "mese": ("T2_MSE_16echoes", "ORIGINAL\\PRIMARY\\M_SE\\M\\SE", "SE", None),
        "localizer": ("Survey", "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE", "GR", None),
    },
    "ge": {
        "water": ("WATER: Ax LAVA-Flex", "DERIVED\\PRIMARY\\WATER", "GR", None),
        "fat": ("FAT: Ax LAVA-Flex", "DERIVED\\PRIMARY\\FAT", "GR", None),
        "inphase": ("InPhase: Ax LAVA-Flex", "DERIVED\\PRIMARY\\IN_PHASE", "GR", None),
        "opphase": ("OutPhase: Ax LAVA-Flex", "DERIVED\\PRIMARY\\OUT_PHASE", "GR", None),
        "stir": ("Ax STIR", "ORIGINAL\\PRIMARY\\OTHER", "SE\\IR", 150.0),
        "t1w": ("Ax T1 FSE", "ORIGINAL\\PRIMARY\\OTHER", "SE", None),
        "mese": ("Ax T2 MAP 16 echoes", "ORIGINAL\\PRIMARY\\OTHER", "SE", None),
        "localizer": ("3Plane Loc", "ORIGINAL\\PRIMARY\\LOCALIZER", "GR", None),
    },
}
# PulseSequenceName of the enhanced files (SequenceName of the classic ones), per vendor and role
# [elicited: names seen in exported headers, e.g. Siemens "*se2d<N>" for an N-echo spin echo].
SEQUENCE_NAMES: dict[str, dict[str, str]] = {
    "siemens": {"water": "*fl3d2", "fat": "*fl3d2", "inphase": "*fl3d2", "opphase": "*fl3d2",
                "stir": "*tir2d1_13", "t1w": "*tse2d1_3", "mese": "*se2d16",
                "localizer": "*fl2d1"},
    "philips": {"water": "TSE", "fat": "TSE", "inphase": "TSE", "opphase": "TSE", "stir": "TSE",
                "t1w": "TSE", "mese": "SE", "localizer": "FFE"},
    "ge": {"water": "LAVA-Flex", "fat": "LAVA-Flex", "inphase": "LAVA-Flex",
           "opphase": "LAVA-Flex", "stir": "FSE-IR", "t1w": "FSE", "mese": "MSE",
           "localizer": "FGRE"},
}  # fmt: skip
_ECHO_PULSE = {"SE": "SPIN", "GR": "GRADIENT"}
_MANUFACTURER = {
    "siemens": "SIEMENS",
    "philips": "Philips Medical Systems",
    "ge": "GE MEDICAL SYSTEMS",
}


@dataclass(kw_only=True)
class SeriesSpec:
    r"""One series to write.

    Attributes
    ----------
    number : int
        Series number.
    description : str
        Series description (also the protocol name).
    image_type : str
        Backslash-separated ImageType value.
    data : ndarray
        RAS+ array (x, y, z) or (x, y, z, echoes), stored as uint16 after ``scale``.
    scanning_sequence : str
        ScanningSequence value (``SE``, ``SE\\IR``, ``GR``).
    echo_times_ms : list of float
        One per echo.
    repetition_time_ms, inversion_time_ms : float
        TR and (for inversion recovery) TI.
    scale : float
        Real-world value = data * scale; stored value = round(data * scale / rescale_slope).
    rescale_slope : float
        RescaleSlope written in the header (vendors scale series differently; a reader that
        ignores it gets the stored values).
    private_image_type : str, optional
        Philips private image type (2005,1011), e.g. ``W``.
    sequence_name : str
        SequenceName (classic) or PulseSequenceName (enhanced), e.g. ``*se2d16``.
    """

    number: int
    description: str
    image_type: str
    data: np.ndarray
    scanning_sequence: str = "SE"
    echo_times_ms: list[float] = field(default_factory=lambda: [10.0])
    repetition_time_ms: float = 3000.0
    inversion_time_ms: float | None = None
    scale: float = 1000.0
    rescale_slope: float = 1.0
    private_image_type: str | None = None
    sequence_name: str = ""


def vendor_series(vendor: str, role: str, number: int, data: np.ndarray,
                  **kwargs: object) -> SeriesSpec:  # fmt: skip
    """A :class:`SeriesSpec` named as ``vendor`` names the ``role`` series.

    Parameters
    ----------
    vendor : {"siemens", "philips", "ge"}
    role : str
        ``water``, ``fat``, ``inphase``, ``opphase``, ``stir``, ``t1w``, ``mese`` or ``localizer``.
    number : int
        Series number.
    data : ndarray
        RAS+ array.
    **kwargs
        Overrides of :class:`SeriesSpec` fields.

    Returns
    -------
    SeriesSpec
    """
    description, image_type, sequence, ti = VENDOR_SERIES[vendor][role]
    spec = SeriesSpec(
        number=number,
        description=description,
        image_type=image_type,
        data=data,
        scanning_sequence=sequence,
        inversion_time_ms=ti,
        echo_times_ms=[2.4] if sequence == "GR" else [12.0],
        sequence_name=SEQUENCE_NAMES[vendor][role],
    )
    if vendor == "philips" and role in ("water", "fat", "inphase", "opphase"):
        spec.private_image_type = {"water": "W", "fat": "F", "inphase": "IP", "opphase": "OP"}[role]
    for key, value in kwargs.items():
        setattr(spec, key, value)
    return spec


@dataclass
class ExportContext:
    """Identifiers shared by the series of one export (one patient, one study)."""

    vendor: str = "siemens"
    patient_id: str = "PHANTOM01"
    study_uid: str = field(default_factory=generate_uid)
    frame_uid: str = field(default_factory=generate_uid)


def _geometry(affine: np.ndarray, k: int) -> tuple[list[float], list[float], list[float]]:
    """ImageOrientationPatient, ImagePositionPatient (LPS) and PixelSpacing of slice k."""
    axes = _LPS @ affine[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    row_dir = axes[:, 0] / spacing[0]  # along increasing column index = array axis 0
    col_dir = axes[:, 1] / spacing[1]  # along increasing row index = array axis 1
    position = _LPS @ (affine[:3, :3] @ [0.0, 0.0, float(k)] + affine[:3, 3])
    orientation = [float(v) for v in (*row_dir, *col_dir)]
    return orientation, [float(v) for v in position], [float(spacing[1]), float(spacing[0])]


def _base(ctx: ExportContext, spec: SeriesSpec, sop_class: str, series_uid: str) -> Dataset:
    """Header of either storage class.

    An enhanced file keeps its sequence and timing facts in the MR pulse sequence module and
    the functional groups (no top-level ScanningSequence, TR, TI or echo time), as Siemens XA
    and Philips write them (PS3.3 C.8.13).
    """
    enhanced = sop_class == ENHANCED_MR_IMAGE
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.Modality = "MR"
    ds.Manufacturer = _MANUFACTURER[ctx.vendor]
    ds.PatientName = "Phantom^Thigh"
    ds.PatientID = ctx.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = ctx.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = ctx.frame_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20260101"
    ds.StudyTime = "090000"
    ds.SeriesTime = ds.AcquisitionTime = f"09{spec.number:02d}00"
    ds.SeriesNumber = spec.number
    ds.SeriesDescription = spec.description
    ds.ProtocolName = spec.description
    ds.ImageType = spec.image_type.split("\\")
    sequence = spec.scanning_sequence.split("\\")
    if enhanced:
        ds.EchoPulseSequence = "BOTH" if {"SE", "GR"} <= set(sequence) else next(
            (_ECHO_PULSE[t] for t in sequence if t in _ECHO_PULSE), "SPIN")
        ds.MultipleSpinEcho = "YES" if len(spec.echo_times_ms) > 1 else "NO"
        ds.PulseSequenceName = spec.sequence_name
        ds.AcquisitionContrast = "UNKNOWN"
    else:
        ds.ScanningSequence = sequence
        ds.SequenceVariant = "NONE"
        ds.RepetitionTime = spec.repetition_time_ms
        if spec.inversion_time_ms:
            ds.InversionTime = spec.inversion_time_ms
        if spec.sequence_name:
            ds.SequenceName = spec.sequence_name
    ds.MRAcquisitionType = "2D"
    ds.MagneticFieldStrength = 3
    ds.BodyPartExamined = "THIGH"
    ds.PatientPosition = "FFS"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if spec.private_image_type:
        block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
        block.add_new(0x11, "CS", spec.private_image_type)
    return ds


def _stored(spec: SeriesSpec) -> np.ndarray:
    data = spec.data if spec.data.ndim == 4 else spec.data[..., None]
    return np.clip(np.round(data * spec.scale / spec.rescale_slope), 0, 65535).astype(np.uint16)


def write_series(folder: str | Path, spec: SeriesSpec, affine: np.ndarray, ctx: ExportContext,
                 *, enhanced: bool = False) -> list[Path]:  # fmt: skip
    """Write one series into ``folder`` (classic: one file per slice and echo).

    Parameters
    ----------
    folder : path
        Created if missing.
    spec : SeriesSpec
        What to write.
    affine : ndarray
        RAS+ voxel-to-world affine of ``spec.data``.
    ctx : ExportContext
        Shared identifiers.
    enhanced : bool
        Enhanced multi-frame files (one per echo, all slices as frames) instead of single-frame
        files.

    Returns
    -------
    list of Path
        The files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stored = _stored(spec)
    nx, ny, nz, ne = stored.shape
    series_uid = generate_uid()
    if enhanced:  # one file per echo, all of one series, as Siemens XA writes a MESE
        return [_write_enhanced(folder, spec, affine, ctx, stored[..., e : e + 1], series_uid, e)
                for e in range(ne)]  # fmt: skip
    paths = []
    instance = 0
    for e in range(ne):
        for k in range(nz):
            instance += 1
            ds = _base(ctx, spec, MR_IMAGE, series_uid)
            uid = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = uid
            ds.SOPInstanceUID = uid
            ds.InstanceNumber = instance
            ds.EchoTime = spec.echo_times_ms[e]
            ds.EchoNumbers = e + 1
            ds.EchoTrainLength = ne
            orientation, position, spacing = _geometry(affine, k)
            ds.ImageOrientationPatient = orientation
            ds.ImagePositionPatient = position
            ds.PixelSpacing = spacing
            ds.SliceThickness = float(np.linalg.norm(affine[:3, 2]))
            ds.SpacingBetweenSlices = ds.SliceThickness
            ds.SliceLocation = position[2]
            ds.Rows, ds.Columns = ny, nx
            ds.RescaleIntercept, ds.RescaleSlope = 0, spec.rescale_slope
            ds.PixelData = np.ascontiguousarray(stored[:, :, k, e].T).tobytes()
            path = folder / f"{spec.number:03d}_{instance:04d}.dcm"
            pydicom.dcmwrite(path, ds, enforce_file_format=True)
            paths.append(path)
    return paths


def _item(**values: object) -> Dataset:
    item = Dataset()
    for key, value in values.items():
        setattr(item, key, value)
    return item


def _write_enhanced(folder: Path, spec: SeriesSpec, affine: np.ndarray, ctx: ExportContext,
                    stored: np.ndarray, series_uid: str, echo: int) -> Path:  # fmt: skip
    nx, ny, nz, ne = stored.shape
    ds = _base(ctx, spec, ENHANCED_MR_IMAGE, series_uid)
    uid = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SOPInstanceUID = uid
    ds.InstanceNumber = echo + 1
    ds.Rows, ds.Columns = ny, nx
    ds.NumberOfFrames = nz * ne
    ds.ContentQualification = "PRODUCT"
    orientation, _, spacing = _geometry(affine, 0)
    shared = _item(
        PixelMeasuresSequence=[
            _item(PixelSpacing=spacing, SliceThickness=float(np.linalg.norm(affine[:3, 2])))
        ],
        PlaneOrientationSequence=[_item(ImageOrientationPatient=orientation)],
        MRTimingAndRelatedParametersSequence=[
            _item(RepetitionTime=spec.repetition_time_ms, EchoTrainLength=len(spec.echo_times_ms))
        ],
        MRModifierSequence=[
            _item(InversionRecovery="YES", InversionTimes=[spec.inversion_time_ms])
            if spec.inversion_time_ms
            else _item(InversionRecovery="NO")
        ],
        PixelValueTransformationSequence=[
            _item(RescaleIntercept=0, RescaleSlope=spec.rescale_slope, RescaleType="US")
        ],
    )
    ds.SharedFunctionalGroupsSequence = [shared]
    dimension_uid = generate_uid()
    ds.DimensionOrganizationSequence = [_item(DimensionOrganizationUID=dimension_uid)]
    ds.DimensionIndexSequence = [
        _item(DimensionOrganizationUID=dimension_uid, DimensionIndexPointer=0x00209056,
              FunctionalGroupPointer=0x00209111),
        _item(DimensionOrganizationUID=dimension_uid, DimensionIndexPointer=0x00209057,
              FunctionalGroupPointer=0x00209111),
    ]  # fmt: skip
    frames, pixels = [], []
    for e in range(echo, echo + ne):
        for k in range(nz):
            _, position, _ = _geometry(affine, k)
            frames.append(
                _item(
                    FrameContentSequence=[
                        _item(
                            StackID="1",
                            InStackPositionNumber=k + 1,
                            DimensionIndexValues=[1, k + 1],
                            TemporalPositionIndex=1,
                        )
                    ],
                    PlanePositionSequence=[_item(ImagePositionPatient=position)],
                    MREchoSequence=[
                        _item(EchoNumbers=e + 1, EffectiveEchoTime=spec.echo_times_ms[e])
                    ],
                    MRImageFrameTypeSequence=[_item(FrameType=list(ds.ImageType))],
                )
            )
            pixels.append(np.ascontiguousarray(stored[:, :, k, e - echo].T))
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = np.stack(pixels).tobytes()
    name = "enhanced" if len(spec.echo_times_ms) == 1 else f"enhanced_e{echo + 1:02d}"
    path = folder / f"{spec.number:03d}_{name}.dcm"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def export_study(
    study: Study,
    folder: str | Path,
    *,
    vendor: str = "siemens",
    roles: tuple[str, ...] = ("water", "fat", "stir", "t1w"),
    enhanced: tuple[str, ...] = (),
    affine: np.ndarray | None = None,
    first_number: int = 2,
    patient_id: str = "PHANTOM01",
    rescale_slopes: dict[str, float] | None = None,
) -> dict[str, int]:
    """Write the images of a phantom study as one DICOM series per role.

    Parameters
    ----------
    study : Study
        Arrays on a RAS+ grid (``study.images``).
    folder : path
        Export folder; each series goes into a sub-folder named by its number.
    vendor : {"siemens", "philips", "ge"}
        Naming convention.
    roles : tuple of str
        Image roles to write (``water``, ``fat``, ``stir``, ``t1w``; ``inphase``/``opphase``
        are made from water +- fat; ``mese``: 16 echoes 10-160 ms simulated from water, fat
        and the water-T2 map by :func:`mese_echoes`).
    enhanced : tuple of str
        Roles to write as enhanced multi-frame files.
    affine : ndarray, optional
        Voxel-to-world affine to declare (default ``study.affine``), e.g. an oblique one.
    first_number : int
        Series number of the first series.
    patient_id : str
    rescale_slopes : dict of str -> float, optional
        RescaleSlope per role (default 1): the same real values stored with other integers.

    Returns
    -------
    dict of str -> int
        Role -> series number.
    """
    folder = Path(folder)
    ctx = ExportContext(vendor=vendor, patient_id=patient_id)
    affine = study.affine if affine is None else affine
    numbers: dict[str, int] = {}
    for offset, role in enumerate(roles):
        kwargs: dict[str, object] = {}
        if role == "inphase":
            data = study.images["water"] + study.images["fat"]
        elif role == "mese":
            data = mese_echoes(study.images["water"], study.images["fat"], study.images["t2map"])
            kwargs["echo_times_ms"] = [10.0 * k for k in range(1, data.shape[-1] + 1)]
        elif role == "opphase":
            data = np.abs(study.images["water"] - study.images["fat"])
        else:
            data = study.images[role]
        number = first_number + offset
        spec = vendor_series(vendor, role, number, data, **kwargs)
        spec.rescale_slope = (rescale_slopes or {}).get(role, 1.0)
        write_series(folder / f"{number:03d}", spec, affine, ctx, enhanced=role in enhanced)
        numbers[role] = number
    return numbers
