"""Phantom images painted on a real label map: real muscle shapes, the phantom's own tissue rules.

A segmentation of a real body (e.g. MuscleMap's whole-body test output) gives the muscles and
bones; everything else is painted by the phantom's rules (``configs/phantom.yaml``): unlabelled
voxels inside each limb's filled outline are septal fat; a subcutaneous fat layer of
``anatomy.subcutaneous_fat_mm`` and skin of ``anatomy.skin_mm`` surround it; bones are cortex
with fatty marrow deeper than ``femur_radius_mm - marrow_radius_mm``. Each muscle takes the fat
fraction and edema of its disease pattern (:func:`~.studies.pattern_specs`), with the phantom's
texture, edema patches, blur, coil bias and Rician noise. Like the rest of the phantom it imports
no measurement code.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..anatomy import match_label_name
from .drawing import (
    MUSCLE,
    SEPTUM_FAT,
    SKIN,
    SUBCUT_FAT,
    TISSUE_CODES,
    bias_field,
    phantom_config,
    rician,
    smooth_field,
)
from .studies import PhantomStudy, pattern_specs

__all__ = [
    "paint_study",
    "paint_tissues",
]

_PLANE = np.zeros((3, 3, 3), bool)
_PLANE[:, :, 1] = ndimage.generate_binary_structure(2, 1)


def _in_plane_distance(mask: np.ndarray, voxel: tuple[float, float, float]) -> np.ndarray:
    """In-plane distance (mm) of every voxel to ``mask`` (0 inside it)."""
    return ndimage.distance_transform_edt(~mask, sampling=(voxel[0], voxel[1], 1e6))


def paint_tissues(
    labels: np.ndarray, kinds: dict[int, str], voxel: tuple[float, float, float]
) -> np.ndarray:
    """Tissue codes (``drawing.TISSUE_CODES``) around a real label map.

    Parameters
    ----------
    labels : ndarray of int
        The label map.
    kinds : dict of int -> str
        Label value -> ``"muscle"`` or ``"bone"`` (other values are left as septal fat).
    voxel : tuple of float
        Voxel size (mm).

    Returns
    -------
    ndarray of uint8
    """
    anatomy = phantom_config()["anatomy"]
    labelled = labels > 0
    outline = ndimage.binary_fill_holes(
        ndimage.binary_closing(labelled, structure=_PLANE, iterations=2) | labelled,
        structure=_PLANE,
    )
    distance = _in_plane_distance(outline, voxel)
    tissue = np.zeros(labels.shape, np.uint8)
    fat_mm, skin_mm = anatomy["subcutaneous_fat_mm"], anatomy["skin_mm"]
    tissue[(distance > 0) & (distance <= fat_mm + skin_mm)] = SKIN
    tissue[(distance > 0) & (distance <= fat_mm)] = SUBCUT_FAT
    tissue[outline] = SEPTUM_FAT
    muscle = np.isin(labels, [v for v, k in kinds.items() if k == "muscle"])
    tissue[muscle] = MUSCLE
    bone = np.isin(labels, [v for v, k in kinds.items() if k == "bone"])
    depth = ndimage.distance_transform_edt(bone, sampling=(voxel[0], voxel[1], 1e6))
    cortex_mm = anatomy["femur_radius_mm"] - anatomy["marrow_radius_mm"]
    tissue[bone] = TISSUE_CODES["cortex"]
    tissue[bone & (depth > cortex_mm)] = TISSUE_CODES["marrow"]
    return tissue


def paint_study(
    labels: np.ndarray,
    affine: np.ndarray,
    names: dict[int, str],
    pattern: str = "imnm",
    seed: int = 0,
    *,
    roles: tuple[str, ...] = ("fat", "water", "stir"),
    noise: float = 0.02,
    bias: float = 0.15,
    blur_voxels: float = 0.5,
    study_id: str | None = None,
) -> PhantomStudy:
    """A phantom study on a real label map.

    Parameters
    ----------
    labels : ndarray of int
        Label map (RAS+ storage, axis 2 the slice axis).
    affine : ndarray
        Its voxel-to-world affine.
    names : dict of int -> str
        Label table (any naming the vocabulary reads, e.g. MuscleMap's).
    pattern : {"normal", "imnm", "dm"}
        Disease pattern of the muscles.
    seed : int
        Seed of every random draw.
    roles : tuple of str
        Images to paint (``fat``, ``water``, ``stir``, ``t1w``).
    noise, bias, blur_voxels : float
        As :func:`~.studies.make_study`.
    study_id : str, optional

    Returns
    -------
    PhantomStudy
        ``truth`` holds the pattern and each muscle's target fat fraction and edema share.
    """
    config = phantom_config()
    signal, tissues = config["signal"], config["tissue"]
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels).astype(np.int32)
    shape = labels.shape
    voxel = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    present = sorted(int(v) for v in np.unique(labels) if v)
    info = {v: match_label_name(names.get(v, f"label_{v}"), v) for v in present}
    kinds = {
        v: (
            "muscle"
            if i.kind in ("muscle", "other_muscle")
            else "bone"
            if i.kind == "reference"
            else ""
        )
        for v, i in info.items()
    }
    tissue = paint_tissues(labels, kinds, voxel)
    specs = pattern_specs(pattern)
    jitter = config["side_jitter"]
    targets: dict[int, tuple[float, float]] = {}
    for v in present:
        if kinds[v] != "muscle":
            continue
        # a muscle the phantom does not draw (calf, trunk) takes the phantom's defaults
        base = specs.get(info[v].muscle, config["defaults"])
        ff = float(base["ff"]) * (1.0 + rng.uniform(-1, 1) * jitter["ff_relative"])
        targets[v] = (ff, float(base["edema"]))
    texture = smooth_field(rng, shape, tuple(signal["texture_mm"] / v for v in voxel))
    patches = smooth_field(rng, shape, tuple(signal["edema_patch_mm"] / v for v in voxel))
    ff = np.zeros(shape, np.float32)
    pd = np.zeros(shape, np.float32)
    for name, value in tissues["ff"].items():
        ff[tissue == TISSUE_CODES[name]] = value
    for name, value in tissues["pd"].items():
        pd[tissue == TISSUE_CODES[name]] = value
    muscle = tissue == MUSCLE
    lookup = np.zeros(max(present, default=0) + 1, np.float32)
    for v, (target, _) in targets.items():
        lookup[v] = target
    log_sd = signal["heterogeneity_log_sd"]
    ff[muscle] = np.clip(
        lookup[labels[muscle]] * np.exp(log_sd * texture[muscle] - log_sd**2 / 2), 0.0, 0.98
    )
    pd[muscle] = 1.0
    edema = np.zeros(shape, bool)
    for v, (_, share) in targets.items():
        inside = labels == v
        if share > 0 and inside.any():
            edema |= inside & (patches > np.quantile(patches[inside], 1.0 - share))
    water, fat = pd * (1.0 - ff), pd * ff
    blur = (blur_voxels, blur_voxels, blur_voxels / 2.0)
    smooth = (lambda a: ndimage.gaussian_filter(a, blur)) if blur_voxels > 0 else (lambda a: a)
    images: dict[str, np.ndarray] = {}
    dixon_bias = bias_field(rng, shape, bias)
    water_img = rician(rng, smooth(water) * dixon_bias, noise)
    fat_img = rician(rng, smooth(fat) * dixon_bias, noise)
    if "water" in roles or "fat" in roles:
        images["fat"], images["water"] = fat_img, water_img
    if "stir" in roles:
        stir = water * (1.0 + signal["stir_edema_gain"] * edema)
        stir += signal["fat_suppression_residual"] * fat
        images["stir"] = rician(rng, smooth(stir) * bias_field(rng, shape, bias), noise)
    if "t1w" in roles:
        t1 = signal["t1_muscle"] * water + signal["t1_fat"] * fat
        images["t1w"] = rician(rng, smooth(t1) * bias_field(rng, shape, bias), noise)
    sid = study_id or f"phantom-real-{pattern}-{seed}"
    muscles = {
        names.get(v, str(v)): {"label": v, "ff_target": round(ff_v, 4), "edema_share": share}
        for v, (ff_v, share) in targets.items()
    }
    truth = {"pattern": pattern, "seed": seed, "anatomy": "real label map", "muscles": muscles}
    return PhantomStudy(
        study_id=sid,
        labels=labels,
        affine=np.asarray(affine, float),
        images=images,
        label_info=info,
        metadata={"study_id": sid, "phantom": True},
        truth=truth,
    )
