"""Every file a study's scoring reads, and their SHA-256 digests (what a resume must compare).

A study's outputs depend on more than its images: the label table beside the label map, the
``study.json``, the JSON sidecars of the images (units of a fat-fraction map) and, in BIDS, the
subject's ``sub-<label>_sessions.tsv`` (session dates). :func:`study_input_files` lists them all
for a discovered study; :func:`input_digests` hashes them, reusing digests already computed while
loading.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from .discover import StudyFiles, strip_nifti_suffix
from .subjects import sessions_file

__all__ = [
    "file_sha256",
    "input_digests",
    "study_input_files",
]

_CHUNK_BYTES = 1 << 20


def study_input_files(files: StudyFiles) -> list[Path]:
    """Every existing file whose content can change a study's outputs, sorted.

    Parameters
    ----------
    files : StudyFiles
        A discovered study.

    Returns
    -------
    list of Path
        The files of every role (all candidates: several matches are an error at load time, and
        a changed candidate changes that error), each NIfTI's JSON sidecar and the label map's
        ``<stem>.tsv`` where they exist, and the BIDS ``sessions.tsv`` of the subject.
    """
    found: set[Path] = set()
    for paths in files.roles.values():
        for path in paths:
            found.add(Path(path))
            stem = strip_nifti_suffix(Path(path).name)
            if stem is not None:
                for beside in (
                    Path(path).with_name(stem + ".json"),
                    Path(path).with_name(stem + ".tsv"),
                ):
                    if beside.is_file():
                        found.add(beside)
    sessions = sessions_file(files.folder)
    if sessions is not None and sessions.is_file():
        found.add(sessions)
    return sorted(found)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (memory stays bounded).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "a.txt"
    ...     _ = path.write_bytes(b"abc")
    ...     file_sha256(path)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def input_digests(files: StudyFiles, known: Mapping[Path, str] | None = None) -> dict[str, str]:
    """File name (relative to the study folder, ``/``-separated) -> SHA-256, for every input.

    Parameters
    ----------
    files : StudyFiles
        A discovered study.
    known : mapping of Path -> str, optional
        Digests already computed (e.g. by the loader, of exactly the bytes it read): these files
        are not read again.

    Returns
    -------
    dict of str -> str
        Sorted by name. Files outside the study folder (a BIDS ``sessions.tsv``) are named
        relative to it with ``..``.

    Raises
    ------
    OSError
        When a listed file cannot be read.
    """
    known = {Path(p).resolve(): d for p, d in (known or {}).items() if d}
    folder = Path(files.folder).resolve()
    digests = {}
    for path in study_input_files(files):
        resolved = path.resolve()
        name = Path(_relative(resolved, folder)).as_posix()
        digests[name] = known.get(resolved) or file_sha256(path)
    return dict(sorted(digests.items()))


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (``..`` steps allowed)."""
    return os.path.relpath(path, folder)
