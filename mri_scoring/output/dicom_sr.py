"""The measurement report as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report).

One volumetric ROI group (TID 1411) per muscle and side, referencing its segment of the muscle
SEG and the source series: volume (``ml``), FF median and 90th percentile, edema fraction and
fascial-edema fraction (``%``: the 0-1 values of ``muscles.tsv`` times 100), Mercuri and edema
grades (``{grade}``). A cell ``muscles.tsv`` leaves empty is not written as a number: the group
says "not measured" in text instead. One measurement group (TID 1501) holds the template's result
(p(IMNM) with its interval, log10 likelihood ratio, the call in text, the notes) and one per
template feature its degree with the evidence in words. The research-use disclaimer, and a note
when the label map was resampled onto the source grid, close the report.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..schema import DISCLAIMER
from .dicom_seg import MANUFACTURER, SR_SERIES, Segment, code, declare_local_scheme, highdicom

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

    from .dicom_source import SourceSeries
    from .result import StudyResult

__all__ = [
    "MEASURES",
    "measurement_report",
]

# muscles.tsv column -> (code group, code name, unit, scale to the unit, derivation)
MEASURES: tuple[tuple[str, str, str, str, float, str | None], ...] = (
    ("volume_ml", "standard", "volume", "ml", 1.0, None),
    ("ff_median", "standard", "fat_fraction", "percent", 100.0, "median"),
    ("ff_p90", "standard", "fat_fraction", "percent", 100.0, "ff_p90"),
    ("edema_fraction", "local", "edema_fraction", "percent", 100.0, None),
    ("fascial_edema_fraction", "local", "fascial_edema_fraction", "percent", 100.0, None),
    ("mercuri_grade", "local", "mercuri_grade", "grade", 1.0, None),
    ("edema_grade", "local", "edema_grade", "grade", 1.0, None),
)
"""What each muscle group reports: column, concept, UCUM unit and the factor to it."""


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _text(name: str, value: str) -> Any:
    hd = highdicom()
    return hd.sr.TextContentItem(
        name=code("local", name), value=value[:1024] or "-", relationship_type="CONTAINS"
    )


def _derivation(name: str | None) -> Any:
    if name is None:
        return None
    return code("standard", "median") if name == "median" else code("local", name)


def _muscle_group(row: dict[str, Any], segment: Segment, seg: Dataset, series: SourceSeries) -> Any:
    hd = highdicom()
    measurements, missing = [], []
    for column, group, name, unit, factor, derivation in MEASURES:
        value = _number(row.get(column))
        if value is None:
            missing.append(column)
            continue
        measurements.append(
            hd.sr.Measurement(
                name=code(group, name),
                value=value * factor,
                unit=code("units", unit),
                derivation=_derivation(derivation),
            )
        )
    laterality = code("standard", segment.side) if segment.side in ("left", "right") else None
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=_uid(), identifier=segment.name),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=segment.number,
            source_series=hd.sr.SourceSeriesForSegmentation(series.refs["series_instance_uid"]),
        ),
        finding_type=code("muscles", segment.muscle),
        finding_sites=[hd.sr.FindingSite(code("standard", "thigh"), laterality=laterality)],
        measurements=measurements,
    )
    if missing:
        group[0].ContentSequence.append(_text("not_measured", ", ".join(missing)))
    return group


def _uid() -> str:
    from pydicom.uid import generate_uid

    return generate_uid()


def _template_groups(result: StudyResult) -> list[Any]:
    hd = highdicom()
    like = result.likelihood
    low, high = like.p_imnm_interval
    numbers = [
        ("p_imnm", like.p_imnm),
        ("p_imnm_lower", low),
        ("p_imnm_upper", high),
        ("log10_lr", like.log10_likelihood_ratio),
    ]
    template = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_uid(), identifier=f"template {result.template.name}"
        ),
        finding_type=code("local", "template_result"),
        measurements=[
            hd.sr.Measurement(
                name=code("local", key), value=float(value), unit=code("units", "probability")
            )
            for key, value in numbers
            if _number(value) is not None
        ],
    )
    items = template[0].ContentSequence
    items.append(_text("call", like.call))
    for note in like.notes:
        items.append(_text("evidence", note))
    groups = [template]
    for feature in like.features:
        degree = _number(feature.degree) if feature.available else None
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=_uid(), identifier=f"feature {feature.id}"
            ),
            finding_type=code("local", "feature_degree"),
            measurements=[]
            if degree is None
            else [
                hd.sr.Measurement(
                    name=code("local", "feature_degree"),
                    value=degree,
                    unit=code("units", "probability"),
                )
            ],
        )
        group[0].ContentSequence.append(_text("evidence", _evidence_text(feature)))
        groups.append(group)
    return groups


def _evidence_text(feature: Any) -> str:
    """One feature's evidence in words.

    Examples
    --------
    >>> from types import SimpleNamespace as F
    >>> _evidence_text(F(id="a", description="diffuse edema", available=False, value=None,
    ...                  degree=None, log10_lr_contribution=0.0, muscles_used=[],
    ...                  reason="no STIR"))
    'a: diffuse edema; unavailable: no STIR'
    """
    head = f"{feature.id}: {feature.description}"
    if not feature.available:
        return f"{head}; unavailable: {feature.reason}"
    value = _number(feature.value)
    parts = [
        head,
        f"value {value:.4g}" if value is not None else "value -",
        f"degree {float(feature.degree):.3f}",
        f"log10 LR contribution {float(feature.log10_lr_contribution):+.3f}",
    ]
    if feature.muscles_used:
        parts.append("muscles " + ", ".join(map(str, feature.muscles_used)))
    if feature.reason:
        parts.append(str(feature.reason))
    return "; ".join(parts)


def measurement_report(
    result: StudyResult, series: SourceSeries, segments: list[Segment], seg: Dataset
) -> Dataset:
    """The Comprehensive 3D SR of one study.

    Parameters
    ----------
    result : StudyResult
        The scored study (its muscle table and likelihood).
    series : SourceSeries
        The source series the SEG lies on.
    segments : list of Segment
        The muscle SEG's segments (:func:`~.dicom_seg.muscle_segments`).
    seg : pydicom.Dataset
        The muscle SEG the ROI groups reference.

    Returns
    -------
    pydicom.Dataset
    """
    from pydicom.sr.codedict import codes as dcm_codes

    hd = highdicom()
    rows = {int(r["label"]): r for r in result.muscles.to_dict("records")}
    groups = [_muscle_group(rows[s.label], s, seg, series) for s in segments]
    groups += _template_groups(result)
    observer = hd.sr.ObserverContext(
        observer_type=dcm_codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=_uid(), name="mri-scoring", manufacturer_name=MANUFACTURER
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=code("standard", "mri_procedure"),
        imaging_measurements=groups,
    )
    root = report[0].ContentSequence
    if series.resampled:
        root.append(
            _text(
                "resampled",
                (
                    "the label map is not on the grid of source series "
                    f"{series.refs['series_number']} "
                    f"({series.max_offset_mm:.3g} mm off): it was put there nearest-neighbour"
                ),
            )
        )
    root.append(_text("disclaimer", DISCLAIMER))
    return declare_local_scheme(
        hd.sr.Comprehensive3DSR(
            evidence=[seg],
            content=report[0],
            series_instance_uid=_uid(),
            series_number=SR_SERIES,
            sop_instance_uid=_uid(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            series_description="mri-scoring measurement report (research use)",
        )
    )
