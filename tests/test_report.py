"""Reports: sections, embedded figures, no external references, and every input combination."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

import mri_scoring as ms
from mri_scoring import phantom
from mri_scoring.render import MAGMA_R, grey_panel, png_bytes, ramp_rgb
from mri_scoring.report import OUTLINE_RGB, evidence_figure, muscle_heatmap_figure

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
    svgs = re.findall(r"<svg role=\"img\"[^>]*><title>([^<]*)</title>", page)
    assert svgs == ["log10 likelihood-ratio contribution per feature", "per-muscle heat map"]
    panels = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]{200,})"', page)
    assert len(panels) == (6 if len(roles) > 1 else 3)  # FF row and STIR/T2 row, or one row
    for panel in panels:
        image = np.asarray(Image.open(io.BytesIO(base64.b64decode(panel))))
        assert image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 200
        outline = np.all(image == OUTLINE_RGB, axis=2)
        assert 0.002 < outline.mean() < 0.3  # segmentation outlines drawn, image not swamped
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


def test_png_encoder_round_trips_through_an_independent_decoder():
    rng = np.random.default_rng(5)
    for shape in ((1, 1, 3), (7, 13, 3), (300, 280, 3)):
        rgb = rng.integers(0, 256, shape, dtype=np.uint8)
        decoded = np.asarray(Image.open(io.BytesIO(png_bytes(rgb))).convert("RGB"))
        np.testing.assert_array_equal(decoded, rgb)
    with pytest.raises(ValueError, match="expected an"):
        png_bytes(np.zeros((4, 4), np.uint8))


def test_panel_orientation_scaling_and_zoom():
    """Anterior (high y) at the top, world x to the right, grey from low to high, outline on top."""
    image = np.zeros((4, 3), np.float32)  # (x, y)
    image[0, 2] = 10.0  # lowest x, highest y: top-left
    image[3, 0] = 5.0  # highest x, lowest y: bottom-right, half grey
    outline = np.zeros((4, 3), bool)
    outline[1, 1] = True
    rgb = grey_panel(image, 0.0, 10.0, outline, (0, 255, 0), zoom=2)
    assert rgb.shape == (6, 8, 3)
    assert (rgb[0:2, 0:2] == 255).all() and (rgb[4:6, 6:8] == 128).all()
    assert (rgb[2:4, 2:4] == (0, 255, 0)).all()  # x = 1, y = 1: middle row, second column
    assert (rgb[0:2, 2:8] == 0).all()


def test_colour_ramp_ends_and_missing_values():
    colours = ramp_rgb(np.array([0.0, 1.0, np.nan, -3.0, 7.0]))
    np.testing.assert_array_equal(colours[0], MAGMA_R[0])
    np.testing.assert_array_equal(colours[1], MAGMA_R[-1])
    assert tuple(colours[2]) == (232, 232, 232)
    np.testing.assert_array_equal(colours[3], colours[0])  # clipped
    np.testing.assert_array_equal(colours[4], colours[1])
    darkness = ramp_rgb(np.linspace(0, 1, 50)).astype(int).sum(axis=1)
    assert (np.diff(darkness) <= 0).all()  # higher values never look lighter


def test_evidence_bars_follow_the_contributions(tmp_path):
    result = ms.score_study(phantom.make_study("dm", seed=88, shape=SHAPE, roles=("ff",)))
    svg = evidence_figure(result)
    bars = re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="[\d.]+" '
                      r'fill="(#\w+)"><title>([a-z_]+): ([+-][\d.]+)</title>', svg)  # fmt: skip
    available = [f for f in result.likelihood.features if f.available]
    assert [b[3] for b in bars] == [f.id for f in available]
    assert svg.count(">unavailable<") == len(result.likelihood.features) - len(available) > 0
    widths = {b[3]: float(b[1]) for b in bars}
    contributions = {f.id: f.log10_lr_contribution for f in available}
    longest = max(contributions, key=lambda k: abs(contributions[k]))
    scale = widths[longest] / abs(contributions[longest])  # pixels per log10 unit
    for feature, value in contributions.items():  # proportional, to the 0.1 px written
        assert abs(widths[feature] - scale * abs(value)) <= 0.1
    for _, _, colour, feature, _ in bars:
        assert colour == ("#1f6fd1" if contributions[feature] > 0 else "#d1621f")


def test_heatmap_cells_carry_the_measured_values():
    result = ms.score_study(phantom.make_study("imnm", seed=89, shape=SHAPE))
    svg = muscle_heatmap_figure(result.muscles)
    cells = re.findall(r'fill="(#[0-9a-f]{6})"><title>([a-z_]+) (left|right), fat fraction: '
                       r"([\d.]+)</title>", svg)  # fmt: skip
    table = result.muscles.set_index(["muscle", "side"])
    assert len(cells) == int((result.muscles["kind"] == "muscle").sum())
    for colour, muscle, side, value in cells:
        measured = float(table.loc[(muscle, side), "ff_median"])
        assert abs(float(value) - measured) <= 5e-4 + 1e-12  # written with 3 decimals
        assert colour == "#{:02x}{:02x}{:02x}".format(*ramp_rgb(measured / 0.8))
