"""Resume never serves old numbers: a study is reused only when its fingerprint is unchanged.

Regressions guarded: a batch re-run without ``--prior`` kept the old posteriors (score.json still
said 0.05); a study whose STIR image was replaced, or whose label table was fixed, was "resumed"
with its old numbers; ``--labels`` and ``--resample`` were not compared at all. Each test changes
one thing, re-runs the batch over the same output folder, and checks that exactly the affected
studies were scored again (the others' files keep their mtimes) and that the summary equals a
fresh run's with the same options.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import mri_scoring as ms
from mri_scoring import phantom
from mri_scoring.cli import app
from mri_scoring.config import config_dir, load_settings
from mri_scoring.pattern.templates import load_template

from .helpers import write_phantom

SHAPE = (64, 64, 12)
STUDIES = ("p0", "p1", "p2")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small studies (simple layout); tests copy them before changing anything."""
    root = tmp_path_factory.mktemp("resume-src")
    for i, pattern in enumerate(("imnm", "dm", "normal")):
        folder, _ = write_phantom(root / STUDIES[i], pattern, seed=60 + i, shape=SHAPE)
        (folder / "study.json").unlink()  # the folder name is the study id
    return root


@pytest.fixture
def cohort(source: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(source, tmp_path / "in"))


def _stamps(out: Path) -> dict[str, int]:
    return {s: (out / s / "score.json").stat().st_mtime_ns for s in STUDIES}


def _summary(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "summary.tsv", sep="\t").sort_values("study_id", ignore_index=True)


def _rerun(cohort: Path, out: Path, **options: object) -> tuple[set[str], set[str]]:
    """Re-run the batch into ``out``; (re-scored, reused) study ids, checked against mtimes."""
    before = _stamps(out)
    summary = ms.score_batch(cohort, out, **options)
    after = _stamps(out)
    reused = set(summary.attrs["reused"])
    rescored = {s for s in STUDIES if after[s] != before[s]}
    assert rescored == set(STUDIES) - reused, "a reused study's files were rewritten"
    return rescored, reused


def _assert_equals_fresh(cohort: Path, out: Path, tmp_path: Path, **options: object) -> None:
    fresh = tmp_path / "fresh"
    ms.score_batch(cohort, fresh, resume=False, **options)
    pd.testing.assert_frame_equal(_summary(out), _summary(fresh))


def test_prior_change_and_back_rescores_every_study(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ms.score_batch(cohort, out, report=False, prior=0.05)
    rescored, _ = _rerun(cohort, out, report=False)
    assert rescored == set(STUDIES)
    document = json.loads((out / "p0" / "score.json").read_text())
    assert document["prior_imnm"] == load_template().prior != 0.05
    _assert_equals_fresh(cohort, out, tmp_path, report=False)
    # unchanged options: everything reused, nothing rewritten
    rescored, reused = _rerun(cohort, out, report=False)
    assert rescored == set() and reused == set(STUDIES)


@pytest.mark.parametrize(
    "change",
    [
        {"labels": "tsv"},
        {"resample": True},
        {"settings": {"quantify": {"core_erosion_mm": 3.0}}},
        {"report": True},
    ],
    ids=["labels", "resample", "setting", "report"],
)
def test_option_change_rescores_every_study(cohort: Path, tmp_path: Path, change: dict) -> None:
    out = tmp_path / "out"
    ms.score_batch(cohort, out, report=False)
    options = {"report": False, **change}
    if "settings" in options:
        options["settings"] = load_settings(options["settings"])
    rescored, _ = _rerun(cohort, out, **options)
    assert rescored == set(STUDIES)
    _assert_equals_fresh(cohort, out, tmp_path, **options)


def test_template_change_rescores_every_study(cohort: Path, tmp_path: Path) -> None:
    """An edited template file (same name, other weights) is a different template."""
    original = config_dir() / "templates" / "imnm_vs_dm.yaml"
    edited = tmp_path / "imnm_vs_dm.yaml"
    text = original.read_text(encoding="utf-8")
    assert "prior_imnm:" in text
    lines = [
        "prior_imnm: 0.3" if line.startswith("prior_imnm:") else line for line in text.splitlines()
    ]
    edited.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    ms.score_batch(cohort, out, report=False)
    template = load_template(edited)
    rescored, _ = _rerun(cohort, out, report=False, template=template)
    assert rescored == set(STUDIES)
    _assert_equals_fresh(cohort, out, tmp_path, report=False, template=template)


def _replace_stir(folder: Path) -> None:
    """The STIR image of one study replaced: the vasti twice as bright (new edema, same grid).

    A uniform scale would not do: edema is measured against the study's own normal muscle, so
    a brighter image with the same contrast scores the same.
    """
    import nibabel as nib

    path = folder / "stir.nii.gz"
    img = nib.load(path)
    data = np.asanyarray(img.dataobj).astype(np.float32)
    labels = np.asanyarray(nib.load(folder / "labels.nii.gz").dataobj)
    table = pd.read_csv(folder / "labels.tsv", sep="\t")
    vasti = table.loc[table["name"].str.startswith("vastus"), "index"].to_numpy()
    assert len(vasti) >= 4
    data[np.isin(labels, vasti)] *= 2.0
    nib.save(nib.Nifti1Image(data, img.affine, img.header), path)


def _fix_label_table(folder: Path) -> None:
    """A label table 'fixed' by the user: two muscles' names swapped."""
    path = folder / "labels.tsv"
    rows = path.read_text(encoding="utf-8").splitlines()
    names = {r.split("\t")[1] for r in rows[1:]}
    a, b = sorted(n for n in names if "gracilis" in n or "sartorius" in n)[:2]
    swapped = [r.replace(a, "\0").replace(b, a).replace("\0", b) for r in rows]
    path.write_text("\n".join(swapped) + "\n", encoding="utf-8")


def _add_metadata(folder: Path) -> None:
    """A study.json added (age and sex change the fat norms, so the outputs can change)."""
    (folder / "study.json").write_text(json.dumps({"age_years": 80, "sex": "F"}), "utf-8")


@pytest.mark.parametrize(
    "edit", [_replace_stir, _fix_label_table, _add_metadata], ids=["stir", "table", "json"]
)
def test_one_changed_input_rescores_only_its_study(cohort: Path, tmp_path: Path, edit) -> None:
    out = tmp_path / "out"
    ms.score_batch(cohort, out, report=False)
    edit(cohort / "p1")
    rescored, reused = _rerun(cohort, out, report=False)
    assert rescored == {"p1"} and reused == {"p0", "p2"}
    _assert_equals_fresh(cohort, out, tmp_path, report=False)


def test_replaced_stir_changes_the_numbers_not_only_the_mtime(cohort: Path, tmp_path: Path):
    """The re-scored study's edema differs from the stale one (the old bug served it again)."""
    out = tmp_path / "out"
    ms.score_batch(cohort, out, report=False)
    stale = pd.read_csv(out / "p1" / "muscles.tsv", sep="\t")["edema_fraction"]
    _replace_stir(cohort / "p1")
    ms.score_batch(cohort, out, report=False)
    new = pd.read_csv(out / "p1" / "muscles.tsv", sep="\t")["edema_fraction"]
    assert not np.allclose(stale.fillna(-1), new.fillna(-1))
    document = json.loads((out / "p1" / "score.json").read_text())
    assert document["fingerprint"]["inputs"]["stir.nii.gz"] == document["inputs"]["stir"]["sha256"]


def test_a_study_scored_before_fingerprints_is_scored_again(cohort: Path, tmp_path: Path):
    """A score.json without a fingerprint (an older version's) proves nothing: re-score."""
    out = tmp_path / "out"
    ms.score_batch(cohort, out, report=False)
    path = out / "p2" / "score.json"
    document = json.loads(path.read_text())
    del document["fingerprint"]
    path.write_text(json.dumps(document))
    rescored, _ = _rerun(cohort, out, report=False)
    assert rescored == {"p2"}


def test_switching_report_off_removes_the_old_report(cohort: Path, tmp_path: Path) -> None:
    """No stale file beside fresh numbers: a report from the earlier run is removed."""
    out = tmp_path / "out"
    ms.score_batch(cohort, out, report=True)
    assert (out / "p0" / "report.html").is_file()
    ms.score_batch(cohort, out, report=False)
    assert not (out / "p0" / "report.html").exists()


def test_cli_force_rescores_and_the_last_line_counts(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(app, ["batch", str(cohort), "--out", str(out), "--no-report"])
    assert first.exit_code == 0, first.output
    _replace_stir(cohort / "p0")
    second = runner.invoke(app, ["batch", str(cohort), "--out", str(out), "--no-report"])
    assert second.output.strip().splitlines()[-1].startswith("1 scored, 2 reused, 0 failed")
    forced = runner.invoke(app, ["batch", str(cohort), "--out", str(out), "--no-report",
                                 "--force"])  # fmt: skip
    assert forced.output.strip().splitlines()[-1].startswith("3 scored, 0 reused, 0 failed")


def test_bids_sessions_file_is_part_of_the_fingerprint(tmp_path: Path) -> None:
    """A corrected session date (sub-*_sessions.tsv) changes score.json's session: re-score."""
    root = tmp_path / "bids"
    study = phantom.make_study("imnm", seed=70, shape=SHAPE)
    phantom.write_study(study, root, layout="bids", subject="09", session="01")
    sessions = root / "sub-09" / "sub-09_sessions.tsv"
    sessions.write_text("session_id\tacq_time\nses-01\t2024-01-02\n", encoding="utf-8")
    out = tmp_path / "out"
    ms.score_batch(root, out, report=False)
    (folder,) = [p.parent for p in out.glob("*/score.json")]
    stamp = (folder / "score.json").stat().st_mtime_ns
    sessions.write_text("session_id\tacq_time\nses-01\t2024-03-04\n", encoding="utf-8")
    summary = ms.score_batch(root, out, report=False)
    assert summary.attrs["reused"] == []
    assert (folder / "score.json").stat().st_mtime_ns != stamp
    assert json.loads((folder / "score.json").read_text())["session"]["date"] == "2024-03-04"


def test_every_option_but_the_runtime_ones_is_in_the_fingerprint() -> None:
    """An option added to BatchOptions later is compared without anyone remembering to: each
    field changed on its own changes the fingerprint's options, except the run-time ones."""
    import dataclasses

    from mri_scoring.batch import RUNTIME_ONLY, BatchOptions

    template = load_template()
    base = BatchOptions(settings=load_settings(), template=template, report=True)
    other = {
        "settings": load_settings({"quantify": {"core_erosion_mm": 3.0}}),
        "template": dataclasses.replace(template, sha256="0" * 64),
        "prior": 0.123,
        "population": "juvenile",
        "threads": 3,
        "further": (load_template("imnm_vs_dystrophy"),),  # the rest of the panel (issue 29)
    }
    for item in dataclasses.fields(BatchOptions):
        value = getattr(base, item.name)
        if item.name in other:
            changed = other[item.name]
        elif isinstance(value, bool):
            changed = not value
        elif isinstance(value, str):
            changed = value + "-other"
        else:
            raise AssertionError(f"no variant for BatchOptions.{item.name}: add one here")
        variant = dataclasses.replace(base, **{item.name: changed})
        same = variant.output_options() == base.output_options()
        assert same == (item.name in RUNTIME_ONLY), item.name
