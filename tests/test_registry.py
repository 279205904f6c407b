"""The registries agree with each other and with the files they describe.

Loops over every registry: columns (:data:`mri_scoring.schema.COLUMNS`), per-muscle measures
(:data:`mri_scoring.measure.registry.MEASURES`), template measures
(:data:`mri_scoring.pattern.measures.MEASURES`), QC codes (:data:`mri_scoring.schema.QC_CODES`)
and the settings the grades are tied to. Wrong answers guarded against: a column written without
unit or header, a measure whose column silently never reaches ``muscles.tsv``, a QC code raised
as a bare string nobody documented, a README list that drifted from the code.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from mri_scoring import phantom, schema
from mri_scoring.config import load_settings
from mri_scoring.measure import registry
from mri_scoring.output.comparisons import MEASURE_UNITS
from mri_scoring.output.long_tables import write_long_tables
from mri_scoring.output.write import save_study
from mri_scoring.pattern.measures import MEASURES as TEMPLATE_MEASURES
from mri_scoring.pattern.measures import PER_MUSCLE_COLUMNS
from mri_scoring.pipeline import score_study

ROOT = Path(__file__).resolve().parents[1]
UNITS = {
    "ml",
    "cm2",
    "ms",
    "mm",
    "fraction",
    "ratio",
    "z",
    "count",
    "grade",
    "index",
    "probability",
    "log10",
    "text",
}
TOY = schema.Column(
    name="toy_volume_l",
    table="muscles",
    unit="l",
    header="toy volume (l)",
    description="volume_ml / 1000 (a test measure)",
    report=True,
    report_scale=1.0,
    report_digits=3,
)


def _readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- {name} -->\n(.*?)\n<!-- /{name} -->", text, re.S)
    assert match, f"README.md has no <!-- {name} --> block"
    return match.group(1)


def test_every_column_has_a_unit_a_header_and_a_known_table():
    seen = set()
    for column in schema.COLUMNS:
        assert column.table in schema.TABLES, column
        assert column.unit in UNITS, f"{column.name}: unit {column.unit!r} not in {UNITS}"
        assert column.header.strip() and column.description.strip(), column.name
        assert (column.table, column.name) not in seen, f"{column.name} twice in {column.table}"
        seen.add((column.table, column.name))
        if column.report:
            assert column.table == "muscles"
            # a shown fraction is scaled to % and says so; a text column has no scale
            if column.unit == "fraction":
                assert column.report_scale == 100.0 and "%" in column.header, column.name
    assert schema.cohort_columns() == ("ff_median", "edema_fraction", "fascial_edema_fraction")


def test_every_measure_column_has_a_record_and_every_record_a_measure():
    assert registry.problems() == []


def test_a_registered_measure_without_a_column_record_fails(monkeypatch):
    monkeypatch.setitem(
        registry.MEASURES,
        "orphan",
        registry.Measure(name="orphan", columns=("orphan_value",), compute=lambda i: {}),
    )
    assert registry.problems() == [
        "measure 'orphan' fills 'orphan_value', which has no Column record in schema.COLUMNS"
    ]


def test_template_measures_read_declared_columns_and_have_units():
    muscle_columns = set(schema.muscle_columns())
    for name, measure in TEMPLATE_MEASURES.items():
        assert name in MEASURE_UNITS, f"template measure {name} has no unit in the report"
        # atrophy_loss is prepared by pattern.match as 1 - atrophy_index
        assert measure.column in muscle_columns | {"", "atrophy_loss"}, name
    assert set(PER_MUSCLE_COLUMNS.values()) <= muscle_columns | {"atrophy_loss"}


def test_every_qc_code_is_documented_and_raised_by_name():
    assert all(q.level in schema.QC_LEVELS and q.meaning for q in schema.QC_CODES.values())
    assert _readme_block("qc-codes") == schema.qc_markdown(), (
        "README's QC list differs from schema.QC_CODES: paste schema.qc_markdown()"
    )
    constants = {v for k, v in vars(schema).items() if k.isupper() and isinstance(v, str)}
    assert set(schema.QC_CODES) <= constants
    # QCFinding(level, "code", ...): a code as a string literal instead of schema.<CONSTANT>
    literal = re.compile(r'QCFinding\(\s*(?:level=)?"\w+",\s*(?:code=)?"(\w+)"')
    bare = [
        f"{path.name}: {code}"
        for path in (ROOT / "mri_scoring").rglob("*.py")
        for code in literal.findall(path.read_text(encoding="utf-8"))
    ]
    assert bare == [], "QC codes raised as strings (use the schema constant): " + ", ".join(bare)


def test_readme_column_list_is_the_schema():
    assert _readme_block("muscle-columns") == schema.columns_markdown("muscles"), (
        "README's muscles.tsv columns differ from schema.COLUMNS: paste "
        "schema.columns_markdown('muscles')"
    )


def test_healthy_ff_ceiling_is_where_mercuri_grade_1_begins():
    """quantify.healthy_ff_ceiling (ff_excess, the report's normal band) ends grade 0."""
    settings = load_settings()
    assert settings["quantify"]["healthy_ff_ceiling"] == settings["grades"]["mercuri_ff_bands"][0]


def _toy(inputs: registry.MeasureInputs) -> dict[str, np.ndarray]:
    return {"toy_volume_l": inputs.table["volume_ml"].to_numpy(float) / 1000.0}


def test_a_toy_measure_reaches_every_table_and_the_report(monkeypatch, tmp_path):
    """Function + registration + column record: muscles.tsv, muscles_long.tsv, the report.

    Also: every column of muscles.tsv and slices.tsv is written, in the schema's order.
    """
    monkeypatch.setattr(schema, "COLUMNS", (*schema.COLUMNS, TOY))
    monkeypatch.setattr(registry, "MEASURES", dict(registry.MEASURES))
    registry.register("toy", ("toy_volume_l",))(_toy)
    assert registry.problems() == []
    study = phantom.make_study("imnm", seed=4, shape=(64, 64, 12))
    folder = save_study(score_study(study), tmp_path / study.study_id)
    with open(folder / "muscles.tsv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert list(rows[0]) == schema.muscle_columns()  # every column, in schema order
    with open(folder / "slices.tsv", encoding="utf-8") as handle:
        assert handle.readline().rstrip("\n").split("\t") == list(schema.SLICE_COLUMNS)
    for row in rows:
        assert float(row["toy_volume_l"]) == pytest.approx(float(row["volume_ml"]) / 1000)
    assert "<th class=>toy volume (l)</th>" in (folder / "report.html").read_text("utf-8")
    write_long_tables(tmp_path, [folder])
    with open(tmp_path / "muscles_long.tsv", encoding="utf-8") as handle:
        long_rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [r["toy_volume_l"] for r in long_rows] == [r["toy_volume_l"] for r in rows]
    # Without its column record the measure fails the registry test (and is not written).
    monkeypatch.setattr(schema, "COLUMNS", schema.COLUMNS[:-1])
    assert "no Column record" in " ".join(registry.problems())
