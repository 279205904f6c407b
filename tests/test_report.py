"""Reports: sections, embedded figures, no external references, and every input combination."""

from __future__ import annotations

import base64
import html
import io
import re
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import mri_scoring as ms
from mri_scoring import phantom
from mri_scoring.output.figures import evidence_figure, muscle_heatmap_figure
from mri_scoring.output.render import MAGMA_R, png_bytes, ramp_rgb
from mri_scoring.output.slices import OUTLINE_RGB

SHAPE = (96, 96, 16)
SECTIONS = [
    "Quality control",
    "Differential",  # one row per template of the panel, then each template's section
    "Per-muscle heat map",
    "Per-muscle measures",
    "Inputs and software",
    "References",
]
# What the slice and side-bar sections show, by the images a study has: a heading names only
# what was measured (a T1w-only study has no edema; an FF map alone, no edema).
SHOWN = {
    ("fat", "water", "stir"): ("Slices: fat fraction and edema", "Fat fraction and edema"),
    ("ff",): ("Slices: fat fraction", "Fat fraction"),
    ("t2map",): ("Slices: edema (water T2 map)", "Edema"),
    ("ff", "t2map"): ("Slices: fat fraction and edema", "Fat fraction and edema"),
    ("t1w",): ("Slices: fat fraction (T1w, semi-quantitative) and the T1-weighted image",
               "Fat fraction"),
}


def _report(study):
    return ms.score_study(study)


def _html(result, tmp_path):
    out = result.save(tmp_path / result.study_id)
    return (out / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("roles", list(SHOWN))
def test_report_sections_and_embedded_figures(tmp_path, roles):
    study = phantom.make_study("imnm", seed=80, shape=SHAPE, roles=roles)
    page = _html(_report(study), tmp_path)
    slices, bars = SHOWN[roles]
    for section in [*SECTIONS, slices, f"{bars} per muscle, left and right"]:
        assert f"<h2>{section}</h2>" in page, section
    assert len(re.findall("<h2>Slices", page)) == 1
    svgs = re.findall(r"<svg role=\"img\"[^>]*><title>([^<]*)</title>", page)
    assert svgs[0] == "log10 likelihood-ratio contribution per feature"
    assert "per-muscle heat map" in svgs
    assert f"{bars.lower()} per muscle, left and right" in svgs
    if "Edema" not in bars and "and edema" not in bars:  # no edema: none in the bars' legend
        assert "edema &lt;" not in page and "edema <" not in page
    panels = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]{200,})"', page)
    # Per level: FF over the anatomy and STIR / T2 (or the T1w image alone), or only one.
    assert len(panels) == (6 if len(roles) > 1 or roles == ("t1w",) else 3)
    for panel in panels:
        image = np.asarray(Image.open(io.BytesIO(base64.b64decode(panel))).convert("RGB"))
        assert image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 200
        outline = np.all(image == OUTLINE_RGB, axis=2)
        assert 0.002 < outline.mean() < 0.3  # segmentation outlines drawn, image not swamped
    assert "Research software" in page and "Not a diagnostic device" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    # The heat map and the grade legend name only what was measured: no all-grey edema columns
    # and no edema-grade legend in a T1w-only or FF-only study, no Mercuri legend without FF.
    heatmap = page[page.index("<h2>Per-muscle heat map</h2>") : page.index("<h2>Per-muscle m")]
    legend = page[page.index("<h2>Per-muscle measures</h2>") : page.index("Reference tissues")]
    edema, fat = "dema" in bars, "Fat" in bars
    assert (">edema</text>" in heatmap) == edema and ("edema, fascial" in heatmap) == edema
    assert ("<b>Edema grade</b>" in legend) == edema
    assert (">fat fraction</text>" in heatmap) == fat == ("<b>Mercuri grade</b>" in legend)


def test_unavailable_features_are_shown_with_why(tmp_path):
    study = phantom.make_study("dm", seed=81, shape=SHAPE, roles=("ff",))
    page = _html(_report(study), tmp_path)
    assert "class=na" in page and "input image missing" in page


def test_qc_warnings_come_first(tmp_path):
    study = phantom.make_study("normal", seed=82, shape=SHAPE, roles=("t1w",))
    page = _html(_report(study), tmp_path)
    assert page.index("Quality-control warnings") < page.index("<h2>Differential</h2>")
    assert "ff_semiquantitative" in page
    # The FF source line says where the (semi-quantitative) fat fraction came from; it once
    # read "no fat-fraction image: FF not measured" beside a page full of T1w fat fractions.
    assert "<li>fat fraction from T1w intensities (semi-quantitative" in page
    assert "FF not measured" not in page and "fat fraction not measured" not in page
    assert "<li>edema not measured (no STIR or T2 map)</li>" in page


def test_every_measure_source_has_its_line_in_the_report():
    """A source value the measurement stage writes (schema) that the report does not know would
    be printed raw or, as once for the T1w estimate, as "not measured"."""
    from mri_scoring.output.report import EDEMA_SOURCES, FF_SOURCES
    from mri_scoring.schema import EDEMA_SOURCES as EDEMA_VALUES
    from mri_scoring.schema import FF_SOURCES as FF_VALUES

    assert set(FF_SOURCES) == set(FF_VALUES)
    assert set(EDEMA_SOURCES) == set(EDEMA_VALUES)
    measured = [text for key, text in [*FF_SOURCES.items(), *EDEMA_SOURCES.items()] if key]
    assert not [text for text in measured if "not measured" in text]


def test_cohort_index_and_heatmap(tmp_path):
    root = tmp_path / "root"
    for i, pattern in enumerate(("imnm", "dm", "normal", "imnm")):
        study = phantom.make_study(pattern, seed=83 + i, shape=(64, 64, 10))
        phantom.write_study(study, root / f"s{i}")
    ms.score_batch(root, tmp_path / "out")
    index = (tmp_path / "out" / "index.html").read_text()
    assert index.count("/report.html'") == 4 and "cohort_heatmap.svg" in index
    svg = (tmp_path / "out" / "cohort_heatmap.svg").read_text()
    root_element = ElementTree.fromstring(svg)  # a well-formed standalone SVG file
    assert root_element.tag == "{http://www.w3.org/2000/svg}svg"
    panels = _svg_panels(svg)
    # a call bar per template of the default panel, then FF, edema, fascial edema
    assert [p.shape[1] for p in panels] == [14, 14, 14] + [14 * 22] * 3
    assert {p.shape[0] for p in panels} == {4 * 14}  # 4 studies, 14 px each
    for study_id in ("phantom-imnm-83", "phantom-dm-84"):
        assert f">{study_id}</text>" in svg
    # Per-cell titles (tooltips): one per study, muscle and panel, with the value it shows.
    titles = re.findall(r"<title>([^<,]+), ([^<,]+), ([^<:]+): ([^<]+)</title>", svg)
    assert len(titles) == 4 * 22 * 3
    muscles = pd.read_csv(tmp_path / "out" / "phantom-dm-84" / "muscles.tsv", sep="\t")
    expected = muscles[muscles["muscle"] == "adductor_magnus"]["ff_median"].mean() * 100
    shown = next(v for s, m, p, v in titles
                 if (s, m, p) == ("phantom-dm-84", "adductor magnus", "fat fraction"))  # fmt: skip
    assert shown == f"{expected:.1f} % FF"


def _svg_panels(svg: str) -> list[np.ndarray]:
    uris = re.findall(r'href="data:image/png;base64,([A-Za-z0-9+/=]+)"', svg)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(u))).convert("RGB")) for u in uris]


def test_cohort_heatmap_rows_follow_the_order_and_large_cohorts_are_banded():
    """Rows of the FF panel are the studies in clustering order; 7000 studies become bands of
    3 (one pixel row each), without study names."""
    from mri_scoring.output.cohort import cohort_figure

    muscles = ["adductor_magnus", "vastus_lateralis"]
    ids = [f"s{i}" for i in range(6)]
    ff = pd.DataFrame([[0.05, 0.05], [0.6, 0.1], [0.06, 0.04], [0.62, 0.12], [0.04, 0.06],
                       [0.58, np.nan]], index=ids, columns=muscles)  # fmt: skip
    summary = pd.DataFrame({"study_id": ids, "p_imnm": np.linspace(0, 1, 6),
                            "call": ["DM", "IMNM", "DM", "IMNM", "DM", "IMNM"]})  # fmt: skip
    _, ff_panel, edema_panel, _ = _svg_panels(cohort_figure(summary, ff, ff.iloc[:, :0]))
    row_colours = ff_panel[7::14, 7]  # first muscle, middle of each 14-px row
    fatty = row_colours.astype(int).sum(axis=1) < 500  # dark = high FF
    assert list(fatty) in ([True] * 3 + [False] * 3, [False] * 3 + [True] * 3)  # kept together
    assert (edema_panel == (232, 232, 232)).all()  # nothing measured: grey

    without_muscles = cohort_figure(summary, ff.iloc[:0, :0], ff.iloc[:0, :0])
    assert len(_svg_panels(without_muscles)) == 1  # the call bar only, no empty panels

    many = [f"study-{i}" for i in range(7000)]
    big = pd.DataFrame({"study_id": many, "p_imnm": np.linspace(0, 1, 7000),
                        "call": ["IMNM"] * 7000})  # fmt: skip
    values = pd.DataFrame({"adductor_magnus": np.linspace(0, 0.8, 7000)}, index=many)
    svg = cohort_figure(big, values, values)
    call, ff_panel, *_ = _svg_panels(svg)
    assert ff_panel.shape[0] == call.shape[0] == 2334  # ceil(7000 / 3) rows of one pixel
    assert "bands of 3 studies" in svg and "study-17<" not in svg
    band_means = np.append(values.to_numpy()[:, 0], [np.nan, np.nan]).reshape(-1, 3)
    band_means = np.nanmean(band_means, axis=1)  # ordered by p(IMNM), here increasing FF
    np.testing.assert_array_equal(ff_panel[:, 0], ramp_rgb(band_means / 0.8))


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
    svg = evidence_figure(result.likelihood.features, result.likelihood.log10_likelihood_ratio)
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


def test_no_involved_muscle_reads_neutral_and_says_so_in_words(tmp_path):
    """Regression: the notes said "only 0 involved muscle(s)" for a study with nothing involved.
    The report now says "no involved muscle", and its evidence bars are all grey (indeterminate:
    not read as IMNM or DM), each within 0.02 of zero."""
    result = ms.score_study(phantom.make_study("normal", seed=31, shape=(128, 128, 24)))
    assert result.likelihood.call == "indeterminate" and not result.likelihood.involved_muscles
    html = _html(result, tmp_path)
    notes = " ".join(result.likelihood.notes)
    assert "no involved muscle (the template needs at least 2)" in notes
    for phrase in ("only 0", "muscle(s)", "(0)", "0% of their weight"):
        assert phrase not in notes and phrase not in html, phrase
    svg = evidence_figure(result.likelihood.features, result.likelihood.log10_likelihood_ratio,
                          neutral=True)  # fmt: skip
    assert svg in html, "the report draws the neutral figure"
    bars = re.findall(r'fill="(#\w+)"><title>[a-z_]+: ([+-][\d.]+)</title>', svg)
    assert bars and {colour for colour, _ in bars} == {"#8c8c8c"}
    assert max(abs(float(value)) for _, value in bars) < 0.02


def test_heatmap_cells_carry_the_measured_values():
    result = ms.score_study(phantom.make_study("imnm", seed=89, shape=SHAPE))
    svg = muscle_heatmap_figure(result.muscles)
    cells = re.findall(r'fill="(#[0-9a-f]{6})"><title>([a-z_]+) (left|right), fat fraction: '
                       r"([\d.]+) % FF</title>", svg)  # fmt: skip
    table = result.muscles.set_index(["muscle", "side"])
    assert len(cells) == int((result.muscles["kind"] == "muscle").sum())
    for colour, muscle, side, value in cells:
        measured = float(table.loc[(muscle, side), "ff_median"])
        assert abs(float(value) / 100 - measured) <= 5e-4 + 1e-12  # in %, one decimal
        assert colour == "#{:02x}{:02x}{:02x}".format(*ramp_rgb(measured / 0.8))


def test_cohort_values_from_a_saved_table_equal_those_of_the_result(tmp_path):
    """Resumed studies feed the cohort heat map from their muscles.tsv: same numbers."""
    from mri_scoring.output.cohort import cohort_values, read_cohort_values

    result = ms.score_study(phantom.make_study("dm", seed=90, shape=(64, 64, 10), roles=("ff",)))
    folder = result.save(tmp_path / "s", report=False)
    from_result = cohort_values(result.muscles.to_dict("records"))
    from_file = read_cohort_values(folder / "muscles.tsv")
    assert from_file is not None and from_file.keys() == from_result.keys()
    assert from_result["edema_fraction"] == {}  # no STIR or T2 map: nothing to show
    muscles = result.muscles[result.muscles["kind"] == "muscle"]
    assert set(from_file["ff_median"]) == set(muscles["muscle"])
    for muscle, value in from_result["ff_median"].items():
        expected = muscles.loc[muscles["muscle"] == muscle, "ff_median"].mean()
        assert abs(from_file["ff_median"][muscle] - value) < 1e-6
        assert abs(value - expected) < 1e-12
    assert read_cohort_values(tmp_path / "missing.tsv") is None


def test_fat_fraction_colour_lies_only_on_measured_muscle_voxels():
    """The FF colour overlay is the measured FF of muscle voxels: nothing outside the muscles
    (air, subcutaneous fat, marrow) gets an FF colour, and (one-sided, outlines cover some
    pixels) most muscle voxels do. An FF estimated over the whole image colours the air."""
    from mri_scoring.anatomy import MUSCLE
    from mri_scoring.output.levels import build_levels, crop_box
    from mri_scoring.output.slices import GREY_LEVELS, RAMP_LEVELS

    study = phantom.make_study("imnm", seed=91, shape=(160, 160, 12), roles=("fat", "water"))
    result = ms.score_study(study)
    levels, _ = build_levels(study, result.voxel_maps, "radiological")
    muscle = [v for v, info in study.label_info.items() if info.kind == MUSCLE]
    box = crop_box(study, [level.k for level in levels])
    for level in levels:
        title, index = level.panels[0]
        assert title.startswith("fat fraction")
        zoom = index.shape[1] // (box[0].stop - box[0].start)
        coloured = int(((index >= GREY_LEVELS) & (index < GREY_LEVELS + RAMP_LEVELS)).sum())
        voxels = int(np.isin(study.labels[:, :, level.k], muscle).sum()) * zoom * zoom
        assert coloured <= voxels, "FF colour outside the muscles"
        assert coloured >= 0.5 * voxels, "muscles left without their FF colour"


def test_zero_evidence_is_not_printed_as_negative(tmp_path):
    """A normal study's contributions are tiny negatives: shown as "-0.00" they read as
    evidence for DM (the sample-normal report printed "log10 LR = -0.00" in five places)."""
    from mri_scoring.config import sample_data_dir

    result = ms.score_study(ms.load_study(sample_data_dir() / "sample-normal"))
    assert result.likelihood.log10_likelihood_ratio < 0  # the case this guards
    assert round(result.likelihood.log10_likelihood_ratio, 2) == 0
    page = _html(result, tmp_path)
    assert "-0.00" not in page and "log10 LR = +0.00" in page


def test_report_contents_a_reader_relies_on(tmp_path):
    """Issue 17's list for the page itself: units in every header, grade legends, the QC
    "no warnings" line with info findings still listed, inputs and software, full references,
    reference tissues (marrow) outside the muscle table, and a neutral indeterminate display."""
    from mri_scoring import __version__
    from mri_scoring.config import sample_data_dir
    from mri_scoring.output.figures import NEUTRAL_COLOUR
    from mri_scoring.output.report import load_references

    folder = sample_data_dir() / "sample-normal"
    result = ms.score_study(ms.load_study(folder))
    assert result.likelihood.call == "indeterminate"
    assert not [q for q in result.qc if q.level == "warning"]
    page = _html(result, tmp_path)
    qc = page[page.index("<h2>Quality control</h2>") : page.index("<h2>Differential</h2>")]
    assert "<p class=ok>No quality-control warnings.</p>" in qc
    assert all(q.code in qc for q in result.qc)  # info findings are listed too
    assert "<div class='call indeterminate'>" in page and "p(IMNM) = 0.500 (90 % interval" in page
    start = page.index("<h3>Evidence per feature</h3>")  # the first template's
    evidence = page[start : page.index("<table>", start)]
    bars = re.findall(r'fill="(#\w+)"><title>', evidence)
    assert bars and set(bars) == {NEUTRAL_COLOUR}  # no IMNM or DM colour for a non-call
    measures = page[page.index("<h2>Per-muscle measures</h2>") : page.index("Reference tissues")]
    for header in ("volume (ml)", "FF median (%)", "edema (% of core)", "Mercuri grade (FF)"):
        assert f">{header}</th>" in measures, header
    assert "femur marrow" not in measures and "femur_marrow" not in measures
    assert "<b>Mercuri grade</b> here is derived from the core median fat fraction" in page
    assert "<b>Edema grade</b>" in page
    marrow = page[page.index("Reference tissues") : page.index("<h2>Inputs and software")]
    assert "femur marrow" in marrow
    inputs = page[page.index("<h2>Inputs and software") : page.index("<h2>References")]
    assert f"study folder: {folder.resolve()}" in inputs
    assert all(v["file"] in inputs for v in result.inputs.values())
    assert f"mri_scoring {__version__}" in inputs
    references = page[page.index("<h2>References") :]
    cited = re.findall(r"<li id='ref-([a-z0-9_]+)'>", references)
    assert "wang2023" in cited and "pinal_fernandez2017" in cited
    full = load_references()
    assert all(html.escape(full[key]) in references for key in cited)  # full citations


def test_t2_map_report_gives_t2_in_ms(tmp_path):
    study = phantom.make_study("dm", seed=92, shape=SHAPE, roles=("ff", "t2map"))
    page = _html(ms.score_study(study), tmp_path)
    assert ">T2 median (ms)</th>" in page and "water T2 (ms; edema &gt; " in page
