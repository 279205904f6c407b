"""Draw a synthetic bilateral thigh study with known ground truth (:func:`make_study`).

The phantom is a stack of axial slices from the hip (proximal) to above the knee (distal), both
thighs side by side, left thigh at negative world x (RAS+). Each thigh has skin, subcutaneous fat,
a femur (cortex and fatty marrow) and the muscles of the vocabulary at their anatomical place and
level (``configs/phantom.yaml``): obturator externus and pectineus only proximally, adductor brevis
in the upper half, biceps femoris short head in the distal half, thin intermuscular fat septa.

Per muscle and side the truth holds a fat fraction (with lognormal intramuscular texture), a patchy
edema fraction, fascial edema (fluid in the band just outside the muscle) and atrophy (the muscle
shrinks and fat takes its place). Images are made from the truth as a scanner would give them:
Dixon water/fat magnitudes with Rician noise and a smooth coil bias, a fat-fraction map, a STIR
image with its own bias, a water-T2 map (ms) and a T1-weighted image, all with partial-volume blur.

This module draws a study (:func:`make_study`) from the parts of the ``phantom`` subpackage, each
its own job: ``drawing`` (geometry, tissue codes, random fields, bias, Rician noise), ``truth``
(the truth's own definitions: :func:`truth_interior`, the truth table) and ``writer``
(:func:`write_study`). The subpackage re-exports their public names. None of them imports
measurement code or reads the measurement settings (``tests/test_phantom.py``).

Examples
--------
>>> from mri_scoring import phantom
>>> study = phantom.make_study("imnm", seed=0, shape=(96, 96, 16))
>>> study.truth["muscles"]["adductor_magnus_left"]["ff_median"] > 0.3
True
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ..anatomy import groups, match_label_name, vocabulary
from ..io.discover import IMAGE_ROLES
from ..io.study import Study
from .drawing import (
    DEFAULT_FOV_MM,
    FASCIAL_FLUID,
    MUSCLE,
    SEPTUM_FAT,
    SKIN,
    SUBCUT_FAT,
    TISSUE_CODES,
    apply_atrophy,
    band_reach_mm,
    bias_field,
    build_anatomy,
    phantom_config,
    phantom_muscles,
    rician,
    smooth_field,
    subcutaneous_edema,
)
from .growth import adult_age, body_for_age, check_sex, healthy_ff, volume_fraction
from .truth import (
    MuscleSpec,
    interior_depth_mm,
    normal_volume_shares,
    truth_interior,
    truth_table,
)
from .writer import write_study

# The phantom's public names: the functions made here and those of its parts, re-exported by
# the subpackage so that ``from mri_scoring import phantom; phantom.write_study(...)`` is the
# one way in.
__all__ = [
    "DEFAULT_FOV_MM",
    "IMAGE_ROLES",
    "PATTERNS",
    "MuscleSpec",
    "PhantomStudy",
    "check_vocabulary",
    "interior_depth_mm",
    "label_table",
    "make_study",
    "normal_volume_shares",
    "pattern_specs",
    "phantom_muscles",
    "truth_interior",
    "write_study",
]

PATTERNS = ("normal", "imnm", "dm", "dystrophy", "ass")


@dataclass(repr=False)  # the one-line Study repr, not 40,000 characters of arrays
class PhantomStudy(Study):
    """A :class:`~mri_scoring.io.study.Study` made by :func:`make_study`, with its ground truth."""

    truth: dict[str, Any] = field(default_factory=dict)


def label_table() -> dict[int, str]:
    """The phantom's label table: value -> ``<muscle>_<side>`` (and femur marrow references)."""
    table: dict[int, str] = {}
    for i, muscle in enumerate(phantom_muscles()):
        table[2 * i + 1] = f"{muscle}_left"
        table[2 * i + 2] = f"{muscle}_right"
    table[91] = "femur_marrow_left"
    table[92] = "femur_marrow_right"
    return table


def _apply_fragment(specs: dict[str, dict], fragment: dict[str, dict]) -> None:
    """Apply a pattern fragment (group keys first, then muscle keys) to side-less specs."""
    group_map = groups()
    ordered = sorted(fragment.items(), key=lambda item: item[0] not in group_map)
    for key, values in ordered:
        members = group_map.get(key, (key,))
        for muscle in members:
            if muscle in specs:
                specs[muscle].update(values)


def pattern_specs(
    pattern: str = "normal",
    overrides: dict[str, dict] | None = None,
    features: dict[str, bool] | None = None,
    defaults: dict[str, Any] | None = None,
) -> dict[str, dict]:
    """Side-less truth per muscle for a named pattern, drawn features and explicit overrides.

    Parameters
    ----------
    pattern : {"normal", "imnm", "dm", "dystrophy", "ass"}
        Base pattern from ``configs/phantom.yaml`` (sources cited there).
    overrides : dict, optional
        Muscle or group -> fields (``ff``, ``edema``, ``fascial``, ``atrophy``), applied last.
    features : dict of str -> bool, optional
        Template feature states to realise (``feature_realisation`` in the phantom config),
        applied on top of ``pattern``.
    defaults : dict, optional
        Replaces fields of the config's ``defaults`` (a child's healthy ``ff``).
    """
    config = phantom_config()
    if pattern not in config["patterns"]:
        raise ValueError(f"unknown phantom pattern {pattern!r}; expected one of {PATTERNS}")
    base = {**config["defaults"], **(defaults or {})}
    specs = {m: dict(base) for m in phantom_muscles()}
    _apply_fragment(specs, config["patterns"][pattern] or {})
    if features:
        realise = config["feature_realisation"]
        unknown = set(features) - set(realise)
        if unknown:
            raise ValueError(f"phantom cannot realise features {sorted(unknown)}")
        for feature_id, present in features.items():
            if present and "present" in realise[feature_id]:
                _apply_fragment(specs, realise[feature_id]["present"])
        if features.get("quadriceps_spared") and not features.get("hamstrings_am_fat"):
            _apply_fragment(specs, realise["quadriceps_spared"]["present_without_hamstrings_fat"])
        if "quadriceps_spared" in features and not features["quadriceps_spared"]:
            posterior_ff = max(specs[m]["ff"] for m in ("semitendinosus", "adductor_magnus"))
            _apply_fragment(specs, {"quadriceps": {"ff": posterior_ff}})
    if overrides:
        unknown = {k for k in overrides if k not in specs and k not in groups()}
        if unknown:
            raise ValueError(f"unknown muscles or groups in overrides: {sorted(unknown)}")
        _apply_fragment(specs, overrides)
    return specs


def make_study(
    pattern: str = "normal",
    seed: int = 0,
    *,
    shape: tuple[int, int, int] = (128, 128, 24),
    voxel_size_mm: tuple[float, float, float] | None = None,
    noise: float = 0.02,
    bias: float = 0.15,
    stir_bias: float = 0.15,
    blur_voxels: float = 0.5,
    overrides: dict[str, dict] | None = None,
    features: dict[str, bool] | None = None,
    roles: tuple[str, ...] = IMAGE_ROLES,
    reference_labels: bool = True,
    study_id: str | None = None,
    body: dict[str, float] | None = None,
    side_overrides: dict[str, dict[str, dict]] | None = None,
    age_years: float | None = None,
    sex: str | None = None,
    size_age_years: float | None = None,
    subcutaneous: dict[str, float] | None = None,
) -> PhantomStudy:
    """Make an in-memory phantom study with its ground truth.

    Parameters
    ----------
    pattern : {"normal", "imnm", "dm", "dystrophy", "ass"}
        Disease pattern (``configs/phantom.yaml``; sources cited there; ``ass``:
        antisynthetase syndrome, with subcutaneous edema).
    seed : int
        Seed of every random draw: the same seed gives identical arrays.
    shape : tuple of int
        Grid (x, y, z); z runs from distal (0) to proximal.
    voxel_size_mm : tuple of float, optional
        Default: a 420 x 420 mm field of view over a 400 mm thigh length.
    noise : float
        Rician noise sigma relative to normal muscle water signal (0.02: SNR 50). 0 for none.
    bias, stir_bias : float
        Amplitude of the smooth multiplicative coil bias on Dixon/T1w and on STIR (0.3 = +-30 %).
    blur_voxels : float
        Gaussian partial-volume blur sigma in voxels (in plane; half of it through plane).
    overrides : dict, optional
        Per muscle or group truth overrides, e.g. ``{"semitendinosus": {"fascial": True}}``.
    features : dict, optional
        Template feature states to realise (see :func:`pattern_specs`).
    roles : tuple of str
        Image roles to produce (any of ``fat, water, ff, stir, t2map, t1w``).
    reference_labels : bool
        Label the femoral marrow (values 91/92) as a reference tissue.
    study_id : str, optional
        Default ``phantom-<pattern>-<seed>``.
    body : dict, optional
        ``height_m``, ``mass_kg`` for ``study.json`` (norms match at ``anatomy.nominal_body``).
    side_overrides : dict, optional
        ``{"left"|"right": {muscle or group: fields}}``: truth of one side only, applied after
        ``overrides`` (an asymmetric study, e.g. one thigh's quadriceps fatty).
    age_years : float, optional
        A child (or adult) of this age: the thigh, the voxels and the field of view are scaled
        by the phantom's own growth rule (:mod:`.growth`, ``configs/phantom.yaml`` ``growth``),
        healthy muscle fat is the child's, and ``study.json`` gets ``age_years``, ``sex`` and
        (unless ``body`` is given) a typical height and mass for the age.
    sex : {"male", "female"}, optional
        With ``age_years`` (default male).
    size_age_years : float, optional
        Size the muscles for this age instead of ``age_years`` (a child whose muscles did not
        grow: ``age_years=10, size_age_years=8``).
    subcutaneous : dict, optional
        ``edema``: share (0-1) of each thigh's subcutaneous fat that is edematous;
        ``fat_mm``: thickness of the subcutaneous layer (default ``anatomy.subcutaneous_fat_mm``,
        scaled with a child's thigh).

    Returns
    -------
    PhantomStudy
        Arrays on a RAS+ grid, the label table, and ``truth`` (per ``<muscle>_<side>``:
        ``label``, ``voxels``, ``volume_ml``, ``ff_mean``, ``ff_median``, ``ff_median_core``
        (over :func:`truth_interior`), ``edema_fraction``, ``edema_fraction_core`` (over the
        interior's non-fatty voxels: true FF at most ``truth.fatty_voxel_ff``),
        ``fascial_edema``, ``atrophy_factor``, ``z_range``, ``centroid_x_mm``); ``subcutaneous``
        per side: ``edema_fraction`` (share of the subcutaneous fat voxels drawn edematous)
        and ``fat_mm``.
    """
    config = phantom_config()
    signal = config["signal"]
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in shape)
    scale, child = 1.0, {}
    if age_years is not None:
        sex = check_sex(sex)
        size_age = age_years if size_age_years is None else size_age_years
        scale = volume_fraction(size_age, sex) ** (1.0 / 3.0)
        child = {"age_years": age_years, "sex": sex, **(body or body_for_age(age_years, sex))}
    if voxel_size_mm is None:
        voxel = tuple(f * scale / n for f, n in zip(DEFAULT_FOV_MM, shape, strict=True))
    else:
        voxel = tuple(float(v) for v in voxel_size_mm)
    young = child and age_years < adult_age()  # type: ignore[operator]
    specs = pattern_specs(pattern, overrides, features, {"ff": healthy_ff()} if young else None)
    unknown = set(side_overrides or {}) - {"left", "right"}
    if unknown:
        raise ValueError(f"side_overrides: sides must be left or right, got {sorted(unknown)}")
    by_side = {side: {m: dict(v) for m, v in specs.items()} for side in ("left", "right")}
    for side, fragment in (side_overrides or {}).items():
        _apply_fragment(by_side[side], fragment)
    jitter = config["side_jitter"]

    sub = {**config.get("pattern_subcutaneous", {}).get(pattern, {}), **(subcutaneous or {})}
    unknown = set(sub) - {"edema", "fat_mm"}
    if unknown:
        raise ValueError(f"unknown subcutaneous options {sorted(unknown)}; expected edema, fat_mm")
    fat_mm = float(sub.get("fat_mm", config["anatomy"]["subcutaneous_fat_mm"] * scale))
    # The drawn adult anatomy (mm) on a grid of voxels 1/scale as large: a child's thigh.
    labels, tissue, radius = build_anatomy(
        shape, tuple(v / scale for v in voxel), fat_mm / scale if "fat_mm" in sub else None
    )
    table = label_table()
    side_specs: dict[int, MuscleSpec] = {}
    for value, name in table.items():
        if value >= 91:
            continue
        muscle, side = name.rsplit("_", 1)
        base = by_side[side][muscle]
        ff = float(base["ff"]) * (1.0 + rng.uniform(-1, 1) * jitter["ff_relative"])
        edema = float(base["edema"])
        if edema > 0:
            edema = float(np.clip(edema + rng.uniform(-1, 1) * jitter["edema"], 0.0, 1.0))
        side_specs[value] = MuscleSpec(ff, edema, bool(base["fascial"]), float(base["atrophy"]))
    for value, spec in side_specs.items():
        if spec.atrophy < 1.0:
            apply_atrophy(labels, tissue, radius, value, spec.atrophy)
    if not reference_labels:
        labels[labels >= 91] = 0

    texture_sigma = tuple(signal["texture_mm"] / v for v in voxel)
    edema_sigma = tuple(signal["edema_patch_mm"] / v for v in voxel)
    texture = smooth_field(rng, shape, texture_sigma)
    patches = smooth_field(rng, shape, edema_sigma)

    # Per-voxel fat fraction and proton density.
    ff_target = np.zeros(256, np.float32)
    for value, spec in side_specs.items():
        ff_target[value] = spec.ff
    log_sd = signal["heterogeneity_log_sd"]
    muscle_mask = tissue == MUSCLE
    ff = np.zeros(shape, np.float32)
    pd = np.zeros(shape, np.float32)
    tissues = config["tissue"]
    for name, value in tissues["ff"].items():
        ff[tissue == TISSUE_CODES[name]] = value
    for name, value in tissues["pd"].items():
        pd[tissue == TISSUE_CODES[name]] = value
    lab_muscle = labels[muscle_mask].astype(np.intp)
    ff[muscle_mask] = np.clip(
        ff_target[lab_muscle] * np.exp(log_sd * texture[muscle_mask] - log_sd**2 / 2), 0.0, 0.98
    )
    pd[muscle_mask] = 1.0

    # Patchy edema: threshold the patch field at each muscle's own quantile.
    edema = np.zeros(shape, bool)
    boxes = ndimage.find_objects(labels)
    for value, spec in side_specs.items():
        if spec.edema <= 0 or value > len(boxes) or boxes[value - 1] is None:
            continue
        box = boxes[value - 1]
        inside = labels[box] == value
        cut = np.quantile(patches[box][inside], 1.0 - spec.edema)
        edema[box] |= inside & (patches[box] > cut)

    # Fascial edema: fluid in the band just outside the muscle, owned by the nearest muscle.
    fascial_values = [v for v, s in side_specs.items() if s.fascial]
    fascial = np.zeros(shape, bool)
    if fascial_values:
        muscle_labels = np.where(labels < 91, labels, 0)
        distance, indices = ndimage.distance_transform_edt(
            muscle_labels == 0, sampling=voxel, return_indices=True
        )
        nearest = muscle_labels[tuple(indices)]
        del indices
        coverage_field = smooth_field(rng, shape, edema_sigma)
        cover_cut = np.quantile(coverage_field, 1.0 - signal["fascial_coverage"])
        fascial = (
            (muscle_labels == 0)
            & np.isin(nearest, fascial_values)
            & (distance <= band_reach_mm(voxel, signal["fascial_band_mm"]))
            & np.isin(tissue, (SEPTUM_FAT, SUBCUT_FAT))
            & (coverage_field > cover_cut)
        )
        tissue[fascial] = FASCIAL_FLUID
        ff[fascial] = tissues["fascial_fluid_ff"]
        pd[fascial] = tissues["fascial_fluid_pd"]

    sub_spec = config["subcutaneous"]
    sub_edema = subcutaneous_edema(rng, tissue, voxel, float(sub.get("edema", 0.0)))
    ff[sub_edema] = sub_spec["edema_ff"]
    pd[sub_edema] = sub_spec["edema_pd"]
    water = pd * (1.0 - ff)
    fat = pd * ff
    blur = (blur_voxels, blur_voxels, blur_voxels / 2.0)
    images: dict[str, np.ndarray] = {}
    dixon_bias = bias_field(rng, shape, bias)
    if blur_voxels > 0:
        water_b = ndimage.gaussian_filter(water, blur)
        fat_b = ndimage.gaussian_filter(fat, blur)
    else:
        water_b, fat_b = water, fat
    water_img = rician(rng, water_b * dixon_bias, noise)
    fat_img = rician(rng, fat_b * dixon_bias, noise)
    if "water" in roles or "fat" in roles:
        images["water"], images["fat"] = water_img, fat_img
    if "ff" in roles:
        total = water_img + fat_img
        floor = max(tissues["ff_map_floor_sigma"] * noise, tissues["ff_map_floor"])
        images["ff"] = np.where(total > floor, fat_img / np.maximum(total, 1e-6), 0.0).astype(
            np.float32
        )
    stir_bias_field = bias_field(rng, shape, stir_bias)
    if "stir" in roles:
        stir = (
            water * (1.0 + signal["stir_edema_gain"] * edema)
            + signal["fat_suppression_residual"] * fat
        )
        stir[fascial] = signal["stir_fascial"]
        stir[sub_edema] = sub_spec["stir_edema"]
        if blur_voxels > 0:
            stir = ndimage.gaussian_filter(stir, blur)
        images["stir"] = rician(rng, stir * stir_bias_field, noise)
    if "t2map" in roles:
        t2 = np.zeros(shape, np.float32)
        t2_texture = smooth_field(rng, shape, texture_sigma)
        t2[muscle_mask] = (
            signal["t2_muscle_ms"]
            + signal["t2_texture_ms"] * t2_texture[muscle_mask]
            + (signal["t2_edema_ms"] - signal["t2_muscle_ms"]) * edema[muscle_mask]
            + signal["t2_fat_bias_ms"] * ff[muscle_mask]
        )
        t2[tissue == SKIN] = tissues["t2_skin_ms"]
        t2[fascial] = signal["t2_fascial_ms"]
        measured = t2 > 0
        t2[measured] += rng.normal(0.0, 1.0, int(measured.sum())).astype(np.float32)
        images["t2map"] = np.clip(t2, 0.0, None)
    if "t1w" in roles:
        t1 = signal["t1_muscle"] * water + signal["t1_fat"] * fat
        if blur_voxels > 0:
            t1 = ndimage.gaussian_filter(t1, blur)
        images["t1w"] = rician(rng, t1 * bias_field(rng, shape, bias), noise)
    images = {role: images[role] for role in IMAGE_ROLES if role in images}

    affine = np.diag([*voxel, 1.0])
    affine[:3, 3] = [-(n - 1) / 2.0 * v for n, v in zip(shape, voxel, strict=True)]
    present = {int(v) for v in np.unique(labels) if v}
    label_info = {v: match_label_name(table[v], v) for v in present}
    truth = truth_table(labels, ff, edema, fascial, side_specs, table, voxel, affine)
    half = shape[0] // 2
    truth["subcutaneous"] = {
        side: {
            "edema_fraction": float(sub_edema[part].sum())
            / max(int((tissue[part] == SUBCUT_FAT).sum()), 1),
            "fat_mm": float(fat_mm),
        }
        for side, part in (("left", slice(0, half)), ("right", slice(half, None)))
    }
    truth.update(
        pattern=pattern,
        seed=seed,
        shape=list(shape),
        voxel_size_mm=list(voxel),
        noise=noise,
        bias=bias,
        stir_bias=stir_bias,
        blur_voxels=blur_voxels,
        overrides=copy.deepcopy(overrides) or {},
        features=dict(features or {}),
    )
    if child:
        truth.update(
            age_years=age_years,
            sex=sex,
            size_age_years=size_age,
            linear_scale=scale,
            volume_fraction=scale**3,
        )
    return PhantomStudy(
        study_id=study_id or f"phantom-{pattern}-{seed}",
        labels=labels.astype(np.int32),
        affine=affine,
        images=images,
        label_info=label_info,
        metadata={
            "study_id": study_id or f"phantom-{pattern}-{seed}",
            "phantom": True,
            **(child or body or {}),
        },
        truth=truth,
    )


def check_vocabulary() -> None:
    """Every phantom muscle is a vocabulary muscle (guards configs/phantom.yaml edits)."""
    missing = set(phantom_muscles()) - vocabulary()
    if missing:
        raise ValueError(f"configs/phantom.yaml names muscles outside the vocabulary: {missing}")
