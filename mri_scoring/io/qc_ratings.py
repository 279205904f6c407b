"""``qc_ratings.tsv``: a reviewer's ratings of a batch's studies, read on every run.

Columns ``study_id``, ``rating`` (1-5 or empty), ``exclude`` (true/false), ``note``. An
excluded study stays scored on disk but leaves the cohort tables, the heat map, ``index.html``
and ``fit``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

__all__ = ["RATINGS_FILE", "RATING_COLUMNS", "Rating", "excluded_ids", "read_ratings"]

RATINGS_FILE = "qc_ratings.tsv"
RATING_COLUMNS = ("study_id", "rating", "exclude", "note")
TRUE = {"true", "yes", "1", "y", "t"}
FALSE = {"false", "no", "0", "n", "f", ""}


@dataclass(frozen=True)
class Rating:
    """One row of ``qc_ratings.tsv``."""

    study_id: str
    rating: int | None
    exclude: bool
    note: str = ""


def read_ratings(folder: str | Path) -> dict[str, Rating]:
    """The ratings of a batch output folder by study id (empty when it has no ratings file).

    Raises
    ------
    ConfigError
        One line naming the file, the row and what is wrong (a missing ``study_id`` column, a
        rating outside 1-5, an ``exclude`` that is not true/false).
    """
    path = Path(folder) / RATINGS_FILE
    if not path.is_file():
        return {}
    out: dict[str, Rating] = {}
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            if "study_id" not in (reader.fieldnames or []):
                raise ConfigError(f"{path}: needs a study_id column (tab-separated: "
                                  f"{', '.join(RATING_COLUMNS)})")  # fmt: skip
            for line, row in enumerate(reader, start=2):
                study_id = (row.get("study_id") or "").strip()
                if not study_id:
                    continue
                text = (row.get("rating") or "").strip()
                if text and not (text.isdigit() and 1 <= int(text) <= 5):
                    raise ConfigError(f"{path}, line {line}: rating must be 1-5 or empty, "
                                      f"got {text!r}")  # fmt: skip
                flag = (row.get("exclude") or "").strip().lower()
                if flag not in TRUE | FALSE:
                    raise ConfigError(f"{path}, line {line}: exclude must be true or false, "
                                      f"got {flag!r}")  # fmt: skip
                out[study_id] = Rating(study_id, int(text) if text else None, flag in TRUE,
                                       (row.get("note") or "").strip())  # fmt: skip
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    return out


def excluded_ids(folder: str | Path) -> set[str]:
    """Ids of the studies ``qc_ratings.tsv`` excludes (empty without the file)."""
    return {k for k, r in read_ratings(folder).items() if r.exclude}
