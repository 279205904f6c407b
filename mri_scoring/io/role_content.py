"""Does each image hold what its role says? Checks of content against role, after loading.

A file takes its role from its name (``configs/layouts.yaml``) or a declaration; here its values
are checked against that role, with the evidence in the QC message:

* a ``stir`` file that is a water-T2 map (``Units`` ms/s in its sidecar, or muscle values of
  15-100 ms - or 0.015-0.1 s - on a non-integer map with an unfitted zero background): read as
  STIR its edema would be wrong by construction, so it is used as ``t2map`` when that role is
  free (``role_reassigned``), else not used (``role_content_mismatch``);
* a ``t2map`` in seconds (BIDS's unit for ``T2map``; MyoQMRI, QMRITools and this tool use ms):
  converted to ms with a note (``t2map_seconds``);
* a ``t1w`` image in which the fat layer around the muscles is not brighter than muscle: not
  T1-weighted, not used (``role_content_mismatch``).

The percent-declared-as-fraction check of the fat-fraction map is in :mod:`.study` (it runs
while the map is read). Cut-offs are in ``settings.yaml`` (``load.role_content``).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import schema
from ..body import body_mask, full_slices, subcutaneous_layer
from ..errors import QCFinding
from .discover import strip_nifti_suffix

__all__ = [
    "check_roles",
    "fat_layer_contrast",
    "ff_map_as_fraction",
    "sidecar_unit",
    "t2_map_unit",
]


def sidecar_unit(image_path: Path | None) -> str:
    """The lower-case ``Units`` of an image's JSON sidecar, or ``""``."""
    if image_path is None:
        return ""
    stem = strip_nifti_suffix(image_path.name) or image_path.stem
    try:
        data = json.loads(image_path.with_name(stem + ".json").read_text(encoding="utf-8"))
        return str(data.get("Units", "")).strip().lower() if isinstance(data, dict) else ""
    except (OSError, ValueError):
        return ""


def t2_map_unit(
    image: np.ndarray, muscle: np.ndarray, unit: str, cfg: dict, is_map: bool = False
) -> str | None:
    """``"ms"`` or ``"s"`` when ``image`` is a water-T2 map, else None.

    Parameters
    ----------
    image : ndarray
        The image.
    muscle : ndarray of bool
        Muscle voxels.
    unit : str
        Its sidecar's ``Units`` (``""`` when none).
    cfg : dict
        ``load.role_content`` settings.
    is_map : bool
        The file is declared a T2 map (only its unit is asked): no map evidence is required.

    Returns
    -------
    str or None

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> t2 = np.zeros((20, 20, 2), np.float32); t2[5:15, 5:15] = rng.normal(35, 3, (10, 10, 2))
    >>> cfg = {"t2map_ms_range": [15.0, 100.0], "map_zero_share": 0.2}
    >>> t2_map_unit(t2, t2 > 0, "", cfg), t2_map_unit(t2 / 1000, t2 > 0, "", cfg)
    ('ms', 's')
    >>> t2_map_unit(np.rint(t2 * 20), t2 > 0, "", cfg) is None   # integer magnitudes: an image
    True
    """
    if unit in ("ms", "millisecond", "milliseconds"):
        return "ms"
    if unit in ("s", "second", "seconds"):
        return "s"
    if not is_map:
        # first the cheapest evidence: a STIR or T2w image has noise where a map has zeros
        flat = np.asarray(image)  # no float copy: an integer image has no NaN to count
        unfit = flat == 0 if flat.dtype.kind in "iub" else (flat == 0) | ~np.isfinite(flat)
        unfitted = np.count_nonzero(unfit) / max(flat.size, 1)
        if unfitted < cfg["map_zero_share"]:
            return None
    values = np.asarray(image[muscle], np.float64)
    values = values[np.isfinite(values)]
    if values.size < 20:
        return None
    median = float(np.median(values))
    low, high = cfg["t2map_ms_range"]
    if is_map:
        return "s" if low / 1000.0 <= median <= high / 1000.0 else "ms"
    fractional = float(np.mean(np.abs(values - np.rint(values)) > 1e-3))
    if low <= median <= high and fractional > 0.5:
        return "ms"
    if low / 1000.0 <= median <= high / 1000.0:
        return "s"
    return None


def fat_layer_contrast(
    image: np.ndarray,
    inside: np.ndarray,
    muscle: np.ndarray,
    voxel_mm: tuple[float, float, float],
    max_slices: int | None = None,
) -> float | None:
    """Subcutaneous-layer median over muscle median of an image, or None when unreadable.

    The body is the image above a tenth of its 99th percentile; the layer is the body outside
    the labelled region (:func:`mri_scoring.body.subcutaneous_layer`), read on at most
    ``max_slices`` evenly spaced labelled slices.
    """
    # labelled slices, at most max_slices of them evenly spaced: a contrast, not a calibration,
    # so partly labelled slices count too (small studies have few voxels)
    slices = full_slices(inside, min_slice_share=0.0, max_slices=max_slices)
    data = np.nan_to_num(np.asarray(image[..., slices], np.float32))
    top = float(np.percentile(data, 99)) if data.size else 0.0
    if top <= 0:
        return None
    layer = subcutaneous_layer(
        inside[..., slices], body_mask(data, 0.1 * top), voxel_mm, min_slice_share=0.0
    )
    values = data[layer.core]
    lean = data[muscle[..., slices]]
    if values.size < 100 or lean.size < 100:
        return None
    base = float(np.median(lean))
    return float(np.median(values)) / base if base > 0 else None


def _mask_of(labels: np.ndarray, values: list[int]) -> np.ndarray:
    """Voxels whose label is one of ``values``: one table lookup (``np.isin`` sorts the volume)."""
    table = np.zeros(max([int(labels.max(initial=0)), *values]) + 1, bool)
    table[values] = True
    return table[labels]


def check_roles(
    images: dict[str, np.ndarray],
    files: dict[str, Path],
    labels: np.ndarray,
    muscle_values: list[int],
    labelled_values: list[int],
    voxel_mm: tuple[float, float, float],
    qc: list[QCFinding],
    cfg: dict,
) -> None:
    """Check every image against its role; reassign, convert or drop in place.

    Parameters
    ----------
    images : dict of str -> ndarray
        Role -> image (changed in place).
    files : dict of str -> Path
        Role -> file (changed in place with ``images``).
    labels : ndarray
        The label map.
    muscle_values : list of int
        Label values of muscles.
    labelled_values : list of int
        Label values of muscles and reference tissues (bone, marrow).
    voxel_mm : tuple of float
        Voxel size.
    qc : list of QCFinding
        Findings are appended.
    cfg : dict
        ``load.role_content`` settings.
    """
    muscle = _mask_of(labels, muscle_values)
    if not muscle.any():
        return
    reassigned = False
    if "stir" in images:
        path = files.get("stir")
        unit = t2_map_unit(images["stir"], muscle, sidecar_unit(path), cfg)
        if unit is not None:
            median = float(np.median(images["stir"][muscle]))
            evidence = (
                f"muscle median {median:.4g} {unit}, a non-integer map with an unfitted "
                "zero background"
                if not sidecar_unit(path)
                else f"its sidecar says Units {unit}"
            )
            data = images.pop("stir")
            files.pop("stir", None)
            name = path.name if path else "the STIR image"
            if "t2map" not in images:
                images["t2map"] = data * np.float32(1000.0) if unit == "s" else data
                if path is not None:
                    files["t2map"] = path
                reassigned = True
                qc.append(
                    QCFinding(
                        "warning",
                        schema.ROLE_REASSIGNED,
                        f"{name} was found as STIR by its name but is a water-T2 map ({evidence}): "
                        "used as the T2 map" + (" (converted from s to ms)" if unit == "s" else ""),
                        str(path or ""),
                    )
                )
            else:
                qc.append(
                    QCFinding(
                        "warning",
                        schema.ROLE_CONTENT_MISMATCH,
                        f"{name} was found as STIR by its name but is a water-T2 map ({evidence}); "
                        "a T2 map is already present: not used",
                        str(path or ""),
                    )
                )
    if "t2map" in images and not reassigned:
        path = files.get("t2map")
        declared = sidecar_unit(path)
        unit = t2_map_unit(images["t2map"], muscle, declared, cfg, is_map=True)
        if unit == "s":
            median = float(np.median(images["t2map"][muscle]))
            images["t2map"] = images["t2map"] * np.float32(1000.0)
            why = (
                f"its sidecar says Units {declared}"
                if declared
                else f"muscle median {median:.4g}, plausible only in seconds"
            )
            qc.append(
                QCFinding(
                    "info",
                    schema.T2MAP_SECONDS,
                    f"the T2 map is in seconds ({why}, the BIDS unit); converted to ms",
                    str(path or ""),
                )
            )
    if "t1w" in images:
        inside = _mask_of(labels, labelled_values)
        ratio = fat_layer_contrast(
            images["t1w"], inside, muscle, voxel_mm, cfg["t1w_layer_max_slices"]
        )
        if ratio is not None and ratio < cfg["t1w_min_fat_contrast"]:
            path = files.pop("t1w", None)
            images.pop("t1w")
            qc.append(
                QCFinding(
                    "warning",
                    schema.ROLE_CONTENT_MISMATCH,
                    f"{path.name if path else 'the T1w image'} is not T1-weighted: the fat "
                    f"layer around the muscles reads {ratio:.2f} x muscle (T1w: fat brighter "
                    f"than muscle, above {cfg['t1w_min_fat_contrast']:g} x); not used",
                    str(path or ""),
                )
            )


# Stored fat-fraction maps come as fractions, percent, or per mille (0-1000) [elicited: vendor
# practice]; subcutaneous fat (FF ~0.9) always sits near the top of the range, so the 99th
# percentile tells them apart.
_FF_SCALES = ((1.5, 1.0, "fraction"), (150.0, 100.0, "percent"), (1500.0, 1000.0, "per mille"))


def ff_map_as_fraction(image: nib.Nifti1Image, sidecar: dict) -> tuple[nib.Nifti1Image, dict]:
    """A converted fat-fraction map as a fraction 0-1, its stored scale told in the sidecar.

    Raises
    ------
    ValueError
        When the stored values fit no known scale (fraction, percent, per mille).
    """
    data = np.asanyarray(image.dataobj).astype(np.float32)
    finite = data[np.isfinite(data)]
    p99 = float(np.percentile(finite, 99)) if finite.size else 0.0
    scale = next((entry for entry in _FF_SCALES if p99 <= entry[0]), None)
    if scale is None:
        raise ValueError(f"fat-fraction values up to {p99:g} fit no known scale")
    _, divisor, name = scale
    fraction = nib.Nifti1Image(data / np.float32(divisor), image.affine)
    fraction.set_qform(image.affine, code=1)
    fraction.set_sform(image.affine, code=1)
    meta = dict(sidecar, Units="fraction")
    meta["StoredScale"] = f"{name} (99th percentile of stored values {p99:g})"
    return fraction, meta
