"""IMNM or muscular dystrophy: two-class templates, the differential panel and its measures.

Truth comes from the phantom's own definitions: which muscles it draws fatty, edematous or
one-sided (``make_study`` overrides), never from the measuring code. Each test names the wrong
answer it guards against.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

import mri_scoring as ms
from mri_scoring import phantom
from mri_scoring.cli import app
from mri_scoring.errors import ConfigError
from mri_scoring.grading import grade, pooled_tables
from mri_scoring.pattern.fit import fit_template
from mri_scoring.pattern.likelihood import combine
from mri_scoring.pattern.match import involved_muscles, match
from mri_scoring.pattern.panel import compare, load_panel
from mri_scoring.pattern.templates import load_template, template_path
from mri_scoring.phantom.cohort_tables import make_cohort, write_cohort

from .helpers import reorient_folder

SHAPE = (64, 64, 12)
DM, DYSTROPHY, ASS = load_panel()
QUADRICEPS = ("rectus_femoris", "vastus_lateralis", "vastus_medialis", "vastus_intermedius")
runner = CliRunner()


def _score(study, template=DYSTROPHY):
    return ms.score_study(study, templates=[template], voxel_maps=False)


def _value(result, feature_id, template="imnm_vs_dystrophy"):
    like = next(c.likelihood for c in result.comparisons if c.template.name == template)
    feature = next(f for f in like.features if f.id == feature_id)
    return feature.value, feature


# --------------------------------------------------------------------------- the schema


def test_first_schema_and_named_classes_give_the_same_likelihood(tmp_path):
    """Regression guard for the schema change: imnm_vs_dm written with named classes
    (``classes: [IMNM, DM]``, ``p: {IMNM, DM}``) must score exactly like the first schema
    (``p_imnm``/``p_dm``); a swapped or dropped class would move every p(IMNM)."""
    data = yaml.safe_load(template_path("imnm_vs_dm").read_text(encoding="utf-8"))
    data["classes"] = ["IMNM", "DM"]
    data["prior"] = data.pop("prior_imnm")
    bounds = data["call_bounds"]
    data["call_bounds"] = {
        "IMNM": bounds["imnm_at_least"],
        "DM": round(1.0 - bounds["dm_at_most"], 12),
        "lean_beyond": bounds.get("lean_beyond", 0.15),
    }
    for feature in data["features"]:
        feature["p"] = {"IMNM": feature.pop("p_imnm"), "DM": feature.pop("p_dm")}
        if isinstance(feature.get("strength"), dict):
            feature["strength"] = {k.upper(): v for k, v in feature["strength"].items()}
    path = tmp_path / "named.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    named = load_template(path)
    assert named.classes == DM.classes == ("IMNM", "DM")
    table = grade(make_cohort(2, seed=3).tables[0])
    a = combine(match(table, DM), DM, involved_muscles(table, DM))
    b = combine(match(table, named), named, involved_muscles(table, named))
    assert a.p_imnm == b.p_imnm and a.p_imnm_interval == b.p_imnm_interval and a.call == b.call


def test_named_classes_are_checked_with_a_clear_error(tmp_path):
    data = yaml.safe_load(template_path("imnm_vs_dystrophy").read_text(encoding="utf-8"))
    data["features"][0]["p"] = {"IMNM": 0.5, "DM": 0.3}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"names \['DM'\], not a class of the template"):
        load_template(path)
    data["classes"] = ["IMNM", "IMNM"]
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match="two different classes"):
        load_template(path)


def test_the_default_panel_and_the_templates_command_list_its_templates():
    assert [t.name for t in load_panel()] == ["imnm_vs_dm", "imnm_vs_dystrophy", "imnm_vs_ass"]
    assert DYSTROPHY.classes == ("IMNM", "dystrophy")
    result = runner.invoke(app, ["templates"])
    assert result.exit_code == 0, result.output
    assert "template imnm_vs_dm" in result.output and "template imnm_vs_dystrophy" in result.output
    assert "classes IMNM (positive) and dystrophy" in result.output
    assert "classes IMNM (positive) and ASS" in result.output


# --------------------------------------------------------------------------- measures


@pytest.fixture(scope="module")
def asymmetric(tmp_path_factory):
    """Right quadriceps fatty, left hamstrings edematous, everything else lean and dry."""
    folder = tmp_path_factory.mktemp("asym")
    study = phantom.make_study("normal", seed=5, shape=SHAPE, side_overrides={
        "right": {"quadriceps": {"ff": 0.50}},
        "left": {"hamstrings": {"edema": 0.55}}})  # fmt: skip
    phantom.write_study(study, folder)
    return folder, _score(ms.load_study(folder))


def test_one_fatty_thigh_gives_large_lr_differences_and_asymmetric_pairs(asymmetric):
    """Guards against sides pooled away (a one-sided disease read as symmetric) and against
    the sign convention flipping (right minus left)."""
    _, result = asymmetric
    pooled, _ = pooled_tables(result.muscles)
    pooled = pooled.set_index("muscle")
    for muscle in QUADRICEPS:
        assert pooled.loc[muscle, "ff_lr_difference"] >= 0.30, (muscle, "right drawn 0.50 FF")
    for muscle in ("semitendinosus", "semimembranosus", "biceps_femoris_long_head"):
        assert pooled.loc[muscle, "edema_lr_difference"] <= -0.30, (muscle, "left edema 0.55")
    assert pooled.loc["gracilis", "ff_lr_difference"] == pytest.approx(0.0, abs=0.03)
    count, feature = _value(result, "lr_asymmetry")
    assert count >= 6, "4 quadriceps (FF) and at least 2 hamstrings (edema) are one-sided"
    assert feature.degree > 0.9


def test_flipping_storage_axes_changes_no_lr_difference(asymmetric, tmp_path):
    """Sides come from anatomy, not from the storage order: a flip must not swap them."""
    folder, result = asymmetric
    flipped_folder = tmp_path / "flipped"
    flipped_folder.mkdir()
    for path in folder.iterdir():
        (flipped_folder / path.name).write_bytes(path.read_bytes())
    reorient_folder(flipped_folder, np.array([[0, -1], [1, 1], [2, -1]], dtype=float))
    flipped = _score(ms.load_study(flipped_folder))
    a, b = (pooled_tables(r.muscles)[0].set_index("muscle") for r in (result, flipped))
    for column in ("ff_lr_difference", "edema_lr_difference"):
        pd.testing.assert_series_equal(a[column], b[column])
    assert _value(flipped, "lr_asymmetry")[0] == _value(result, "lr_asymmetry")[0]


@pytest.fixture(scope="module")
def normal_result():
    # 80 px: at 64 px partial volume lifts the small semimembranosus core past FF 0.20
    return _score(phantom.make_study("normal", seed=6, shape=(80, 80, 12)))


def test_a_symmetric_phantom_has_no_asymmetric_pair(normal_result):
    """Guards against a noise floor below the side-to-side noise (every study asymmetric)."""
    count, feature = _value(normal_result, "lr_asymmetry")
    assert feature.available and count == 0


def test_edema_fat_ratio_is_unavailable_without_a_fatty_muscle(normal_result):
    """Never 0 or infinity: with no fatty muscle the ratio is undefined and says so."""
    value, feature = _value(normal_result, "edema_per_fatty_muscle")
    assert not feature.available and value is None
    assert "no fatty muscle" in feature.reason


@pytest.fixture(scope="module")
def all_fatty():
    """Every thigh muscle of the features at 0.50 FF; edema in adductor magnus and gracilis."""
    study = phantom.make_study("normal", seed=7, shape=SHAPE, overrides={
        "quadriceps": {"ff": 0.50}, "hamstrings": {"ff": 0.50}, "adductor_magnus": {"ff": 0.50},
        "adductor_longus": {"ff": 0.50}, "adductor_brevis": {"ff": 0.50},
        "gracilis": {"ff": 0.50, "edema": 0.45}, "sartorius": {"ff": 0.50},
        "semitendinosus": {"edema": 0.45}})  # fmt: skip
    return _score(study)


def test_edema_fat_ratio_counts_edematous_per_fatty_muscle(all_fatty):
    """13 fatty muscles of the feature's list (4 quadriceps, 4 hamstrings, sartorius, gracilis,
    3 adductors), 2 of them edematous: 2/13. Guards against counting sides twice or counting
    edema in lean muscles."""
    value, feature = _value(all_fatty, "edema_per_fatty_muscle")
    assert feature.available and value == pytest.approx(2 / 13)


def test_sparing_index_high_when_gracilis_and_sartorius_are_spared_near_zero_when_all_fatty(
        all_fatty, dystrophy_result):  # fmt: skip
    spared, _ = _value(dystrophy_result, "gracilis_sartorius_sparing")
    assert spared >= 0.30, "AM/hamstrings drawn 0.42-0.55 FF, gracilis/sartorius 0.05"
    even, _ = _value(all_fatty, "gracilis_sartorius_sparing")
    assert abs(even) <= 0.05, "every muscle drawn at 0.50 FF: a difference, stable near zero"


# --------------------------------------------------------------------------- calls


@pytest.fixture(scope="module")
def dystrophy_result():
    return ms.score_study(phantom.make_study("dystrophy", seed=3, shape=SHAPE),
                          voxel_maps=False)  # fmt: skip


def test_dystrophy_phantom_is_called_dystrophy_and_imnm_phantom_imnm(dystrophy_result):
    """The issue's case: IMNM-vs-DM alone leans to IMNM on a dystrophy (posterior fat is shared);
    the dystrophy template must call it a dystrophy, and an IMNM phantom IMNM."""
    by_name = {c.template.name: c.likelihood for c in dystrophy_result.comparisons}
    assert by_name["imnm_vs_dystrophy"].call == "dystrophy", by_name["imnm_vs_dystrophy"]
    assert by_name["imnm_vs_dm"].call != "DM"
    imnm = _score(phantom.make_study("imnm", seed=4, shape=SHAPE))
    assert imnm.likelihood.call == "IMNM", imnm.likelihood


def test_imnm_vs_ass_in_the_default_panel_calls_an_ass_phantom_ass(default_batch):
    """Issue 30: an antisynthetase phantom (subcutaneous and TFL myofascial edema, adductors
    spared against quadriceps edema; configs/phantom.yaml) is called ASS by imnm_vs_ass in the
    default panel, and the IMNM phantom of the default batch IMNM. Guards against the template
    missing from the panel, its compartment feature never reaching it (compartments.tsv not
    passed), and classes swapped (an ASS study called IMNM)."""
    result = ms.score_study(phantom.make_study("ass", seed=3, shape=(80, 80, 12)),
                            voxel_maps=False)  # fmt: skip
    by_name = {c.template.name: c.likelihood for c in result.comparisons}
    ass = by_name["imnm_vs_ass"]
    assert ass.call == "ASS", (ass.p_imnm, ass.notes)
    used = {f.id: f for f in ass.features}
    assert used["subcutaneous_edema"].available and used["subcutaneous_edema"].value > 0.10
    _, summary = default_batch
    imnm = summary[summary["study_id"].str.contains("imnm")]
    assert len(imnm) == 1, list(summary["study_id"])  # the IMNM phantom (seed 51)
    imnm = imnm.iloc[0]
    assert imnm["imnm_vs_ass_call"] == "IMNM", imnm.to_dict()


def test_every_shipped_template_uses_the_one_call_rule():
    """Issue 30: the call rule is one rule with rule-level numbers shared by every template
    (bounds, reading, involvement gate and minimum, default elicited strength); a template
    whose bounds drifted would call on a different rule than the one docs/likelihood.md
    defends and the calibration test measures."""
    rule = {(t.call_positive_at_least, t.call_negative_at_most, t.lean_beyond, t.absence_gate,
             t.min_involved_muscles) for t in load_panel()}  # fmt: skip
    assert rule == {(0.85, 0.08, 0.15, DM.absence_gate, 2)}, rule
    written = [yaml.safe_load(Path(t.path).read_text(encoding="utf-8")) for t in load_panel()]
    assert {d.get("elicited_strength") for d in written} == {10}


@pytest.mark.slow
def test_imnm_vs_dystrophy_calibration_on_a_phantom_cohort():
    """200 studies drawn from the generator's literature frequencies (not the template's).
    Guards against a template that ranks well but answers overconfidently, or never calls."""
    cohort = make_cohort(200, seed=21, classes=DYSTROPHY.classes)
    y = (cohort.diagnosis == "IMNM").astype(float)
    results = [compare(grade(t), [DYSTROPHY])[0].likelihood for t in cohort.tables]
    p = np.array([r.p_imnm for r in results])
    calls = np.array([r.call for r in results])
    auc, bayes = roc_auc_score(y, p), roc_auc_score(y, cohort.bayes_log10_lr)
    brier = float(np.mean((p - y) ** 2))
    print(f"AUC {auc:.3f} (Bayes-optimal {bayes:.3f}); Brier {brier:.3f}")
    assert auc >= 0.90 * bayes
    assert brier <= 0.15
    for name, truth in (("IMNM", 1.0), ("dystrophy", 0.0)):
        made = calls == name
        assert made.mean() >= 0.03, f"{name} called in {made.mean():.1%} of studies"
        assert np.mean(y[made] == truth) >= 0.85, f"{name} calls right {np.mean(y[made] == truth)}"


def test_phantom_cohorts_draw_only_the_findings_of_their_two_classes():
    """Each cohort draws the findings its two classes have frequencies for: IMNM-vs-DM the
    fourteen regional findings plus Zhang 2022's four (issue 30), never the dystrophy-only
    ones; IMNM-vs-dystrophy never Zhang's four (no published dystrophy rate), so adding them
    moved no dystrophy study."""
    cohort = make_cohort(4, seed=11)
    assert cohort.finding_names[:2] == ["fat_hamstrings", "fat_adductor_magnus"]
    assert len(cohort.finding_names) == 18 and "fat_one_side" not in cohort.finding_names
    assert "subcutaneous_edema" in cohort.finding_names
    other = make_cohort(4, seed=11, classes=("IMNM", "dystrophy"))
    assert "fat_one_side" in other.finding_names and list(other.diagnosis[:2]) == [
        "IMNM", "dystrophy"]  # fmt: skip
    assert "subcutaneous_edema" not in other.finding_names and "symmetric" not in (
        other.finding_names)  # fmt: skip


# --------------------------------------------------------------------------- fit


def test_fit_with_dystrophy_labels_writes_a_template_that_template_reads(tmp_path):
    cohort = make_cohort(16, seed=31, classes=DYSTROPHY.classes)
    labels = write_cohort(cohort, tmp_path / "batch")
    out = tmp_path / "fitted.yaml"
    result = runner.invoke(app, ["fit", str(tmp_path / "batch"), str(labels), "--out", str(out),
                                 "--template", "imnm_vs_dystrophy", "--folds", "3"])  # fmt: skip
    assert result.exit_code == 0, result.output
    fitted = load_template(out)
    assert fitted.name == "imnm_vs_dystrophy_fitted" and fitted.classes == DYSTROPHY.classes
    written = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert set(written["features"][0]["p"]) == {"IMNM", "dystrophy"}
    assert written["provenance"]["cohort"]["studies_per_class"] == {"IMNM": 8, "dystrophy": 8}
    listed = runner.invoke(app, ["templates", "--template", str(out)])
    assert listed.exit_code == 0 and "template imnm_vs_dystrophy_fitted" in listed.output
    assert fitted.feature("extensive_edema").p_positive != DYSTROPHY.feature(
        "extensive_edema").p_positive  # fmt: skip


def test_fit_refuses_labels_of_other_classes(tmp_path):
    cohort = make_cohort(4, seed=32)  # IMNM and DM labels
    labels = write_cohort(cohort, tmp_path / "batch")
    with pytest.raises(ConfigError, match="need at least"):
        fit_template(tmp_path / "batch", labels, tmp_path / "x.yaml", template=DYSTROPHY,
                     folds=3)  # fmt: skip


# --------------------------------------------------------------------------- panel outputs


@pytest.fixture(scope="module")
def default_batch(tmp_path_factory):
    """A dystrophy and an IMNM phantom scored with the default panel."""
    root = tmp_path_factory.mktemp("panel")
    for i, pattern in enumerate(("dystrophy", "imnm")):
        phantom.write_study(phantom.make_study(pattern, seed=50 + i, shape=SHAPE),
                            root / "in" / f"s{i}")  # fmt: skip
    return root / "out", ms.score_batch(root / "in", root / "out", report=True)


def test_default_batch_writes_panel_columns_templates_and_report_rows(default_batch):
    out, summary = default_batch
    extra = [f"{t}_{s}" for t in ("imnm_vs_dystrophy", "imnm_vs_ass")
             for s in ("p_imnm", "p_imnm_lo", "p_imnm_hi", "call")]  # fmt: skip
    assert list(summary.columns)[-8:] == extra
    for _, row in summary.iterrows():
        document = json.loads((out / row["study_id"] / "score.json").read_text())
        entries = document["templates"]
        assert [e["template"] for e in entries] == ["imnm_vs_dm", "imnm_vs_dystrophy",
                                                     "imnm_vs_ass"]  # fmt: skip
        first = {k: v for k, v in entries[0].items() if k != "classes"}
        assert all(document[k] == v for k, v in first.items()), "first entry = top level"
        assert entries[1]["classes"] == ["IMNM", "dystrophy"] and "p_dystrophy" in entries[1]
        assert row["imnm_vs_dystrophy_p_imnm"] == pytest.approx(entries[1]["p_imnm"], rel=1e-5)
        assert row["imnm_vs_dystrophy_call"] == entries[1]["call"]
        assert all(e["reading"] in (e["call"], "no lean", "not applicable") or e["reading"]
                   .startswith("leans ") for e in entries), "reading beside call (issue 30)"
        report = (out / row["study_id"] / "report.html").read_text(encoding="utf-8")
        head = report[: report.index("id='imnm_vs_dm'")]  # before the first template's section
        assert "<h2>Differential</h2>" in head
        assert "IMNM or DM?" in head and "IMNM or dystrophy?" in head
        assert report.index("id='imnm_vs_dm'") < report.index("id='imnm_vs_dystrophy'")
    features = pd.read_csv(out / "features_long.tsv", sep="\t")
    assert list(features.columns[:3]) == ["study_id", "template", "feature"]
    ratio = features[(features["template"] == "imnm_vs_dystrophy")
                     & (features["feature"] == "lr_asymmetry")]  # fmt: skip
    assert len(ratio) == 2 and ratio["value"].notna().all(), "study-level counts as values"
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "imnm_vs_dystrophy call" in index
    svg = (out / "cohort_heatmap.svg").read_text(encoding="utf-8")
    assert "dystrophy" in svg and "calls:" in svg


def test_a_panel_of_imnm_vs_dm_alone_writes_the_old_columns_and_a_new_panel_rescores(
        default_batch):  # fmt: skip
    """After the default panel, ``--template imnm_vs_dm`` on the same OUT: the panel is in the
    fingerprint, so every study is scored again (not reused with the old panel's columns)."""
    out, _ = default_batch
    result = runner.invoke(app, ["batch", str(out.parent / "in"), "--out", str(out),
                                 "--template", "imnm_vs_dm"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "0 reused" in result.output, result.output
    summary = pd.read_csv(out / "summary.tsv", sep="\t")
    assert list(summary.columns) == ["study_id", "p_imnm", "p_imnm_lo", "p_imnm_hi",
                                     "log10_likelihood_ratio", "call", "qc",
                                     *[f.id for f in DM.features]]  # fmt: skip
    document = json.loads((out / summary["study_id"][0] / "score.json").read_text())
    assert [e["template"] for e in document["templates"]] == ["imnm_vs_dm"]


def test_the_readme_documents_the_panel_template_and_measures():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for word in ("imnm_vs_dystrophy", "--template", "ff_lr_difference", "edema_lr_difference",
                 "sparing_index", "edema_fat_ratio", "asymmetric_pairs", "templates"):
        assert f"`{word}" in text, word
