"""Voxel maps as NIfTI files (``--maps``): what was measured, for any viewer to overlay.

``OUT/<study>/maps/`` gets, on the label map's grid and in its original orientation and affine
(so ITK-SNAP, 3D Slicer or FSLeyes overlay them on the inputs directly):

* ``fat_fraction.nii.gz`` — float32 fat fraction 0-1 of every labelled voxel as measured; NaN
  outside the labels and where FF was not measurable.
* ``core.nii.gz`` — the voxels each label was measured in (eroded core, or the whole mask of a
  label whose core is too small), carrying the label value.
* ``edema.nii.gz`` — the voxels counted as edema, carrying the label value (per label, their
  number is ``edema_fraction`` times the voxels assessed).
* ``shell.nii.gz`` — the peri-muscular shell of each muscle (fascial edema), label value of
  the muscle; ``fascial_edema.nii.gz`` — the shell voxels read as edema.

Masks are uint8 when every label value fits (uint16 or int32 otherwise). A map whose measure was
not made (no FF source; no STIR or T2 map) is not written: an empty file would read as "none".
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

from ..files import atomic_write
from ..io.study import Study
from ..measure.voxel_maps import VoxelMaps

__all__ = [
    "MAP_NAMES",
    "RAS",
    "to_stored_orientation",
    "write_maps",
]

MAP_NAMES = ("fat_fraction", "core", "edema", "shell", "fascial_edema")
RAS = np.array([[0, 1], [1, 1], [2, 1]])


def _original_grid(study: Study) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Affine, orientation and sform/qform codes of the label file as stored.

    RAS+ for in-memory studies.
    """
    label_file = getattr(study, "files", {}).get("labels")
    if label_file is None or not Path(label_file).is_file():
        return study.affine, RAS, 1, 1
    header = nib.load(str(label_file)).header
    affine = header.get_best_affine()
    return (
        affine,
        nib.orientations.io_orientation(affine),
        int(header["sform_code"]) or 1,
        int(header["qform_code"]) or 1,
    )


def to_stored_orientation(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Undo the reorientation to RAS+ done at loading (``ornt``: the file's io_orientation).

    Examples
    --------
    >>> a = np.arange(24).reshape(2, 3, 4)
    >>> lps = np.array([[0, -1], [1, -1], [2, 1]])  # stored as L-P-S
    >>> ras = nib.orientations.apply_orientation(a, lps)
    >>> bool((to_stored_orientation(ras, lps) == a).all())
    True
    """
    if np.array_equal(ornt, RAS):
        return array
    back = nib.orientations.ornt_transform(RAS, ornt)
    return np.ascontiguousarray(nib.orientations.apply_orientation(array, back))


def map_volumes(maps: VoxelMaps) -> dict[str, np.ndarray]:
    """The voxel maps on the study's RAS+ label grid, by name (:data:`MAP_NAMES`).

    A map whose measure was not made is absent. Masks carry the label value, in the smallest
    unsigned dtype that holds the labels; ``fat_fraction`` is float32 with NaN outside.

    Returns
    -------
    dict of str -> ndarray
    """
    high = int(max(maps.label.max(initial=0), maps.shell_label.max(initial=0)))
    dtype = np.uint8 if high < 256 else np.uint16 if high < 65536 else np.int32
    volumes: dict[str, np.ndarray] = {}
    if maps.ff is not None:
        volumes["fat_fraction"] = maps.volume(maps.ff.astype(np.float32), fill=np.nan)
    volumes["core"] = maps.volume(np.where(maps.core, maps.label, 0).astype(dtype))
    if maps.edema is not None:
        volumes["edema"] = maps.volume(np.where(maps.edema, maps.label, 0).astype(dtype))
    volumes["shell"] = maps.volume(maps.shell_label.astype(dtype), shell=True)
    if maps.shell_edema is not None:
        hits = np.where(maps.shell_edema, maps.shell_label, 0).astype(dtype)
        volumes["fascial_edema"] = maps.volume(hits, shell=True)
    return volumes


def write_maps(folder: str | Path, study: Study, maps: VoxelMaps) -> list[Path]:
    """Write the voxel maps of one study into ``folder`` (created), atomically.

    Parameters
    ----------
    folder : path
        Usually ``OUT/<study>/maps``.
    study : Study
        The loaded study (its label file gives the grid's original orientation).
    maps : VoxelMaps
        From ``quantify(study, voxel_maps=True)``.

    Returns
    -------
    list of Path
        The files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    affine, ornt, sform_code, qform_code = _original_grid(study)
    volumes = map_volumes(maps)
    high = int(max(maps.label.max(initial=0), maps.shell_label.max(initial=0)))
    written = []
    for name, volume in volumes.items():
        image = nib.Nifti1Image(to_stored_orientation(volume, ornt), affine)
        image.set_sform(affine, sform_code)
        image.set_qform(affine, qform_code)
        image.header.set_xyzt_units("mm")
        if name == "fat_fraction":
            image.header["intent_name"] = b"fat fraction"
            image.header["cal_min"], image.header["cal_max"] = 0.0, 1.0
        else:
            image.header["cal_min"], image.header["cal_max"] = 0.0, float(high)
        path = folder / f"{name}.nii.gz"
        atomic_write(path, gzip.compress(image.to_bytes(), compresslevel=3, mtime=0))
        written.append(path)
    return written
