"""Writing files safely, so that a reader (or a resumed batch) never sees a partial file.

Every output goes to a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TypeAlias

__all__ = [
    "JSONValue",
    "atomic_write",
]

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
"""A JSON document or any part of one (what the package writes with ``json.dumps``)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically, with the permissions a plain ``open`` would give.

    Parameters
    ----------
    path : path
        Destination; its folder must exist.
    data : bytes or str
        Text is written as UTF-8.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
