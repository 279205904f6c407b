"""Discovery: which files of a folder play which role, in the simple and BIDS layouts.

The role patterns (simple layout, BIDS ``*_dseg``, MuscleMap and Musclesense outputs) live in
``configs/layouts.yaml``; a BIDS subject may hold several ``ses-*`` sessions, each a study.
Nothing here reads an image: the result is a :class:`StudyFiles` per study.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config import load_config_file
from ..errors import StudyError

__all__ = [
    "IMAGE_ROLES",
    "StudyFiles",
    "discover_studies",
    "match_roles",
    "sanitise_id",
    "strip_nifti_suffix",
    "study_files",
    "unclaimed_images",
]

log = logging.getLogger(__name__)

IMAGE_ROLES = ("fat", "water", "ff", "stir", "t2map", "t1w")


@dataclass
class StudyFiles:
    """The files of one study, found by role.

    Attributes
    ----------
    folder : Path
        Folder holding the images (BIDS: the ``anat`` folder).
    study_id : str
        Sanitised identifier (unique within a batch after :func:`discover_studies`).
    roles : dict of str -> list of Path
        Role -> matching files (more than one is an ambiguity reported at load time).
    layout : str
        ``"simple"`` or ``"bids"``.
    """

    folder: Path
    study_id: str
    roles: dict[str, list[Path]]
    layout: str = "simple"


def sanitise_id(text: str) -> str:
    """Make a string safe as one folder name: letters, digits, ``.``, ``_``, ``-`` only.

    Examples
    --------
    >>> sanitise_id("../../etc/passwd")
    'etc_passwd'
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._-")
    cleaned = re.sub(r"_+", "_", cleaned)[:120].strip("._-")
    return cleaned or "study"


def _layouts() -> dict:
    """The role patterns of ``configs/layouts.yaml``."""
    return load_config_file("layouts.yaml")


def strip_nifti_suffix(name: str) -> str | None:
    """The file name without ``.nii.gz`` or ``.nii`` (any case); None if it is not NIfTI.

    Parameters
    ----------
    name : str
        A file name.

    Returns
    -------
    str or None
        The stem, or None when the name has neither suffix.

    Examples
    --------
    >>> strip_nifti_suffix("sub-01_dseg.NII.GZ")
    'sub-01_dseg'
    >>> strip_nifti_suffix("labels.tsv") is None
    True
    """
    lower = name.lower()
    for ext in (".nii.gz", ".nii"):
        if lower.endswith(ext):
            return name[: -len(ext)]
    return None


def match_roles(names: list[str], folder: Path) -> dict[str, list[Path]]:
    """Assign file names in one folder to roles using the patterns of ``configs/layouts.yaml``.

    NIfTI roles match the name without ``.nii``/``.nii.gz``; ``label_table`` and ``metadata``
    match whole names. Per role the first pattern with a match wins. Matching ignores case.
    """
    roles: dict[str, list[Path]] = {}
    nifti = {name: strip_nifti_suffix(name) for name in names}
    claimed: set[str] = set()
    for role, patterns in _layouts()["roles"].items():
        whole_name = role in ("label_table", "metadata")
        for pattern in patterns:
            hits = sorted(
                name
                for name in names
                if name not in claimed
                and (
                    fnmatch.fnmatchcase(name.lower(), pattern.lower())
                    if whole_name
                    else nifti[name] is not None
                    and fnmatch.fnmatchcase(nifti[name].lower(), pattern.lower())
                )
            )
            if hits:
                roles[role] = [folder / h for h in hits]
                claimed.update(hits)
                break
    return roles


def unclaimed_images(folder: Path, roles: dict[str, list[Path]]) -> list[Path]:
    """NIfTI files in ``folder`` that match no role: found, and not used.

    Parameters
    ----------
    folder : Path
        The study folder (BIDS: the ``anat`` folder).
    roles : dict of str -> list of Path
        The files assigned to roles (:func:`match_roles`).

    Returns
    -------
    list of Path
        Sorted; empty when every image file has a role.
    """
    claimed = {path.name for paths in roles.values() for path in paths}
    return sorted(
        folder / name
        for name in _list_files(folder)
        if strip_nifti_suffix(name) is not None and name not in claimed
    )


def _list_files(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return [e.name for e in entries if not e.name.startswith(".") and e.is_file()]
    except OSError:
        return []


def _read_study_id(metadata_files: list[Path] | None) -> str | None:
    if not metadata_files:
        return None
    try:
        data = json.loads(metadata_files[0].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # reported when the study is loaded
    value = data.get("study_id") if isinstance(data, dict) else None
    return sanitise_id(value) if isinstance(value, (str, int)) and str(value).strip() else None


def _bids_entities(anat: Path, root: Path) -> tuple[str, str]:
    parts = anat.relative_to(root).parts
    subject = next((p for p in parts if p.startswith("sub-")), "")
    session = next((p for p in parts if p.startswith("ses-")), "")
    return subject, session


def _bids_study(anat: Path, root: Path) -> StudyFiles | None:
    names = _list_files(anat)
    roles = match_roles(names, anat)
    subject, session = _bids_entities(anat, root)
    if "labels" not in roles:
        pattern = _layouts()["bids_derivatives_anat"].format(
            subject=subject, session=f"{session}/" if session else ""
        )
        for seg_dir in sorted(root.glob(pattern)):
            seg_roles = match_roles(_list_files(seg_dir), seg_dir)
            for role in ("labels", "label_table"):
                roles.setdefault(role, []).extend(seg_roles.get(role, []))
        roles = {role: files for role, files in roles.items() if files}
    if not _has_role_files(roles):
        return None
    study_id = sanitise_id(subject + (f"_{session}" if session else ""))
    return StudyFiles(anat, study_id, roles, "bids")


def _walk(root: Path, skip: set[str]) -> Iterator[tuple[Path, list[str]]]:
    """Folders below root (root included), depth first, never following symlinked folders."""
    stack = [root]
    seen: set[tuple[int, int]] = set()
    while stack:
        folder = stack.pop()
        try:
            stat = folder.stat()
        except OSError:
            continue
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            continue
        seen.add(key)
        files: list[str] = []
        subfolders: list[Path] = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if entry.name not in skip:
                                subfolders.append(Path(entry.path))
                        elif entry.is_file():
                            files.append(entry.name)
                    except OSError:
                        continue
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc.strerror or exc)
            continue
        yield folder, files
        stack.extend(sorted(subfolders, reverse=True))


def _has_role_files(roles: dict[str, list[Path]]) -> bool:
    return any(role in roles for role in (*IMAGE_ROLES, "labels"))


def _study_in(folder: Path, names: list[str]) -> StudyFiles | None:
    """The study a folder holds: a BIDS ``anat`` folder or the simple layout.

    A BIDS ``sub-*/[ses-*/]anat`` folder gives None when it holds no role file, here or under
    ``derivatives/``; a simple-layout folder always gives a study (roles possibly empty).
    """
    if folder.name == "anat" and any(p.startswith("sub-") for p in folder.parts):
        subject_dir = next((p for p in folder.parents if p.name.startswith("sub-")), folder)
        return _bids_study(folder, subject_dir.parent)
    roles = match_roles(names, folder)
    study_id = _read_study_id(roles.get("metadata")) or sanitise_id(folder.resolve().name)
    return StudyFiles(folder, study_id, roles, "simple")


def discover_studies(root: str | Path) -> list[StudyFiles]:
    """Find every study under ``root`` (simple layout and BIDS).

    A simple-layout study is a folder whose files match an image or label role. In a BIDS
    dataset (a ``sub-*`` folder or ``dataset_description.json`` at the root) every
    ``sub-*/[ses-*/]anat`` folder is a study, its segmentation beside it or under
    ``derivatives/<pipeline>/``. Ids are unique: when two studies would share one, each takes its
    path relative to ``root`` joined with ``_``. Symlinked folders are not followed; unreadable
    folders are logged and skipped.

    Parameters
    ----------
    root : path
        A study folder or a folder of studies.

    Returns
    -------
    list of StudyFiles
        Sorted by path.
    """
    root = Path(root)
    if not root.is_dir():
        raise StudyError("is not a folder", root)
    studies: list[StudyFiles] = []
    for folder, names in _walk(root, skip={"derivatives"}):
        study = _study_in(folder, names)
        if study is not None and (study.layout == "bids" or _has_role_files(study.roles)):
            studies.append(study)
    counts: dict[str, int] = {}
    for study in studies:
        counts[study.study_id] = counts.get(study.study_id, 0) + 1
    for study in studies:
        if counts[study.study_id] > 1:
            relative = study.folder.relative_to(root).parts or (root.name,)
            study.study_id = sanitise_id("_".join(relative))
    return sorted(studies, key=lambda s: str(s.folder))


def study_files(path: str | Path) -> StudyFiles:
    """The :class:`StudyFiles` of one study folder (simple layout or a BIDS ``anat`` folder)."""
    path = Path(path)
    if not path.exists():
        raise StudyError("does not exist", path)
    if not path.is_dir():
        raise StudyError("is not a study folder (expected a folder holding a label map)", path)
    found = _study_in(path, _list_files(path))
    # A folder named explicitly is a study even with no role file: loading says what is missing.
    return found or StudyFiles(path, sanitise_id(path.resolve().name), {}, "simple")
