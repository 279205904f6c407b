"""Per-shard partial tables of a batch: one JSON line per study, written as studies finish.

A batch run (or one shard of a job array, ``--shard I/N``) appends each study's outcome to
``OUT/shards/I-of-N/outcomes.jsonl.part`` the moment it is recorded, so the driver keeps
nothing per study; when the run ends the file is renamed to ``outcomes.jsonl`` (atomic: a
reader sees a finished shard or none). ``run.json`` beside it holds what the cohort files need
(summary columns, template name, the options that change an output). An unsharded run is shard
``1-of-1``. :func:`finished_shards` lists the complete set that ``mri-scoring merge`` reads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import MriScoringError
from ..files import atomic_write

__all__ = [
    "OUTCOMES",
    "RUN_FILE",
    "SHARDS_DIR",
    "OutcomeLog",
    "RecordReader",
    "finished_shards",
    "iter_records",
    "read_run",
    "shard_dir",
]

SHARDS_DIR = "shards"
OUTCOMES = "outcomes.jsonl"
RUN_FILE = "run.json"
_SHARD_NAME = re.compile(r"(\d+)-of-(\d+)")


def shard_dir(out: Path, index: int, count: int) -> Path:
    """``OUT/shards/I-of-N``."""
    return Path(out) / SHARDS_DIR / f"{index}-of-{count}"


def _plain(value: object) -> object:
    """Numpy scalars (and anything with ``item()``) as plain Python values for JSON."""
    if hasattr(value, "item"):
        return value.item()  # type: ignore[union-attr]
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


class OutcomeLog:
    """The append-only record of one shard's outcomes (see the module docstring).

    Parameters
    ----------
    out : Path
        The batch output folder.
    shard : (int, int)
        ``(I, N)``; ``(1, 1)`` for an unsharded run.
    meta : dict
        Written to ``run.json`` (JSON values only).
    """

    def __init__(self, out: Path, shard: tuple[int, int], meta: dict[str, Any]) -> None:
        index, count = shard
        root = Path(out) / SHARDS_DIR
        for other in root.glob("*-of-*") if root.is_dir() else []:
            found = _SHARD_NAME.fullmatch(other.name)
            if found and int(found[2]) != count:  # a split into another count is stale
                shutil.rmtree(other, ignore_errors=True)
        self.folder = shard_dir(out, index, count)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / OUTCOMES).unlink(missing_ok=True)  # unfinished until this run ends
        atomic_write(self.folder / RUN_FILE, json.dumps(meta, sort_keys=True, indent=1))
        self._part = self.folder / f"{OUTCOMES}.part"
        self._handle: IO[str] | None = open(self._part, "w", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        """Write one study's record as a line (flushed: a killed run loses at most this one)."""
        assert self._handle is not None, "the log is closed"
        self._handle.write(json.dumps(record, separators=(",", ":"), default=_plain) + "\n")
        self._handle.flush()

    def finish(self) -> None:
        """Close the file and publish it as ``outcomes.jsonl``."""
        if self._handle is None:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        os.replace(self._part, self.folder / OUTCOMES)

    def close(self) -> None:
        """Close without publishing (the run failed: the shard stays unfinished)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def finished_shards(out: Path) -> list[Path]:
    """The shard folders of a batch output, 1..N in order, every one finished.

    Raises
    ------
    MriScoringError
        When there are none, when shard counts differ, or when a shard is missing or
        unfinished (the message names them).
    """
    root = Path(out) / SHARDS_DIR
    found: dict[int, dict[int, Path]] = {}
    for folder in root.glob("*-of-*") if root.is_dir() else []:
        match = _SHARD_NAME.fullmatch(folder.name)
        if match and folder.is_dir():
            found.setdefault(int(match[2]), {})[int(match[1])] = folder
    if not found:
        raise MriScoringError(f"{out}: no scored shards (run 'mri-scoring batch ROOT --out "
                              f"{out} [--shard I/N]' first)")  # fmt: skip
    if len(found) > 1:
        counts = ", ".join(str(n) for n in sorted(found))
        raise MriScoringError(f"{root}: shards of different counts ({counts}); score all "
                              "shards with one N")  # fmt: skip
    count, shards = next(iter(found.items()))
    missing = [f"{i}/{count}" for i in range(1, count + 1)
               if i not in shards or not (shards[i] / OUTCOMES).is_file()]  # fmt: skip
    if missing:
        raise MriScoringError(f"{out}: shard(s) {', '.join(missing)} not finished (run "
                              "'mri-scoring batch ... --shard I/N' for each, then "
                              "merge)")  # fmt: skip
    return [shards[i] for i in range(1, count + 1)]


def read_run(folder: Path) -> dict[str, Any]:
    """A shard's ``run.json``."""
    try:
        return json.loads((Path(folder) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MriScoringError(f"{folder / RUN_FILE}: cannot be read ({exc})") from None


def iter_records(shards: list[Path]) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """``(shard number, byte offset, record)`` of every line of the shards' outcomes."""
    for number, folder in enumerate(shards):
        with open(folder / OUTCOMES, "rb") as handle:
            offset = 0
            for line in handle:
                if line.strip():
                    yield number, offset, json.loads(line)
                offset += len(line)


class RecordReader:
    """Reads single records back by ``(shard number, offset)`` (files kept open)."""

    def __init__(self, shards: list[Path]) -> None:
        self._handles = [open(folder / OUTCOMES, "rb") for folder in shards]

    def read(self, number: int, offset: int) -> dict[str, Any]:
        """The record at ``offset`` of shard ``number``."""
        handle = self._handles[number]
        handle.seek(offset)
        return json.loads(handle.readline())

    def close(self) -> None:
        """Close the files."""
        for handle in self._handles:
            handle.close()
