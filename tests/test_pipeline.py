"""Pipeline, batch, CLI and notebook: outputs as DESIGN §3-5 say, resumable, failures isolated."""

from __future__ import annotations

import html
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import mri_scoring as ms
from mri_scoring import phantom
from mri_scoring.cli import app
from mri_scoring.config import sample_data_dir

from .helpers import batch_command, write_phantom

SHAPE = (96, 96, 16)
MUSCLE_CONTRACT = [
    "study_id",
    "label",
    "muscle",
    "side",
    "group",
    "voxels",
    "volume_ml",
    "ff_mean",
    "ff_median",
    "ff_p90",
    "mercuri_grade",
    "edema_fraction",
    "edema_grade",
    "fascial_edema_fraction",
    "atrophy_index",
    "qc_flags",
]
SCORE_CONTRACT = [
    "study_id",
    "template",
    "prior_imnm",
    "p_imnm",
    "p_imnm_interval",
    "p_dm",
    "log10_likelihood_ratio",
    "call",
    "features",
    "qc",
    "inputs",
    "software",
    "config_sha256",
]
FEATURE_CONTRACT = [
    "id",
    "description",
    "available",
    "value",
    "degree",
    "log10_lr_contribution",
    "source",
]
runner = CliRunner()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Four small studies: two simple-layout, two BIDS sessions."""
    root = tmp_path_factory.mktemp("cohort")
    for i, pattern in enumerate(("imnm", "dm")):
        folder, _ = write_phantom(root / f"site/p{i}", pattern, seed=30 + i, shape=SHAPE)
        (folder / "study.json").unlink()  # the folder name is the study id
    for session, pattern in (("01", "imnm"), ("02", "normal")):
        study = phantom.make_study(pattern, seed=40 + int(session), shape=SHAPE)
        phantom.write_study(study, root / "bids", layout="bids", subject="07", session=session)
    return root


def test_score_study_outputs_follow_the_contract(tmp_path):
    folder, _ = write_phantom(tmp_path / "in", "imnm", seed=31, shape=SHAPE)
    result = ms.score_study(ms.load_study(folder))
    out = result.save(tmp_path / "out")
    table = pd.read_csv(out / "muscles.tsv", sep="\t")
    # Every contract column is present, in the contract's order (extra columns may sit between
    # them); the old check "prefix == contract or subset" let any order pass.
    assert [c for c in table.columns if c in MUSCLE_CONTRACT] == MUSCLE_CONTRACT
    assert table["ff_median"].between(0, 1).all()
    document = json.loads((out / "score.json").read_text())
    assert set(SCORE_CONTRACT) <= set(document)
    for feature in document["features"]:
        assert set(FEATURE_CONTRACT) <= set(feature)
    assert document["inputs"]["labels"]["file"] == "labels.nii.gz"
    assert len(document["inputs"]["fat"]["sha256"]) == 64
    assert document["call"] in ("IMNM", "DM", "indeterminate")
    assert (out / "report.html").is_file()
    groups = pd.read_csv(out / "groups.tsv", sep="\t").set_index("group")
    assert groups.loc["hamstrings", "ff_median"] > groups.loc["quadriceps", "ff_median"]
    pooled = pd.read_csv(out / "muscles_pooled.tsv", sep="\t")
    assert pooled["sides"].eq("left,right").sum() >= 20
    # Missing measures are empty cells, not zeros.
    text = (out / "muscles.tsv").read_text().splitlines()
    marrow = next(line for line in text if "femur_marrow" in line).split("\t")
    assert marrow[list(table.columns).index("edema_fraction")] == ""


def test_rerun_gives_identical_files(tmp_path):
    folder, _ = write_phantom(tmp_path / "in", "dm", seed=32, shape=SHAPE)
    for name in ("a", "b"):
        ms.score_study(folder).save(tmp_path / name, report=False)
    for name in ("muscles.tsv", "score.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_batch_summary_matches_per_study_files(cohort, tmp_path):
    summary = ms.score_batch(cohort, tmp_path / "out", report=False)
    assert list(summary["study_id"]) == ["p0", "p1", "sub-07_ses-01", "sub-07_ses-02"]
    template = ms.load_template()
    # Contract (issue 29): the first template's columns, then each further template's four.
    assert list(summary.columns) == [
        "study_id",
        "p_imnm",
        "p_imnm_lo",
        "p_imnm_hi",
        "log10_likelihood_ratio",
        "call",
        "qc",
        *[f.id for f in template.features],
        "imnm_vs_dystrophy_p_imnm",
        "imnm_vs_dystrophy_p_imnm_lo",
        "imnm_vs_dystrophy_p_imnm_hi",
        "imnm_vs_dystrophy_call",
        "imnm_vs_ass_p_imnm",
        "imnm_vs_ass_p_imnm_lo",
        "imnm_vs_ass_p_imnm_hi",
        "imnm_vs_ass_call",
    ]
    on_disk = pd.read_csv(tmp_path / "out" / "summary.tsv", sep="\t")
    for _, row in on_disk.iterrows():
        document = json.loads((tmp_path / "out" / row["study_id"] / "score.json").read_text())
        assert row["p_imnm"] == pytest.approx(document["p_imnm"], rel=1e-5)
        low, high = document["p_imnm_interval"]
        assert row["p_imnm_lo"] == pytest.approx(low, rel=1e-5)
        assert row["p_imnm_hi"] == pytest.approx(high, rel=1e-5)
        assert low <= document["p_imnm"] <= high
        assert row["call"] == document["call"]
        for feature in document["features"]:
            if feature["available"]:
                assert row[feature["id"]] == pytest.approx(feature["degree"], abs=1e-6)
        warnings = [q["code"] for q in document["qc"] if q["level"] == "warning"]
        assert (row["qc"] if isinstance(row["qc"], str) else "") == ";".join(
            dict.fromkeys(warnings))
    assert pd.read_csv(tmp_path / "out" / "failures.tsv", sep="\t").empty


def test_batch_long_tables_stack_every_study(cohort, tmp_path):
    """muscles_long.tsv is every study's muscles.tsv stacked (study_id first), features_long.tsv
    one row per study and feature with the values of score.json; the per-study pooled and group
    tables carry study_id so that they too can be stacked."""
    out = tmp_path / "out"
    summary = ms.score_batch(cohort, out, report=False)
    long = pd.read_csv(out / "muscles_long.tsv", sep="\t")
    assert long.columns[0] == "study_id"
    parts = [pd.read_csv(out / i / "muscles.tsv", sep="\t") for i in summary["study_id"]]
    stacked = pd.concat(parts, ignore_index=True)
    assert len(long) == len(stacked)
    assert list(long["study_id"].unique()) == list(summary["study_id"])
    pd.testing.assert_frame_equal(long[stacked.columns], stacked, check_dtype=False)
    features = pd.read_csv(out / "features_long.tsv", sep="\t")
    assert list(features.columns) == ["study_id", "template", "feature", "available", "value",
                                      "degree", "log10_lr_contribution"]  # fmt: skip
    panel = ms.load_panel()
    assert len(features) == len(summary) * sum(len(t.features) for t in panel)
    features = features[features["template"] == "imnm_vs_dm"]
    assert features["available"].dtype == bool  # written true/false, read back as booleans
    for _, row in features.sample(10, random_state=0).iterrows():
        document = json.loads((out / row["study_id"] / "score.json").read_text())
        feature = next(f for f in document["features"] if f["id"] == row["feature"])
        assert bool(row["available"]) == feature["available"]
        if feature["available"]:
            assert row["degree"] == pytest.approx(feature["degree"], rel=1e-5)
            assert row["log10_lr_contribution"] == pytest.approx(
                feature["log10_lr_contribution"], rel=1e-5, abs=1e-9)
    for name in ("groups.tsv", "muscles_pooled.tsv"):
        table = pd.read_csv(out / "p0" / name, sep="\t")
        assert table.columns[0] == "study_id" and set(table["study_id"]) == {"p0"}


def test_one_broken_study_fails_alone_with_exit_1(cohort, tmp_path):
    root = shutil.copytree(cohort, tmp_path / "root")
    (root / "site" / "p1" / "labels.nii.gz").write_bytes(b"\x1f\x8b broken")
    for role in ("fat", "water", "ff", "stir", "t2map"):  # p0 T1w-only: a QC warning to list
        (root / "site" / "p0" / f"{role}.nii.gz").unlink()
    result = runner.invoke(app, ["batch", str(root), "--out", str(tmp_path / "out")])  # + index
    assert result.exit_code == 1, result.output
    failures = pd.read_csv(tmp_path / "out" / "failures.tsv", sep="\t")
    assert list(failures["study_id"]) == ["p1"]
    assert "labels.nii.gz" in failures["error"][0] and "gzip" in failures["error"][0]
    summary = pd.read_csv(tmp_path / "out" / "summary.tsv", sep="\t")
    assert list(summary["study_id"]) == ["p0", "sub-07_ses-01", "sub-07_ses-02"]
    assert not (tmp_path / "out" / "p1").exists()
    # index.html lists the failure with its reason (not only a count) and each study's QC.
    index = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    failed = index[index.index("<h2>Failed studies (1)</h2>") :]
    assert "<td class=l>p1</td>" in failed
    assert html.escape(failures["error"][0]) in failed
    assert "<th class=l>QC warnings</th>" in index
    assert "ff_semiquantitative" in summary.set_index("study_id").loc["p0", "qc"]
    for _, row in summary.iterrows():
        qc = row["qc"] if isinstance(row["qc"], str) and row["qc"] else "none"
        study_row = index[index.index(f">{row['study_id']}<") :].split("</tr>")[0]
        assert f"<td class=l>{html.escape(qc.replace(';', '; '))}</td>" in study_row


@pytest.mark.slow
def test_sigkill_midway_then_resume_scores_each_study_once(tmp_path):
    root = tmp_path / "root"
    for i in range(8):
        write_phantom(root / f"s{i}", ("imnm", "dm")[i % 2], seed=50 + i, shape=SHAPE)
    reference = tmp_path / "reference"
    ms.score_batch(root, reference, report=False)
    out = tmp_path / "out"
    command = batch_command(root, out, "--no-report")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*/score.json"))) < 3:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/score.json")}
    assert 3 <= len(done_before) < 8
    assert not (out / "summary.tsv").exists()
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    done_after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/score.json")}
    assert len(done_after) == 8
    assert all(done_after[k] == v for k, v in done_before.items())  # not scored again
    assert not list(out.rglob("*.tmp"))
    assert (out / "summary.tsv").read_bytes() == (reference / "summary.tsv").read_bytes()
    for study in done_after:
        assert (out / study / "score.json").read_bytes() == (
            reference / study / "score.json"
        ).read_bytes()


def test_resume_skips_complete_studies_and_redoes_changed_settings(cohort, tmp_path):
    out = tmp_path / "out"
    ms.score_batch(cohort, out, report=False)
    stamp = (out / "p0" / "score.json").stat().st_mtime_ns
    ms.score_batch(cohort, out, report=False)
    assert (out / "p0" / "score.json").stat().st_mtime_ns == stamp
    changed = ms.config.load_settings({"quantify": {"core_erosion_mm": 3.0}})
    ms.score_batch(cohort, out, report=False, settings=changed)
    assert (out / "p0" / "score.json").stat().st_mtime_ns != stamp


def test_resumed_batch_draws_the_same_cohort_heatmap(cohort, tmp_path):
    """Resumed studies feed the cohort figure from their saved tables: the same picture as a
    full run (colours within one level: the tables are written with finite precision)."""
    import base64
    import io
    import re

    from PIL import Image

    def panels(out):
        svg = (out / "cohort_heatmap.svg").read_text()
        uris = re.findall(r'href="data:image/png;base64,([A-Za-z0-9+/=]+)"', svg)
        return [np.asarray(Image.open(io.BytesIO(base64.b64decode(u))), int) for u in uris]

    full, resumed = tmp_path / "full", tmp_path / "resumed"
    ms.score_batch(cohort, full)
    shutil.copytree(full, resumed)
    shutil.rmtree(resumed / "p1")  # scored again; the other three are read back
    ms.score_batch(cohort, resumed)
    expected, got = panels(full), panels(resumed)
    assert [p.shape for p in got] == [p.shape for p in expected]
    assert len(got) == 6  # a call bar per template of the default panel, FF, edema, fascial
    for a, b in zip(expected, got, strict=True):
        assert np.abs(a - b).max() <= 1


def test_process_pool_matches_serial(cohort, tmp_path):
    serial = ms.score_batch(cohort, tmp_path / "serial", report=False)
    pooled = ms.score_batch(cohort, tmp_path / "pooled", report=False, workers=2)
    pd.testing.assert_frame_equal(serial, pooled)


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_summary(cohort, tmp_path):
    pytest.importorskip("dask.distributed")
    ms.score_batch(cohort, tmp_path / "processes", report=False, workers=2)
    ms.score_batch(cohort, tmp_path / "dask", report=False, workers=2, engine="dask")
    assert (tmp_path / "dask" / "summary.tsv").read_bytes() == (
        tmp_path / "processes" / "summary.tsv"
    ).read_bytes()


def test_study_ids_are_sanitised_and_never_escape_out(tmp_path):
    folder, _ = write_phantom(tmp_path / "root" / "x", "normal", seed=33, shape=(64, 64, 10))
    (folder / "study.json").write_text(json.dumps({"study_id": "../../../escaped"}))
    out = tmp_path / "deep" / "out"
    ms.score_batch(tmp_path / "root", out, report=False)
    assert (out / "escaped" / "score.json").is_file()
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "deep" / "escaped").exists()


def test_out_inside_a_study_folder_is_refused(tmp_path):
    folder, _ = write_phantom(tmp_path / "root" / "x", "normal", seed=34, shape=(64, 64, 10))
    with pytest.raises(ms.MriScoringError, match="never written into input folders"):
        ms.score_batch(tmp_path / "root", folder / "out", report=False)


def test_cli_usage_errors_exit_2(tmp_path):
    assert runner.invoke(app, ["batch"]).exit_code == 2
    assert runner.invoke(app, ["score", str(tmp_path)]).exit_code == 2  # --out missing
    assert runner.invoke(app, ["batch", str(tmp_path / "nope"), "--out", "x"]).exit_code == 2
    assert runner.invoke(app, ["phantom", str(tmp_path), "--pattern", "ibm"]).exit_code == 2
    for verb in ("score", "batch", "phantom", "templates", "demo"):
        assert runner.invoke(app, [verb, "--help"]).exit_code == 0


def test_cli_score_bad_study_is_one_line_exit_2(tmp_path):
    result = runner.invoke(app, ["score", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "no label map" in result.output and "Traceback" not in result.output


def test_cli_score_and_templates(tmp_path):
    study = sample_data_dir() / "sample-imnm"
    result = runner.invoke(
        app, ["score", str(study), "--out", str(tmp_path / "o"), "--no-report", "--prior", "0.32"]
    )
    assert result.exit_code == 0, result.output
    assert "IMNM" in result.output
    document = json.loads((tmp_path / "o" / "score.json").read_text())
    assert document["prior_imnm"] == 0.32 and not (tmp_path / "o" / "report.html").exists()
    listing = runner.invoke(app, ["templates"])
    assert listing.exit_code == 0
    assert "adductor_brevis_edema" in listing.output and "source:" in listing.output


def test_cli_phantom_writes_studies_with_truth(tmp_path):
    result = runner.invoke(
        app,
        [
            "phantom",
            str(tmp_path),
            "--pattern",
            "dm",
            "--n",
            "2",
            "--seed",
            "3",
            "--shape",
            "48",
            "48",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phantom-dm-3", "phantom-dm-4"]
    assert json.loads((tmp_path / "phantom-dm-3" / "truth.json").read_text())["pattern"] == "dm"


def test_demo_scores_the_sample_data(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = {
        line.split()[0]: line.split()[1]
        for line in result.output.splitlines()
        if line.startswith(("sample-", "sub-"))
    }
    assert lines == {
        "sample-imnm": "IMNM",
        "sample-dm": "DM",
        "sample-normal": "indeterminate",
        "sample-ffmap-t2map-dm": "DM",
        "sample-child-imnm": "IMNM",
        "sample-musclemap-imnm": "IMNM",
        "sub-imnm02_ses-01": "IMNM",
    }
    assert (tmp_path / "index.html").is_file() and (tmp_path / "cohort_heatmap.svg").is_file()


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    path = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("IMNM" in json.dumps(o) for o in outputs)


def test_outputs_never_written_into_inputs(cohort, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in cohort.rglob("*") if p.is_file()}
    ms.score_batch(cohort, tmp_path / "out", report=False)
    after = {p: p.stat().st_mtime_ns for p in cohort.rglob("*") if p.is_file()}
    assert before == after
