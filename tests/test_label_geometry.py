"""Label maps as they come: schemes without tables, sides from the anatomy, unsided labels.

Real label maps (MuscleMap whole-body, Huashan unsided 11-label; ``tests/data/README.md``) with
intensities painted on by :func:`paint`, which knows nothing of the measurement code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mri_scoring import phantom, score_study
from mri_scoring.anatomy import identify_scheme
from mri_scoring.errors import StudyError
from mri_scoring.io.study import load_study

from .helpers import TINY

DATA = Path(__file__).parent / "data"


def paint(labels: np.ndarray, affine: np.ndarray, folder: Path, bone_values=()) -> Path:
    """Write a study whose fat-fraction map is 0.05 in every label, 0.9 in ``bone_values``."""
    folder.mkdir(parents=True)
    ff = np.where(labels > 0, 0.05, 0.0).astype(np.float32)
    ff[np.isin(labels, list(bone_values))] = 0.9
    stir = np.where(labels > 0, 100.0, 5.0).astype(np.float32)
    rng = np.random.default_rng(0)
    stir += rng.normal(0, 3, stir.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(labels, affine), folder / "labels.nii.gz")
    nib.save(nib.Nifti1Image(ff, affine), folder / "ff.nii.gz")
    nib.save(nib.Nifti1Image(stir, affine), folder / "stir.nii.gz")
    return folder


def musclemap_map() -> tuple[np.ndarray, np.ndarray]:
    """The shared MuscleMap dseg at half resolution (3 mm), as stored (RAS)."""
    image = nib.load(DATA / "musclemap" / "test_dseg_141ca85.nii.gz")
    labels = np.asarray(image.dataobj)[::2, ::2, ::2].astype(np.int16)
    affine = image.affine.copy()
    affine[:3, :3] *= 2
    return labels, affine


def test_scheme_found_when_nearly_all_values_belong_to_it():
    """One stray code must not make a 58-label MuscleMap map unrecognisable (it did: refused)."""
    values = {int(v) for v in np.unique(musclemap_map()[0]) if v}
    match = identify_scheme(values | {9999}, min_coverage=0.9)
    assert match is not None and match.name == "musclemap"
    assert match.unmatched == (9999,)
    assert identify_scheme({7101, 9998, 9999}, min_coverage=0.9) is None


def test_musclemap_whole_body_map_without_table_scores(tmp_path):
    """Sacrum (6160) and bones are reference tissues, calf and trunk muscles are known.

    Guards against the old answer: the sacrum missing from the scheme table made the whole
    study fail, and calf muscles were reported as unknown names.
    """
    labels, affine = musclemap_map()
    bones = (6151, 6152, 6160, 6171, 6172, 8161, 8162)
    study = load_study(paint(labels, affine, tmp_path / "mm", bones))
    codes = {q.code for q in study.qc}
    assert "label_scheme_detected" in codes
    assert not codes & {"label_unknown", "label_not_in_table", "side_mismatch"}, study.qc
    info = study.label_info
    assert info[6160].kind == "reference" and info[6160].muscle == "sacrum"
    assert {info[v].kind for v in (6151, 6171, 8161)} == {"reference"}
    assert info[8131].kind == "other_muscle" and info[8131].muscle == "soleus"
    assert info[7101].kind == "muscle" and info[7101].side == "left"
    result = score_study(study)
    table = result.muscles
    bone_rows = table[table["label"].isin(bones)]
    assert set(bone_rows["kind"]) == {"reference"}, bone_rows[["label", "muscle", "kind"]]
    thigh = table[table["kind"] == "muscle"]
    assert {"adductor_magnus", "vastus_lateralis"} <= set(thigh["muscle"])
    assert not thigh["muscle"].isin(["soleus", "sacrum"]).any()


def huashan_map() -> nib.Nifti1Image:
    return nib.load(DATA / "huashan" / "THIGH_123_0001.nii.gz")


def test_unsided_small_integer_map_without_table_is_refused(tmp_path):
    """Values 1-11 in both thighs were read as Musclesense's right-side labels (wrong names,
    both thighs in one "right" row); now the map is refused and the table asked for."""
    image = huashan_map()
    folder = paint(np.asarray(image.dataobj).astype(np.uint8), image.affine, tmp_path / "hs")
    with pytest.raises(StudyError) as caught:
        load_study(folder)
    message = str(caught.value)
    assert "lie in both thighs" in message and "labels.tsv" in message and "--labels" in message


def test_unsided_map_with_its_table_scores_left_and_right_rows(tmp_path):
    image = huashan_map()
    labels = np.asarray(image.dataobj).astype(np.uint8)
    folder = paint(labels, image.affine, tmp_path / "hs")
    shutil.copy(DATA / "huashan" / "labels.tsv", folder / "labels.tsv")
    study = load_study(folder)
    [split] = [q for q in study.qc if q.code == "unsided_labels_split"]
    assert "11 unsided labels" in split.message
    assert not any(q.code == "side_mismatch" for q in study.qc)
    sides = {(i.muscle, i.side) for i in study.label_info.values()}
    for muscle in ("sartorius", "adductor_magnus", "semitendinosus", "vastus_lateralis"):
        assert {(muscle, "left"), (muscle, "right")} <= sides
    # Independent check of the split: in world RAS+, every left part lies at smaller x than the
    # right part of the same muscle, and the voxel count is conserved.
    canonical = nib.as_closest_canonical(image)
    original = np.asarray(canonical.dataobj)
    assert int((study.labels > 0).sum()) == int((original > 0).sum())
    centre_x = {}
    for value, info in study.label_info.items():
        ijk = np.argwhere(study.labels == value).mean(axis=0)
        centre_x[(info.muscle, info.side)] = float(study.affine[0, :3] @ ijk + study.affine[0, 3])
    for muscle in ("sartorius", "gracilis", "vastus_lateralis"):
        assert centre_x[(muscle, "left")] < centre_x[(muscle, "right")]
    table = score_study(study).muscles
    assert set(table.loc[table["kind"] == "muscle", "side"]) == {"left", "right"}


def _shifted(made, shift_mm: float):
    affine = made.affine.copy()
    affine[0, 3] += shift_mm
    made.affine = affine
    return made


def test_patient_lying_off_centre_is_not_a_side_mismatch(tmp_path):
    """The side check assumed the midline at world x = 0: 70 mm off-centre gave a false warning."""
    made = _shifted(phantom.make_study("normal", seed=1, shape=TINY), 70.0)
    study = load_study(phantom.write_study(made, tmp_path / "off"))
    assert not any(q.code == "side_mismatch" for q in study.qc), study.qc


def test_true_swap_is_still_flagged_off_centre(tmp_path):
    made = _shifted(phantom.make_study("normal", seed=1, shape=TINY), 70.0)
    names = {}
    for value, info in made.label_info.items():
        other = {"left": "right", "right": "left"}.get(info.side, "")
        names[value] = f"{info.muscle}_{other}" if other else info.muscle
    study = load_study(phantom.write_study(made, tmp_path / "swap", label_names=names))
    [finding] = [q for q in study.qc if q.code == "side_mismatch"]
    assert "body midline" in finding.message


def test_single_mislabelled_muscle_is_named(tmp_path):
    made = phantom.make_study("normal", seed=2, shape=TINY)
    names = {v: f"{i.muscle}_{i.side}" if i.side else i.muscle for v, i in made.label_info.items()}
    [target] = [
        v for v, i in made.label_info.items() if i.muscle == "vastus_lateralis" and i.side == "left"
    ]
    names[target] = "vastus_lateralis_right"
    study = load_study(phantom.write_study(made, tmp_path / "one", label_names=names))
    [finding] = [q for q in study.qc if q.code == "side_mismatch"]
    assert "vastus_lateralis_right" in finding.message
    assert "gracilis" not in finding.message


def test_myoqmri_maps_are_recognised_and_unused_images_noted(tmp_path):
    """MyoQMRI's muscle-BIDS outputs (<subject>_t2, <subject>_ff) are read as the T2 and FF
    maps; an image no role claims (its B1 map) is named in QC instead of silently ignored."""
    made = phantom.make_study("imnm", seed=3, shape=TINY)
    folder = tmp_path / "myo"
    folder.mkdir()
    nib.save(nib.Nifti1Image(made.labels.astype(np.int16), made.affine), folder / "labels.nii.gz")
    (folder / "labels.tsv").write_text(
        "index\tname\n"
        + "".join(f"{v}\t{i.muscle}_{i.side}\n" for v, i in sorted(made.label_info.items()))
    )
    nib.save(nib.Nifti1Image(made.images["t2map"], made.affine), folder / "P01_t2.nii.gz")
    nib.save(nib.Nifti1Image(made.images["ff"], made.affine), folder / "P01_ff.nii.gz")
    b1 = np.ones(made.shape, np.float32)
    nib.save(nib.Nifti1Image(b1, made.affine), folder / "P01_b1.nii.gz")
    study = load_study(folder)
    assert set(study.images) == {"t2map", "ff"}
    [note] = [q for q in study.qc if q.code == "image_not_used"]
    assert "P01_b1.nii.gz" in note.message and "P01_t2" not in note.message


def _in_layout(labels: np.ndarray, layout: str) -> np.ndarray:
    """The same map in another memory layout: C, F, flipped (negative strides) or permuted."""
    if layout == "F":
        return np.asfortranarray(labels)
    if layout == "reversed":
        return labels[::-1, :, ::-1]
    if layout == "permuted":
        return np.ascontiguousarray(labels.transpose(2, 0, 1)).transpose(1, 2, 0)
    return labels


@pytest.mark.parametrize("layout", ["C", "F", "reversed", "permuted"])
def test_label_profiles_count_what_boolean_masks_count(layout: str) -> None:
    """Per-slab counts equal those of one boolean mask per label, in any memory layout.

    The truth is the naive definition (``(labels == v).sum(axis=...)``); the wrong answers this
    guards against are counts taken along the memory axis instead of the array axis (F order,
    permuted strides) and labels outside ``values`` counted as one of them.
    """
    from mri_scoring.io.label_profiles import label_profiles

    rng = np.random.default_rng(3)
    labels = rng.choice([0, 0, 0, 2, 5, 7, 9], size=(13, 11, 6)).astype(np.uint8)
    labels = _in_layout(labels, layout)
    values = np.array([2, 5, 9])  # 7 is labelled but not asked for
    profiles = label_profiles(labels, values)
    for row, value in enumerate(values):
        mask = labels == value
        assert profiles.lr[row].tolist() == mask.sum(axis=(1, 2)).tolist()
        assert profiles.pa[row].tolist() == mask.sum(axis=(0, 2)).tolist()
        assert profiles.si[row].tolist() == mask.sum(axis=(0, 1)).tolist()
    assert profiles.lr.sum() == np.isin(labels, values).sum()


@pytest.mark.parametrize("layout", ["C", "F", "reversed", "permuted"])
@pytest.mark.parametrize("scale", [1, 300])
def test_one_walk_finds_the_values_present_and_their_boxes(layout: str, scale: int) -> None:
    """Values present and bounding boxes from the per-axis counts equal numpy's and scipy's.

    Truth: ``np.unique`` and ``scipy.ndimage.find_objects`` on the map renumbered 1..K. Scale
    300 takes the two-walk path (values above 255). Wrong answers guarded against: a box one
    voxel short at its far end, boxes in memory-axis order for F-ordered or permuted maps, a
    labelled-but-absent value given a box, a value missed because it lies in one slab only.
    """
    from scipy import ndimage

    from mri_scoring.io.label_profiles import label_profiles

    rng = np.random.default_rng(5)
    labels = np.zeros((17, 12, 7), np.uint16)
    for value in (2, 5, 9, 11):
        i, j, k = rng.integers(0, 10, 3)
        labels[i : i + rng.integers(1, 7), j : j + 3, k % 7 : k % 7 + 2] = value * scale
    labels[16, 11, 6] = 13 * scale  # one voxel in the last slab of every axis
    labels = _in_layout(labels, layout)
    present = np.unique(labels)
    present = present[present != 0]
    profiles = label_profiles(labels)
    assert profiles.values.tolist() == present.tolist()
    compact = np.searchsorted(present, labels) + 1
    compact[labels == 0] = 0
    assert profiles.boxes() == ndimage.find_objects(compact)
    asked = np.array([3 * scale, *present.tolist()])  # 3 x scale is absent: no box
    assert label_profiles(labels, asked).boxes() == [None, *ndimage.find_objects(compact)]
    assert profiles.select(asked).boxes() == [None, *ndimage.find_objects(compact)]
