"""Parquet copies of the cohort tables (``summary.parquet``, ``muscles_long.parquet``, ...).

The TSV files stay the contract; each Parquet file holds the same rows and columns, typed:

* ``int64`` — a column whose every non-empty cell is a whole number;
* ``double`` — a column whose every non-empty cell is a number (``nan``/``inf`` included);
* ``bool`` — a column of ``true``/``false`` (any case) cells;
* ``string`` — every other column;

an empty cell is null in every type (a column of empty cells only is ``string``). The table
is converted in blocks (pyarrow's streaming CSV reader), twice: once to find each column's
type, once to write, so memory stays flat in the number of rows. pyarrow is imported here
only, when a table is converted.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..files import _umask

__all__ = ["column_types", "write_parquet"]

BLOCK_BYTES = 1 << 20  # parsed one at a time: 8 MiB blocks on threads cost the driver ~40 MiB
_NARROWING = ("int64", "double", "bool", "string")
_ARROW = {"int64": "int64", "double": "float64", "bool": "bool_", "string": "string"}


def _reader(path: Path, types: dict[str, object] | None = None) -> object:
    import pyarrow as pa
    from pyarrow import csv

    with open(path, encoding="utf-8") as handle:
        names = handle.readline().rstrip("\n").split("\t")
    types = types or dict.fromkeys(names, pa.string())
    return csv.open_csv(
        path,
        read_options=csv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False),
        parse_options=csv.ParseOptions(delimiter="\t", quote_char=False),
        convert_options=csv.ConvertOptions(column_types=types, null_values=[""],
                                           strings_can_be_null=True,
                                           true_values=["true", "True", "TRUE"],
                                           false_values=["false", "False", "FALSE"]),
    )  # fmt: skip


def column_types(path: str | Path) -> dict[str, str]:
    """The Parquet type of each column of a TSV file (see the module docstring).

    Returns
    -------
    dict of str -> str
        Column -> ``"int64"``, ``"double"``, ``"bool"`` or ``"string"``, in file order.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    reader = _reader(Path(path))
    pool = pa.default_memory_pool()
    names = reader.schema.names  # type: ignore[attr-defined]
    options = {name: 0 for name in names}  # index into _NARROWING: the narrowest still possible
    filled: set[str] = set()
    for batch in reader:  # type: ignore[attr-defined]
        for name, column in zip(names, batch.columns, strict=True):
            if column.null_count < len(column):
                filled.add(name)
            while options[name] < len(_NARROWING) - 1:
                target = _NARROWING[options[name]]
                try:
                    values = column.drop_null()
                    if target == "bool":
                        lowered = pc.utf8_lower(values)
                        if pc.all(pc.is_in(lowered, pa.array(["true", "false"]))).as_py() in (
                            True,
                            None,
                        ):
                            break
                        raise pa.ArrowInvalid("not true/false")
                    pc.cast(values, getattr(pa, _ARROW[target])())
                    break
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    options[name] += 1
        del batch, column
        pool.release_unused()
    return {name: _NARROWING[options[name]] if name in filled else "string" for name in names}


def write_parquet(tsv: str | Path, parquet: str | Path | None = None) -> Path:
    """Write the Parquet copy of a TSV table (atomic: a temporary file replaces the target).

    Parameters
    ----------
    tsv : path
        A table with a header row, tab-separated, empty cells for missing values.
    parquet : path, optional
        Default: the same name with ``.parquet``.

    Returns
    -------
    Path
        The file written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    tsv = Path(tsv)
    target = Path(parquet) if parquet else tsv.with_suffix(".parquet")
    types = {name: getattr(pa, _ARROW[kind])() for name, kind in column_types(tsv).items()}
    schema = pa.schema(list(types.items()))
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pool = pa.default_memory_pool()
        with pq.ParquetWriter(tmp, schema) as writer:
            wrote = False
            for batch in _reader(tsv, types):  # type: ignore[attr-defined]
                writer.write_batch(batch)
                wrote = True
                del batch
                pool.release_unused()  # else the pool keeps every block's pages (+150 MiB)
            if not wrote:
                writer.write_table(schema.empty_table())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
