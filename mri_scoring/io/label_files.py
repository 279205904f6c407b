"""Label table files as segmentation tools write them, found beside the label map.

Searched in this order (the first usable one wins):

1. a BIDS dseg look-up table: ``<label map stem>.tsv``, ``labels.tsv`` or ``*_dseg.tsv``
   (:func:`mri_scoring.io.tables.read_label_table`);
2. an ITK-SNAP label description file: ``labels.txt``, ``labels.label``, ``<stem>.txt``,
   ``<stem>.label``, or the only ``*.label`` in the folder (QMRITools, ITK-SNAP, the Huashan
   thigh model write these): ``IDX R G B A VIS MSH "LABEL"`` per line;
3. a 3D Slicer colour table: ``<stem>.ctbl``, ``labels.ctbl`` or the only ``*.ctbl``, or one of
   the ``.txt`` names above in that format: ``index name R G B A`` per line.

A ``.txt`` file in neither format is set aside with a QC note (a ``.txt`` beside an image may be
anything); a line of a recognised file that cannot be read is an error naming the file and the
line. A leading number in a name (QMRITools writes ``"31 Biceps femoris long Left"``, and
``"91 Ilium Left"`` at index 101) is dropped when something follows it: it is a numbering, not
the label's own text.
"""

from __future__ import annotations

import re
from pathlib import Path

from .. import schema
from ..errors import QCFinding, StudyError
from .discover import strip_nifti_suffix
from .tables import add_label_row, read_label_table, read_table_text

_ITKSNAP = re.compile(
    r'^\s*(-?\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([0-9.eE+-]+)\s+(\d+)\s+(\d+)\s+"(.*)"\s*$'
)


__all__ = [
    "drop_leading_number",
    "find_label_table",
    "read_any_table",
    "read_label_file",
    "sniff_format",
    "table_candidates",
]
_SLICER = re.compile(r"^\s*(-?\d+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
_LEADING_NUMBER = re.compile(r"^\s*\d+\s+(?=\S)")


def drop_leading_number(name: str) -> str:
    """A name without a leading numbering token, unless the number is all there is.

    Examples
    --------
    >>> drop_leading_number("31 Biceps femoris long Left")
    'Biceps femoris long Left'
    >>> drop_leading_number("7")
    '7'
    >>> drop_leading_number("Label 7")
    'Label 7'
    """
    stripped = _LEADING_NUMBER.sub("", name).strip()
    return stripped or name.strip()


def _data_lines(text: str) -> list[tuple[int, str]]:
    return [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def sniff_format(path: Path) -> str | None:
    """``"itksnap"``, ``"slicer"`` or None, from the file's first data line.

    Parameters
    ----------
    path : Path
        A text file.

    Returns
    -------
    str or None
    """
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError:
        return None
    lines = _data_lines(text)
    if not lines:
        return None
    first = lines[0][1]
    if _ITKSNAP.match(first):
        return "itksnap"
    if _SLICER.match(first):
        return "slicer"
    return None


def read_label_file(path: Path, kind: str | None = None) -> dict[int, str]:
    """Read an ITK-SNAP label description or a 3D Slicer colour table.

    Parameters
    ----------
    path : Path
        The file.
    kind : {"itksnap", "slicer"}, optional
        The format; default: by suffix (``.label`` ITK-SNAP, ``.ctbl`` Slicer), else sniffed.

    Returns
    -------
    dict of int -> str
        Label value -> name (leading numbering dropped; index 0 kept as written).

    Raises
    ------
    StudyError
        Unreadable file, a line that fits neither format (named with its number and text),
        a duplicate index.
    """
    text = read_table_text(path, "label file")
    suffix = path.suffix.lower()
    kind = kind or {".label": "itksnap", ".ctbl": "slicer"}.get(suffix) or sniff_format(path)
    if kind not in ("itksnap", "slicer"):
        raise StudyError(
            'not an ITK-SNAP label description (IDX R G B A VIS MSH "LABEL") or a 3D Slicer '
            "colour table (index name R G B A)",
            path,
        )
    pattern, name_group, shape = (
        (_ITKSNAP, 8, 'IDX R G B A VIS MSH "LABEL" (ITK-SNAP)')
        if kind == "itksnap"
        else (_SLICER, 2, "index name R G B A (3D Slicer colour table)")
    )
    table: dict[int, str] = {}
    for number, line in _data_lines(text):
        match = pattern.match(line)
        if match is None:
            raise StudyError(
                f"line {number} cannot be read: {line.strip()!r}; expected {shape}", path
            )
        index, name = int(match.group(1)), drop_leading_number(match.group(name_group))
        add_label_row(table, number, index, name, path)
    if not table:
        raise StudyError("label file has no label lines", path)
    return table


def read_any_table(path: Path) -> dict[int, str]:
    """A label table of any supported format, by its suffix.

    ``.tsv``: a BIDS dseg table (:func:`~.tables.read_label_table`); else
    :func:`read_label_file`.
    """
    if path.suffix.lower() == ".tsv":
        return read_label_table(path)
    return read_label_file(path)


def _only(folder: Path, suffix: str) -> Path | None:
    try:
        hits = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == suffix)
    except OSError:
        return None
    return hits[0] if len(hits) == 1 else None


def table_candidates(label_path: Path, roles: dict[str, list[Path]]) -> list[Path]:
    """Existing label table files beside a label map, in the order they are tried.

    Parameters
    ----------
    label_path : Path
        The label map.
    roles : dict of str -> list of Path
        The study's role files (``label_table``: ``labels.tsv``, ``*_dseg.tsv``).

    Returns
    -------
    list of Path
        Without duplicates.
    """
    folder = label_path.parent
    stem = strip_nifti_suffix(label_path.name) or label_path.stem
    names = [f"{stem}.tsv"]
    found = [folder / n for n in names]
    found += [p for p in roles.get("label_table", []) if p.parent == folder]
    found += [folder / n for n in ("labels.txt", "labels.label", f"{stem}.txt", f"{stem}.label")]
    found.append(_only(folder, ".label"))
    found += [folder / n for n in (f"{stem}.ctbl", "labels.ctbl")]
    found.append(_only(folder, ".ctbl"))
    out: list[Path] = []
    for path in found:
        if path is not None and path.is_file() and path not in out:
            out.append(path)
    return out


def find_label_table(
    label_path: Path, roles: dict[str, list[Path]], qc: list[QCFinding]
) -> Path | None:
    """The label table file of a label map (see the module docstring for the order).

    Parameters
    ----------
    label_path : Path
        The label map.
    roles : dict of str -> list of Path
        The study's role files.
    qc : list of QCFinding
        A ``.txt`` candidate in neither format adds ``label_file_ignored`` (info) here.

    Returns
    -------
    Path or None
    """
    for path in table_candidates(label_path, roles):
        if path.suffix.lower() == ".txt" and sniff_format(path) is None:
            qc.append(
                QCFinding(
                    "info",
                    schema.LABEL_FILE_IGNORED,
                    f"{path.name} is beside the label map but is neither an ITK-SNAP label "
                    "description nor a 3D Slicer colour table; not used as its label table",
                    str(path),
                )
            )
            continue
        return path
    return None
