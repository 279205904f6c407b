"""Which studies a batch scores: ``--participant-label`` subsets and ``--shard I/N`` shares.

A shard is chosen by a stable hash of the study's subject (BIDS ``sub-<label>``, else the
``study.json`` ``subject_id``, else the study folder's path relative to the batch root), so the
sessions of one subject share a shard and adding studies never moves an old one to another
shard. Study ids are made unique over the whole discovery before any subset is taken.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ..errors import MriScoringError
from .discover import StudyFiles

__all__ = ["parse_shard", "participant_labels", "select_studies", "shard_of", "subject_key"]


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` as ``(I, N)``, 1 <= I <= N.

    Raises
    ------
    MriScoringError
        When the text is not two whole numbers with 1 <= I <= N.

    Examples
    --------
    >>> parse_shard("2/3")
    (2, 3)
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise MriScoringError(f"--shard must be I/N with 1 <= I <= N (e.g. 2/8), got {text!r}")
    return int(match[1]), int(match[2])


def _metadata_subject(files: StudyFiles) -> str:
    """``subject_id`` of the study's ``study.json`` (empty when absent or unreadable)."""
    for path in files.roles.get("metadata", [])[:1]:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return ""
        value = data.get("subject_id") if isinstance(data, dict) else None
        return str(value).strip() if value is not None else ""
    return ""


def _bids_subject(files: StudyFiles) -> str:
    return next((p for p in reversed(files.folder.parts) if p.startswith("sub-")), "")


def subject_key(files: StudyFiles, root: Path) -> str:
    """What a study's shard is chosen by: its subject, or its folder relative to ``root``.

    Examples
    --------
    >>> study = StudyFiles(Path("/d/sub-07/ses-2/anat"), "sub-07_ses-2", {}, "bids")
    >>> subject_key(study, Path("/d"))
    'sub-07'
    >>> subject_key(StudyFiles(Path("/d/site/a"), "a", {}), Path("/d"))
    'site/a'
    """
    subject = _bids_subject(files) if files.layout == "bids" else ""
    subject = subject or _metadata_subject(files)
    if subject:
        return subject
    try:
        return files.folder.relative_to(root).as_posix() or files.folder.name
    except ValueError:
        return files.folder.as_posix()


def shard_of(key: str, count: int) -> int:
    """The shard (1..count) of a subject key: SHA-256 of the key modulo ``count``, plus one.

    Examples
    --------
    >>> shard_of("sub-07", 1)
    1
    >>> shard_of("sub-07", 3) == shard_of("sub-07", 3)
    True
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def participant_labels(files: StudyFiles) -> set[str]:
    """The names ``--participant-label`` matches for a study.

    BIDS: the subject label without ``sub-``; simple layout: ``subject_id`` and folder name.
    """
    if files.layout == "bids":
        subject = _bids_subject(files)
        return {subject.removeprefix("sub-")} if subject else set()
    return {name for name in (_metadata_subject(files), files.folder.name) if name}


def select_studies(studies: list[StudyFiles], root: Path, shard: tuple[int, int] | None = None,
                   labels: list[str] | tuple[str, ...] = ()) -> list[StudyFiles]:  # fmt: skip
    """The studies of one shard and of the named participants (both optional).

    Parameters
    ----------
    studies : list of StudyFiles
        The whole discovery (ids already unique).
    root : Path
        The batch root (subject keys of studies without a named subject are relative to it).
    shard : (int, int), optional
        ``(I, N)``: keep the studies whose :func:`subject_key` falls in shard I of N.
    labels : sequence of str
        Keep only these participants (``sub-`` prefixes are ignored); empty keeps all.

    Returns
    -------
    list of StudyFiles
        In discovery order.
    """
    wanted = {label.removeprefix("sub-") for label in labels}
    kept = []
    for files in studies:
        if wanted and not participant_labels(files) & wanted:
            continue
        if shard and shard[1] > 1 and shard_of(subject_key(files, root), shard[1]) != shard[0]:
            continue
        kept.append(files)
    return kept
