"""The phantom agrees with its own truth, and its truth is defined independently of the
measurement code (tolerances and their reasons stated per test)."""

from __future__ import annotations

import ast
import filecmp
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import mri_scoring
from mri_scoring import phantom
from mri_scoring.config import load_config_file, load_settings
from mri_scoring.measure.masks import core_mask

SHAPE = (112, 112, 18)
MIN_CORE = 20  # a median over fewer core voxels is not a measurement
PACKAGE = Path(mri_scoring.__file__).resolve().parent


def _core(study, value):
    """The truth interior, as the phantom itself defines it (not the measurement's core)."""
    return phantom.truth_interior(study.labels == value, study.voxel_size_mm)


def _ff(study):
    fat, water = study.images["fat"], study.images["water"]
    return fat / np.maximum(fat + water, 1e-6)


def _package_imports(module: str) -> set[str]:
    """Package modules a module imports (absolute names), read from its source with ``ast``."""
    parts = module.split(".")
    path = PACKAGE.joinpath(*parts[1:])
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = parts[:-1] if path.name != "__init__.py" else parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mri_scoring")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if not name.startswith("mri_scoring"):
                continue
            found.add(name)
            for alias in node.names:  # "from . import schema" imports a module
                candidate = f"{name}.{alias.name}"
                sub = PACKAGE.joinpath(*candidate.split(".")[1:])
                if sub.with_suffix(".py").is_file() or sub.is_dir():
                    found.add(candidate)
    return found


PHANTOM_DIR = PACKAGE / "phantom"
# Every module of the phantom subpackage, its __init__ included (as "mri_scoring.phantom").
PHANTOM_MODULES = sorted(
    "mri_scoring.phantom" if p.stem == "__init__" else f"mri_scoring.phantom.{p.stem}"
    for p in PHANTOM_DIR.glob("*.py")
)


def _phantom_source(module: str) -> Path:
    """The file of a module named in ``PHANTOM_MODULES``."""
    tail = module.removeprefix("mri_scoring.phantom").lstrip(".")
    return PHANTOM_DIR / f"{tail or '__init__'}.py"


def _reached(start: str) -> set[str]:
    """Package modules ``start`` imports, directly or through other package modules."""
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(m for m in _package_imports(module) if m not in seen)
    return seen


def _measuring(modules: set[str]) -> list[str]:
    return sorted(
        m for m in modules if m.startswith("mri_scoring.measure") or m.endswith("quantify")
    )


def test_the_phantom_modules_and_the_import_walk_are_what_they_claim():
    """Guards against checks that cannot fail: the split phantom is all covered, the walk follows
    its known edges, and a module that does reach measurement code is flagged."""
    assert PHANTOM_MODULES, "the phantom subpackage enumerated no module"
    parts = {"", ".studies", ".drawing", ".truth", ".writer", ".cohort_tables", ".dicom_export",
             ".growth", ".mese", ".real_anatomy"}
    assert {f"mri_scoring.phantom{name}" for name in parts} == set(PHANTOM_MODULES)
    assert not list(PACKAGE.glob("phantom*.py")), "a phantom module outside the subpackage"
    reached = _reached("mri_scoring.phantom")
    assert {"mri_scoring.phantom.truth", "mri_scoring.phantom.drawing",
            "mri_scoring.phantom.growth"} <= reached
    assert "mri_scoring.phantom.writer" in reached and "mri_scoring.config" in reached
    assert "mri_scoring.measure.quantify" in _measuring(_reached("mri_scoring.pipeline"))


@pytest.mark.parametrize("module", PHANTOM_MODULES)
def test_phantom_imports_no_measurement_code(module):
    """Guards against circular proof: truth computed with the measurement's own core or rules
    (the phantom once imported core_mask and shell_reach_mm from quantify). Every phantom module,
    imports under ``TYPE_CHECKING`` included."""
    measuring = _measuring(_reached(module))
    assert not measuring, f"{module} reaches measurement code through its imports: {measuring}"


@pytest.mark.parametrize("module", PHANTOM_MODULES)
def test_truth_reads_no_measurement_settings(module):
    """The truth's interior and fatty-voxel rule come from configs/phantom.yaml, not from the
    measurement's settings.yaml (changing a measurement setting must not move the truth)."""
    source = _phantom_source(module).read_text(encoding="utf-8")
    assert "settings.yaml" not in source and "load_settings" not in source


def test_truth_and_measurement_use_the_same_fatty_voxel_convention():
    """Both files encode one convention independently; if they drift apart, truth and
    measurement assess edema over different voxels and the comparison means nothing."""
    truth = load_config_file("phantom.yaml")["truth"]["fatty_voxel_ff"]
    assert truth == load_settings()["quantify"]["fatty_voxel_ff"]


@pytest.mark.parametrize(
    "voxel_size_mm, identical",
    [
        ((3.28125, 3.28125, 16.7), True),  # the test grids: 128 x 128 x 24 over 420 x 400 mm
        ((3.75, 3.75, 22.2), True),
        ((2.625, 2.625, 12.5), True),
        ((1.5, 1.5, 5.0), True),
        ((1.0, 1.0, 1.0), False),  # box reaches (2,2,2) voxels = 3.5 mm, the ball 2 mm
        ((1.2, 1.2, 4.0), False),
        ((2.0, 2.0, 2.0), False),  # slices not thicker than 1.5 voxels: the box reaches z
    ],
)
def test_truth_interior_contains_the_measured_core(voxel_size_mm, identical):
    """Where the two definitions differ, the measured core (box erosion) is the smaller one:
    the box of the measurement contains the truth's Euclidean ball. They are identical on grids
    with in-plane voxels >= 1.42 mm and slices thicker than 1.5 in-plane voxels."""
    rng = np.random.default_rng(0)
    blobs = ndimage.gaussian_filter(rng.standard_normal((40, 40, 30)), (3, 3, 2)) > 0.05
    labels, _ = ndimage.label(blobs)
    for value in range(1, labels.max() + 1):
        inside = labels == value
        if inside.sum() < 200:
            continue
        truth = phantom.truth_interior(inside, voxel_size_mm)
        measured = core_mask(np.pad(inside, 1).astype(np.int16), voxel_size_mm, 2.0)
        measured = measured[1:-1, 1:-1, 1:-1]
        assert not (measured & ~truth).any(), "measured core leaves the truth interior"
        if identical:
            assert np.array_equal(measured, truth), voxel_size_mm
    if not identical:
        assert truth.sum() > measured.sum(), "the grid was meant to show a difference"


def test_fine_grid_truth_and_measured_core_medians_differ_little():
    """At 1 mm in plane the truth interior holds more voxels than the measured core (a 2 mm
    Euclidean ball against a 5 x 5 box): a rim of up to 1.5 mm of texture more. Noiseless FF
    medians over the two sets then differ by <= 0.02 (measured 0.006 on the first anatomy, 0.018
    on the one sized to the Handsfield norms: semitendinosus at FF 0.42, whose texture is
    correlated over 8 mm, so the rim holds few independent samples). The quantify tests hold
    truth to 0.01 only on grids where the two definitions coincide (test above)."""
    study = phantom.make_study(
        "imnm", seed=2, shape=(420, 420, 4), voxel_size_mm=(1.0, 1.0, 100.0), noise=0.0,
        roles=("fat", "water"),
    )  # fmt: skip
    ff = _ff(study)
    differences, bigger = [], 0
    boxes = ndimage.find_objects(study.labels)
    for entry in study.truth["muscles"].values():
        box = boxes[entry["label"] - 1] if entry["label"] <= len(boxes) else None
        if box is None:
            continue
        inside = study.labels[box] == entry["label"]  # both definitions pad outside the box
        truth = phantom.truth_interior(inside, study.voxel_size_mm)
        measured = core_mask(np.pad(inside, 1).astype(np.int16), study.voxel_size_mm, 2.0)
        measured = measured[1:-1, 1:-1, 1:-1]
        ff_box = ff[box]
        if measured.sum() < 200:
            continue
        bigger += truth.sum() > measured.sum()
        differences.append(abs(float(np.median(ff_box[truth]) - np.median(ff_box[measured]))))
    assert len(differences) >= 20 and bigger >= 20, "the definitions were meant to differ here"
    assert max(differences) <= 0.02, (
        f"core medians differ by {max(differences):.4f}: more than texture sampling explains"
    )


@pytest.mark.parametrize("pattern", ["imnm", "dm", "normal"])
def test_noiseless_dixon_reproduces_truth_ff(pattern):
    """Core median FF from noiseless water/fat equals the truth within 0.005."""
    study = phantom.make_study(pattern, seed=4, shape=SHAPE, noise=0.0)
    ff = _ff(study)
    checked = 0
    for entry in study.truth["muscles"].values():
        core = _core(study, entry["label"])
        if core.sum() < MIN_CORE:
            continue
        error = float(np.median(ff[core]) - entry["ff_median_core"])
        # Only the 0.5-voxel partial-volume blur separates image and truth here (no noise, and
        # the interior lies beyond the blur's reach): texture smoothing moves medians < 0.005.
        assert abs(error) <= 0.005, f"{entry['muscle']} {entry['side']}: FF off by {error:.4f}"
        checked += 1
    assert checked >= 25


def test_noisy_dixon_within_002_in_core():
    """With Rician noise (SNR 50) and a 15 % bias field the core median FF is within 0.02."""
    study = phantom.make_study("imnm", seed=5, shape=SHAPE)
    ff = _ff(study)
    errors = []
    for entry in study.truth["muscles"].values():
        core = _core(study, entry["label"])
        if core.sum() >= MIN_CORE:
            errors.append(float(np.median(ff[core]) - entry["ff_median_core"]))
    assert len(errors) >= 25
    # Plain F/(F+W) with no Rician correction: noise at SNR 50 moves core medians both ways
    # (measured -0.012..+0.013 over seeds); 0.02 leaves room for a smaller muscle.
    assert max(map(abs, errors)) <= 0.02, f"FF errors {min(errors):.4f}..{max(errors):.4f}"


def test_truth_follows_pattern_in_the_direction_literature_says(imnm_small, dm_small):
    imnm = imnm_small.truth["muscles"]
    assert imnm["adductor_magnus_left"]["ff_median"] > 3 * imnm["rectus_femoris_left"]["ff_median"]
    assert imnm["adductor_brevis_right"]["edema_fraction"] > 0.4
    assert imnm["obturator_externus_left"]["atrophy_factor"] < 0.6
    assert not imnm["semitendinosus_left"]["fascial_edema"]
    assert dm_small.truth["muscles"]["semitendinosus_right"]["fascial_edema"]


def test_edema_is_where_truth_says(imnm_small):
    """STIR is bright in edematous muscles and not in the others (patchy: a fraction, not all)."""
    stir = imnm_small.images["stir"]
    ab = imnm_small.labels == imnm_small.truth["muscles"]["adductor_brevis_left"]["label"]
    rf_normal = phantom.make_study("normal", seed=1, shape=(96, 96, 16))
    rf = rf_normal.labels == rf_normal.truth["muscles"]["rectus_femoris_left"]["label"]
    bright = np.median(rf_normal.images["stir"][rf]) * 1.4
    assert 0.3 < (stir[ab] > bright).mean() < 0.8  # truth ~0.55, patchy
    assert (rf_normal.images["stir"][rf] > bright).mean() < 0.02


def test_fascial_edema_is_a_bright_band_outside_the_muscle():
    study = phantom.make_study(
        "normal", seed=6, shape=SHAPE, overrides={"semitendinosus": {"fascial": True}}
    )
    st = study.labels == study.truth["muscles"]["semitendinosus_right"]["label"]
    ring = ndimage.binary_dilation(st, iterations=1) & ~st & (study.labels == 0)
    other = study.labels == study.truth["muscles"]["rectus_femoris_right"]["label"]
    other_ring = ndimage.binary_dilation(other, iterations=1) & ~other & (study.labels == 0)
    stir = study.images["stir"]
    assert np.median(stir[ring]) > 1.2 > np.median(stir[other_ring])
    assert study.truth["fascial_voxels"] > 0


def test_muscles_sit_at_their_side_and_level(imnm_small):
    truth = imnm_small.truth["muscles"]
    nz = imnm_small.shape[2]
    for name, entry in truth.items():
        if not entry["voxels"]:
            continue
        assert (entry["centroid_x_mm"] < 0) == (entry["side"] == "left"), name
    # z index nz-1 is the most proximal slice (RAS+: superior).
    for proximal in ("obturator_externus", "pectineus"):
        assert truth[f"{proximal}_left"]["z_range"][0] >= 0.75 * (nz - 1)
    lo, _hi = truth["adductor_brevis_left"]["z_range"]
    assert lo >= 0.45 * (nz - 1)
    assert truth["biceps_femoris_short_head_left"]["z_range"][1] <= 0.6 * (nz - 1)


def test_atrophy_shrinks_the_muscle_and_fat_takes_its_place():
    normal = phantom.make_study("normal", seed=7, shape=SHAPE)
    atrophic = phantom.make_study(
        "normal", seed=7, shape=SHAPE, overrides={"vastus_lateralis": {"atrophy": 0.5}}
    )
    n = normal.truth["muscles"]["vastus_lateralis_left"]["voxels"]
    a = atrophic.truth["muscles"]["vastus_lateralis_left"]["voxels"]
    assert abs(a / n - 0.5) < 0.03
    freed = (normal.labels == normal.truth["muscles"]["vastus_lateralis_left"]["label"]) & (
        atrophic.labels == 0
    )
    assert np.median(_ff(atrophic)[freed]) > 0.7


def test_same_seed_same_files_different_seed_differs(tmp_path):
    a = phantom.write_study(phantom.make_study("dm", seed=3, shape=(64, 64, 8)), tmp_path / "a")
    b = phantom.write_study(phantom.make_study("dm", seed=3, shape=(64, 64, 8)), tmp_path / "b")
    c = phantom.write_study(phantom.make_study("dm", seed=4, shape=(64, 64, 8)), tmp_path / "c")
    names = sorted(p.name for p in a.iterdir())
    assert {"labels.nii.gz", "labels.tsv", "fat.nii.gz", "stir.nii.gz", "truth.json"} <= set(names)
    _match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors
    _, differ, _ = filecmp.cmpfiles(a, c, ["fat.nii.gz", "stir.nii.gz"], shallow=False)
    assert differ == ["fat.nii.gz", "stir.nii.gz"]


def test_normative_shares_match_the_normal_phantom():
    """configs/norms_volume_shares.yaml agrees with the phantom within 10 % relative (or 0.002)."""
    shares = load_config_file("norms_volume_shares.yaml")["shares"]
    measured = phantom.normal_volume_shares()
    for muscle, share in measured.items():
        assert abs(shares[muscle] - share) <= max(0.1 * share, 0.002), muscle


def test_every_phantom_muscle_is_in_the_vocabulary():
    phantom.check_vocabulary()
