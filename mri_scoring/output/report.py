"""The study report (``report.html``): what a radiologist reads.

A self-contained page (inline CSS and figures, no scripts, no external references) that fits an
800 px window without horizontal scrolling. Every text that comes from the input (study ids,
label names, file names, messages) is HTML-escaped. Fat fraction is shown in %, volume in ml,
T2 in ms; grades are explained beside the table; cited sources are listed in full at the bottom.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .. import schema
from ..anatomy import GROUP, MUSCLE, REFERENCE
from ..config import config_dir, load_settings, load_yaml
from ..errors import QCFinding
from ..schema import DISCLAIMER, report_columns
from .comparisons import MEASURE_UNITS, _fmt, comparison_section, panel_section
from .figures import (
    muscle_heatmap_figure,
    side_bars_figure,
    side_bars_measures,
)
from .levels import build_levels, levels_html, slices_heading
from .norms_section import norms_note, population_section
from .render import CSS
from .slices import VIEWS

if TYPE_CHECKING:  # pragma: no cover
    from .result import StudyResult  # StudyResult.save imports the writer, which imports this

__all__ = [
    "DEFAULT_VIEW",
    "EDEMA_SOURCES",
    "FF_SOURCES",
    "MEASURE_UNITS",
    "cited",
    "load_references",
    "muscle_table_columns",
    "study_page",
    "study_report_html",
]

DEFAULT_VIEW = "radiological"
FF_SOURCES = {  # by ``ff_source`` value (mri_scoring.schema.FF_SOURCES)
    "dixon": "fat fraction from Dixon fat/water images (fat / (fat + water), noise bias removed)",
    "ff_map": "fat fraction from the fat-fraction map given",
    "t1w_semiquantitative": "fat fraction from T1w intensities (semi-quantitative: linear "
    "between the leanest muscle and fat; not a PDFF)",
    "": "fat fraction not measured (no Dixon images, fat-fraction map or T1w image)",
}
EDEMA_SOURCES = {  # by ``edema_source`` value (mri_scoring.schema.EDEMA_SOURCES)
    "stir": "edema from STIR, against the study's own normal muscle (bias field removed)",
    "t2map": "edema from the water-T2 map, against a threshold in ms",
    "": "edema not measured (no STIR or T2 map)",
}


# How a template measure's value reads, as (scale, unit, what).
def load_references() -> dict[str, str]:
    """Full citations by key from ``configs/references.yaml`` (empty when it does not exist).

    Entries may be plain strings or mappings (``citation``/``title``, ``doi``, ``url``, ...).

    Returns
    -------
    dict of str to str
        Key -> one line of citation text.
    """
    path = config_dir() / "references.yaml"
    if not path.is_file():
        return {}
    data = load_yaml(path) or {}
    if isinstance(data, Mapping) and isinstance(data.get("references"), Mapping):
        data = data["references"]
    out = {}
    for key, entry in data.items() if isinstance(data, Mapping) else []:
        if isinstance(entry, Mapping):
            text = str(entry.get("citation") or entry.get("title") or entry.get("text") or "")
            extra = [f"doi:{entry['doi']}" for _ in [0] if entry.get("doi")]
            extra += [str(entry["url"])] if entry.get("url") and not entry.get("doi") else []
            out[str(key)] = " ".join([text, *extra]).strip()
        else:
            out[str(key)] = str(entry)
    return out


def cited(texts: list[str], references: Mapping[str, str]) -> list[str]:
    """Keys of ``references`` cited in any of ``texts`` (as whole words), in citation order.

    Every key when none is cited by key.
    """
    found: list[str] = []
    for text in texts:
        for key in references:
            if key not in found and re.search(rf"(?<![\w-]){re.escape(key)}(?![\w-])", text):
                found.append(key)
    return found or list(references)


# --------------------------------------------------------------------------- sections


def _qc_section(result: StudyResult) -> str:
    esc = html.escape
    sources = result.muscles.get("ff_source", pd.Series(dtype=str))
    ff = next((s for s in sources if isinstance(s, str) and s), "")
    sources = result.muscles.get("edema_source", pd.Series(dtype=str))
    edema = next((s for s in sources if isinstance(s, str) and s), "")
    lines = [
        f"<li>{esc(FF_SOURCES.get(ff, f'fat fraction from {ff}'))}</li>",
        f"<li>{esc(EDEMA_SOURCES.get(edema, f'edema from {edema}'))}</li>",
    ]

    def item(q: QCFinding) -> str:
        where = f" ({esc(Path(q.file).name)})" if q.file else ""
        return f"<li><b>{esc(q.level)}</b> {esc(q.code)}: {esc(q.message)}{where}</li>"

    warnings = [q for q in result.qc if q.level == "warning"]
    others = [q for q in result.qc if q.level != "warning"]
    head = (
        f"<div class=qc><b>Quality-control warnings ({len(warnings)})</b><ul>"
        + "".join(item(q) for q in warnings)
        + "</ul></div>"
        if warnings
        else "<p class=ok>No quality-control warnings.</p>"
    )
    rest = "".join(item(q) for q in others) or "<li>no other findings</li>"
    return f"<h2>Quality control</h2>{head}<ul class=small>{''.join(lines)}{rest}</ul>"


def muscle_table_columns() -> list[tuple[str, str, float | None, int]]:
    """The per-muscle table's (column, header, scale, digits); scale None: a text column.

    Read from :func:`mri_scoring.schema.report_columns` at each call.
    """
    return [(c.name, c.header, c.report_scale, c.report_digits) for c in report_columns()]


def _table(
    rows: pd.DataFrame, columns: Sequence[tuple[str, str, float | None, int]] | None = None
) -> str:
    if columns is None:
        columns = muscle_table_columns()
    columns = [
        c for c in columns if c[0] in rows.columns and (c[2] is None or rows[c[0]].notna().any())
    ]
    head = "".join(
        f"<th class={'l' if s is None else ''}>{html.escape(h)}</th>" for _, h, s, _ in columns
    )
    body = []
    for _, row in rows.iterrows():
        cells = []
        for column, _, scale, digits in columns:
            value = row[column]
            if scale is None:
                text = html.escape(
                    str(value).replace("_", " ")
                    if column != "qc_flags"
                    else str(value).replace(";", "; ")
                )
                kind = "l f" if column == "qc_flags" else "l"  # long codes may break anywhere
                cells.append(f"<td class='{kind}'>{'' if value is None else text}</td>")
            else:
                cells.append(f"<td>{_fmt(value, digits, scale)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _grade_legend(bands: Mapping[str, Any], muscles: pd.DataFrame) -> str:
    """What the grades mean, for the measures this study has (no edema grade without edema)."""

    def ranges(edges: list[float]) -> str:
        points = [0.0, *edges]
        parts = []
        for g, low in enumerate(points):
            high = points[g + 1] if g + 1 < len(points) else None
            span = (
                f"{low * 100:g}\u2013{high * 100:g} %"
                if high is not None
                else f"\u2265 {low * 100:g} %"
            )
            parts.append(f"{g}: {span}")
        return "; ".join(parts)

    fat, edema = (
        c in muscles and muscles[c].notna().any() for c in ("ff_median", "edema_fraction")
    )
    parts = []
    if fat:
        parts.append(
            "<b>Mercuri grade</b> here is derived from the core median fat fraction "
            f"(grade by FF band: {ranges(list(bands['mercuri_ff_bands']))}); it is "
            "not a visual T1w read."
        )
    if edema:
        parts.append(
            "<b>Edema grade</b> from the share of the muscle core read as edema "
            f"({ranges(list(bands['edema_fraction_bands']))})."
        )
    measured = " and ".join(n for n, m in (("FF", fat), ("edema", edema)) if m)
    if measured:
        parts.append(
            f"{measured} {'are' if fat and edema else 'is'} measured in the eroded "
            "core of each muscle"
            + ("; fatty voxels are never counted as edema." if fat and edema else ".")
        )
    return "<p class=small>" + " ".join([*parts, "Empty cells: not measured."]) + "</p>"


def _atrophy_note(result: StudyResult) -> str:
    """One line on what atrophy rests on (global atrophy needs height and mass)."""
    codes = {q.code for q in result.qc}
    notes = []
    if "volume_norm_below_reference_age" in codes:
        notes.append(
            "<b>No expected volumes</b>: the child is younger than the volume norms' "
            "youngest reference age; atrophy is each muscle's share of the labelled "
            "volume and the left/right comparison."
        )
    if "global_atrophy_not_assessable" in codes:
        notes.append(
            "<b>Global atrophy is not assessable</b>: without height_m and mass_kg in "
            "study.json the atrophy index is each muscle's share of the labelled volume, "
            "which cannot show a loss that every muscle shares."
        )
    if schema.PARTIAL_COVERAGE in codes:
        notes.append(
            "Muscles flagged partial_coverage continue beyond the field of view: their "
            "volume-based atrophy is not assessed."
        )
    return f"<p class=small>{' '.join(notes)}</p>" if notes else ""


def _inputs_section(result: StudyResult, version: Mapping[str, str]) -> str:
    esc = html.escape
    folder = result.study.path if result.study is not None else None
    items = "".join(
        f"<li>{esc(role)}: {esc(v['file'])} <span class=small>sha256 "
        f"{esc(v['sha256'][:16])}…</span></li>"
        for role, v in result.inputs.items()
    )
    software = ", ".join(f"{esc(k)} {esc(str(v))}" for k, v in version.items())
    return (
        f"<h2>Inputs and software</h2><p class=small>study folder: "
        f"{esc(str(folder.resolve())) if folder else '(in memory)'}</p><ul>{items}</ul>"
        f"<p class=small>software: {software}<br>settings sha256 "
        f"{esc(result.config_sha256[:16])}…; "
        + "; ".join(
            f"template {esc(c.template.name)} sha256 {esc(c.template.sha256[:16])}…"
            for c in result.comparisons
        )
        + "</p>"
    )


def _references_section(result: StudyResult) -> str:
    references = load_references()
    texts = [f.source for c in result.comparisons for f in c.likelihood.features]
    keys = cited(texts, references) if references else []
    if not keys:
        sources = sorted({t for t in texts if t})
        items = "".join(f"<li>{html.escape(s)}</li>" for s in sources)
        return f"<h2>References</h2><ol class=refs>{items}</ol>"
    items = "".join(
        f"<li id='ref-{html.escape(k, quote=True)}'><b>{html.escape(k)}</b>: "
        f"{html.escape(references[k])}</li>"
        for k in keys
    )
    return f"<h2>References</h2><ol class=refs>{items}</ol>"


# --------------------------------------------------------------------------- the page


def study_page(
    result: StudyResult,
    *,
    view: str = DEFAULT_VIEW,
    grades: Mapping[str, Any],
    normal_ff: float,
    software: Mapping[str, str],
    disclaimer: str,
    muscle_heatmap: str | None = None,
) -> str:
    """The self-contained ``report.html`` of one study.

    Parameters
    ----------
    result : StudyResult
        With its study and voxel maps in memory for the slice figures (without them the page
        has no slices).
    view : {"radiological", "neurological"}
        Orientation of the slice panels.
    grades : mapping
        The ``grades`` section of the settings (band edges, explained beside the table).
    normal_ff : float
        Upper end (0-1) of the healthy fat-fraction range drawn in the per-muscle bars.
    software : mapping
        Package and library versions shown with the inputs.
    disclaimer : str
    muscle_heatmap : str, optional
        The per-muscle heat map SVG.

    Returns
    -------
    str
        The HTML page.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    esc = html.escape
    table = result.muscles
    muscles = table[table["kind"].isin((MUSCLE, GROUP))]
    references = table[table["kind"] == REFERENCE]
    others = table[~table["kind"].isin((MUSCLE, GROUP, REFERENCE))]
    parts = [
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><meta name=viewport "
        f"content='width=device-width, initial-scale=1'><title>mri_scoring: "
        f"{esc(result.study_id)}</title><style>{CSS}</style></head><body>",
        f"<h1>Thigh MRI pattern report: {esc(result.study_id)}</h1>",
        f"<p class=disclaimer>{esc(disclaimer)}</p>",
        _qc_section(result),  # warnings first: they qualify everything below
        panel_section(result),  # then one row per comparison of the panel
        population_section(result),
        *(comparison_section(c.template, c.likelihood) for c in result.comparisons),
    ]
    if result.study is not None:
        threshold = result.edema_reference.get("threshold")
        levels, legend = build_levels(
            result.study,
            getattr(result, "voxel_maps", None),
            view,
            threshold if result.edema_reference.get("source") == "t2map" else None,
        )
        if levels:
            heading = slices_heading(result.study, getattr(result, "voxel_maps", None))
            parts.append(f"<h2>{esc(heading)}</h2>" + levels_html(levels, legend, view))
    bars = side_bars_figure(table, normal_ff, float(grades["edema_fraction_bands"][0]))
    if bars:
        shown = side_bars_measures(table)
        parts.append(
            f"<h2>{esc(shown[0].upper() + shown[1:])} per muscle, left and right</h2>" + bars
        )
    if muscle_heatmap:
        parts.append("<h2>Per-muscle heat map</h2>" + muscle_heatmap)
    parts.append("<h2>Per-muscle measures</h2>")
    no_muscle = "<p>No label of this study is a known thigh muscle or compartment.</p>"
    parts.append(_table(muscles) if not muscles.empty else no_muscle)
    parts.append(_grade_legend(grades, muscles))
    parts.append(_atrophy_note(result))
    parts.append(norms_note(result))
    if not references.empty:
        shown = ("muscle", "side", "volume_ml", "ff_median")
        columns = [c for c in muscle_table_columns() if c[0] in shown]
        parts.append(
            "<h3>Reference tissues (checks only, not muscles)</h3>" + _table(references, columns)
        )
    if not others.empty:
        names = ", ".join(sorted(str(m) for m in others["muscle"]))
        parts.append(
            f"<p class=small>Labels not recognised as thigh muscles (not measured "
            f"as muscles): {esc(names)}</p>"
        )
    parts.append(_inputs_section(result, software))
    parts.append(_references_section(result))
    parts.append("</body></html>")
    return "\n".join(parts)


def study_report_html(result: StudyResult, view: str = DEFAULT_VIEW) -> str:
    """The self-contained ``report.html`` of one study.

    Parameters
    ----------
    result : StudyResult
        With ``study`` and ``voxel_maps`` in memory for the slice figures.
    view : {"radiological", "neurological"}
        Orientation of the slice panels (radiological: the patient's right on the viewer's left).

    Returns
    -------
    str
        The HTML page.
    """
    settings = getattr(result, "settings", None) or load_settings()
    return study_page(
        result,
        view=view,
        grades=settings["grades"],
        normal_ff=settings["quantify"]["healthy_ff_ceiling"],
        software=result.to_dict()["software"],
        disclaimer=DISCLAIMER,
        muscle_heatmap=muscle_heatmap_figure(result.muscles),
    )
