"""DICOM in, BIDS out: series roles, dcm2niix conversion, MESE T2 maps, bad exports.

Truth comes from phantom studies written as DICOM by ``mri_scoring.phantom.dicom_export``
(pydicom; it imports no measurement code): the converted study, with the phantom's label map put
on the converted grid under ``derivatives/``, must score what the phantom's own NIfTI scores.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mri_scoring import phantom
from mri_scoring.io import dicom as dicom_io
from mri_scoring.io.dicom import DicomError, convert_dicom
from mri_scoring.io.dicom_roles import SeriesInfo, assign_roles, classify, load_rules
from mri_scoring.io.discover import discover_studies
from mri_scoring.phantom import dicom_export as pdm
from mri_scoring.pipeline import score_study

SHAPE = (64, 64, 10)
RULES = load_rules()


@pytest.fixture(scope="module")
def study():
    return phantom.make_study("imnm", seed=1, shape=SHAPE)


def _tsv(root: Path) -> list[dict[str, str]]:
    lines = (root / "conversion.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


def _add_labels(study, root: Path, image: Path, subject: str, session: str | None = None):
    """The phantom's label map on the converted image's grid, as a segmentation tool would put
    it (derivatives/<tool>/sub-*/[ses-*/]anat/*_dseg.nii.gz with its table)."""
    img = nib.load(image)
    to_source = np.linalg.inv(study.affine) @ img.affine
    index = np.indices(img.shape).reshape(3, -1).astype(float)
    source = to_source[:3, :3] @ index + to_source[:3, 3:]
    nearest = np.rint(source)
    assert np.abs(source - nearest).max() < 1e-3, "the converted grid is the phantom's grid"
    labels = study.labels[tuple(nearest.astype(int))].reshape(img.shape)
    seg = root / "derivatives" / "phantomseg" / f"sub-{subject}"
    seg = (seg / f"ses-{session}" if session else seg) / "anat"
    seg.mkdir(parents=True, exist_ok=True)
    prefix = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    nib.save(nib.Nifti1Image(labels.astype(np.int16), img.affine), seg / f"{prefix}_dseg.nii.gz")
    rows = ["index\tname"] + [f"{v}\t{info.name}" for v, info in sorted(study.label_info.items())]
    (seg / f"{prefix}_dseg.tsv").write_text("\n".join(rows) + "\n")


def _flipped(study):
    """The same world stored with the first and last axes reversed."""
    flip = np.diag([-1.0, 1.0, -1.0, 1.0])
    flip[0, 3], flip[2, 3] = study.shape[0] - 1, study.shape[2] - 1
    images = {r: np.ascontiguousarray(a[::-1, :, ::-1]) for r, a in study.images.items()}
    labels = np.ascontiguousarray(study.labels[::-1, :, ::-1])
    return dataclasses.replace(study, images=images, labels=labels, affine=study.affine @ flip)


def _oblique(study, degrees=15.0):
    """The same arrays acquired tilted about the left-right axis (world x kept)."""
    a = np.deg2rad(degrees)
    rotation = np.eye(4)
    rotation[1:3, 1:3] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return dataclasses.replace(study, affine=rotation @ study.affine)


GEOMETRIES = {"axial": lambda s: s, "flipped": _flipped, "oblique": _oblique}


@pytest.mark.parametrize(
    ("vendor", "geometry", "enhanced"),
    [
        ("siemens", "axial", ("t1w",)),
        ("philips", "flipped", ()),
        ("ge", "oblique", ("water", "fat")),
    ],
)
def test_converted_study_scores_like_its_nifti(study, tmp_path, vendor, geometry, enhanced):
    """Guards orientation and scaling errors of the DICOM path (a flipped row order, a lost
    slope, an oblique affine taken as axial): any of them moves muscles off their labels or
    changes FF, so the per-muscle FF would differ from the NIfTI truth. Water and fat carry
    different RescaleSlopes (FF = F / (F + W) hides a slope both share): a reader that drops
    them reads fat at half its value."""
    acquired = GEOMETRIES[geometry](study)
    reference = phantom.write_study(acquired, tmp_path / "nifti")
    pdm.export_study(acquired, tmp_path / "dicom", vendor=vendor, enhanced=enhanced,
                     rescale_slopes={"fat": 0.5, "stir": 0.25})  # fmt: skip
    report = convert_dicom(tmp_path / "dicom", tmp_path / "bids", subject="P1", session="01")
    assert set(report.outputs) == {"water", "fat", "stir", "t1w"}, _tsv(tmp_path / "bids")
    assert report.messages == []
    _add_labels(acquired, tmp_path / "bids", report.outputs["water"], "P1", "01")
    truth = score_study(reference)
    converted = score_study(report.anat)
    a = truth.muscles.set_index("label")
    b = converted.muscles.set_index("label").loc[a.index]
    assert np.allclose(a["volume_ml"], b["volume_ml"], rtol=1e-6), "same voxels per muscle"
    diff = np.nanmax(np.abs(a["ff_median"].to_numpy() - b["ff_median"].to_numpy()))
    assert diff < 0.002, f"per-muscle FF differs by {diff:.4f} after DICOM round trip"
    assert truth.likelihood.call == converted.likelihood.call
    assert abs(truth.likelihood.p_imnm - converted.likelihood.p_imnm) < 0.01


def test_batch_discovers_converted_output_as_it_is(study, tmp_path):
    """Guards output names batch cannot find: STIR as `_acq-stir_T2w`, T2 map as `_T2map`, FF
    map as `_fatfrac`; in-phase, opposed-phase and raw MESE echoes must take no role."""
    pdm.export_study(study, tmp_path / "dicom", roles=("water", "fat", "inphase", "opphase",
                                                       "stir", "t1w"))  # fmt: skip
    ctx = pdm.ExportContext("siemens")
    ff = pdm.SeriesSpec(
        number=20,
        description="t1_vibe_dixon_tra_FF",
        image_type="DERIVED\\PRIMARY\\DIXON\\FAT_FRACTION",
        data=study.images["ff"],
        scanning_sequence="GR",
    )
    pdm.write_series(tmp_path / "dicom" / "020", ff, study.affine, ctx)
    echoes = pdm.mese_echoes(study.images["water"], study.images["fat"], study.images["t2map"])
    mese = pdm.vendor_series("siemens", "mese", 30, echoes,
                             echo_times_ms=list(10.0 * np.arange(1, 17)))  # fmt: skip
    pdm.write_series(tmp_path / "dicom" / "030", mese, study.affine, ctx)
    report = convert_dicom(tmp_path / "dicom", tmp_path / "bids", subject="P2")
    _add_labels(study, tmp_path / "bids", report.outputs["water"], "P2")
    names = sorted(p.name for p in report.anat.glob("*.nii.gz"))
    assert "sub-P2_acq-stir_T2w.nii.gz" in names and "sub-P2_T2map.nii.gz" in names
    (found,) = discover_studies(tmp_path / "bids")
    roles = {role: [p.name for p in paths] for role, paths in found.roles.items()}
    assert roles["stir"] == ["sub-P2_acq-stir_T2w.nii.gz"]
    assert roles["t2map"] == ["sub-P2_T2map.nii.gz"]
    assert roles["ff"] == ["sub-P2_fatfrac.nii.gz"]
    assert roles["water"] == ["sub-P2_water.nii.gz"] and roles["fat"] == ["sub-P2_fat.nii.gz"]
    assert roles["labels"] == ["sub-P2_dseg.nii.gz"]
    claimed = {name for paths in roles.values() for name in paths}
    assert not claimed & {"sub-P2_MESE.nii.gz", "sub-P2_inphase.nii.gz", "sub-P2_opphase.nii.gz"}
    sidecar = json.loads((report.anat / "sub-P2_MESE.json").read_text())
    assert sidecar["EchoTime"] == pytest.approx([0.01 * k for k in range(1, 17)])
    mese_image = nib.load(report.anat / "sub-P2_MESE.nii.gz")
    assert mese_image.shape == (*study.shape, 16), "raw echoes: one 4-D file, echo last"
    first, last = (float(np.asanyarray(mese_image.dataobj[..., k]).sum()) for k in (0, 15))
    assert last < 0.5 * first, "echoes stacked in TE order: the signal decays along the train"
    assert score_study(found).likelihood.call == "IMNM"


def test_mese_series_gives_t2_map_with_known_t2(tmp_path):
    """Three water regions of T2 30, 45, 60 ms (noiseless, 20 % fat in the last): the T2 map
    written by convert is within 1 ms in each. Guards echo-order, unit (s vs ms) and scaling
    mistakes between dcm2niix's per-echo files and the fit."""
    shape = (30, 20, 4)
    t2 = np.zeros(shape)
    t2[2:10, 4:16], t2[11:19, 4:16], t2[20:28, 4:16] = 30.0, 45.0, 60.0
    water = np.where(t2 > 0, 1.0, 0.0)
    fat = np.zeros(shape)
    fat[20:28, 4:16] = 0.25  # 20 % fat
    echoes = pdm.mese_echoes(water, fat, t2)
    affine = np.diag([2.0, 2.0, 5.0, 1.0])
    te_ms = list(10.0 * np.arange(1, 17))
    spec = pdm.vendor_series("philips", "mese", 9, echoes, echo_times_ms=te_ms, scale=3000.0)
    pdm.write_series(tmp_path / "dicom", spec, affine, pdm.ExportContext("philips"))
    report = convert_dicom(tmp_path / "dicom", tmp_path / "bids", subject="M")
    img = nib.load(report.outputs["t2map"])
    fitted = np.asanyarray(img.dataobj)
    to_world = np.linalg.inv(img.affine) @ affine  # truth voxel -> converted voxel
    for value, box in ((30.0, (6, 10)), (45.0, (15, 10)), (60.0, (24, 10))):
        ijk = np.rint(to_world[:3, :3] @ [box[0], box[1], 2] + to_world[:3, 3]).astype(int)
        assert abs(fitted[tuple(ijk)] - value) < 1.0, f"T2 {value} ms read {fitted[tuple(ijk)]}"
    assert (
        json.loads(report.outputs["t2map"].with_suffix("").with_suffix(".json").read_text())[
            "Units"
        ]
        == "ms"
    )
    assert (fitted > 0).sum() == (t2 > 0).sum(), "exactly the water voxels are fitted, air reads 0"
    assert "mese_fatfrac" in report.outputs


@pytest.mark.parametrize("vendor", ["siemens", "philips", "ge"])
def test_vendor_names_are_classified(vendor):
    """Each vendor's naming of every role is recognised (Siemens `_W`/`_F` + DIXON tokens,
    Philips W/F/IP/OP types, GE `WATER:` prefixes); a localizer is excluded, not guessed."""
    for role in ("water", "fat", "inphase", "opphase", "stir", "t1w", "mese", "localizer"):
        description, image_type, sequence, ti = pdm.VENDOR_SERIES[vendor][role]
        echoes = tuple(10.0 * k for k in range(1, 17)) if role == "mese" else (12.0,)
        info = SeriesInfo(
            uid="1",
            number=5,
            description=description,
            image_type=tuple(image_type.split("\\")),
            scanning_sequence=tuple(sequence.split("\\")),
            echo_times_ms=echoes,
            inversion_time_ms=ti,
        )
        got = classify(info, RULES)
        expected = None if role == "localizer" else role
        assert got.role == expected, f"{vendor} {role}: {got}"


def test_names_alone_and_unknown_and_ambiguous_series():
    """Without telling image types the names decide; an unknown series is listed as
    unrecognised and a series that matches two roles equally is skipped, never guessed."""
    plain = ("ORIGINAL", "PRIMARY", "M")
    assert (
        classify(
            SeriesInfo(uid="1", number=1, description="t1_vibe_dixon_cor_W", image_type=plain),
            RULES,
        ).role
        == "water"
    )
    assert (
        classify(
            SeriesInfo(uid="2", number=2, description="FatFrac: IDEAL IQ", image_type=plain), RULES
        ).role
        == "ff"
    )
    unknown = classify(
        SeriesInfo(uid="3", number=3, description="b1map_sag", image_type=plain), RULES
    )
    assert unknown.role is None and unknown.reason.startswith("unrecognised")
    both = classify(
        SeriesInfo(
            uid="4", number=4, description="dixon", image_type=("DERIVED", "PRIMARY", "W", "F")
        ),
        RULES,
    )
    assert both.role is None and "ambiguous" in both.reason


def test_two_series_for_one_role_clearer_wins_then_later(tmp_path):
    """Two water series: the one with an image-type token beats a name-only one; between
    equals the later (a repeat) wins; the loser is listed with the winner's number."""
    token = ("DERIVED", "PRIMARY", "DIXON", "WATER")
    a = SeriesInfo(uid="a", number=3, description="t1_vibe_dixon_W", image_type=token)
    b = SeriesInfo(uid="b", number=8, description="t1_vibe_dixon_W", image_type=token)
    c = SeriesInfo(
        uid="c", number=12, description="water_repeat_w", image_type=("ORIGINAL", "PRIMARY", "M")
    )
    out = {x.series.uid: x for x in assign_roles([a, b, c], RULES)}
    assert out["b"].role == "water"
    assert out["a"].role is None and "series 8" in out["a"].status and "later" in out["a"].status
    assert out["c"].role is None and "clearer" in out["c"].status
    manual = {x.series.uid: x for x in assign_roles([a, b, c], RULES, {12: "water", 8: "skip"})}
    assert manual["c"].role == "water" and manual["b"].status == "skipped: by --map"


def test_bad_export_names_the_series_and_converts_the_rest(study, tmp_path):
    """A truncated file (STIR) and a missing slice (fat): each series is skipped with a message
    naming it; water is still converted; stray non-DICOM files are ignored; the truncated and the
    damaged file each have a row of their own."""
    numbers = pdm.export_study(study, tmp_path / "dicom")
    stir_file = sorted((tmp_path / "dicom" / f"{numbers['stir']:03d}").glob("*.dcm"))[3]
    stir_file.write_bytes(stir_file.read_bytes()[:-2000])
    sorted((tmp_path / "dicom" / f"{numbers['fat']:03d}").glob("*.dcm"))[4].unlink()
    (tmp_path / "dicom" / "README.txt").write_text("exported by the PACS")
    t1_file = sorted((tmp_path / "dicom" / f"{numbers['t1w']:03d}").glob("*.dcm"))[2]
    damaged = t1_file.read_bytes()
    t1_file.write_bytes(damaged[:132] + bytes(range(256)) + damaged[388:])
    report = convert_dicom(tmp_path / "dicom", tmp_path / "bids", subject="B")
    assert set(report.outputs) == {"water"}
    text = "\n".join(report.messages)
    assert "005/005_0003.dcm: damaged or incomplete header" in text
    assert "series 5 (t1_tse_tra): missing slices" in text
    assert "series 4 (t2_tirm_tra): missing slices: 1 of 10 files skipped" in text
    assert "004/004_0004.dcm: truncated" in text
    assert "series 3 (t1_vibe_dixon_tra_F)" in text and "missing slices" in text
    rows = {(r["series_number"], r["files"]): r["role"] for r in _tsv(tmp_path / "bids")}
    assert rows[("4", "9 (+1 skipped, incomplete)")].startswith("skipped: missing slices")
    assert rows[("4", "004/004_0004.dcm")].startswith("skipped: truncated")
    assert rows[("3", "9")].startswith("skipped: missing")
    again = convert_dicom(tmp_path / "dicom", tmp_path / "bids", subject="B2")
    assert set(again.outputs) == {"water"}
    subjects = [r["subject"] for r in _tsv(tmp_path / "bids")]
    assert subjects == ["B"] * 6 + ["B2"] * 6, "a second study adds its rows, keeps the first's"


def test_enhanced_file_with_mixed_dixon_frames_is_not_guessed(study, tmp_path):
    """An enhanced file whose frames are water and fat (Philips mDixon, dcm2niix #1022) is
    skipped with the frame types named, not classified by its first frame."""
    import pydicom

    numbers = pdm.export_study(
        study, tmp_path / "dicom", roles=("water", "t1w"), enhanced=("water",)
    )
    (path,) = (tmp_path / "dicom" / f"{numbers['water']:03d}").glob("*.dcm")
    ds = pydicom.dcmread(path)
    for frame in ds.PerFrameFunctionalGroupsSequence[::2]:
        frame.MRImageFrameTypeSequence[0].FrameType = ["DERIVED", "PRIMARY", "DIXON", "FAT"]
    ds.save_as(path)
    report = convert_dicom(tmp_path / "dicom", tmp_path / "bids", subject="E")
    assert set(report.outputs) == {"t1w"}
    (message,) = report.messages
    assert "series 2 (t1_vibe_dixon_tra_W)" in message and "DIXON\\FAT" in message


def test_folder_without_dicom_is_a_clear_error(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no images here")
    with pytest.raises(DicomError, match="no DICOM files found"):
        convert_dicom(tmp_path / "in", tmp_path / "out")


def test_missing_dcm2niix_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dcm2niix", None)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(DicomError, match="pip install dcm2niix"):
        dicom_io.dcm2niix_path()


def test_cli_convert(study, tmp_path):
    """`mri-scoring convert` converts, honours --map, reports bad input in one line (exit 1) and
    usage errors with exit 2."""
    pdm.export_study(study, tmp_path / "dicom", roles=("water", "fat"))
    mapping = tmp_path / "map.yaml"
    mapping.write_text("3: skip\n")
    run = [sys.executable, "-m", "mri_scoring.cli", "convert"]
    done = subprocess.run([*run, str(tmp_path / "dicom"), "--out", str(tmp_path / "bids"),
                           "--subject", "C", "--map", str(mapping)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "bids" / "sub-C" / "anat" / "sub-C_water.nii.gz").is_file()
    assert not (tmp_path / "bids" / "sub-C" / "anat" / "sub-C_fat.nii.gz").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = subprocess.run([*run, str(empty), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)  # fmt: skip
    assert failed.returncode == 1 and "no DICOM files found" in failed.stderr
    assert "Traceback" not in failed.stderr
    usage = subprocess.run([*run, str(tmp_path / "dicom")], capture_output=True, text=True)
    assert usage.returncode == 2
