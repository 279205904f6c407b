"""Dixon noise sigma when the scanner masks the air to zero (phantom truth: the drawn noise).

With a masked background no sigma was found and the Rician correction and noise floor were
skipped silently: lean muscle read ~0.02 fattier at SNR 25, and sigma was not in score.json.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from mri_scoring import phantom, schema
from mri_scoring.measure.quantify import quantify
from mri_scoring.pipeline import score_study

SHAPE = (128, 128, 24)
SNR25 = 0.04  # the phantom's noise sigma relative to normal muscle water


def _masked_air(study):
    """Water and fat set to 0 outside the body, as scanners that mask the background do."""
    body = ndimage.gaussian_filter(study.images["water"] + study.images["fat"], 1.0) > 0.3
    images = dict(study.images)
    for role in ("water", "fat"):
        images[role] = np.where(body, images[role], 0.0).astype(np.float32)
    return dataclasses.replace(study, images=images)


def _ff_errors(study, result) -> np.ndarray:
    rows = result.table[(result.table["kind"] == "muscle") & (result.table["core_voxels"] >= 100)]
    truth = study.truth["muscles"]
    names = zip(rows["muscle"], rows["side"], strict=True)
    expected = [truth[f"{m}_{s}"]["ff_median_core"] for m, s in names]
    return rows["ff_median"].to_numpy(float) - np.asarray(expected, float)


@pytest.mark.parametrize("pattern, seed", [("normal", 1), ("imnm", 2)])
def test_masked_background_does_not_skip_the_rician_correction(pattern, seed):
    """Sigma from muscle voxel differences: within 10 % of the drawn noise, FF median error of
    the muscles <= 0.006 at SNR 25 (it was ~0.02 with the correction skipped)."""
    study = phantom.make_study(pattern, seed=seed, shape=SHAPE, noise=SNR25,
                               roles=("fat", "water"))  # fmt: skip
    result = quantify(_masked_air(study))
    assert result.noise_source == "tissue_differences"
    assert result.noise_sigma == pytest.approx(SNR25, rel=0.10)
    assert schema.NOISE_FROM_TISSUE in {f.code for f in result.qc}
    errors = _ff_errors(study, result)
    assert len(errors) >= 24
    assert abs(np.median(errors)) <= 0.006, "lean muscle reads fatty: Rician bias not removed"


def test_unknown_sigma_is_warned_and_recorded_in_score_json():
    """No background and no uniform muscle to read sigma from: a warning, and score.json says
    sigma is unknown and why, instead of a silently uncorrected fat fraction."""
    study = _masked_air(phantom.make_study("normal", seed=3, shape=SHAPE, noise=SNR25,
                                           roles=("fat", "water")))  # fmt: skip
    keep = study.truth["muscles"]["sartorius_left"]["label"]
    labels = np.where(study.labels == keep, study.labels, 0)
    labels.ravel()[np.flatnonzero(labels)[40:]] = 0  # 40 voxels: too few pairs inside muscle
    small = dataclasses.replace(study, labels=labels, label_info={keep: study.label_info[keep]})
    document = score_study(small).to_dict()
    assert document["noise"] == {"sigma": None, "source": "none"}
    assert schema.NOISE_SIGMA_UNKNOWN in {q["code"] for q in document["qc"]}


def test_background_sigma_is_in_score_json():
    study = phantom.make_study("normal", seed=4, shape=(96, 96, 12), noise=SNR25,
                               roles=("fat", "water"))  # fmt: skip
    noise = score_study(study).to_dict()["noise"]
    assert noise["source"] == "background"
    assert noise["sigma"] == pytest.approx(SNR25, rel=0.10)
