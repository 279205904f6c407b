"""Reliability and security: broken inputs answered, nothing lost, nothing leaked.

Each case asserts the answer: the one-line message naming the file or field, a QC warning when the
study is still usable, and no output for a study that failed.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import mri_scoring as ms
from mri_scoring.batch import BatchOptions, Outcome, run_processes
from mri_scoring.cli import app
from mri_scoring.errors import StudyError
from mri_scoring.io.discover import discover_studies
from mri_scoring.io.study import load_study
from mri_scoring.io.tables import read_label_table, read_metadata

from .helpers import batch_command, crash_on_marked_study, write_phantom

SHAPE = (64, 64, 10)
PACKAGE = Path(ms.__file__).resolve().parent
runner = CliRunner()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    folder, _ = write_phantom(
        tmp_path_factory.mktemp("p") / "study", "imnm", seed=61, shape=(80, 80, 12)
    )
    return folder


@pytest.fixture
def study(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "study")


def _rewrite(path: Path, data: np.ndarray, header_edit=None, dtype=None) -> None:
    img = nib.load(path)
    out = nib.Nifti1Image(data.astype(dtype or data.dtype), img.affine)
    out.set_sform(img.affine, code=1)
    out.set_qform(img.affine, code=1)
    raw = bytearray(out.to_bytes())
    if header_edit:
        header_edit(raw)
    path.write_bytes(gzip.compress(bytes(raw)))


def _cli_score(folder: Path, out: Path):
    return runner.invoke(app, ["score", str(folder), "--out", str(out), "--no-report"])


def test_scaling_slope_zero_is_a_warning_and_the_study_is_usable(study, tmp_path):
    data = np.asanyarray(nib.load(study / "stir.nii.gz").dataobj)

    def zero_slope(raw):
        raw[112:116] = np.float32(0.0).tobytes()  # scl_slope

    _rewrite(study / "stir.nii.gz", data, zero_slope)
    result = ms.score_study(study)
    assert any(
        q.code == "header_scl_slope_zero" and q.file.endswith("stir.nii.gz") for q in result.qc
    )
    assert result.likelihood.call == "IMNM"


def test_negative_voxel_size_without_sform_is_refused(study, tmp_path):
    data = np.asanyarray(nib.load(study / "labels.nii.gz").dataobj)

    def negative(raw):
        raw[80:84] = np.float32(-1.0).tobytes()  # pixdim[1]
        raw[254:256] = np.int16(0).tobytes()  # sform_code
        raw[252:254] = np.int16(0).tobytes()  # qform_code

    _rewrite(study / "labels.nii.gz", data, negative)
    result = _cli_score(study, tmp_path / "out")
    assert result.exit_code == 2
    assert "invalid voxel size (-1.0," in result.output and "labels.nii.gz" in result.output
    assert not (tmp_path / "out" / "score.json").exists()


def test_huge_label_values(study):
    data = np.asanyarray(nib.load(study / "labels.nii.gz").dataobj).astype(np.int32)
    data[data == 3] = 2_000_000_000
    _rewrite(study / "labels.nii.gz", data)
    loaded = load_study(study)
    assert 2_000_000_000 in loaded.label_info
    assert any(q.code == "label_not_in_table" and "2000000000" in q.message for q in loaded.qc)
    table = ms.score_study(loaded).muscles
    assert (table["label"] == 2_000_000_000).sum() == 1

    data = data.astype(np.uint32)
    data[0, 0, 0] = 4_000_000_000
    _rewrite(study / "labels.nii.gz", data)
    with pytest.raises(StudyError, match="label value 4000000000 exceeds the largest supported"):
        load_study(study)


def test_single_labelled_voxel(study):
    data = np.zeros(nib.load(study / "labels.nii.gz").shape, np.int16)
    data[40, 40, 6] = 5
    _rewrite(study / "labels.nii.gz", data)
    result = ms.score_study(study)
    assert len(result.muscles) == 1
    assert result.likelihood.call == "indeterminate"
    codes = {q.code for q in result.qc}
    assert "edema_reference_missing" in codes
    assert "small_core_whole_mask_used" in result.muscles["qc_flags"].iloc[0]


def test_only_one_side(study):
    path = study / "labels.nii.gz"
    data = np.asanyarray(nib.load(path).dataobj).copy()
    data[: data.shape[0] // 2] = 0  # left half of the world (RAS+ x < 0) removed
    _rewrite(path, data)
    result = ms.score_study(study)
    assert set(result.muscles["side"]) == {"right"}
    assert result.muscles["lr_volume_ratio"].isna().all()
    # the muscles the stack holds whole on the remaining side (the others are partial_coverage)
    assert result.muscles["atrophy_index"].notna().sum() >= 7
    assert result.likelihood.call == "IMNM"


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_gzip_that_ends_early_fails_that_study_only(pristine, tmp_path, cut):
    root = tmp_path / "root"
    shutil.copytree(pristine, root / "good")
    bad = shutil.copytree(pristine, root / "bad")
    (bad / "study.json").write_text('{"study_id": "bad"}')
    (root / "good" / "study.json").write_text('{"study_id": "good"}')
    data = (bad / "water.nii.gz").read_bytes()
    (bad / "water.nii.gz").write_bytes(data[: int(len(data) * cut)])
    summary = ms.score_batch(root, tmp_path / "out", report=False)
    failures = summary.attrs["failures"]
    assert list(summary["study_id"]) == ["good"] and list(failures["study_id"]) == ["bad"]
    assert "water.nii.gz" in failures["error"][0] and "ends early" in failures["error"][0]
    assert not (tmp_path / "out" / "bad").exists()


def test_symlink_loops_and_unreadable_entries_in_a_batch_root(pristine, tmp_path, caplog):
    root = tmp_path / "root"
    shutil.copytree(pristine, root / "a")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "a" / "dangling.nii.gz").symlink_to(tmp_path / "nowhere.nii.gz")
    (root / "fifo-dir").mkdir()
    import os

    os.mkfifo(root / "fifo-dir" / "labels.nii.gz")  # a special file where a label map should be
    summary = ms.score_batch(root, tmp_path / "out", report=False)
    assert list(summary["study_id"]) == ["phantom-imnm-61"]
    assert summary.attrs["failures"].empty


def test_ten_thousand_empty_folders_are_no_studies_and_quiet(tmp_path, caplog):
    """Empty folders are not studies and are not worth a log line each (a batch root of 10,000
    empty folders must not flood the log). Speed is measured by benchmarks/, not here."""
    root = tmp_path / "root"
    for i in range(10_000):
        (root / f"d{i // 100}" / f"e{i}").mkdir(parents=True)
    caplog.set_level(logging.DEBUG, logger="mri_scoring")
    assert discover_studies(root) == []
    assert not caplog.records


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_label_table_parser_never_crashes(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("t") / "labels.tsv"
    path.write_text(text, encoding="utf-8")
    try:
        table = read_label_table(path)
    except StudyError as exc:
        assert "labels.tsv" in str(exc) and "\n" not in str(exc)
    else:
        assert all(isinstance(k, int) and k >= 0 and v for k, v in table.items())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 10**6), st.text(min_size=0, max_size=40)), max_size=20))
def test_label_table_rows_fuzzed(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("t") / "labels.tsv"
    body = "index\tname\n" + "".join(f"{i}\t{n}\n" for i, n in rows)
    path.write_text(body, encoding="utf-8")
    try:
        table = read_label_table(path)
    except StudyError as exc:
        assert re.search(r"line \d+|empty", str(exc))
    else:
        assert set(table) <= {i for i, _ in rows}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            ["study_id", "age_years", "sex", "antibody", "fat_fraction_scale", "other"]
        ),
        json_values,
        max_size=6,
    )
    | json_values
)
def test_study_json_handling_never_crashes(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("j") / "study.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    try:
        metadata = read_metadata(path)
    except StudyError as exc:
        assert "study.json" in str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(metadata, dict)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.4, 1.1, 2.0])
def test_sigkill_at_random_points_resumes_cleanly(tmp_path, delay):
    root = tmp_path / "root"
    for i in range(6):
        write_phantom(root / f"s{i}", ("imnm", "dm", "normal")[i % 3], seed=70 + i, shape=SHAPE)
    out = tmp_path / "out"
    command = batch_command(root, out)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    for score in out.glob("*/score.json"):  # every visible score.json is complete
        json.loads(score.read_text())
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert len(list(out.glob("*/score.json"))) == 6
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    summary = pd.read_csv(out / "summary.tsv", sep="\t")
    assert sorted(summary["study_id"]) == sorted(
        f"phantom-{p}-{70 + i}"
        for i, p in enumerate(("imnm", "dm", "normal", "imnm", "dm", "normal"))
    )


@pytest.mark.slow
def test_a_worker_that_dies_fails_only_its_study(pristine, tmp_path):
    root = tmp_path / "root"
    for name in ("ok-1", "crash-me", "ok-2", "ok-3"):
        shutil.copytree(pristine, root / name)
        (root / name / "study.json").write_text(json.dumps({"study_id": name}))
    studies = discover_studies(root)
    options = BatchOptions(
        settings=ms.config.load_settings(), template=ms.load_template(), report=False
    )
    outcomes: list[Outcome] = []
    out = tmp_path / "out"
    out.mkdir()
    run_processes(studies, out, options, 2, outcomes.append, task=crash_on_marked_study)
    by_id = {o.study_id: o for o in outcomes}
    assert sorted(by_id) == ["crash-me", "ok-1", "ok-2", "ok-3"]
    assert "worker process died" in by_id["crash-me"].error
    assert all(not by_id[k].error for k in ("ok-1", "ok-2", "ok-3"))
    assert not (out / "crash-me").exists()


def test_names_and_ids_are_escaped_in_the_report(study, tmp_path):
    text = (
        (study / "labels.tsv")
        .read_text()
        .replace("gracilis_left", "<script>alert(1)</script>_left")
    )
    (study / "labels.tsv").write_text(text)
    (study / "study.json").write_text(json.dumps({"study_id": "<img src=x onerror=alert(1)>"}))
    result = ms.score_study(study)
    out = result.save(tmp_path / "out")
    page = (out / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<img src=x" not in page
    assert re.fullmatch(r"[A-Za-z0-9._-]+", result.study_id)
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)  # nothing external


def test_no_unsafe_deserialisation_in_the_package():
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        assert "import pickle" not in source and "cPickle" not in source, path
        assert "allow_pickle=True" not in source, path
        assert not re.search(r"yaml\.(load|unsafe_load|full_load)\(", source), path
        assert "eval(" not in source.replace("np.eval", "") and "exec(" not in source, path
