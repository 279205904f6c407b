"""Reports: sections, embedded figures, no external references, and every input combination."""

from __future__ import annotations

import re

import pytest

import mri_scoring as ms
from mri_scoring import phantom

SHAPE = (96, 96, 16)
SECTIONS = [
    "Result",
    "Evidence per feature",
    "Per-muscle heat map",
    "Slices with the segmentation",
    "Per-muscle measures",
    "Inputs",
]


def _report(study):
    return ms.score_study(study)


def _html(result, tmp_path):
    out = result.save(tmp_path / result.study_id)
    return (out / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "roles",
    [
        ("fat", "water", "stir"),
        ("ff",),
        ("t2map",),
        ("ff", "t2map"),
        ("t1w",),
    ],
)
def test_report_sections_and_embedded_figures(tmp_path, roles):
    study = phantom.make_study("imnm", seed=80, shape=SHAPE, roles=roles)
    page = _html(_report(study), tmp_path)
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in page, section
    figures = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', page)
    assert len(figures) >= 3  # evidence, heat map, slices
    assert "Research software" in page and "Not a diagnostic device" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    assert "<script" not in page.lower() and "<link" not in page.lower()


def test_unavailable_features_are_shown_with_why(tmp_path):
    study = phantom.make_study("dm", seed=81, shape=SHAPE, roles=("ff",))
    page = _html(_report(study), tmp_path)
    assert "class=na" in page and "input image missing" in page


def test_qc_warnings_come_first(tmp_path):
    study = phantom.make_study("normal", seed=82, shape=SHAPE, roles=("t1w",))
    page = _html(_report(study), tmp_path)
    assert page.index("Quality-control warnings") < page.index("<h2>Result</h2>")
    assert "ff_semiquantitative" in page


def test_cohort_index_and_heatmap(tmp_path):
    root = tmp_path / "root"
    for i, pattern in enumerate(("imnm", "dm", "normal", "imnm")):
        study = phantom.make_study(pattern, seed=83 + i, shape=(64, 64, 10))
        phantom.write_study(study, root / f"s{i}")
    ms.score_batch(root, tmp_path / "out")
    index = (tmp_path / "out" / "index.html").read_text()
    assert index.count("/report.html'") == 4 and "cohort_heatmap.png" in index
    png = (tmp_path / "out" / "cohort_heatmap.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_no_report_option_skips_reports(tmp_path):
    study = phantom.make_study("dm", seed=87, shape=(64, 64, 10))
    folder = phantom.write_study(study, tmp_path / "in")
    from typer.testing import CliRunner

    from mri_scoring.cli import app

    result = CliRunner().invoke(
        app, ["score", str(folder), "--out", str(tmp_path / "o"), "--no-report"]
    )
    assert result.exit_code == 0
    assert not (tmp_path / "o" / "report.html").exists()
