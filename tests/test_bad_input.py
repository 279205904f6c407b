"""Every broken input gets a one-line message naming the file or field (issue: study loading)."""

from __future__ import annotations

import gzip
import shutil

import nibabel as nib
import numpy as np
import pytest

from mri_scoring.errors import StudyError
from mri_scoring.io.discover import discover_studies
from mri_scoring.io.study import load_study

from .helpers import write_phantom


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    folder, _ = write_phantom(
        tmp_path_factory.mktemp("pristine") / "study", "imnm", seed=21, shape=(48, 48, 8)
    )
    return folder


@pytest.fixture
def study(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "study")


def _save(array, affine, path):
    nib.save(nib.Nifti1Image(array, affine), path)


def _error(folder, **kwargs) -> str:
    with pytest.raises(StudyError) as info:
        load_study(folder, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "messages are one line"
    return message


def _warnings(folder, code, **kwargs):
    return [q for q in load_study(folder, **kwargs).qc if q.code == code]


def test_missing_label_map(study):
    (study / "labels.nii.gz").unlink()
    message = _error(study)
    assert "no label map" in message and "labels.nii.gz" in message and str(study) in message


def test_no_usable_image(study):
    for role in ("fat", "water", "ff", "stir", "t2map", "t1w"):
        (study / f"{role}.nii.gz").unlink()
    assert "no usable image" in _error(study)


def test_fat_without_water_is_ignored_with_a_warning(study):
    (study / "water.nii.gz").unlink()
    [finding] = _warnings(study, "dixon_incomplete")
    assert "needs both" in finding.message and finding.file.endswith("fat.nii.gz")


@pytest.mark.parametrize(
    "content, expected",
    [
        (lambda data: data[: len(data) // 2], "ends early"),
        (lambda data: data[:200], "ends early"),
        (lambda data: b"", "empty"),
        (lambda data: gzip.compress(b"not an image" * 40), "not a NIfTI"),
    ],
)
def test_unreadable_truncated_or_non_nifti(study, content, expected):
    path = study / "stir.nii.gz"
    path.write_bytes(content(path.read_bytes()))
    message = _error(study)
    assert expected in message and "stir.nii.gz" in message


def test_permission_denied_is_reported(study, monkeypatch):
    import mri_scoring.io.nifti as nifti_module

    real_read = nifti_module._read_file_bytes

    def deny(path):  # root ignores chmod, so the denial is simulated at the read
        if str(path).endswith("t2map.nii.gz"):
            raise PermissionError(13, "Permission denied")
        return real_read(path)

    monkeypatch.setattr(nifti_module, "_read_file_bytes", deny)
    message = _error(study)
    assert "permission denied" in message and "t2map.nii.gz" in message


def test_image_on_another_grid_names_both_files(study):
    img = nib.load(study / "stir.nii.gz")
    _save(np.zeros((40, 48, 8), np.int16), img.affine, study / "stir.nii.gz")
    message = _error(study)
    assert (
        "stir.nii.gz shape (40, 48, 8)" in message and "labels.nii.gz shape (48, 48, 8)" in message
    )
    assert "--resample" in message


def test_same_shape_other_affine_is_not_the_same_grid(study):
    img = nib.load(study / "fat.nii.gz")
    affine = img.affine.copy()
    affine[:3, :3] *= 1.5
    _save(np.asanyarray(img.dataobj), affine, study / "fat.nii.gz")
    message = _error(study)
    assert "fat.nii.gz" in message and "not on the label map's grid" in message


def test_non_integer_label_values(study):
    img = nib.load(study / "labels.nii.gz")
    data = np.asanyarray(img.dataobj).astype(np.float32)
    data[data == 3] = 3.5
    _save(data, img.affine, study / "labels.nii.gz")
    message = _error(study)
    assert "non-integer label values (e.g. 3.5)" in message and "labels.nii.gz" in message


def test_empty_label_map(study):
    img = nib.load(study / "labels.nii.gz")
    _save(np.zeros(img.shape, np.int16), img.affine, study / "labels.nii.gz")
    assert "label map is empty" in _error(study)


def test_negative_label_values(study):
    img = nib.load(study / "labels.nii.gz")
    data = np.asanyarray(img.dataobj).copy()
    data[0, 0, 0] = -4
    _save(data, img.affine, study / "labels.nii.gz")
    assert "negative label value -4" in _error(study)


def test_duplicate_indices_in_label_table(study):
    with open(study / "labels.tsv", "a") as handle:
        handle.write("3\tsomething_else\n")
    message = _error(study)
    assert "duplicate index 3" in message and "labels.tsv" in message and "line" in message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("idx\tlabel\n1\tx\n", "lacks the columns 'index' and 'name'"),
        ("index\tname\nabc\tgracilis_left\n", "index 'abc' is not an integer"),
        ("index\tname\n1\t\n", "empty name for index 1"),
        ("", "label table is empty"),
        ("index\tname\n1\n", "expected 2 tab-separated cells"),
    ],
)
def test_malformed_label_table(study, text, expected):
    (study / "labels.tsv").write_text(text)
    message = _error(study)
    assert expected in message and "labels.tsv" in message


def test_label_values_missing_from_table_warn_and_are_kept(study):
    lines = (study / "labels.tsv").read_text().splitlines()
    (study / "labels.tsv").write_text("\n".join(lines[:-4]) + "\n")
    [finding] = _warnings(study, "label_not_in_table")
    assert "not in the table" in finding.message
    loaded = load_study(study)
    assert any(info.kind == "unknown" for info in loaded.label_info.values())


def test_unknown_names_warn_and_are_kept(study):
    text = (study / "labels.tsv").read_text().replace("gracilis_left", "mystery_muscle_left")
    (study / "labels.tsv").write_text(text)
    [finding] = _warnings(study, "label_unknown")
    assert "mystery_muscle_left" in finding.message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{not json", "invalid JSON at line 1"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"age_years": "forty"}', "field 'age_years' must be int or float"),
        (
            '{"fat_fraction_scale": "permille"}',
            "'fat_fraction_scale' must be 'fraction' or 'percent'",
        ),
    ],
)
def test_malformed_study_json(study, text, expected):
    (study / "study.json").write_text(text)
    message = _error(study)
    assert expected in message and "study.json" in message


def test_nan_and_infinite_voxels_are_excluded_with_a_warning(study):
    img = nib.load(study / "ff.nii.gz")
    data = np.asanyarray(img.dataobj).astype(np.float32)
    data[10:12, 10:12, 2] = np.nan
    data[0, 0, 0] = np.inf
    _save(data, img.affine, study / "ff.nii.gz")
    [finding] = _warnings(study, "nonfinite_voxels")
    assert "5 NaN or infinite voxels" in finding.message and finding.file.endswith("ff.nii.gz")


def test_fat_fraction_map_out_of_range(study):
    img = nib.load(study / "ff.nii.gz")
    data = np.asanyarray(img.dataobj).astype(np.float32) * 100.0
    data[0, 0, 0] = 250.0
    _save(data, img.affine, study / "ff.nii.gz")
    (study / "study.json").write_text('{"fat_fraction_scale": "percent"}')
    message = _error(study)
    assert "outside the possible range for percent" in message and "ff.nii.gz" in message


def test_four_d_image(study):
    img = nib.load(study / "t1w.nii.gz")
    data = np.stack([np.asanyarray(img.dataobj)] * 2, axis=-1)
    _save(data, img.affine, study / "t1w.nii.gz")
    assert "expected a 3-D image, got shape (48, 48, 8, 2)" in _error(study)


def test_zero_voxel_size(study):
    img = nib.load(study / "labels.nii.gz")
    header = img.header.copy()
    header["pixdim"][1] = 0.0
    bad = nib.Nifti1Image(np.asanyarray(img.dataobj), None, header)
    bad.set_sform(None, code=0)
    bad.set_qform(None, code=0)
    raw = bytearray(bad.to_bytes())
    raw[80:84] = np.float32(0.0).tobytes()  # pixdim[1]: nibabel would "fix" it on save
    (study / "labels.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    message = _error(study)
    assert "invalid voxel size (0.0," in message and "labels.nii.gz" in message


def test_two_files_for_one_role(study):
    shutil.copy(study / "stir.nii.gz", study / "stir.nii")
    message = _error(study)
    assert "several files match the role 'stir'" in message


def test_loading_never_writes_into_the_study(study):
    before = sorted((p.name, p.stat().st_mtime_ns) for p in study.iterdir())
    load_study(study)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in study.iterdir()) == before


def test_discovery_skips_symlink_loops_and_empty_folders(tmp_path, pristine):
    shutil.copytree(pristine, tmp_path / "root" / "a")
    (tmp_path / "root" / "loop").symlink_to(tmp_path / "root")
    for i in range(200):
        (tmp_path / "root" / "empty" / f"d{i}").mkdir(parents=True)
    assert [s.study_id for s in discover_studies(tmp_path / "root")] == ["phantom-imnm-21"]


def test_unknown_labels_option():
    with pytest.raises(StudyError, match="--labels must be one of"):
        load_study("anything", labels="freesurfer")
