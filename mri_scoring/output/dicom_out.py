"""Results back to the PACS (``--dicom-out``): ``OUT/<study>/dicom/``.

Writes, on the frames of the study's source series (:mod:`.dicom_source`):

* ``seg_muscles.dcm`` — DICOM SEG, one segment per vocabulary muscle and side;
* ``seg_edema.dcm`` — DICOM SEG of the edema and fascial-edema masks (when measured);
* ``sr_measurements.dcm`` — Comprehensive 3D SR, TID 1500 (:mod:`.dicom_sr`);
* ``ff_map.dcm`` — the fat-fraction map as a Parametric Map, real-world values in percent
  (when FF was measured).

Every object joins the source's study (same Study Instance UID and patient module) as a new
series with new UIDs. It needs the DICOM references kept by ``convert --dicom-refs``;
:func:`dicom_out_problem` says, before any work, why a study cannot have them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..files import atomic_write
from ..io.dicom_refs import DicomRefsError, find_refs
from .dicom_seg import edema_seg, ff_parametric_map, highdicom, muscle_seg, muscle_segments
from .dicom_source import DicomOutError, choose_source, source_datasets
from .dicom_sr import measurement_report
from .map_files import map_volumes

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

    from .result import StudyResult

__all__ = [
    "DICOM_NAMES",
    "dicom_out_problem",
    "folder_problem",
    "remove_dicom",
    "write_dicom",
]

DICOM_NAMES = ("seg_muscles.dcm", "seg_edema.dcm", "sr_measurements.dcm", "ff_map.dcm")
"""The files ``dicom/`` may hold."""


def dicom_out_problem(files: dict[str, Path]) -> str:
    """Why results of a study with these image files cannot go out as DICOM ("" if they can).

    Checks that highdicom is installed and that DICOM references of a usable source series
    exist; reads no image.

    Parameters
    ----------
    files : dict of str -> Path
        Role -> image file.

    Returns
    -------
    str
    """
    try:
        highdicom()
        refs, reason = find_refs(files)
    except (DicomOutError, DicomRefsError) as exc:
        return str(exc)
    if not refs:
        return reason
    from .dicom_source import SOURCE_ROLES

    if not any(role in refs for role in SOURCE_ROLES):
        return (
            f"DICOM references only of {', '.join(sorted(refs))}: results need a Dixon, "
            "fat-fraction, STIR or T1w source series"
        )
    return ""


def folder_problem(folder: str | Path) -> str:
    """:func:`dicom_out_problem` of a study folder, from its file names ("" if none).

    Parameters
    ----------
    folder : path
        A study folder (simple layout or BIDS ``anat``).

    Returns
    -------
    str
    """
    from ..errors import StudyError
    from ..io.discover import study_files

    try:
        found = study_files(folder)
    except StudyError as exc:
        return str(exc)
    return dicom_out_problem({role: paths[0] for role, paths in found.roles.items() if paths})


def _save(path: Path, ds: Dataset) -> Path:
    from io import BytesIO

    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    atomic_write(path, buffer.getvalue())
    return path


def write_dicom(folder: str | Path, result: StudyResult) -> list[Path]:
    """Write a scored study's results as DICOM objects into ``folder`` (created).

    Parameters
    ----------
    folder : path
        Usually ``OUT/<study>/dicom``.
    result : StudyResult
        Scored with its study and voxel maps in memory.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    DicomOutError
        No references, no usable source series, highdicom missing, or a result without its
        study and voxel maps.
    """
    study, maps = result.study, result.voxel_maps
    if study is None or maps is None:
        raise DicomOutError(
            "DICOM results need the study and its voxel maps in memory (score_study keeps them)"
        )
    problem = dicom_out_problem(study.files)
    if problem:
        raise DicomOutError(problem)
    refs, _ = find_refs(study.files)
    series = choose_source(refs, study.affine, study.shape)
    sources = source_datasets(series)
    volumes = map_volumes(maps)
    segments = muscle_segments(result.muscles)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    remove_dicom(folder)
    seg = muscle_seg(series, study.labels, segments, sources)
    written = [_save(folder / "seg_muscles.dcm", seg)]
    edema = edema_seg(series, volumes.get("edema"), volumes.get("fascial_edema"), sources)
    if edema is not None:
        written.append(_save(folder / "seg_edema.dcm", edema))
    if "fat_fraction" in volumes:
        ff = ff_parametric_map(series, volumes["fat_fraction"], sources)
        written.append(_save(folder / "ff_map.dcm", ff))
    written.append(
        _save(folder / "sr_measurements.dcm", measurement_report(result, series, segments, seg))
    )
    return written


def remove_dicom(folder: Path) -> None:
    """Delete the DICOM results an earlier run wrote (:data:`DICOM_NAMES` only)."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for name in DICOM_NAMES:
        path = folder / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
