"""Label tables, label schemes and metadata: what the label values mean, what ``study.json`` says.

Reads BIDS dseg look-up tables (``index``/``name``), identifies a known scheme (MuscleMap,
Musclesense, TotalSegmentator) when there is no table, and type-checks ``study.json`` and the
``Units`` of a fat-fraction map's JSON sidecar.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .. import schema
from ..anatomy import LabelInfo, SchemeMatch, identify_scheme, label_scheme, match_label_name
from ..config import Settings
from ..errors import QCFinding, StudyError
from .discover import strip_nifti_suffix

__all__ = [
    "LABEL_OPTIONS",
    "add_label_row",
    "ignored_table_finding",
    "read_label_table",
    "read_metadata",
    "read_table_text",
    "resolve_labels",
    "shown_values",
    "sidecar_units",
]

LABEL_OPTIONS = ("auto", "tsv", "musclemap", "musclesense", "totalsegmentator")


def read_table_text(path: Path, what: str) -> str:
    """The text of a label table file, or the error naming the file (``what``: how it is called).

    Raises
    ------
    StudyError
        When the file is not UTF-8 text or cannot be read.
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise StudyError(f"{what} is not UTF-8 text", path) from None
    except OSError as exc:
        raise StudyError(f"cannot read the {what} ({exc.strerror or exc})", path) from None


def add_label_row(table: dict[int, str], number: int, index: int, name: str, path: Path) -> None:
    """Add one parsed row to a label table, refusing a negative, unnamed or repeated index.

    Raises
    ------
    StudyError
        Naming the file, the line and what is wrong.
    """
    if index < 0:
        raise StudyError(f"line {number}: index {index} is negative", path)
    if not name:
        raise StudyError(f"line {number}: empty name for index {index}", path)
    if index in table:
        raise StudyError(f"line {number}: duplicate index {index} (also {table[index]!r})", path)
    table[index] = name


def read_label_table(path: Path) -> dict[int, str]:
    """Parse a BIDS dseg look-up table (tab-separated, columns ``index`` and ``name``).

    Raises
    ------
    StudyError
        Naming the file, the line and what was expected.
    """
    text = read_table_text(path, "label table")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        raise StudyError("label table is empty: expected a header 'index<TAB>name' and rows", path)
    header = [h.strip().lower() for h in lines[0].split("\t")]
    if "index" not in header or "name" not in header:
        raise StudyError(
            f"label table header {lines[0]!r} lacks the columns 'index' and 'name' (tab-separated)",
            path,
        )
    i_index, i_name = header.index("index"), header.index("name")
    table: dict[int, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) <= max(i_index, i_name):
            raise StudyError(
                f"line {number}: expected {len(header)} tab-separated cells, got {len(cells)}", path
            )
        raw_index, name = cells[i_index].strip(), cells[i_name].strip()
        try:
            index = int(raw_index)
        except ValueError:
            raise StudyError(
                f"line {number}: index {raw_index!r} is not an integer", path
            ) from None
        add_label_row(table, number, index, name, path)
    return table


_METADATA_TYPES = {
    "study_id": (str, int),
    "age_years": (int, float),
    "sex": (str,),
    "antibody": (str,),
    "fat_fraction_scale": (str,),
}


def read_metadata(path: Path) -> dict:
    """Read ``study.json``: a JSON object; known fields are type-checked."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise StudyError("not UTF-8 text", path) from None
    except json.JSONDecodeError as exc:
        raise StudyError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", path
        ) from None
    except OSError as exc:
        raise StudyError(f"cannot read ({exc.strerror or exc})", path) from None
    if not isinstance(data, dict):
        raise StudyError(f"expected a JSON object, got {type(data).__name__}", path)
    for key, types in _METADATA_TYPES.items():
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            expected = " or ".join(t.__name__ for t in types)
            raise StudyError(f"field '{key}' must be {expected}, got {value!r}", path)
    scale = data.get("fat_fraction_scale")
    if scale is not None and scale not in ("fraction", "percent"):
        raise StudyError(
            f"field 'fat_fraction_scale' must be 'fraction' or 'percent', got {scale!r}", path
        )
    return data


def shown_values(values: list, limit: int = 12) -> str:
    """Values joined for a message, with an ellipsis and the count when there are more."""
    text = ", ".join(str(v) for v in values[:limit])
    return text + (f", … ({len(values)} in all)" if len(values) > limit else "")


def resolve_labels(
    values: set[int],
    table: dict[int, str] | None,
    scheme_option: str,
    label_path: Path,
    qc: list[QCFinding],
    settings: Settings,
) -> tuple[dict[int, LabelInfo], SchemeMatch | None]:
    """The meaning of every label value present, from the table or a named/identified scheme.

    Parameters
    ----------
    values : set of int
        Label values present in the map (0 excluded).
    table : dict of int -> str or None
        The study's label table, if it has one and ``scheme_option`` allows it.
    scheme_option : str
        One of :data:`LABEL_OPTIONS`.
    label_path : Path
        The label map, named in messages.
    qc : list of QCFinding
        Findings are appended here (scheme detected, values not in the table, unknown names).
    settings : Settings
        ``load.scheme_min_coverage``: the share of values a scheme must hold without a table.

    Returns
    -------
    info : dict of int -> LabelInfo
    identified : SchemeMatch or None
        The scheme found from the values alone (no table, no named scheme); a small-integer
        match is to be confirmed by the geometry
        (:func:`mri_scoring.io.label_geometry.resolve_geometry`).

    Raises
    ------
    StudyError
        No table where one was required, or values that match no known scheme.
    """
    if scheme_option == "tsv" and table is None:
        raise StudyError(
            "--labels tsv was given but the study has no label table file (labels.tsv or "
            "*_dseg.tsv, an ITK-SNAP labels.txt/.label, or a 3D Slicer colour table)",
            label_path,
        )
    identified = None
    if scheme_option in ("musclemap", "musclesense", "totalsegmentator"):
        table = label_scheme(scheme_option).names
    elif table is None:
        identified = identify_scheme(values, settings["load"]["scheme_min_coverage"])
        if identified is None:
            raise StudyError(
                f"no label table, and the label values ({shown_values(sorted(values))}) match no "
                "known scheme (MuscleMap, Musclesense, TotalSegmentator): add a label table "
                "beside it (labels.tsv, an ITK-SNAP labels.txt or .label file, or a 3D Slicer "
                "colour table .ctbl)",
                label_path,
            )
        table = identified.scheme.names
        qc.append(
            QCFinding(
                "info",
                schema.LABEL_SCHEME_DETECTED,
                f"no label table; values identified as the {identified.name} scheme",
                str(label_path),
            )
        )
    missing = sorted(values - set(table))
    if missing:
        qc.append(
            QCFinding(
                "warning",
                schema.LABEL_NOT_IN_TABLE,
                f"label values {shown_values(missing)} are in the map but not in the table; kept "
                "as unknown and excluded from templates",
                str(label_path),
            )
        )
    info: dict[int, LabelInfo] = {}
    unknown = []
    for value in sorted(values):
        name = table.get(value, f"label_{value}")
        info[value] = match_label_name(name, value)
        if info[value].kind == "unknown" and value in table:
            unknown.append(name)
    apart = sorted(v for v, i in info.items() if i.muscle == "adductor_minimus")
    if apart:
        qc.append(
            QCFinding(
                "info",
                schema.ADDUCTOR_MINIMUS_APART,
                f"adductor minimus is labelled apart (values {shown_values(apart)}): it is its own "
                "muscle in the adductor group; adductor magnus features use the adductor magnus "
                "label only",
                str(label_path),
            )
        )
    if unknown:
        qc.append(
            QCFinding(
                "warning",
                schema.LABEL_UNKNOWN,
                f"names the vocabulary does not know (kept, excluded from "
                f"templates): {shown_values(unknown)}",
                str(label_path),
            )
        )
    return info, identified


def ignored_table_finding(
    table_path: Path,
    scheme_option: str,
    values: set[int],
    reader: Callable[[Path], dict[int, str]] = read_label_table,
) -> QCFinding:
    """The warning for a label table set aside because a scheme was named (``--labels``).

    The explicit scheme wins (the user named it), but a table that says otherwise is worth
    knowing: the warning counts the present values whose muscle or side the two disagree on.

    Parameters
    ----------
    table_path : Path
        The study's label table.
    scheme_option : str
        The scheme given (``musclemap``, ``musclesense`` or ``totalsegmentator``).
    values : set of int
        Label values present in the map.
    reader : callable, optional
        Reads the table file (default: the BIDS dseg reader).

    Returns
    -------
    QCFinding
        Code ``label_table_ignored``.
    """
    scheme = label_scheme(scheme_option).names

    def meaning(name: str, value: int) -> tuple[str, str]:
        info = match_label_name(name, value)
        return info.muscle, info.side

    try:
        table = reader(table_path)
    except StudyError as exc:
        detail = f"it is unreadable too ({exc})"
    else:
        present = [v for v in sorted(values) if v in table]
        differ = [v for v in present if meaning(table[v], v) != meaning(scheme.get(v, ""), v)]
        detail = (
            f"it names {len(differ)} present value(s) differently: "
            + shown_values([f"{v} ({table[v]} vs {scheme.get(v, 'none')})" for v in differ], 4)
            if differ
            else "it agrees with the scheme on every present value"
        )
    return QCFinding(
        "warning",
        schema.LABEL_TABLE_IGNORED,
        f"--labels {scheme_option} was given: the label table {table_path.name} is ignored; "
        f"{detail}",
        str(table_path),
    )


def sidecar_units(image_path: Path) -> str | None:
    """``"percent"`` or ``"fraction"`` from the ``Units`` of the image's JSON sidecar, or None."""
    stem = strip_nifti_suffix(image_path.name) or image_path.stem
    sidecar = image_path.with_name(stem + ".json")
    if not sidecar.is_file():
        return None
    try:
        units = json.loads(sidecar.read_text(encoding="utf-8")).get("Units", "")
    except (OSError, ValueError, AttributeError):
        return None
    units = str(units).strip().lower()
    return "percent" if units in ("%", "percent") else "fraction" if units == "fraction" else None
