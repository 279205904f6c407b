"""DICOM SEG of the muscles and of the edema masks, and the FF map as a Parametric Map.

Written with highdicom on the frames of the source series (:mod:`.dicom_source`): the muscle
SEG has one segment per vocabulary muscle and side of the muscle table (reference tissues,
groups and unknown labels are left out); the edema SEG has two segments, the voxels counted as
muscle edema and the shell voxels read as fascial edema (the masks of ``--maps``,
:func:`mri_scoring.output.map_files.map_volumes`); the Parametric Map holds the measured fat
fraction (0-1, float) with a real-world value mapping to percent (slope 100). Codes come from
``configs/dicom_codes.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset

from .. import __version__
from ..config import load_config_file
from .dicom_source import DicomOutError, SourceSeries

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "MANUFACTURER",
    "Segment",
    "code",
    "codes",
    "declare_local_scheme",
    "edema_seg",
    "ff_parametric_map",
    "highdicom",
    "muscle_seg",
    "muscle_segments",
]

MANUFACTURER = "mri-scoring"
SEG_MUSCLES_SERIES, SEG_EDEMA_SERIES, FF_MAP_SERIES, SR_SERIES = 9101, 9102, 9103, 9104
"""Series numbers of the objects written (far above scanner series numbers)."""


def highdicom() -> Any:
    """The highdicom module, or a clear error saying how to install it.

    Raises
    ------
    DicomOutError
        highdicom is not installed.
    """
    try:
        import highdicom as hd
    except ImportError:
        raise DicomOutError(
            "--dicom-out needs highdicom: pip install 'mri-scoring[dicom]' (or pip install "
            "highdicom)"
        ) from None
    return hd


@cache
def codes() -> dict[str, Any]:
    """``configs/dicom_codes.yaml``, parsed."""
    return load_config_file("dicom_codes.yaml")


def code(group: str, name: str) -> Any:
    """The coded concept ``name`` of ``group`` (``standard``, ``units``, ``local``, ``muscles``).

    Examples
    --------
    >>> code("standard", "left").value
    '7771000'
    >>> code("local", "call").scheme_designator
    '99MRISCORE'
    """
    hd = highdicom()
    table = codes()
    entry = table[group][name]
    if group in ("local", "muscles"):
        scheme = table["local_scheme"]
        return hd.sr.CodedConcept(
            str(entry[0]),
            scheme["designator"],
            str(entry[1]),
            scheme_version=str(scheme["version"]),
        )
    return hd.sr.CodedConcept(str(entry[1]), str(entry[0]), str(entry[2]))


@dataclass
class Segment:
    """One muscle segment: its number in the muscle SEG, table row and label value."""

    number: int
    muscle: str
    side: str
    label: int

    @property
    def name(self) -> str:
        """``<muscle>`` or ``<muscle>_<side>`` (the tracking identifier)."""
        return f"{self.muscle}_{self.side}" if self.side else self.muscle


def muscle_segments(muscles: pd.DataFrame) -> list[Segment]:
    """Segments of the muscle SEG: vocabulary muscles of the table, by side, in table order."""
    known = codes()["muscles"]
    out: list[Segment] = []
    for row in muscles.itertuples(index=False):
        if row.kind != "muscle" or row.muscle not in known:
            continue
        side = row.side if isinstance(row.side, str) else ""
        out.append(Segment(len(out) + 1, str(row.muscle), side, int(row.label)))
    return out


def _algorithm() -> Any:
    hd = highdicom()
    from pydicom.sr.codedict import codes as dcm_codes

    return hd.AlgorithmIdentificationSequence(
        name="mri-scoring",
        version=__version__,
        family=dcm_codes.cid7162.ArtificialIntelligence,
    )


def _laterality(description: Any, side: str) -> None:
    if side in ("left", "right"):
        prop = description.SegmentedPropertyTypeCodeSequence[0]
        prop.SegmentedPropertyTypeModifierCodeSequence = [code("standard", side)]


def _common(number: int) -> dict[str, Any]:
    from pydicom.uid import generate_uid

    return {
        "series_instance_uid": generate_uid(),
        "series_number": number,
        "sop_instance_uid": generate_uid(),
        "instance_number": 1,
        "manufacturer": MANUFACTURER,
        "manufacturer_model_name": "mri-scoring",
        "software_versions": __version__,
        "device_serial_number": "0",
    }


def muscle_seg(
    series: SourceSeries, labels: np.ndarray, segments: list[Segment], sources: list[Dataset]
) -> Dataset:
    """The muscle SEG (binary, one segment per muscle and side).

    Parameters
    ----------
    series : SourceSeries
        Where the segments go.
    labels : ndarray
        The study's label map (RAS+ label grid).
    segments : list of Segment
        From :func:`muscle_segments`.
    sources : list of Dataset
        :func:`~.dicom_source.source_datasets` of ``series``.

    Returns
    -------
    pydicom.Dataset
    """
    hd = highdicom()
    if not segments:
        raise DicomOutError("no vocabulary muscle in the label map: no muscle SEG to write")
    on_frames = series.sample(labels)
    lookup = np.zeros(int(max(s.label for s in segments)) + 1, np.uint16)
    for s in segments:
        lookup[s.label] = s.number
    inside = on_frames < lookup.size
    pixels = np.where(inside, lookup[np.clip(on_frames, 0, lookup.size - 1)], 0)
    descriptions = []
    for s in segments:
        description = hd.seg.SegmentDescription(
            segment_number=s.number,
            segment_label=s.name.replace("_", " ")[:64],
            segmented_property_category=code("standard", "anatomical_structure"),
            segmented_property_type=code("muscles", s.muscle),
            algorithm_type="AUTOMATIC",
            algorithm_identification=_algorithm(),
            tracking_id=s.name,
            tracking_uid=_uid(),
            anatomic_regions=[code("standard", "thigh")],
        )
        _laterality(description, s.side)
        descriptions.append(description)
    # Frames without a segment's voxels are left out, unless a segment has no voxel on the
    # source frames at all: then every frame is kept, so that segment is there, empty.
    every = np.isin(np.arange(1, len(segments) + 1), pixels).all()
    return declare_local_scheme(
        hd.seg.Segmentation(
            source_images=sources,
            pixel_array=pixels.astype(np.uint16),
            segmentation_type="BINARY",
            segment_descriptions=descriptions,
            series_description="mri-scoring muscles (research use)",
            omit_empty_frames=bool(every),
            **_common(SEG_MUSCLES_SERIES),
        )
    )


def _uid() -> str:
    from pydicom.uid import generate_uid

    return generate_uid()


def edema_seg(
    series: SourceSeries,
    edema: np.ndarray | None,
    fascial: np.ndarray | None,
    sources: list[Dataset],
) -> Dataset | None:
    """The edema SEG: muscle edema (segment 1) and fascial edema (segment 2), where measured.

    Parameters
    ----------
    series : SourceSeries
    edema, fascial : ndarray or None
        The ``edema`` and ``fascial_edema`` map volumes (label value where edema), None when
        not measured (no STIR or T2 map).
    sources : list of Dataset

    Returns
    -------
    pydicom.Dataset or None
        None when neither mask was measured.
    """
    hd = highdicom()
    masks, descriptions = [], []
    for volume, label, kind in (
        (edema, "muscle edema", "edema"),
        (fascial, "fascial edema", "fascial_edema"),
    ):
        if volume is None:
            continue
        masks.append(series.sample(volume) > 0)
        prop = code("standard", "edema")
        description = hd.seg.SegmentDescription(
            segment_number=len(masks),
            segment_label=label,
            segmented_property_category=code("standard", "morphologically_abnormal"),
            segmented_property_type=prop,
            algorithm_type="AUTOMATIC",
            algorithm_identification=_algorithm(),
            tracking_id=kind,
            tracking_uid=_uid(),
            anatomic_regions=[code("standard", "thigh")],
        )
        if kind == "fascial_edema":
            seq = description.SegmentedPropertyTypeCodeSequence[0]
            seq.SegmentedPropertyTypeModifierCodeSequence = [code("local", "fascial_edema")]
        descriptions.append(description)
    if not masks:
        return None
    pixels = np.stack(masks, axis=-1).astype(np.uint8)
    return declare_local_scheme(
        hd.seg.Segmentation(
            source_images=sources,
            pixel_array=pixels,
            segmentation_type="BINARY",
            segment_descriptions=descriptions,
            series_description="mri-scoring edema (research use)",
            omit_empty_frames=False,
            **_common(SEG_EDEMA_SERIES),
        )
    )


def ff_parametric_map(series: SourceSeries, ff: np.ndarray, sources: list[Dataset]) -> Dataset:
    """The fat-fraction map (0-1 float, NaN where not measured) with real-world values in %.

    Parameters
    ----------
    series : SourceSeries
    ff : ndarray
        The ``fat_fraction`` map volume (NaN outside the labels).
    sources : list of Dataset

    Returns
    -------
    pydicom.Dataset
    """
    hd = highdicom()
    pixels = series.sample(ff.astype(np.float32), fill=np.nan).astype(np.float32)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="FF_PERCENT",
        lut_explanation="fat fraction in percent",
        unit=code("units", "percent"),
        value_range=(0.0, 1.0),
        slope=100,
        intercept=0,
        quantity_definition=code("standard", "fat_fraction"),
    )
    pm = hd.pm.ParametricMap(
        source_images=sources,
        pixel_array=pixels,
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[
            hd.VOILUTTransformation(
                window_center=0.5, window_width=1.0, window_explanation="fat fraction 0-1"
            )
        ],
        series_description="mri-scoring fat fraction (research use)",
        **_common(FF_MAP_SERIES),
    )
    # Both thighs: Frame Laterality "B" (the General Series Laterality is R or L only).
    anatomy = Dataset()
    anatomy.AnatomicRegionSequence = [code("standard", "thigh")]
    anatomy.FrameLaterality = "B"
    pm.SharedFunctionalGroupsSequence[0].FrameAnatomySequence = [anatomy]
    return declare_local_scheme(pm)


def declare_local_scheme(ds: Dataset) -> Dataset:
    """Add the local coding scheme to the object's Coding Scheme Identification Sequence."""
    scheme = codes()["local_scheme"]
    item = Dataset()
    item.CodingSchemeDesignator = scheme["designator"]
    item.CodingSchemeName = scheme["name"]
    item.CodingSchemeVersion = str(scheme["version"])
    item.CodingSchemeResponsibleOrganization = "mri-scoring project"
    ds.CodingSchemeIdentificationSequence = [item]
    return ds
