"""Children: body size at every age, norms that grow with the child, population priors, follow-up.

The independent truths: Bolsterlee's growth of lower-leg muscle volume (~5x from 5 to 15 years)
for the norms; the phantom's own growth rule (``configs/phantom.yaml``, never the norms code) for
the child phantoms; Bayes' rule written out here for the population posterior.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mri_scoring import phantom, schema
from mri_scoring.cli import app
from mri_scoring.errors import StudyError
from mri_scoring.grading import grade
from mri_scoring.measure.norms import BodySize, body_size, volume_norm
from mri_scoring.measure.quantify import quantify
from mri_scoring.output.longitudinal import SessionRecord, compare_records
from mri_scoring.output.result import summary_row
from mri_scoring.output.write import summary_table
from mri_scoring.pattern.likelihood import combine
from mri_scoring.pattern.match import involved_muscles, match
from mri_scoring.pattern.population import choose_preset, population_posterior
from mri_scoring.pattern.templates import load_template

SHAPE = (112, 112, 20)
THIGH_13 = (
    "vastus_lateralis", "vastus_medialis", "vastus_intermedius", "rectus_femoris", "sartorius",
    "gracilis", "adductor_longus", "adductor_brevis", "adductor_magnus", "semimembranosus",
    "semitendinosus", "biceps_femoris_long_head", "biceps_femoris_short_head",
)  # fmt: skip


def _muscles(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["kind"] == "muscle"].set_index(["muscle", "side"]).sort_index()


# ----------------------------------------------------------------------------- body size


def test_a_healthy_five_year_old_is_not_taken_for_a_unit_mistake():
    """Regression: 18.5 kg at 1.10 m was refused as 'pounds given for kilograms?' (adult range
    25-300 kg), so a healthy child lost every volume norm."""
    size, why = body_size({"height_m": 1.10, "mass_kg": 18.5})
    assert size == BodySize(1.10, 18.5) and why == ""


@pytest.mark.parametrize(("metadata", "words"), [
    ({"height_m": 110, "mass_kg": 18.5}, ("height_m 110", "centimetres given for metres")),
    ({"height_m": 1.10, "mass_kg": 180}, ("mass_kg 180", "body-mass index of 149",
                                          "pounds given for kilograms")),
    ({"height_m": 1.10, "mass_kg": 1.0}, ("mass_kg 1 ", "not a mass in kilograms")),
    ({"height_m": 2.0, "mass_kg": 25.0}, ("body-mass index of 6", "wrong unit")),
])  # fmt: skip
def test_unit_mistakes_are_still_caught_at_child_size(metadata, words):
    size, why = body_size(metadata)
    assert size is None
    for word in words:
        assert word in why, why


# ----------------------------------------------------------------------------- volume norms


def _summed(height: float, mass: float, age: float, sex: str = "male") -> float:
    return sum(volume_norm(m, BodySize(height, mass), age, sex).expected_ml for m in THIGH_13)


def test_a_five_year_olds_norm_is_a_small_fraction_of_a_fifteen_year_olds():
    """Regression: the adult regressions' intercepts gave the 5-year-old 0.39 x the norm of the
    15-year-old; lower-leg muscle volume grows ~5x from 5 to 15 y (Bolsterlee, 208 children), so
    a healthy small child read atrophic. Bound: <= 0.30 (1/5 = 0.20, with room for a thigh that
    grows a little less than the lower leg)."""
    ratio = _summed(1.10, 18.5, 5.0) / _summed(1.70, 56.0, 15.0)
    assert ratio <= 0.30, f"5 y / 15 y summed norm {ratio:.2f}"
    assert ratio >= 0.15, "not absurdly small either (Bolsterlee: ~0.20)"


def test_the_child_norm_joins_the_adult_norm_without_a_step():
    """Continuous through 18-20 y, equal to handsfield2014 from 20 y, bands around it."""
    ages = np.arange(17.0, 21.01, 0.05)
    values = np.array([_summed(1.75, 70.0, a) for a in ages])
    assert np.abs(np.diff(values)).max() / values.mean() < 0.01, "no jump between steps"
    adult = _summed(1.75, 70.0, None)  # type: ignore[arg-type]
    assert values[-1] == pytest.approx(adult)
    norm = volume_norm("vastus_lateralis", BodySize(1.39, 32.0), 10.0, "male")
    assert norm.p10_ml < norm.expected_ml < norm.p90_ml
    assert (norm.p90_ml - norm.p10_ml) / norm.expected_ml > 0.40, (
        "children's 10th-90th centile spread exceeds 40 % of the median (Bolsterlee)")


# ----------------------------------------------------------------------------- child phantoms


@pytest.fixture(scope="module")
def child_tables():
    """Quantified child phantoms (the phantom's own growth rule), drawn once."""
    def table(**kw):
        roles = kw.pop("roles", ("ff",))
        return quantify(phantom.make_study("normal", seed=3, shape=SHAPE, roles=roles, **kw),
                        threads=1)  # fmt: skip

    every = {m: {"atrophy": 0.6} for m in phantom.phantom_muscles()}
    return {
        "healthy": table(age_years=10, sex="male", roles=("ff", "t2map")),
        "atrophic": table(age_years=10, sex="male", overrides=every),
        "at8": table(age_years=8, sex="male"),
        "not_grown": table(age_years=10, sex="male", size_age_years=8),
    }


def test_a_healthy_child_phantom_reads_normal_against_the_childrens_norms(child_tables):
    measured = child_tables["healthy"]
    rows = _muscles(measured.table)
    used = rows[rows["atrophy_basis"] == "body_size_paediatric"]
    assert len(used) >= 12, "the fully covered listed muscles of both sides"
    low = (used["expected_volume_p10_ml"] / used["expected_volume_ml"]).median()
    high = (used["expected_volume_p90_ml"] / used["expected_volume_ml"]).median()
    ratio = used["volume_ratio"].median()
    assert low <= ratio <= high, f"median volume_ratio {ratio:.2f}, band {low:.2f}-{high:.2f}"
    excess = rows["ff_excess"].median()
    assert abs(excess) <= 0.02, f"healthy child FF 0.02 against the children's: {excess:.3f}"
    assert rows["edema_fraction"].max() <= 0.05, "T2 map of healthy muscle: no edema"
    codes = {q.code: q.message for q in measured.qc}
    assert schema.NORMS_PAEDIATRIC in codes and "zemel2023" in codes[schema.NORMS_PAEDIATRIC]
    assert "33.6 ms" in codes[schema.T2MAP_ASSUMPTIONS], "the T2 map is read against MRI T2"
    assert {n["basis"] for n in measured.norms.values()} == {"paediatric"}
    assert measured.norms["volume"]["age_years"] == 10


def test_the_same_child_with_every_muscle_at_sixty_percent_reads_below_the_band(child_tables):
    rows = _muscles(child_tables["atrophic"].table)
    used = rows[rows["atrophy_basis"] == "body_size_paediatric"]
    below = used["volume_ml"] < used["expected_volume_p10_ml"]
    assert below.mean() >= 0.9, "60 % of the volume lies below every child's 10th centile"
    assert used["atrophy_note"].str.contains("below its normal band").mean() >= 0.9


def test_a_child_under_the_youngest_reference_age_has_no_volume_norm_and_a_note():
    study = phantom.make_study("normal", seed=3, shape=(64, 64, 12), roles=("ff",),
                               age_years=3, sex="female")  # fmt: skip
    measured = quantify(study, threads=1)
    rows = _muscles(measured.table)
    assert rows["expected_volume_ml"].isna().all(), "never an extrapolation below 5 y"
    assert set(rows["atrophy_basis"]) <= {"share", "none"}
    assert schema.VOLUME_NORM_BELOW_REFERENCE_AGE in {q.code for q in measured.qc}
    assert measured.norms["volume"]["basis"] == "none"


def _record(table: pd.DataFrame, session: str) -> SessionRecord:
    return SessionRecord(
        study_id="s",
        subject_id="child",
        session_id=session,
        date="",
        muscles=table,
        template_sha256="t",
        config_sha256="c",
    )


def test_follow_up_of_a_growing_child_reads_volume_against_the_norm_at_each_age(child_tables):
    """Regression guard: a healthy child who grew from 8 to 10 y must not read as atrophy nor a
    child whose muscles did not grow as stable (the raw volume rose in the first case and stayed
    in the second)."""
    first = child_tables["at8"].table
    grown = compare_records([_record(first, "ses-1"), _record(child_tables["healthy"].table,
                                                              "ses-2")]).muscles  # fmt: skip
    stuck = compare_records([_record(first, "ses-1"),
                             _record(child_tables["not_grown"].table, "ses-2")]).muscles
    key = ["muscle", "side"]
    grown, stuck = grown.set_index(key), stuck.set_index(key)
    both = grown.index[grown["delta_volume_ratio"].notna()].intersection(
        stuck.index[stuck["delta_volume_ratio"].notna()])
    assert len(both) >= 12
    assert (grown.loc[both, "change_volume"] != "worse").all()
    assert (stuck.loc[both, "change_volume"] == "worse").all()
    assert (grown.loc[both, "delta_volume_ratio"].abs()
            < stuck.loc[both, "delta_volume_ratio"].abs()).all()  # fmt: skip
    assert grown.loc[both, "note"].str.contains("norm at each session's age").all()


# ----------------------------------------------------------------------------- population priors


@pytest.fixture(scope="module")
def likelihood(child_tables):
    template = load_template()
    table = grade(child_tables["atrophic"].table)
    like = combine(match(table, template), template, involved_muscles(table, template))
    return template, like


def test_population_precedence_option_then_study_json_then_age():
    stated = {"population": "juvenile_asian", "age_years": 9}
    assert choose_preset("adult", stated)[:2] == ("adult", "option")
    assert choose_preset(None, stated)[:2] == ("juvenile_asian", "study.json")
    name, by, note = choose_preset(None, {"age_years": 9})
    assert (name, by) == ("juvenile", "age") and "under 18" in note
    assert choose_preset(None, {"age_years": 40})[0] == "adult"
    assert choose_preset(None, {}) is None, "no age and no preset: no population columns"
    with pytest.raises(StudyError, match="not a preset"):
        choose_preset(None, {"population": "children"})


def test_population_posterior_is_bayes_rule_and_leaves_p_imnm_alone(likelihood):
    template, like = likelihood
    p_imnm, call = like.p_imnm, like.call
    for metadata in ({"age_years": 9}, {"age_years": 40}, {"population": "juvenile_asian"}):
        result = population_posterior(like, template, None, metadata)
        odds = result.prior / (1 - result.prior) * 10**like.log10_likelihood_ratio
        assert result.p_imnm == pytest.approx(odds / (1 + odds), abs=1e-12)
        low, high = result.interval
        assert low - 0.01 <= result.p_imnm <= high + 0.01, "inside its Monte Carlo interval"
    juvenile = population_posterior(like, template, None, {"age_years": 9})
    assert juvenile.prior == pytest.approx(0.029 / (0.029 + 0.75), abs=0.001)
    assert (like.p_imnm, like.call) == (p_imnm, call), "p_imnm and call keep the template prior"
    document = {"study_id": "x", "p_imnm": like.p_imnm, "p_imnm_interval": like.p_imnm_interval,
                "log10_likelihood_ratio": like.log10_likelihood_ratio, "call": like.call,
                "qc": [], "features": [], "population": juvenile.to_dict()}  # fmt: skip
    row = summary_row(document)
    assert row["population"] == "juvenile" and row["p_imnm"] == like.p_imnm
    assert row["p_imnm_population"] == juvenile.p_imnm
    assert row["p_imnm_population_lo"] <= row["p_imnm_population_hi"]
    other = summary_row({**document, "study_id": "y", "population": None})
    table = summary_table({"x": row, "y": other}, template)
    assert list(table.columns[-4:]) == schema.SUMMARY_POPULATION
    assert math.isnan(table.set_index("study_id").loc["y", "p_imnm_population"])


# ----------------------------------------------------------------------------- command line


def test_phantom_command_draws_a_child(tmp_path):
    result = CliRunner().invoke(app, ["phantom", str(tmp_path), "--pattern", "normal",
                                      "--shape", "64", "64", "12", "--age", "7",
                                      "--sex", "female"])  # fmt: skip
    assert result.exit_code == 0, result.output
    metadata = json.loads((tmp_path / "phantom-normal-0" / "study.json").read_text())
    assert metadata["age_years"] == 7 and metadata["sex"] == "female"
    assert 1.1 < metadata["height_m"] < 1.3
    truth = json.loads((tmp_path / "phantom-normal-0" / "truth.json").read_text())
    assert truth["volume_fraction"] < 0.35, "a 7-year-old girl's thigh, by the phantom's rule"


def test_population_option_outranks_the_age_and_a_bad_name_is_a_usage_error(likelihood, tmp_path):
    template, like = likelihood
    chosen = population_posterior(like, template, "adult", {"age_years": 9})
    assert (chosen.name, chosen.chosen_by) == ("adult", "option")
    result = CliRunner().invoke(app, ["score", str(tmp_path), "--out", str(tmp_path / "o"),
                                      "--population", "children"])  # fmt: skip
    assert result.exit_code == 2 and "juvenile" in result.output


def test_scoring_with_any_population_gives_the_same_p_imnm_and_call():
    """Guards against a population prior leaking into p_imnm or the call (their calibration
    would then change with the patient's age)."""
    from mri_scoring.pipeline import score_study

    study = phantom.make_study("imnm", seed=2, shape=(64, 64, 12), roles=("ff", "stir"),
                               age_years=9, sex="male")  # fmt: skip
    results = {name: score_study(study, voxel_maps=False, threads=1, population=name)
               for name in ("juvenile", "adult", None)}  # fmt: skip
    documents = {name: r.to_dict() for name, r in results.items()}
    assert len({(d["p_imnm"], d["call"], d["prior_imnm"]) for d in documents.values()}) == 1
    assert documents[None]["population"]["name"] == "juvenile", "age 9: the juvenile default"
    by_prior = {name: d["population"]["p_imnm"] for name, d in documents.items()}
    assert by_prior["adult"] > by_prior["juvenile"], "the adult prior 0.41 > juvenile 0.037"
    assert documents[None]["norms"]["volume"]["basis"] == "paediatric"
