"""Results back to the PACS: convert --dicom-refs, then score/batch --dicom-out (issue 34).

Truth comes from the phantom and the files the pipeline wrote, never from the DICOM writer:
the phantom's label map on the exported slices (slice k of the export is the phantom's z = k,
rows along y, columns along x), ``maps/*.nii.gz`` and ``muscles.tsv`` put on that grid with
nibabel. The objects are checked by two independent validators, dicom3tools' ``dciodvfy`` and
dcmtk's ``dsr2xml`` (skipped when absent, a failure under ``CI=true``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from typer.testing import CliRunner

from mri_scoring import phantom
from mri_scoring.cli import app
from mri_scoring.phantom import dicom_export as pdm
from mri_scoring.pipeline import score_study

pytest.importorskip("highdicom")

SHAPE = (64, 64, 10)
ROLES = ("water", "fat", "stir")
runner = CliRunner()


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} not installed (Debian: dicom3tools / dcmtk)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}: CI must run the independent DICOM validators")
    pytest.skip(message)


def _add_labels(study, root: Path, image: Path) -> None:
    """The phantom's label map on the converted grid as a segmentation tool leaves it."""
    img = nib.load(image)
    to_source = np.linalg.inv(study.affine) @ img.affine
    index = np.indices(img.shape).reshape(3, -1).astype(float)
    source = np.rint(to_source[:3, :3] @ index + to_source[:3, 3:]).astype(int)
    labels = study.labels[tuple(source)].reshape(img.shape)
    seg = root / "derivatives" / "phantomseg" / "sub-P1" / "anat"
    seg.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(labels.astype(np.int16), img.affine), seg / "sub-P1_dseg.nii.gz")
    rows = ["index\tname"] + [f"{v}\t{i.name}" for v, i in sorted(study.label_info.items())]
    (seg / "sub-P1_dseg.tsv").write_text("\n".join(rows) + "\n")


def _on_phantom_grid(path: Path, study) -> np.ndarray:
    """A written NIfTI map resampled (exactly: same voxels) onto the phantom's grid."""
    img = nib.load(path)
    to_map = np.linalg.inv(img.affine) @ study.affine
    index = np.indices(study.shape).reshape(3, -1).astype(float)
    target = to_map[:3, :3] @ index + to_map[:3, 3:]
    nearest = np.rint(target)
    assert np.abs(target - nearest).max() < 1e-3, "maps lie on the phantom's grid"
    return np.asanyarray(img.dataobj)[tuple(nearest.astype(int))].reshape(study.shape)


@pytest.fixture(scope="module")
def truth():
    return phantom.make_study("dm", seed=3, shape=SHAPE)


def _convert(truth, tmp: Path, enhanced: bool) -> Path:
    dicom = tmp / "dicom"
    pdm.export_study(truth, dicom, roles=ROLES, enhanced=ROLES if enhanced else ())
    root = tmp / "bids"
    done = runner.invoke(app, ["convert", str(dicom), "--out", str(root), "--subject", "P1",
                               "--dicom-refs"])  # fmt: skip
    assert done.exit_code == 0, done.output
    _add_labels(truth, root, root / "sub-P1" / "anat" / "sub-P1_water.nii.gz")
    return root


@pytest.fixture(scope="module", params=["classic", "enhanced"])
def scored(request, truth, tmp_path_factory):
    """Classic export: scored by ``batch --dicom-out`` beside a NIfTI-only study. Enhanced
    export: scored through the API, ``result.save(out, maps=True, dicom=True)``."""
    tmp = tmp_path_factory.mktemp(request.param)
    enhanced = request.param == "enhanced"
    root = _convert(truth, tmp, enhanced)
    if enhanced:
        out = tmp / "out"
        result = score_study(root / "sub-P1" / "anat")
        result.save(out, report=False, maps=True, dicom=True)
        folder = out
    else:
        phantom.write_study(truth, root / "niftionly")  # no DICOM behind it
        out = tmp / "batch"
        done = runner.invoke(app, ["batch", str(root), "--out", str(out), "--no-report",
                                   "--maps", "--dicom-out"])  # fmt: skip
        assert done.exit_code == 0, done.output
        folder = out / "sub-P1"
        result = None
    sources = [pydicom.dcmread(p, stop_before_pixels=True)
               for p in sorted((tmp / "dicom").rglob("*.dcm"))]  # fmt: skip
    return {"kind": request.param, "folder": folder, "root": root, "out": out,
            "sources": sources, "result": result}  # fmt: skip


def _objects(scored) -> dict[str, pydicom.Dataset]:
    folder = scored["folder"] / "dicom"
    return {p.stem: pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))}


def _water(scored) -> list[pydicom.Dataset]:
    return [s for s in scored["sources"] if s.SeriesDescription.endswith("_W")]


def test_refs_keep_instances_frames_and_modules(scored):
    """Guards references that name the series but not the slice (or the enhanced file but not
    its frame): a SEG cannot point at its source frames without both."""
    refs = json.loads((scored["root"] / "sourcedata" / "dicom_refs" / "sub-P1_water.json")
                      .read_text())  # fmt: skip
    water = _water(scored)
    assert refs["series_instance_uid"] == water[0].SeriesInstanceUID
    assert refs["study_instance_uid"] == water[0].StudyInstanceUID
    assert refs["frame_of_reference_uid"] == water[0].FrameOfReferenceUID
    assert refs["patient"]["PatientID"] == "PHANTOM01"
    assert refs["patient"]["PatientName"] == "Phantom^Thigh"
    assert refs["patient"]["PatientBirthDate"] == "19700101"
    assert len(refs["frames"]) == SHAPE[2]
    uids = {f["sop_instance_uid"] for f in refs["frames"]}
    if scored["kind"] == "enhanced":
        assert uids == {water[0].SOPInstanceUID}
        assert [f["frame"] for f in refs["frames"]] == list(range(1, SHAPE[2] + 1))
    else:
        assert uids == {w.SOPInstanceUID for w in water}
        assert {f["frame"] for f in refs["frames"]} == {1}
    assert all(len(f["position"]) == 3 for f in refs["frames"])
    assert not (scored["root"] / "sourcedata" / "dicom_refs" / "sub-P1_T2map.json").exists()


def test_dciodvfy_finds_no_errors(scored):
    """Guards objects a PACS would reject: dciodvfy (dicom3tools) checks each IOD."""
    tool = _tool("dciodvfy")
    files = sorted((scored["folder"] / "dicom").glob("*.dcm"))
    assert [f.name for f in files] == ["ff_map.dcm", "seg_edema.dcm", "seg_muscles.dcm",
                                       "sr_measurements.dcm"]  # fmt: skip
    for path in files:
        done = subprocess.run([tool, str(path)], capture_output=True, text=True, check=False)
        errors = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.startswith("Error")]
        assert errors == [], f"{path.name}: {errors[:5]}"


def test_dsr2xml_parses_the_report(scored):
    tool = _tool("dsr2xml")
    path = scored["folder"] / "dicom" / "sr_measurements.dcm"
    done = subprocess.run([tool, str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "Not a diagnostic device" in done.stdout
    assert "Imaging Measurement Report" in done.stdout


def test_same_study_and_patient_new_series(scored):
    """Guards results filed as a new patient or study, or overwriting source instances."""
    water = _water(scored)[0]
    source_uids = {s.SeriesInstanceUID for s in scored["sources"]}
    source_sops = {s.SOPInstanceUID for s in scored["sources"]}
    series = set()
    for name, ds in _objects(scored).items():
        assert ds.StudyInstanceUID == water.StudyInstanceUID, name
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
            assert str(ds.get(keyword)) == str(water.get(keyword)), (name, keyword)
        assert ds.SeriesInstanceUID not in source_uids and ds.SOPInstanceUID not in source_sops
        series.add(ds.SeriesInstanceUID)
    assert len(series) == 4


def _frame_slices(ds: pydicom.Dataset, scored) -> list[int]:
    """Phantom slice index of each frame of a SEG/PM, from its reference to the source."""
    by_uid = {s.SOPInstanceUID: s for s in scored["sources"]}
    out = []
    for item in ds.PerFrameFunctionalGroupsSequence:
        ref = item.DerivationImageSequence[0].SourceImageSequence[0]
        source = by_uid[ref.ReferencedSOPInstanceUID]
        if "ReferencedFrameNumber" in ref:
            out.append(int(ref.ReferencedFrameNumber) - 1)
        else:
            out.append(int(source.InstanceNumber) - 1)
    return out


def _segment_planes(ds: pydicom.Dataset, scored) -> dict[int, np.ndarray]:
    """Segment number -> boolean (x, y, z) volume on the phantom grid, from the SEG frames."""
    pixels = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    slices = _frame_slices(ds, scored)
    out: dict[int, np.ndarray] = {}
    for frame, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        volume = out.setdefault(number, np.zeros(SHAPE, bool))
        volume[:, :, slices[frame]] = pixels[frame].T > 0  # rows are y, columns x
    return out


def test_muscle_segments_equal_the_label_map(scored, truth):
    """Guards segments shifted, transposed or flipped against their source frames, a muscle
    given another's voxels, and reference tissue exported as a muscle."""
    seg = _objects(scored)["seg_muscles"]
    value_of = {i.name: v for v, i in truth.label_info.items()}
    volumes = _segment_planes(seg, scored)
    labels = {int(s.SegmentNumber): s.TrackingID for s in seg.SegmentSequence}
    table = pd.read_csv(scored["folder"] / "muscles.tsv", sep="\t")
    expected = {f"{r.muscle}_{r.side}" for r in table.itertuples() if r.kind == "muscle"}
    assert set(labels.values()) == expected
    for number, tracking in labels.items():
        value = value_of[tracking]
        assert np.array_equal(volumes[number], truth.labels == value), tracking
    side = {int(s.SegmentNumber): s.SegmentedPropertyTypeCodeSequence[0]
            .SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning for s in seg.SegmentSequence}
    assert all(side[n].lower() in t for n, t in labels.items())


def test_edema_segments_equal_the_maps(scored, truth):
    """Guards edema masks that differ from what --maps shows (another threshold, the shell
    and the muscle swapped)."""
    seg = _objects(scored)["seg_edema"]
    volumes = _segment_planes(seg, scored)
    names = {int(s.SegmentNumber): s.TrackingID for s in seg.SegmentSequence}
    assert sorted(names.values()) == ["edema", "fascial_edema"]
    for number, name in names.items():
        expected = _on_phantom_grid(scored["folder"] / "maps" / f"{name}.nii.gz", truth) > 0
        assert expected.any(), f"the dm phantom has {name}"
        assert np.array_equal(volumes.get(number, np.zeros(SHAPE, bool)), expected), name


def test_ff_map_real_world_values_are_percent_of_the_map(scored, truth):
    """Guards an FF map in fractions labelled percent (or the reverse) and misplaced frames."""
    pm = _objects(scored)["ff_map"]
    mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "%"
    slope = float(mapping.RealWorldValueSlope)
    intercept = float(mapping.RealWorldValueIntercept)
    stored = pm.pixel_array.reshape(-1, pm.Rows, pm.Columns).astype(float)
    volume = np.full(SHAPE, np.nan)
    for frame, k in enumerate(_frame_slices(pm, scored)):
        volume[:, :, k] = stored[frame].T * slope + intercept
    expected = _on_phantom_grid(scored["folder"] / "maps" / "fat_fraction.nii.gz", truth) * 100
    assert np.array_equal(np.isnan(volume), np.isnan(expected))
    both = ~np.isnan(expected)
    assert both.sum() > 1000
    assert np.abs(volume[both] - expected[both]).max() < 1e-4, "float32 rounding only"


# code value -> muscles.tsv column; "%" values are the table's 0-1 values times 100
SR_COLUMNS = {"118565006": "volume_ml", "MRS0002": "edema_fraction",
              "MRS0003": "fascial_edema_fraction", "MRS0004": "mercuri_grade",
              "MRS0005": "edema_grade"}  # fmt: skip
UNIT_FACTOR = {"ml": 1.0, "%": 100.0, "{grade}": 1.0}


def _sr_groups(sr: pydicom.Dataset) -> dict[str, list[pydicom.Dataset]]:
    """Tracking identifier -> the content items of each measurement group."""
    groups = {}
    for item in sr.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue != "126010":  # Imaging Measurements
            continue
        for group in item.ContentSequence:
            children = list(group.ContentSequence)
            tracking = next(c.TextValue for c in children
                            if c.ConceptNameCodeSequence[0].CodeValue == "112039")  # fmt: skip
            groups[tracking] = children
    return groups


def _column(item: pydicom.Dataset) -> str:
    value = item.ConceptNameCodeSequence[0].CodeValue
    if value != "129100":  # fat fraction: median or 90th percentile, by its derivation
        return SR_COLUMNS[value]
    derivation = next(c.ConceptCodeSequence[0].CodeValue for c in item.ContentSequence
                      if c.ConceptNameCodeSequence[0].CodeValue == "121401")  # fmt: skip
    return {"373099004": "ff_median", "MRS0001": "ff_p90"}[derivation]


def test_sr_measurements_equal_the_table(scored):
    """Guards SR numbers in other units than stated (fractions as %), rows given to the wrong
    muscle or segment, and empty cells written as 0."""
    sr = _objects(scored)["sr_measurements"]
    seg = _objects(scored)["seg_muscles"]
    segment_of = {s.TrackingID: int(s.SegmentNumber) for s in seg.SegmentSequence}
    table = pd.read_csv(scored["folder"] / "muscles.tsv", sep="\t")
    groups = _sr_groups(sr)
    checked = 0
    for row in table[table["kind"] == "muscle"].itertuples():
        name = f"{row.muscle}_{row.side}"
        items = groups[name]
        seen = set()
        for item in items:
            if item.ValueType == "NUM":
                column = _column(item)
                unit = item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue
                value = float(item.MeasuredValueSequence[0].NumericValue)
                want = getattr(row, column) * UNIT_FACTOR[unit]
                assert value == pytest.approx(want, rel=1e-5, abs=1e-9), (name, column)
                seen.add(column)
                checked += 1
            if item.ValueType == "IMAGE" or item.ConceptNameCodeSequence[0].CodeValue == "121214":
                assert int(item.ReferencedSOPSequence[0].ReferencedSegmentNumber) == \
                    segment_of[name]
        missing = {c for c in ("volume_ml", "ff_median", "ff_p90", "edema_fraction",
                               "fascial_edema_fraction", "mercuri_grade", "edema_grade")
                   if pd.isna(getattr(row, c))}  # fmt: skip
        assert seen.isdisjoint(missing), f"{name}: an empty cell became a number"
        assert seen | missing == {"volume_ml", "ff_median", "ff_p90", "edema_fraction",
                                  "fascial_edema_fraction", "mercuri_grade", "edema_grade"}
    assert checked > 200
    document = json.loads((scored["folder"] / "score.json").read_text())
    template = next(v for k, v in groups.items() if k.startswith("template"))
    p = [float(i.MeasuredValueSequence[0].NumericValue) for i in template
         if i.ValueType == "NUM" and i.ConceptNameCodeSequence[0].CodeValue == "MRS0006"]
    assert p == [pytest.approx(document["p_imnm"], rel=1e-9)]
    calls = [i.TextValue for i in template if i.ValueType == "TEXT"
             and i.ConceptNameCodeSequence[0].CodeValue == "MRS0010"]  # fmt: skip
    assert calls == [document["call"]]
    features = [k.removeprefix("feature ") for k in groups if k.startswith("feature ")]
    assert features == [f["id"] for f in document["features"]]


def test_batch_without_references_gets_a_warning_not_dicom(scored):
    """A mixed batch: the converted study gets DICOM, the NIfTI-only study a QC warning and
    its other outputs."""
    if scored["kind"] != "classic":
        pytest.skip("the classic export is the one scored by batch")
    other = next(p for p in scored["out"].iterdir() if p.is_dir() and p.name != "sub-P1")
    document = json.loads((other / "score.json").read_text())
    codes = [q["code"] for q in document["qc"] if q["level"] == "warning"]
    assert "dicom_out_unavailable" in codes
    assert (other / "muscles.tsv").is_file() and (other / "maps").is_dir()
    assert not (other / "dicom").exists()
    assert json.loads((scored["folder"] / "score.json").read_text())["outputs"]["dicom"]


def test_nifti_only_score_dicom_out_exits_2_before_work(truth, tmp_path):
    """Guards a --dicom-out that scores for minutes and only then finds no DICOM source."""
    study = phantom.write_study(truth, tmp_path / "study")
    out = tmp_path / "out"
    done = runner.invoke(app, ["score", str(study), "--out", str(out), "--dicom-out"])
    assert done.exit_code == 2, done.output
    assert "--dicom-out" in done.output and "DICOM" in done.output
    assert not out.exists(), "nothing was scored"


def test_resampled_label_map_is_said_in_the_sr(scored):
    """A label grid half a voxel off the source series: put there nearest-neighbour, and the
    SR says so (guards a silent resampling)."""
    if scored["result"] is None:
        pytest.skip("needs the in-memory result of the API-scored export")
    from mri_scoring.io.dicom_refs import find_refs
    from mri_scoring.output.dicom_seg import muscle_segments
    from mri_scoring.output.dicom_source import choose_source
    from mri_scoring.output.dicom_sr import measurement_report

    result = scored["result"]
    refs, _ = find_refs(result.study.files)
    exact = choose_source(refs, result.study.affine, result.study.shape)
    assert not exact.resampled and exact.max_offset_mm < 1e-3
    shifted = result.study.affine.copy()
    shifted[:3, 3] += 0.5 * shifted[:3, 0]
    series = choose_source(refs, shifted, result.study.shape)
    assert series.resampled and series.max_offset_mm == pytest.approx(
        0.5 * np.linalg.norm(shifted[:3, 0]), rel=1e-3)
    seg = _objects(scored)["seg_muscles"]
    sr = measurement_report(result, series, muscle_segments(result.muscles)[:1], seg)
    texts = [i.TextValue for i in sr.ContentSequence if i.ValueType == "TEXT"]
    assert any("nearest-neighbour" in t for t in texts), texts


def test_codes_come_from_their_stated_sources():
    """Guards a SNOMED CT or DCM code typed from memory: each must be the one pydicom's code
    dictionary (DICOM PS3.16) gives, with its meaning; every vocabulary muscle has a local code
    and no local code is used twice."""
    from pydicom.sr.codedict import codes as dictionary

    from mri_scoring.anatomy import vocabulary
    from mri_scoring.config import load_config_file

    table = load_config_file("dicom_codes.yaml")
    known = {}
    for scheme in ("SCT", "DCM", "LN"):
        group = getattr(dictionary, scheme)
        for name in dir(group):
            c = getattr(group, name, None)
            if not hasattr(c, "meaning"):
                continue
            known.setdefault((scheme, str(c.value)), set()).add(str(c.meaning).lower())
    documented = {("SCT", "49755003"): {"morphologically abnormal structure"}}  # highdicom docs
    for name, entry in table["standard"].items():
        if name == "source":
            continue
        scheme, value, meaning = entry
        meanings = known.get((scheme, value)) or documented.get((scheme, value))
        assert meanings, f"{name}: {scheme} {value} is in no stored source"
        assert meaning.lower() in meanings, f"{name}: {meaning!r} is not {meanings}"
    assert set(table["muscles"]) - {"source"} == set(vocabulary())
    values = [e[0] for k, e in [*table["muscles"].items(), *table["local"].items()]
              if k != "source"]  # fmt: skip
    assert len(values) == len(set(values))


def test_missing_highdicom_is_said_with_the_install_command(monkeypatch, tmp_path):
    """Guards a bare ImportError traceback when the optional extra is not installed."""
    import sys

    from mri_scoring.output.dicom_out import dicom_out_problem

    monkeypatch.setitem(sys.modules, "highdicom", None)  # import highdicom now fails
    problem = dicom_out_problem({"water": tmp_path / "sub-1" / "anat" / "sub-1_water.nii.gz"})
    assert "pip install" in problem and "mri-scoring[dicom]" in problem
