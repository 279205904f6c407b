"""The subcutaneous compartment (compartments.tsv), TFL fascial edema, adductor sparing and
symmetry: phantom truth from the phantom's own drawing (phantom/ imports no measure code) and
metamorphic checks (flip sides, add/remove subcutaneous edema, thin the subcutaneous fat)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mri_scoring import phantom
from mri_scoring.anatomy import group_of
from mri_scoring.config import load_settings
from mri_scoring.grading import grade
from mri_scoring.measure.compartments import measure_compartments
from mri_scoring.measure.quantify import quantify
from mri_scoring.pattern.match import match
from mri_scoring.pattern.templates import load_template

SHAPE = (96, 96, 16)
ROLES = ("fat", "water", "stir")  # all the subcutaneous measure reads (faster phantoms)
SETTINGS = load_settings()
TEMPLATE = load_template()


@pytest.fixture(scope="module")
def edema_studies():
    """(pattern, share) -> phantom; DM draws fascial fluid right next to the band."""
    return {
        (seed, share): phantom.make_study(("normal", "dm")[seed % 2], seed=seed, shape=SHAPE,
                                          roles=ROLES, subcutaneous={"edema": share})
        for seed in (40, 41, 42) for share in (0.0, 0.15)
    }  # fmt: skip


def _rows(study):
    table, qc = measure_compartments(study, SETTINGS)
    return table.set_index("side"), qc


def _evidence(study, feature_id):
    measured = quantify(study, SETTINGS)
    graded = grade(measured.table, SETTINGS)
    found = match(graded, TEMPLATE, SETTINGS, compartments=measured.compartments)
    return next(e for e in found if e.id == feature_id)


def test_subcutaneous_edema_is_detected_and_healthy_fat_reads_clean(edema_studies):
    """Regression guard against a band that reaches into the fascial shell: the DM phantom's
    fascial fluid (next to the muscles) read as 4-18 % subcutaneous edema before the muscle
    margin was set beyond the shell, and a healthy study must read (almost) nothing."""
    scores, truth = [], []
    for (seed, share), study in edema_studies.items():
        rows, _ = _rows(study)
        measured = rows["edema_fraction"].to_numpy(float)
        drawn = [study.truth["subcutaneous"][s]["edema_fraction"] for s in ("left", "right")]
        if share == 0.0:
            assert (measured <= 0.02).all(), (seed, measured)
        else:
            assert np.allclose(measured, drawn, atol=0.08), (measured, drawn)
        scores.extend(measured)
        truth.extend([share > 0] * 2)
    auc = roc_auc_score(truth, scores)
    print(f"subcutaneous edema detection AUC {auc:.3f}")
    assert auc >= 0.95


def test_without_stir_subcutaneous_edema_is_unavailable_with_the_reason():
    """A water-T2 map must not stand in for STIR in fat (water fraction ~0.1: noise)."""
    study = phantom.make_study("dm", seed=44, shape=SHAPE, roles=("fat", "water", "t2map"),
                               subcutaneous={"edema": 0.3})  # fmt: skip
    table, _ = measure_compartments(study, SETTINGS)
    assert table["edema_fraction"].isna().all()
    assert table["ff_median"].gt(0.8).all(), "the fat itself is still measured"
    assert all("STIR only" in note for note in table["note"])
    found = match(_table({m: 0.4 for m in QUADS}), TEMPLATE, SETTINGS, compartments=table)
    evidence = next(e for e in found if e.id == "subcutaneous_edema")
    assert not evidence.available and "STIR only" in evidence.reason


def test_thin_subcutaneous_fat_is_unavailable_not_zero(edema_studies):
    """Metamorphic: thinning the fat lowers the thickness; below the minimum the row is empty
    with the reason (a child's thin fat), never a silent 0."""
    usual, _ = _rows(edema_studies[(40, 0.15)])
    thick, _ = _rows(phantom.make_study("normal", seed=40, shape=SHAPE, roles=ROLES,
                                        subcutaneous={"fat_mm": 20.0, "edema": 0.15}))
    thin, qc = _rows(phantom.make_study("normal", seed=40, shape=SHAPE, roles=ROLES,
                                        subcutaneous={"fat_mm": 3.0, "edema": 0.15}))
    assert (thick["thickness_mm"] > usual["thickness_mm"] + 4).all()
    assert (usual["thickness_mm"] > thin["thickness_mm"] + 2).all()
    assert abs(usual["thickness_mm"].iloc[0] - 14.0) < 2.5, "12 mm fat + 2 mm skin"
    assert thin["edema_fraction"].isna().all() and thin["ff_median"].isna().all()
    assert all("thin fat" in note for note in thin["note"])
    assert {f.code for f in qc} == {"subcutaneous_not_measured"}
    assert (thick["edema_fraction"] > 0.1).all() and (usual["edema_fraction"] > 0.1).all()


def test_flipping_the_sides_keeps_each_sides_subcutaneous_measures(edema_studies):
    """Metamorphic: mirror the grid left-right; each side's row follows its own labels."""
    study = edema_studies[(41, 0.15)]
    flipped = dataclasses.replace(
        study, labels=study.labels[::-1].copy(),
        images={role: image[::-1].copy() for role, image in study.images.items()},
    )  # fmt: skip
    original, _ = _rows(study)
    mirrored, _ = _rows(flipped)
    columns = ["voxels", "thickness_mm", "ff_median", "edema_fraction"]
    assert np.allclose(original[columns].to_numpy(float), mirrored[columns].to_numpy(float),
                       atol=0.01), (original[columns], mirrored[columns])  # fmt: skip


def test_tfl_fascial_edema_is_read_when_labelled_and_unavailable_when_not(edema_studies):
    # the antisynthetase pattern (phantom --pattern ass): TFL myofascial and subcutaneous edema
    study = phantom.make_study("ass", seed=47, shape=SHAPE, roles=ROLES)
    assert study.truth["subcutaneous"]["left"]["edema_fraction"] > 0.2
    present = _evidence(study, "tfl_fascial_edema")
    assert present.available and present.degree > 0.9, present
    subcutaneous = _evidence(study, "subcutaneous_edema")
    assert subcutaneous.available and subcutaneous.degree > 0.7, subcutaneous
    clean = _evidence(edema_studies[(40, 0.15)], "tfl_fascial_edema")
    assert clean.available and clean.degree < 0.1, clean
    tfl = [v for v, i in study.label_info.items() if i.muscle == "tensor_fasciae_latae"]
    labels = np.where(np.isin(study.labels, tfl), 0, study.labels)
    info = {v: i for v, i in study.label_info.items() if v not in tfl}
    unlabelled = dataclasses.replace(study, labels=labels, label_info=info)
    missing = _evidence(unlabelled, "tfl_fascial_edema")
    assert not missing.available and "tensor_fasciae_latae" in missing.reason


def _table(edema: dict[str, float], right_factor: float = 1.0) -> pd.DataFrame:
    rows = []
    for side in ("left", "right"):
        for muscle in phantom.phantom_muscles():
            value = edema.get(muscle, 0.0) * (right_factor if side == "right" else 1.0)
            rows.append({"muscle": muscle, "side": side, "kind": "muscle",
                         "group": group_of(muscle), "voxels": 500,
                         "ff_median": 0.05, "edema_fraction": value,
                         "fascial_edema_fraction": 0.0, "atrophy_index": 1.0,
                         "mercuri_grade": 0.0, "edema_grade": float(value > 0.05)})  # fmt: skip
    return pd.DataFrame(rows)


def _degree(table: pd.DataFrame, feature_id: str):
    return next(e for e in match(table, TEMPLATE, SETTINGS) if e.id == feature_id)


QUADS = ("rectus_femoris", "vastus_lateralis", "vastus_medialis", "vastus_intermedius")
HAMS = ("semitendinosus", "semimembranosus", "biceps_femoris_long_head")
ADDUCTORS = ("adductor_longus", "adductor_brevis", "adductor_magnus")


def test_adductor_sparing_needs_muscle_edema_and_reads_the_adductors_against_the_rest():
    others = {m: 0.4 for m in (*QUADS, *HAMS, "sartorius")}
    spared = _degree(_table(others), "adductor_edema_sparing")
    assert spared.available and spared.degree > 0.9, spared
    involved = _degree(_table({**others, **dict.fromkeys(ADDUCTORS, 0.45)}),
                       "adductor_edema_sparing")  # fmt: skip
    assert involved.available and involved.degree < 0.1, involved
    # gracilis is not an adductor here: its edema changes nothing
    with_gracilis = _degree(_table({**others, "gracilis": 0.6}), "adductor_edema_sparing")
    assert with_gracilis.value == pytest.approx(spared.value)
    none = _degree(_table(dict.fromkeys(ADDUCTORS, 0.3)), "adductor_edema_sparing")
    assert not none.available and "no muscle edema" in none.reason


def test_symmetry_falls_with_one_sided_involvement_and_ignores_which_side():
    edema = {m: 0.4 for m in (*QUADS, *HAMS, *ADDUCTORS)}
    both = _degree(_table(edema), "symmetric_involvement")
    assert both.available and both.degree > 0.9
    left_only = _degree(_table(edema, right_factor=0.0), "symmetric_involvement")
    assert left_only.available and left_only.degree < 0.05
    swapped = _table(edema, right_factor=0.0)
    swapped["side"] = swapped["side"].map({"left": "right", "right": "left"})
    assert _degree(swapped, "symmetric_involvement").value == pytest.approx(left_only.value)
    quiet = _degree(_table({}), "symmetric_involvement")
    assert not quiet.available and "without involvement" in quiet.reason


def test_the_template_shows_zhangs_four_features_with_counts_and_source():
    from typer.testing import CliRunner

    from mri_scoring.cli import app

    shown = CliRunner().invoke(app, ["templates"]).output
    published = {"subcutaneous_edema": (14 / 61, 32 / 56, 61, 56),
                 "tfl_fascial_edema": (19 / 61, 27 / 56, 61, 56),
                 "adductor_edema_sparing": (2 / 56, 11 / 43, 56, 43)}  # fmt: skip
    for feature_id, (p_imnm, p_dm, n_imnm, n_dm) in published.items():
        feature = TEMPLATE.feature(feature_id)
        assert feature.p_positive == pytest.approx(p_imnm, abs=1e-3)
        assert feature.p_negative == pytest.approx(p_dm, abs=1e-3)
        assert (feature.strength_positive, feature.strength_negative) == (n_imnm, n_dm)
        assert feature.source.startswith("zhang2022") and "[A]" in feature.source
        assert f"- {feature_id}:" in shown
    symmetric = TEMPLATE.feature("symmetric_involvement")
    assert (symmetric.p_positive, symmetric.p_negative) == (0.8, 0.884)
    assert "elicited" in symmetric.source and "Beta pseudo-counts 61 / 56" in shown


def test_one_limb_envelope_per_study_shared_by_fat_scale_and_compartment(
    edema_studies, monkeypatch
):
    """The fat-scale check and the compartment measure read the subcutaneous layer on the same
    slices: each limb's envelope (its convex hulls, most of the layer's cost) is found once per
    Dixon study and both readings are those of finding it twice. Guards against each measure
    finding its own envelope again (two hull passes per study: 1.4 s of a dense study's
    score before)."""
    from mri_scoring import body

    study = edema_studies[(40, 0.15)]
    separate = measure_compartments(study, SETTINGS)[0]
    calls = []
    envelope = body.muscle_envelope

    def counted(*args, **kwargs):
        calls.append(1)
        return envelope(*args, **kwargs)

    monkeypatch.setattr(body, "muscle_envelope", counted)
    measured = quantify(study, SETTINGS)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(measured.compartments, separate)
    assert measured.fat_scale["subcutaneous_voxels"] > 0
