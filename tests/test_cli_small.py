"""Small command-line behaviours a new user meets first, each with the wrong answer it guards."""

from __future__ import annotations

import logging
import subprocess
import sys

from typer.testing import CliRunner

from mri_scoring.cli import app
from mri_scoring.config import sample_data_dir
from tests.helpers import write_phantom

runner = CliRunner()
SHAPE = (64, 64, 10)


def test_missing_study_path_says_does_not_exist(tmp_path):
    """Regression: a path that does not exist was reported as "is not a study folder"."""
    missing = tmp_path / "no-such-study"
    for verb in ("score", "batch"):
        result = runner.invoke(app, [verb, str(missing), "--out", str(tmp_path / "o")])
        assert result.exit_code == 2, result.output
        assert "does not exist" in result.output and "not a study folder" not in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_out_that_is_a_file_fails_before_any_work(tmp_path):
    """Regression: ``score --out FILE`` raised FileExistsError after all the computing."""
    target = tmp_path / "taken"
    target.write_text("not a folder")
    study = sample_data_dir() / "sample-imnm"
    for args in (["score", str(study)], ["batch", str(sample_data_dir())], ["demo"]):
        result = runner.invoke(app, [*args, "--out", str(target)])
        assert result.exit_code == 2, result.output
        assert "exists and is not a folder" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert "Traceback" not in result.output
    assert target.read_text() == "not a folder"


def test_verbose_flag_works_after_the_verb(tmp_path):
    """Regression: ``batch ROOT -v`` was refused ("No such option: -v")."""
    for verb in (["-v", "templates"], ["templates", "-v"], ["templates", "--quiet"]):
        result = runner.invoke(app, verb)
        assert result.exit_code == 0, (verb, result.output)
        assert "template" in result.output
    runner.invoke(app, ["templates", "-v"])
    assert logging.getLogger("mri_scoring").getEffectiveLevel() == logging.DEBUG
    runner.invoke(app, ["templates"])  # back to the default level for the other tests
    assert logging.getLogger("mri_scoring").getEffectiveLevel() == logging.WARNING


def test_batch_on_a_folder_without_studies_fails_with_a_hint(tmp_path):
    """Regression: an empty (or wrong) ROOT exited 0 with an empty summary and no word."""
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["batch", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1, result.output
    assert "no study found" in result.output and "label map" in result.output


def test_score_warnings_are_not_prefixed_twice(tmp_path):
    """Regression: QC warnings printed as "WARNING: warning: code: ..."."""
    folder, _ = write_phantom(tmp_path / "s", "imnm", seed=5, shape=SHAPE)
    (folder / "fat.nii.gz").unlink()  # water without fat: a dixon_incomplete warning
    command = [sys.executable, "-m", "mri_scoring.cli", "score", str(folder), "--out",
               str(tmp_path / "o"), "--no-report"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(line.startswith("WARNING: dixon_incomplete: ") for line in lines), lines
    assert not any("warning: warning" in line.lower() for line in lines), lines


def test_batch_ends_with_scored_reused_failed_counts(tmp_path):
    """The last line counts scored, reused and failed studies; regression: reused studies were
    counted as scored, so a resumed run could not be told from a fresh one."""
    root = tmp_path / "root"
    for i in range(2):
        write_phantom(root / f"s{i}", "imnm", seed=60 + i, shape=SHAPE)
    command = ["batch", str(root), "--out", str(tmp_path / "o"), "--no-report"]
    first = runner.invoke(app, command)
    assert first.exit_code == 0, first.output
    assert first.output.strip().splitlines()[-1].startswith("2 scored, 0 reused, 0 failed")
    write_phantom(root / "s2", "dm", seed=62, shape=SHAPE)
    second = runner.invoke(app, command)
    assert second.output.strip().splitlines()[-1].startswith("1 scored, 2 reused, 0 failed")
    forced = runner.invoke(app, [*command, "--force"])
    assert forced.output.strip().splitlines()[-1].startswith("3 scored, 0 reused, 0 failed")


def test_demo_says_which_file_to_open(tmp_path):
    """Regression: the demo ended on a temporary folder's name without saying what to open."""
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert str(tmp_path / "demo" / "index.html") in last and last.startswith("Open ")
    assert (tmp_path / "demo" / "index.html").is_file()
    assert "report.html" in result.output and "score.json" in result.output
    # sample-normal's evidence is a tiny negative: "-0.00" would read as evidence for DM
    assert "-0.00" not in result.output and "(+0.00)" in result.output


def test_score_line_never_prints_minus_zero(tmp_path):
    """Regression: ``score`` printed sample-normal's log10 LR (-0.0004) as "log10LR=-0.00"."""
    out = tmp_path / "o"
    result = runner.invoke(app, ["score", str(sample_data_dir() / "sample-normal"), "--out",
                                 str(out), "--no-report"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "log10LR=+0.00" in result.output and "-0.00" not in result.output


def test_missing_path_in_the_api_says_does_not_exist(tmp_path):
    """Regression: ``load_study`` on a path that does not exist said "is not a study folder"."""
    import pytest

    import mri_scoring as ms

    with pytest.raises(ms.MriScoringError, match="does not exist"):
        ms.load_study(tmp_path / "nope")


def test_long_label_lists_end_with_an_ellipsis(tmp_path):
    """Regression: a list of unknown label values stopped at 12 with nothing saying more exist."""
    import nibabel as nib
    import numpy as np
    import pytest

    import mri_scoring as ms

    folder, _ = write_phantom(tmp_path / "s", "imnm", seed=7, shape=SHAPE)
    image = nib.load(folder / "labels.nii.gz")
    codes = np.arange(2000, 2020).repeat(SHAPE[0] * SHAPE[1] * SHAPE[2] // 20)
    coded = codes.reshape(SHAPE).astype(np.int16)
    nib.save(nib.Nifti1Image(coded, image.affine), folder / "labels.nii.gz")
    (folder / "labels.tsv").unlink()
    with pytest.raises(ms.MriScoringError) as info:
        ms.load_study(folder)
    message = str(info.value)
    assert "2011, … (20 in all)" in message and "2012" not in message, message


def test_explicit_scheme_warns_that_the_label_table_is_ignored(tmp_path):
    """``--labels musclesense`` on a study with a labels.tsv: the named scheme is used (the user
    said so) and a warning says the table was set aside and how it disagrees; regression: the
    table was ignored without a word."""
    import mri_scoring as ms

    folder, _ = write_phantom(tmp_path / "s", "imnm", seed=8, shape=SHAPE)
    study = ms.load_study(folder, labels="musclesense")
    [finding] = [q for q in study.qc if q.code == "label_table_ignored"]
    assert finding.level == "warning" and finding.file.endswith("labels.tsv")
    assert "--labels musclesense" in finding.message and "differently" in finding.message
    default = ms.load_study(folder)
    assert not [q for q in default.qc if q.code == "label_table_ignored"]


def test_maps_and_view_options_reach_the_outputs(tmp_path):
    """--maps writes the voxel maps (score and batch); --view neurological turns the panels
    (the report says so and puts L on the viewer's left); without it the view is radiological.
    Regression guard: options accepted by the CLI but dropped before the writer."""
    folder, _ = write_phantom(tmp_path / "in" / "s1", "dm", seed=5, shape=SHAPE)
    names = ("core", "edema", "fat_fraction", "fascial_edema", "shell")
    result = runner.invoke(app, ["score", str(folder), "--out", str(tmp_path / "a"), "--maps",
                                 "--view", "neurological"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "a" / "maps").iterdir()) == sorted(
        f"{n}.nii.gz" for n in names)  # fmt: skip
    page = (tmp_path / "a" / "report.html").read_text(encoding="utf-8")
    assert "Neurological view" in page and "<b class='mk left'>L</b>" in page
    result = runner.invoke(app, ["batch", str(tmp_path / "in"), "--out", str(tmp_path / "b"),
                                 "--maps"])  # fmt: skip
    assert result.exit_code == 0, result.output
    study_id = next(p.name for p in (tmp_path / "b").iterdir() if (p / "maps").is_dir())
    page = (tmp_path / "b" / study_id / "report.html").read_text(encoding="utf-8")
    assert "Radiological view" in page and "<b class='mk left'>R</b>" in page
    result = runner.invoke(app, ["score", str(folder), "--out", str(tmp_path / "c")])
    assert result.exit_code == 0 and not (tmp_path / "c" / "maps").exists()
