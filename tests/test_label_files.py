"""Label tables as other tools write them (ITK-SNAP, 3D Slicer) and the vocabulary for every
label table the project holds.

Truth: the phantom's own label names (written in another tool's format, numbering included) must
score the same muscles as its ``labels.tsv``; the real tables are read as their tools wrote them.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mri_scoring import score_study
from mri_scoring.anatomy import match_label_name, normalise, not_tissues
from mri_scoring.errors import StudyError
from mri_scoring.io.label_files import read_label_file
from mri_scoring.io.study import load_study
from mri_scoring.io.tables import read_label_table

from .helpers import shared_dir, write_phantom

ROOT = Path(__file__).resolve().parents[1]
SHARED = shared_dir()

ITK_HEADER = """################################################
# ITK-SnAP Label Description File
# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL
################################################
    0     0    0    0        0  0  0    "Clear Label"
"""


def _itksnap(names: dict[int, str], numbered: bool = True) -> str:
    """An ITK-SNAP file as QMRITools writes it: each name led by a number (here deliberately
    not the label's index: index + 100)."""
    rows = [f'{v:5d}   200  100   50        1  1  1    "{(str(v + 100) + " ") if numbered else ""}'
            f'{n}"' for v, n in sorted(names.items())]  # fmt: skip
    return ITK_HEADER + "\n".join(rows) + "\n"


def _slicer(names: dict[int, str]) -> str:
    rows = [f"{v} {n.replace(' ', '_')} 200 100 50 255" for v, n in sorted(names.items())]
    return "# Color table file labels.ctbl\n# 3 values\n0 Background 0 0 0 0\n" + "\n".join(rows)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder, study = write_phantom(tmp_path_factory.mktemp("ref") / "s", seed=4)
    names = {v: info.name for v, info in study.label_info.items()}
    return folder, names, score_study(load_study(folder)).muscles


def _rewritten(reference, tmp_path, filename: str, text: str) -> Path:
    folder, _, _ = reference
    target = tmp_path / "study"
    target.mkdir()
    for path in folder.iterdir():
        if path.name != "labels.tsv":
            (target / path.name).write_bytes(path.read_bytes())
    (target / filename).write_text(text)
    return target


@pytest.mark.parametrize(
    ("filename", "kind"),
    [("labels.txt", "itksnap"), ("labels.label", "itksnap"), ("labels.ctbl", "slicer"),
     ("labels.txt", "slicer")],
)  # fmt: skip
def test_tool_tables_score_as_the_tsv(reference, tmp_path, filename, kind):
    """Guards the refusal "no label table ... add labels.tsv" for a study whose only table is
    an ITK-SNAP or Slicer file, and numbering read as part of the name ("104 vastus lateralis
    left" unknown): the same muscles, sides and volumes as with labels.tsv."""
    _, names, truth = reference
    text = _itksnap(names) if kind == "itksnap" else _slicer(names)
    study = load_study(_rewritten(reference, tmp_path, filename, text))
    assert study.files["label_table"].name == filename
    codes = {q.code for q in study.qc}
    assert not codes & {"label_unknown", "label_not_in_table", "label_scheme_detected"}
    got = score_study(study).muscles.set_index("label")
    want = truth.set_index("label")
    assert list(got["muscle"]) == list(want["muscle"]) and list(got["side"]) == list(want["side"])
    assert np.allclose(got["volume_ml"], want["volume_ml"])


def test_unreadable_txt_is_set_aside_and_a_bad_line_is_named(reference, tmp_path):
    """A labels.txt that is neither format (notes) is ignored with a QC note, the labels.label
    beside it used; a broken line in a recognised file is an error naming the line."""
    _, names, _ = reference
    folder = _rewritten(reference, tmp_path, "labels.txt", "scanned on the new coil\n")
    (folder / "labels.label").write_text(_itksnap(names))
    study = load_study(folder)
    assert study.files["label_table"].name == "labels.label"
    assert "label_file_ignored" in {q.code for q in study.qc}
    lines = _itksnap(names).splitlines()
    lines[7] = '    3   200  100   "vastus lateralis left"'
    (folder / "labels.label").write_text("\n".join(lines) + "\n")
    with pytest.raises(StudyError, match=r"line 8 cannot be read: .*vastus lateralis left"):
        load_study(folder)


def test_leading_number_dropped_only_when_it_is_numbering(tmp_path):
    """"91 Ilium Left" at index 101 is the ilium; a name that is only a number stays."""
    path = tmp_path / "x.label"
    path.write_text(ITK_HEADER + '  101  1 1 1  1 1 1 "91 Ilium Left"\n  7 1 1 1 1 1 1 "7"\n')
    table = read_label_file(path)
    assert table[101] == "Ilium Left" and table[7] == "7"
    info = match_label_name("31 Biceps femoris long Left", 31)
    assert (info.muscle, info.side) == ("biceps_femoris_long_head", "left")


def _tables() -> list:
    """Every label table the project holds: shipped schemes, test data, and the shared folder's
    (skipped with the reason when absent)."""
    out = [pytest.param(p, id=str(p.relative_to(ROOT)))
           for p in sorted((ROOT / "configs" / "label_schemes").glob("*.tsv"))]  # fmt: skip
    out.append(pytest.param(ROOT / "tests" / "data" / "huashan" / "labels.tsv", id="tests-huashan"))
    shared = [
        "label_schemes/musclemap_wholebody.tsv",
        "label_schemes/musclesense_thigh.tsv",
        "label_schemes/totalsegmentator_thigh_shoulder_muscles_mr.tsv",
        "external_data/Multimodal-Multiethnic-Thigh-Muscle-MRI-analysis/labels.tsv",
        "external_data/MuscleMap/test_dseg_141ca85_dseg.tsv",
        "real_data/qmritools_leg_demo/thigh_outphase_autoseg/out.txt",
        "real_data/huashan_thigh_ideal/Label descriptions for ITK-SNAP.label",
    ]
    for relative in shared:
        path = SHARED / relative
        mark = pytest.mark.skipif(not path.is_file(), reason=f"../shared/{relative} absent")
        out.append(pytest.param(path, id=f"shared/{relative}", marks=mark))
    return out


@pytest.mark.parametrize("path", _tables())
def test_vocabulary_knows_every_name_of_every_table(path):
    """Guards "Biceps femoris long", "Satorius", "Adductor minimus", calf muscles and bones read
    as unknown labels (kept out of every template): every name resolves, or is declared no
    tissue (ITK-SNAP's "Clear Label")."""
    table = read_label_table(path) if path.suffix == ".tsv" else read_label_file(path)
    assert table
    unresolved = [
        f"{v} {n!r}"
        for v, n in table.items()
        if match_label_name(n, v).kind == "unknown" and normalise(n) not in not_tissues()
    ]
    assert not unresolved, f"{path.name}: names resolving to nothing: {unresolved}"


def test_adductor_minimus_is_its_own_adductor():
    """Adductor minimus is not merged into adductor magnus (whose features use its own label)."""
    info = match_label_name("41 Adductor minimus Left", 41)
    assert (info.kind, info.muscle, info.group) == ("muscle", "adductor_minimus", "adductors")
    assert match_label_name("Satorius Right").muscle == "sartorius"
    assert match_label_name("BB").muscle == "biceps_femoris_short_head"


QMRI = SHARED / "real_data" / "qmritools_leg_demo" / "thigh_outphase_autoseg"


@pytest.mark.skipif(not QMRI.is_dir(), reason="../shared/real_data/qmritools_leg_demo absent")
@pytest.mark.parametrize("kind", ["itksnap", "slicer"])
def test_real_qmritools_map_scores_with_its_own_table(tmp_path, kind):
    """The QMRITools thigh map as labels.nii.gz with only its ITK-SNAP file as labels.txt (or
    the same table as a Slicer colour table) scores: 26 thigh muscles with sides, bones as
    reference tissue, no unknown label (it was refused for want of labels.tsv)."""
    image = nib.load(QMRI / "out.nii.gz")
    labels = np.rint(np.asanyarray(image.dataobj)).astype(np.int16)
    folder = tmp_path / "qmri"
    folder.mkdir()
    nib.save(nib.Nifti1Image(labels, image.affine), folder / "labels.nii.gz")
    ff = np.where(labels > 0, 0.06, 0.0).astype(np.float32)
    ff[labels > 100] = 0.9
    nib.save(nib.Nifti1Image(ff, image.affine), folder / "ff.nii.gz")
    table = read_label_file(QMRI / "out.txt")
    if kind == "itksnap":
        (folder / "labels.txt").write_bytes((QMRI / "out.txt").read_bytes())
    else:
        (folder / "labels.txt").write_text(_slicer({v: n for v, n in table.items() if v}))
    study = load_study(folder)
    codes = {q.code for q in study.qc}
    assert not codes & {"label_unknown", "label_not_in_table", "side_mismatch"}, study.qc
    muscles = score_study(study).muscles
    thigh = muscles[muscles["kind"] == "muscle"]
    assert len(thigh) == 26 and set(thigh["side"]) == {"left", "right"}
    assert {"biceps_femoris_long_head", "sartorius"} <= set(thigh["muscle"])
    assert set(muscles[muscles["label"] > 100]["kind"]) == {"reference"}
