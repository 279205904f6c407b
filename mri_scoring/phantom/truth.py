"""The phantom's ground truth, defined independently of the measurement code.

Per muscle and side: the truth imposed (:class:`MuscleSpec`), and what the drawn study holds
(:func:`truth_table`): voxels, volume, fat fraction over the whole muscle and over its interior
(:func:`truth_interior`, the phantom's own erosion in mm), the edema share over the interior's
non-fatty voxels, the slice range and centroid. The interior depth and the fatty-voxel rule come
from ``configs/phantom.yaml`` (section ``truth``), never from the measurement's settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .drawing import DEFAULT_FOV_MM, build_anatomy, phantom_config, phantom_muscles

__all__ = [
    "MuscleSpec",
    "interior_depth_mm",
    "normal_volume_shares",
    "truth_interior",
    "truth_table",
]


@dataclass
class MuscleSpec:
    """Truth to impose on one muscle of one side."""

    ff: float
    edema: float
    fascial: bool
    atrophy: float


def interior_depth_mm(voxel_size_mm: tuple[float, ...]) -> float:
    """Depth below which a voxel of a muscle is not part of the truth interior (mm).

    ``truth.interior_depth_mm`` of ``configs/phantom.yaml``, but at least one in-plane voxel
    diagonal: the partial-volume blur (Gaussian, sigma ``blur_voxels`` = 0.5 voxel) then
    leaves an interior voxel with less than 0.1 % of its signal from outside the muscle.

    Parameters
    ----------
    voxel_size_mm : tuple of float
        Voxel size (mm) per axis.

    Returns
    -------
    float
        Depth (mm).
    """
    depth = float(phantom_config()["truth"]["interior_depth_mm"])
    return max(depth, float(np.hypot(voxel_size_mm[0], voxel_size_mm[1])) * (1.0 + 1e-4))


def truth_interior(inside: np.ndarray, voxel_size_mm: tuple[float, ...]) -> np.ndarray:
    """The phantom's own definition of a muscle's interior: a Euclidean erosion in mm.

    A voxel is interior when its centre lies farther than :func:`interior_depth_mm` from the
    centre of every voxel outside the mask (``scipy.ndimage.distance_transform_edt`` with the
    voxel size as sampling; outside the array counts as outside). This definition is written
    independently of the measurement's core (a box erosion by separable window minima, in
    ``mri_scoring.measure.masks``). With square in-plane voxels the measurement's box contains
    this ball, so its core is a subset of this interior; the two are identical when the in-plane
    voxel is at least 1.42 mm and slices are thicker than 1.5 in-plane voxels (every test grid).
    ``tests/test_phantom.py`` checks both statements and the size of the difference elsewhere.

    Parameters
    ----------
    inside : ndarray of bool
        Mask of one muscle.
    voxel_size_mm : tuple of float
        Voxel size (mm) per axis.

    Returns
    -------
    ndarray of bool
        Same shape as ``inside``.
    """
    padded = np.pad(np.asarray(inside, bool), 1)
    distance = ndimage.distance_transform_edt(padded, sampling=voxel_size_mm)
    return distance[1:-1, 1:-1, 1:-1] > interior_depth_mm(voxel_size_mm)


def truth_table(
    labels: np.ndarray,
    ff: np.ndarray,
    edema: np.ndarray,
    fascial: np.ndarray,
    side_specs: dict[int, MuscleSpec],
    table: dict[int, str],
    voxel: tuple[float, ...],
    affine: np.ndarray,
) -> dict[str, Any]:
    """The truth of a drawn study, per ``<muscle>_<side>`` (the fields: ``make_study``).

    Parameters
    ----------
    labels : ndarray of int
        Label map after atrophy.
    ff : ndarray of float
        True fat fraction per voxel (before blur and noise).
    edema, fascial : ndarray of bool
        True muscle edema and fascial fluid voxels.
    side_specs : dict of int -> MuscleSpec
        The truth imposed per label value.
    table : dict of int -> str
        Label value -> ``<muscle>_<side>``.
    voxel : tuple of float
        Voxel size (mm).
    affine : ndarray
        The study's voxel-to-world affine (for the centroid's x in mm).

    Returns
    -------
    dict
        ``muscles`` (one entry per side-specific muscle) and ``fascial_voxels``.
    """
    fatty_ff = phantom_config()["truth"]["fatty_voxel_ff"]
    voxel_ml = float(np.prod(voxel)) / 1000.0
    boxes = ndimage.find_objects(labels)
    muscles: dict[str, dict] = {}
    for value, spec in sorted(side_specs.items()):
        name = table[value]
        box = boxes[value - 1] if value <= len(boxes) else None
        entry: dict[str, Any] = {
            "label": value,
            "muscle": name.rsplit("_", 1)[0],
            "side": name.rsplit("_", 1)[1],
            "target_ff": spec.ff,
            "fascial_edema": spec.fascial,
            "atrophy_factor": spec.atrophy,
        }
        if box is None:
            entry.update(voxels=0, volume_ml=0.0)
            muscles[name] = entry
            continue
        inside = labels[box] == value
        values = ff[box][inside]
        core = truth_interior(inside, voxel)
        ks = np.nonzero(inside.any(axis=(0, 1)))[0] + box[2].start
        xs = np.nonzero(inside)[0] + box[0].start
        entry.update(
            voxels=int(inside.sum()),
            volume_ml=float(inside.sum() * voxel_ml),
            ff_mean=float(values.mean()),
            ff_median=float(np.median(values)),
            ff_median_core=float(np.median(ff[box][core])) if core.any() else None,
            edema_fraction=float(edema[box][inside].mean()),
            edema_fraction_core=_share(edema[box][core & (ff[box] <= fatty_ff)]),
            z_range=[int(ks.min()), int(ks.max())],
            centroid_x_mm=float(affine[0, 0] * xs.mean() + affine[0, 3]),
        )
        muscles[name] = entry
    return {"muscles": muscles, "fascial_voxels": int(fascial.sum())}


def _share(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if mask.size else None


def normal_volume_shares(shape: tuple[int, int, int] = (256, 256, 40)) -> dict[str, float]:
    """Share of each muscle in the summed muscle volume of one normal phantom thigh.

    The normative shares in ``configs/norms_volume_shares.yaml`` are [elicited] and the phantom is
    checked against them, so that a normal phantom reads an atrophy index near 1.
    """
    voxel = tuple(f / n for f, n in zip(DEFAULT_FOV_MM, shape, strict=True))
    labels, _, _ = build_anatomy(shape, voxel)
    counts = np.bincount(labels.ravel(), minlength=100)
    per_muscle = {
        m: float(counts[2 * i + 1] + counts[2 * i + 2]) for i, m in enumerate(phantom_muscles())
    }
    total = sum(per_muscle.values())
    return {m: v / total for m, v in per_muscle.items()}
