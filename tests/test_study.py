"""Study discovery and loading: layouts, naming styles, storage orientations, label schemes."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from mri_scoring import phantom
from mri_scoring.anatomy import identify_scheme, label_scheme, match_label_name
from mri_scoring.io.discover import discover_studies, sanitise_id
from mri_scoring.io.study import load_study
from mri_scoring.memory_layout import dense_steps

from .helpers import TINY, reorient_folder, write_phantom

STYLES = {
    "canonical": lambda m, s: f"{m}_{s}",
    "short_suffix": lambda m, s: f"{m}_{s[0]}",
    "title_paren": lambda m, s: f"{m.replace('_', ' ').title()} ({s[0].upper()})",
    "prefix": lambda m, s: f"{s[0].upper()} {m.replace('_', ' ')}",
    "word_prefix": lambda m, s: f"{s} {m.replace('_', ' ')}",
    "pascal": lambda m, s: f"{s.title()}_{m.replace('_', ' ').title().replace(' ', '_')}",
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder, study = write_phantom(tmp_path_factory.mktemp("ref") / "study", "imnm", seed=11)
    return load_study(folder), study


def _by_muscle(study):
    """(muscle, side) -> sorted FF values of that label: orientation and numbering free."""
    out = {}
    ff = study.images["ff"]
    for value, info in study.label_info.items():
        if info.kind == "muscle":
            out[(info.muscle, info.side)] = np.sort(ff[study.labels == value])
    return out


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_naming_style_resolves_to_the_same_muscles(tmp_path, reference, style):
    loaded, made = reference
    names = {}
    for value, info in made.label_info.items():
        names[value] = STYLES[style](info.muscle, info.side) if info.kind == "muscle" else info.name
    folder, _ = write_phantom(tmp_path / "s", "imnm", seed=11, label_names=names)
    study = load_study(folder)
    assert not [q for q in study.qc if q.code == "label_unknown"]
    expected, got = _by_muscle(loaded), _by_muscle(study)
    assert expected.keys() == got.keys() and len(got) >= 40
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_storage_orientations_give_identical_arrays(tmp_path, reference, seed):
    loaded, _ = reference
    rng = np.random.default_rng(seed)
    folder, _ = write_phantom(tmp_path / "s", "imnm", seed=11)
    axes = rng.permutation(3)
    flips = rng.choice([-1, 1], 3)
    ornt = np.column_stack([axes, flips]).astype(float)
    reorient_folder(folder, ornt)
    assert not np.array_equal(nib.load(folder / "labels.nii.gz").affine, loaded.affine)
    study = load_study(folder)
    assert study.shape == loaded.shape
    np.testing.assert_allclose(study.affine, loaded.affine, atol=1e-5)
    np.testing.assert_array_equal(study.labels, loaded.labels)
    for role in loaded.images:
        np.testing.assert_array_equal(study.images[role], loaded.images[role])
        # Flipped storage is laid out in memory order at load, never left as a view with
        # negative strides (which every later read would have to copy: 8x slower quantify).
        assert dense_steps(study.images[role]) is not None, role
    assert dense_steps(study.labels) is not None


def test_bids_with_sessions_and_derivatives(tmp_path, reference):
    loaded, _ = reference
    root = tmp_path / "bids"
    made = phantom.make_study("imnm", seed=11, shape=TINY)
    phantom.write_study(made, root, layout="bids", subject="01", session="01", ff_scale="percent")
    phantom.write_study(made, root, layout="bids", subject="01", session="02")
    phantom.write_study(made, root, layout="bids", subject="02", session=None)
    studies = discover_studies(root)
    assert [s.study_id for s in studies] == ["sub-01_ses-01", "sub-01_ses-02", "sub-02"]
    for found in studies:
        study = load_study(found)
        np.testing.assert_array_equal(study.labels, loaded.labels)
        np.testing.assert_allclose(study.images["ff"], loaded.images["ff"], atol=1e-5)


def test_musclemap_bids_usage_without_tsv(tmp_path):
    """sub-X_ses-Y_fat/_water/_fatfrac/_T2w, segmentation in derivatives with no table."""
    made = phantom.make_study("dm", seed=3, shape=TINY, reference_labels=False)
    mm_codes = {v: k for k, v in label_scheme("musclemap").names.items()}
    relabelled = np.zeros_like(made.labels)
    for value, info in made.label_info.items():
        name = f"{info.side.title()} {info.muscle.replace('_', ' ').title()}"
        if name in mm_codes:
            relabelled[made.labels == value] = mm_codes[name]
    made.labels = relabelled
    made.label_info = {}
    anat = tmp_path / "ds" / "sub-07" / "ses-1" / "anat"
    seg = tmp_path / "ds" / "derivatives" / "musclemap" / "sub-07" / "ses-1" / "anat"
    anat.mkdir(parents=True)
    seg.mkdir(parents=True)
    for role, suffix in (("fat", "fat"), ("water", "water"), ("ff", "fatfrac"), ("stir", "T2w")):
        nib.save(
            nib.Nifti1Image(made.images[role], made.affine), anat / f"sub-07_ses-1_{suffix}.nii.gz"
        )
    nib.save(
        nib.Nifti1Image(made.labels.astype(np.int16), made.affine), seg / "sub-07_ses-1_dseg.nii.gz"
    )
    [found] = discover_studies(tmp_path / "ds")
    assert found.study_id == "sub-07_ses-1"
    study = load_study(found)
    assert any(q.code == "label_scheme_detected" and "musclemap" in q.message for q in study.qc)
    muscles = {info.muscle for info in study.label_info.values()}
    assert {"adductor_brevis", "semitendinosus", "obturator_externus"} <= muscles
    assert set(study.images) == {"fat", "water", "ff", "stir"}


def _write_coded(tmp_path, made, scheme, mapping):
    coded = np.zeros_like(made.labels)
    for value, info in made.label_info.items():
        code = mapping(info)
        if code is not None:
            coded[made.labels == value] = code
    folder = tmp_path / scheme
    folder.mkdir()
    nib.save(nib.Nifti1Image(coded.astype(np.int16), made.affine), folder / "labels.nii.gz")
    nib.save(nib.Nifti1Image(made.images["ff"], made.affine), folder / "ff.nii.gz")
    return folder


def test_musclesense_codes_without_tsv(tmp_path):
    made = phantom.make_study("imnm", seed=4, shape=TINY)
    names = {v: match_label_name(n) for v, n in label_scheme("musclesense").names.items()}
    by_key = {(i.muscle, i.side): v for v, i in names.items()}

    def code(info):
        muscle = "biceps_femoris" if info.muscle.startswith("biceps_femoris") else info.muscle
        return by_key.get((muscle, info.side))

    study = load_study(_write_coded(tmp_path, made, "musclesense", code))
    assert any("musclesense" in q.message for q in study.qc)
    sides = {(i.muscle, i.side) for i in study.label_info.values()}
    assert ("semitendinosus", "right") in sides and ("femur_marrow", "left") in sides
    assert ("biceps_femoris", "left") in sides


def test_totalsegmentator_compartments_map_to_groups(tmp_path):
    made = phantom.make_study("imnm", seed=5, shape=TINY, reference_labels=False)
    names = label_scheme("totalsegmentator").names
    index = {
        match_label_name(n).muscle + "_" + match_label_name(n).side: v for v, n in names.items()
    }

    def code(info):
        key = {
            "quadriceps": "quadriceps",
            "hamstrings": "hamstrings",
            "adductors": "adductors",
        }.get(info.group)
        if info.muscle == "sartorius":
            key = "sartorius"
        return index.get(f"{key}_{info.side}") if key else None

    study = load_study(_write_coded(tmp_path, made, "ts", code))
    kinds = {(i.kind, i.muscle, i.side) for i in study.label_info.values()}
    assert ("group", "quadriceps", "left") in kinds and ("group", "hamstrings", "right") in kinds
    assert ("group", "adductors", "left") in kinds and ("muscle", "sartorius", "left") in kinds


def test_scheme_identification_rules():
    assert identify_scheme({1, 2, 3, 4, 5, 6, 7, 8}).name == "totalsegmentator"
    assert identify_scheme({1, 2, 11, 21, 31}).name == "musclesense"
    assert identify_scheme({7221, 7222, 6211}).name == "musclemap"
    assert identify_scheme({1, 999}) is None


def test_labels_option_overrides_detection(tmp_path):
    made = phantom.make_study("normal", seed=6, shape=TINY)
    folder = _write_coded(tmp_path, made, "forced", lambda i: 1 if i.muscle == "gracilis" else None)
    study = load_study(folder, labels="musclesense")
    assert study.label_info[1].muscle == "rectus_femoris"
    study = load_study(folder, labels="totalsegmentator")
    assert study.label_info[1].kind == "group"


def test_ff_map_percent_detected_and_declared(tmp_path, reference):
    loaded, _ = reference
    folder, _ = write_phantom(tmp_path / "pct", "imnm", seed=11, ff_scale="percent")
    meta = json.loads((folder / "study.json").read_text())
    del meta["fat_fraction_scale"]
    (folder / "study.json").write_text(json.dumps(meta))
    np.testing.assert_allclose(load_study(folder).images["ff"], loaded.images["ff"], atol=1e-6)


def test_left_named_muscles_on_the_right_are_flagged(tmp_path):
    made = phantom.make_study("normal", seed=1, shape=TINY)
    names = {}
    for value, info in made.label_info.items():
        other = "right" if info.side == "left" else "left"
        names[value] = f"{info.muscle}_{other}"
    folder = phantom.write_study(made, tmp_path / "swapped", label_names=names)
    study = load_study(folder)
    [finding] = [q for q in study.qc if q.code == "side_mismatch"]
    assert "body midline" in finding.message


def test_resample_option_puts_images_on_the_label_grid(tmp_path):
    folder, _ = write_phantom(tmp_path / "s", "normal", seed=2)
    img = nib.load(folder / "stir.nii.gz")
    shifted = img.affine.copy()
    shifted[0, 3] += 0.5 * shifted[0, 0]
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), shifted), folder / "stir.nii.gz")
    study = load_study(folder, resample=True)
    assert study.images["stir"].shape == study.labels.shape
    assert any(q.code == "resampled" for q in study.qc)
    # The STIR grid sits half a voxel further along x: linear resampling onto the label grid
    # gives the mean of the two STIR voxels either side (not the unshifted image, not zeros).
    original = np.asanyarray(img.dataobj).astype(np.float64)
    expected = 0.5 * (original[:-1] + original[1:])
    resampled = np.asarray(study.images["stir"], dtype=np.float64)[1:]
    # nibabel resamples in the stored dtype: 16-bit magnitudes come back rounded (<= 0.5 of a
    # stored unit, 0.05 % of normal muscle in these files).
    np.testing.assert_allclose(resampled, expected, rtol=0, atol=0.5 + 1e-6)
    assert not np.allclose(resampled, original[1:]), "the shift was meant to change values"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("../../etc/passwd", "etc_passwd"),
        ("a b/c", "a_b_c"),
        ("...", "study"),
        ("ok-1.2", "ok-1.2"),
    ],
)
def test_ids_are_sanitised(raw, expected):
    assert sanitise_id(raw) == expected


def test_duplicate_ids_use_relative_paths(tmp_path):
    for group in ("siteA", "siteB"):
        write_phantom(tmp_path / group / "p1", "normal", seed=0, shape=(48, 48, 6))
    ids = [s.study_id for s in discover_studies(tmp_path)]
    assert ids == ["siteA_p1", "siteB_p1"]


def test_unscaled_integer_images_stay_integer_and_measure_like_float(tmp_path):
    """16-bit images without header scaling are kept as stored (half the memory of float32):
    every measure must equal that of the same study converted to float32, and sums of two
    16-bit images must not overflow anywhere (quantify, report)."""
    import dataclasses

    from mri_scoring.pipeline import score_study

    folder, _ = write_phantom(tmp_path / "s", "imnm", seed=14, roles=("fat", "water", "stir"))
    study = load_study(folder)
    assert {study.images[r].dtype for r in ("fat", "water", "stir")} == {np.dtype(np.int16)}
    water = study.float_image("water")
    assert water.dtype == np.float32 and np.array_equal(water, study.images["water"])
    as_float = dataclasses.replace(
        study, images={r: a.astype(np.float32) for r, a in study.images.items()}
    )
    columns = ["ff_median", "ff_p90", "edema_fraction", "fascial_edema_fraction", "volume_ml"]
    got = score_study(study).muscles[columns].to_numpy(float)
    expected = score_study(as_float).muscles[columns].to_numpy(float)
    np.testing.assert_array_equal(got, expected)

    # Fat and water of 20000 each: 40000 does not fit in int16. Flat images have no dark
    # background, so no noise correction applies and every muscle must read FF 0.5 exactly.
    high = np.full(study.shape, 20000, np.int16)
    flat = dataclasses.replace(study, images={"fat": high, "water": high.copy()})
    result = score_study(flat)
    muscles = result.muscles[result.muscles["kind"] == "muscle"]
    np.testing.assert_allclose(muscles["ff_median"], 0.5, atol=1e-3)
    page = result.save(tmp_path / "out") / "report.html"
    assert page.is_file()
