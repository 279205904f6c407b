"""A bad file never stops a DICOM conversion (issue 32): exports as PACS and scanners give them.

A good phantom export (``mri_scoring.phantom.dicom_export``: water, fat and STIR of patient
PHANTOM01) gets one odd file at a time: every ``*.dcm`` of the installed pydicom's own test
corpus (files nobody here wrote: RT dose and plans, SR, secondary captures, compressed and
big-endian MR, deliberately broken files), and faults crafted into the export's own files. Each
must be skipped with its reason in ``conversion.tsv`` while the good series keep their roles;
pydicom's warnings never reach stderr as raw Python warnings.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from mri_scoring import phantom
from mri_scoring.io.dicom import DicomError, DicomUsageError, convert_dicom
from mri_scoring.io.dicom_roles import assign_roles, load_rules
from mri_scoring.io.dicom_series import discover_series, keep_patient
from mri_scoring.phantom import dicom_export as pdm

PATIENT = "PHANTOM01"
ROLES = {2: "water", 3: "fat", 4: "stir"}
CORPUS = sorted((Path(pydicom.__file__).parent / "data" / "test_files").rglob("*.dcm"))
CLI = [sys.executable, "-m", "mri_scoring.cli", "convert"]


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """One small good export, copied by each test that changes it."""
    study = phantom.make_study("imnm", seed=3, shape=(48, 48, 8))
    folder = tmp_path_factory.mktemp("export") / "dicom"
    numbers = pdm.export_study(study, folder, roles=("water", "fat", "stir"))
    assert {n: r for r, n in numbers.items()} == ROLES
    return folder


def _copy(export: Path, tmp_path: Path) -> Path:
    target = tmp_path / "dicom"
    shutil.copytree(export, target)
    return target


def _tsv(root: Path) -> list[dict[str, str]]:
    lines = (root / "conversion.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


def _raw(path: Path, values: dict[str, bytes]) -> None:
    """Write header values as raw bytes, as a faulty scanner does (pydicom refuses to set them)."""
    ds = pydicom.dcmread(path)
    for keyword, value in values.items():
        tag = Tag(pydicom.datadict.tag_for_keyword(keyword))
        vr = pydicom.datadict.dictionary_VR(tag)
        ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    ds.save_as(path)


def _stir(folder: Path, k: int) -> Path:
    return sorted((folder / "004").glob("*.dcm"))[k]


def test_the_corpus_is_there():
    """The corpus test below must not pass by finding nothing (a pydicom without its data)."""
    assert len(CORPUS) >= 60, f"pydicom test files found: {len(CORPUS)}"
    assert {"badVR.dcm", "rtdose.dcm", "test-SR.dcm", "MR_small.dcm"} <= {p.name for p in CORPUS}


@pytest.mark.slow
def test_every_pydicom_test_file_added_to_a_good_export_is_skipped_not_fatal(export, tmp_path):
    """Each corpus file alone beside a good export: discovery and role assignment never raise
    (the bug: badVR.dcm's NumberOfFrames '1A' ended discovery with a ValueError traceback), no
    raw Python warning escapes, the file is listed as skipped (with --patient, other patients'
    MR files too), and water, fat and STIR keep their roles."""
    folder = _copy(export, tmp_path)
    rules = load_rules()
    for source in CORPUS:
        extra = folder / "extra" / source.name
        extra.parent.mkdir(exist_ok=True)
        shutil.copyfile(source, extra)
        with warnings.catch_warnings(record=True) as heard:
            warnings.simplefilter("always")
            scan = discover_series(folder)
            assign_roles(scan.series, rules)
            chosen = keep_patient(scan, PATIENT)
            roles = {a.series.number: a.role for a in assign_roles(chosen.series, rules)}
        assert not heard, f"{source.name}: raw warnings {[str(w.message) for w in heard]}"
        assert roles == ROLES, f"{source.name}: good series lost their roles: {roles}"
        skipped = {f.path: f.reason for f in chosen.skipped}
        assert extra in skipped, f"{source.name} is neither converted nor listed as skipped"
        assert skipped[extra].strip(), source.name
        assert all(f.path == extra for f in chosen.skipped), f"{source.name}: {chosen.skipped}"
        extra.unlink()


def test_badvr_file_beside_the_export_converts_the_rest_exit_0(export, tmp_path):
    """The issue's export: badVR.dcm (an RT dose whose NumberOfFrames is '1A') beside the
    Dixon + STIR export. Before: a ValueError traceback and nothing converted."""
    folder = _copy(export, tmp_path)
    shutil.copyfile(next(p for p in CORPUS if p.name == "badVR.dcm"), folder / "badVR.dcm")
    done = subprocess.run([*CLI, str(folder), "--out", str(tmp_path / "bids")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stderr
    rows = _tsv(tmp_path / "bids")
    series = {r["series_number"]: r["role"] for r in rows if r["image_type"]}
    assert series == {"2": "water", "3": "fat", "4": "stir"}
    assert [(r["files"], r["role"]) for r in rows if not r["image_type"]] == [
        ("badVR.dcm", "skipped: not an MR image (RT Dose Storage)")
    ]
    assert "badVR.dcm: not an MR image" in done.stderr


def test_invalid_is_in_a_stir_file_skips_that_file_and_says_the_series_is_incomplete(
    export, tmp_path, capfd
):
    """The same fault (NumberOfFrames '1A') in one of the export's own STIR files: that file is
    skipped naming the element, pydicom's warning goes into its row (not to stderr), the STIR
    series says it lost 1 of 8 files and is incomplete; water and fat are converted."""
    folder = _copy(export, tmp_path)
    bad = _stir(folder, 3)
    _raw(bad, {"NumberOfFrames": b"1A"})
    report = convert_dicom(folder, tmp_path / "bids")
    assert set(report.outputs) == {"water", "fat"}
    rows = {r["files"]: r for r in _tsv(tmp_path / "bids")}
    row = rows["004/004_0004.dcm"]
    assert row["series_number"] == "4" and row["series_description"] == "t2_tirm_tra"
    assert "NumberOfFrames (0028,0008) = '1A'" in row["role"], row
    assert "[pydicom: Invalid value for VR IS: '1A'" in row["role"], row
    assert rows["7 (+1 skipped, incomplete)"]["role"].startswith(
        "skipped: missing slices: 1 of 8 files skipped"
    )
    err = capfd.readouterr().err
    assert "Invalid value" not in err and "UserWarning" not in err, err


def test_crafted_faults_are_each_named_and_the_good_series_converted(export, tmp_path, capfd):
    """Faults in the export's own patient, all at once: a truncated file, an empty .dcm, a text
    file named .dcm, a file without SeriesInstanceUID, invalid IS and DS values. Each has a row
    with its reason; water and fat are converted; no raw warning on stderr. A faulty duplicate
    of a fat slice leaves fat complete, and the row says so."""
    folder = _copy(export, tmp_path)
    truncated, no_uid, bad_is, bad_ds = (_stir(folder, k) for k in (1, 2, 4, 5))
    truncated.write_bytes(truncated.read_bytes()[:-3000])
    ds = pydicom.dcmread(no_uid)
    del ds.SeriesInstanceUID
    ds.save_as(no_uid)
    _raw(bad_is, {"SeriesNumber": b"4x"})
    _raw(bad_ds, {"ImagePositionPatient": b"1.5\\abc\\-3"})
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "notes.dcm").write_text("exported by the PACS on 2026-01-01\n")
    duplicate = folder / "003" / "copy_of_first_slice.dcm"
    first = sorted((folder / "003").glob("*.dcm"))[0].read_bytes()
    duplicate.write_bytes(first[:-1000])
    report = convert_dicom(folder, tmp_path / "bids")
    assert set(report.outputs) == {"water", "fat"}, _tsv(tmp_path / "bids")
    reasons = {r["files"]: r["role"] for r in _tsv(tmp_path / "bids")}
    expected = {
        "004/004_0002.dcm": "skipped: truncated (its header and pixel data need",
        "004/004_0003.dcm": "skipped: no SeriesInstanceUID",
        "004/004_0005.dcm": "skipped: header value does not parse (SeriesNumber (0020,0011) = '4x'",
        "004/004_0006.dcm": "skipped: slice geometry does not parse (ImagePositionPatient",
        "empty.dcm": "skipped: empty file",
        "notes.dcm": "skipped: not a DICOM file",
        "003/copy_of_first_slice.dcm": "skipped: truncated",
    }
    for name, start in expected.items():
        assert reasons.get(name, "").startswith(start), f"{name}: {reasons.get(name)}"
    assert reasons["8 (+1 skipped, still complete)"] == "fat", reasons
    stir = next(r for r in _tsv(tmp_path / "bids") if r["series_number"] == "4" and r["image_type"])
    assert stir["files"] == "4 (+3 skipped, incomplete)", stir
    err = capfd.readouterr().err
    assert "Warning" not in err and "Invalid value" not in err, err


def test_two_patients_refused_with_their_ids_or_one_chosen_with_patient(export, tmp_path):
    """A folder with two patients: refused (exit 2) with both PatientIDs, their series counts
    and the --patient hint, never a name; `--patient` converts one and lists the other's files
    as skipped; a PatientID not in the folder is a usage error too."""
    folder = _copy(export, tmp_path)
    other = phantom.make_study("normal", seed=4, shape=(48, 48, 8))
    pdm.export_study(other, folder / "other", roles=("water",), patient_id="PAT02",
                     first_number=7)  # fmt: skip
    out = tmp_path / "bids"
    refused = subprocess.run([*CLI, str(folder), "--out", str(out)], capture_output=True,
                             text=True)  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "PatientID PAT02 (1 series)" in refused.stderr
    assert "PatientID PHANTOM01 (3 series)" in refused.stderr
    assert "--patient ID" in refused.stderr and "Phantom" not in refused.stderr
    assert "Traceback" not in refused.stderr and not out.exists()
    chosen = convert_dicom(folder, out, patient="PAT02")  # exit 0 of the CLI: the test above
    assert set(chosen.outputs) == {"water"}
    rows = _tsv(out)
    assert [r["role"] for r in rows if r["output"]] == ["water"]
    assert all(r["subject"] == "PAT02" for r in rows)
    others = [r for r in rows if r["role"] == "skipped: another patient (PatientID PHANTOM01)"]
    assert len(others) == 3 * 8, "every file of the other patient's three series is listed"
    assert {r["series_number"] for r in others} == {"2", "3", "4"}
    assert "24 files of another patient (PatientID PHANTOM01) (listed in conversion.tsv)" in (
        chosen.messages
    )
    with pytest.raises(DicomUsageError, match="no series of PatientID NOPE"):
        convert_dicom(folder, out, patient="NOPE")


def test_a_kept_file_that_pydicom_warns_about_is_logged_once_not_warned(export, tmp_path, caplog):
    """An over-long SeriesDescription (70 characters, LO allows 64) makes pydicom warn but the
    value is usable: the file stays in its series, and the warning is one log line naming the
    file, not a raw Python warning."""
    folder = _copy(export, tmp_path)
    odd = sorted((folder / "002").glob("*.dcm"))[2]
    _raw(odd, {"SeriesDescription": b"x" * 70})
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        scan = discover_series(folder)
    assert not heard, [str(w.message) for w in heard]
    assert not scan.skipped and len(scan.series[0].files) == 8
    lines = [r.getMessage() for r in caplog.records if "002/002_0003.dcm" in r.getMessage()]
    assert lines == ["002/002_0003.dcm: pydicom: The value length (70) exceeds the maximum "
                     "length of 64 allowed for VR LO."], lines  # fmt: skip


def test_a_folder_of_only_bad_files_names_them_and_converts_nothing(tmp_path):
    """Nothing convertible (exit 1 in the CLI): the error names the skipped files and why,
    instead of claiming there is no DICOM."""
    folder = tmp_path / "dicom"
    folder.mkdir()
    shutil.copyfile(next(p for p in CORPUS if p.name == "rtdose.dcm"), folder / "rtdose.dcm")
    (folder / "notes.dcm").write_text("not an image")
    with pytest.raises(DicomError, match=r"no MR image series to convert; 2 files skipped") as err:
        convert_dicom(folder, tmp_path / "bids")
    assert "notes.dcm: not a DICOM file" in str(err.value)
    assert "rtdose.dcm: not an MR image (RT Dose Storage)" in str(err.value)
    assert not isinstance(err.value, DicomUsageError), "exit 1, not a usage error"
