"""Short reprs: printing a Study or StudyResult in a notebook shows what it is, not its arrays."""

from __future__ import annotations

import mri_scoring as ms


def test_study_and_result_reprs_are_one_short_line():
    """Guards against the dataclass repr that printed every voxel (about 15,000-45,000
    characters): one line under 200 characters naming the study, grid, images and call."""
    study = ms.phantom.make_study("imnm", seed=0, shape=(48, 48, 8))
    result = ms.score_study(study)
    for text in (repr(study), repr(result)):
        assert "\n" not in text and len(text) < 200, text
    assert repr(study).startswith("Study('phantom-imnm-0', shape=(48, 48, 8), voxel_mm=(")
    assert "images=[fat, water, ff, stir, t2map, t1w]" in repr(study)
    assert f"labels={len(study.label_info)})" in repr(study)
    assert repr(result).startswith(f"StudyResult('phantom-imnm-0', call={result.likelihood.call!r}")
