"""The cohort view of a batch: a heat map of studies x muscles and an ``index.html``.

Each study contributes its per-muscle means (:func:`cohort_values`, kept from its scoring or
read back from a saved ``muscles.tsv`` on resume); the figure is one embedded PNG per panel.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from ..files import atomic_write
from ..io.discover import sanitise_id
from ..schema import DISCLAIMER, cohort_columns
from .render import (
    CSS,
    call_palette,
    png_data_uri,
    ramp_rgb,
    signed,
    svg_call_legend,
    svg_document,
    svg_ramp_legend,
    svg_text,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..pattern.templates import Template

__all__ = [
    "COHORT_MAX_ROWS",
    "COHORT_MEASURES",
    "INDEX_MAX_ROWS",
    "MAX_CLUSTERED_STUDIES",
    "PanelEntry",
    "cohort_figure",
    "cohort_order",
    "cohort_values",
    "read_cohort_values",
    "write_cohort_report",
]

MAX_CLUSTERED_STUDIES = 2000
COHORT_MAX_ROWS = 3000  # beyond, the cohort heat map averages bands of studies per row
INDEX_MAX_ROWS = 1000  # index.html lists this many studies at most (all are in summary.tsv)


class PanelEntry(NamedTuple):
    """A template of the panel as the cohort page needs it: its name and its two classes.

    What a batch's ``run.json`` keeps, so ``merge`` draws the same call bars as the run.
    """

    name: str
    classes: tuple[str, ...]


COHORT_MEASURES = cohort_columns()
"""The heat map's channels: the muscle-table columns marked ``cohort`` in
:data:`mri_scoring.schema.COLUMNS`."""


def cohort_values(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """One study's contribution to the cohort heat map.

    Per muscle, the mean over sides of each of ``COHORT_MEASURES``.

    Parameters
    ----------
    rows : iterable of mappings
        Rows of the study's muscle table (``StudyResult.muscles`` records, or the rows of its
        ``muscles.tsv`` as read by ``csv.DictReader``; empty cells are missing values).

    Returns
    -------
    dict
        ``{measure: {muscle: mean}}``; muscles with no value are left out.
    """
    sums: dict[str, dict[str, list[float]]] = {m: {} for m in COHORT_MEASURES}
    for row in rows:
        if row["kind"] not in ("muscle", "group"):
            continue
        for measure in COHORT_MEASURES:
            value = row.get(measure)
            value = float(value) if value not in (None, "") else float("nan")
            if np.isfinite(value):
                total = sums[measure].setdefault(row["muscle"], [0.0, 0.0])
                total[0] += value
                total[1] += 1.0
    return {m: {k: t[0] / t[1] for k, t in by.items()} for m, by in sums.items()}


def read_cohort_values(muscles_tsv: Path) -> dict[str, dict[str, float]] | None:
    """:func:`cohort_values` of a saved ``muscles.tsv`` (None if it cannot be read)."""
    try:
        with open(muscles_tsv, encoding="utf-8", newline="") as handle:
            return cohort_values(csv.DictReader(handle, delimiter="\t"))
    except (OSError, KeyError, ValueError, csv.Error):
        return None


def cohort_order(summary: pd.DataFrame, features: np.ndarray) -> tuple[np.ndarray, str]:
    """Row order of the cohort heat map and how it was made.

    Average-linkage hierarchical clustering (Euclidean) of the studies' feature rows up to
    ``MAX_CLUSTERED_STUDIES`` studies (its cost grows with the square of their number); beyond,
    studies are ordered by p(IMNM).
    """
    if 2 < len(summary) <= MAX_CLUSTERED_STUDIES:
        from scipy.cluster.hierarchy import leaves_list, linkage

        order = leaves_list(linkage(features, method="average", metric="euclidean"))
        return order, "hierarchical clustering (average linkage)"
    if len(summary) > 2:
        return np.argsort(summary["p_imnm"].to_numpy(), kind="stable"), "p(IMNM)"
    return np.arange(len(summary)), "input order"


def _fill_with_column_means(matrix: np.ndarray) -> np.ndarray:
    """NaNs replaced by their column's mean (0 for a column with no value)."""
    counts = np.isfinite(matrix).sum(axis=0)
    means = np.nansum(matrix, axis=0) / np.maximum(counts, 1)
    return np.where(np.isfinite(matrix), matrix, means)


def _bands(matrix: np.ndarray, band: int) -> np.ndarray:
    """Means of consecutive groups of ``band`` rows (NaN-aware; all-NaN groups stay NaN)."""
    if band == 1:
        return matrix
    rows = -(-matrix.shape[0] // band)
    padded = np.full((rows * band, matrix.shape[1]), np.nan)
    padded[: matrix.shape[0]] = matrix
    grouped = padded.reshape(rows, band, matrix.shape[1])
    counts = np.isfinite(grouped).sum(axis=1)
    sums = np.nansum(grouped, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def cohort_figure(
    summary: pd.DataFrame,
    ff: pd.DataFrame,
    edema: pd.DataFrame,
    fascial: pd.DataFrame | None = None,
    calls: Sequence[tuple[str, str, Sequence[str]]] = (("call", "call", ("IMNM", "DM")),),
) -> str:
    """Cohort heat map as an SVG document.

    Studies (rows, clustered) x muscles, FF, edema and fascial edema (the template's main DM
    sign), with each study's call under each template of the panel as a side bar
    (``calls``: title, ``summary`` column and the template's classes); every class has its
    colour, named in the legend.

    The cells are one embedded PNG per panel (any number of studies costs one image, not one
    shape per cell); names and legends are SVG text. With study names shown (up to 80 rows),
    every cell also carries a tooltip (study, muscle, measure, value in %), visible when the SVG
    file is opened. Beyond ``COHORT_MAX_ROWS`` studies, rows are averaged in consecutive bands
    of the ordering, and the side bar shows each band's most frequent call.
    """
    fascial = edema.iloc[:0, :0] if fascial is None else fascial
    muscles = sorted(set(ff.columns) | set(edema.columns) | set(fascial.columns))
    ids = summary["study_id"].to_numpy()
    ff, edema, fascial = (
        m.reindex(index=ids, columns=muscles).to_numpy(float) for m in (ff, edema, fascial)
    )
    # Clustering needs complete rows: a missing value counts as its muscle's cohort mean.
    order, how = cohort_order(
        summary, np.hstack([_fill_with_column_means(m) for m in (ff, edema, fascial)])
    )
    band = -(-len(order) // COHORT_MAX_ROWS)
    colours = call_palette([c for _, _, classes in calls for c in classes])
    names = list(colours)
    grey = names.index("indeterminate")
    bars = []
    for title, column, _ in calls:
        made = summary[column].to_numpy()[order]
        codes = np.array([names.index(c) if c in names else grey for c in made])
        if band > 1:
            padded = np.full(-(-len(codes) // band) * band, grey)
            padded[: len(codes)] = codes
            codes = np.array(
                [np.bincount(g, minlength=len(names)).argmax() for g in padded.reshape(-1, band)]
            )
        bars.append((title, codes))
    rows = len(bars[0][1])
    row_px = int(np.clip(900 // max(rows, 1), 1, 14))
    cell = 14
    panels = [(title, codes, 1.0, "") for title, codes in bars] + [
        ("fat fraction (0-80 %)", ff, 0.8, "% FF"),
        ("edema (0-100 % of muscle core)", edema, 1.0, "% of core"),
        ("fascial edema (0-100 % of shell)", fascial, 1.0, "% of shell"),
    ]
    show_ids = band == 1 and rows <= 80
    left = 10.0 + (max(len(str(i)) for i in ids) * 6.2 if show_ids else 0.0)
    label_height = max(len(m) for m in muscles) * 6.0 + 10 if muscles else 10.0
    top = 40.0 + label_height
    body, x = [], left
    palette = np.array(list(colours.values()), np.uint8)
    for title, matrix, high, unit in panels:
        if matrix.ndim == 2 and not muscles:
            continue  # no study had a muscle measure: only the call bars
        if matrix.ndim == 1:
            rgb = palette[matrix][:, None, :]
            width = cell
            turn = f' transform="rotate(-90 {x + 11:.1f} {top - 6:.1f})"'
            body.append(svg_text(x + 11, top - 6, title, 10, extra=turn))
        else:
            rgb = ramp_rgb(_bands(matrix[order], band) / high)
            width = cell * len(muscles)
            if show_ids:
                body += _cell_titles(
                    matrix[order],
                    ids[order],
                    muscles,
                    (x, top, row_px, cell),
                    f"{title.split(' (')[0]}",
                    unit,
                )
            for j, muscle in enumerate(muscles):
                cx = x + (j + 0.5) * cell + 4
                turn = f' transform="rotate(-90 {cx:.1f} {top - 6:.1f})"'
                body.append(svg_text(cx, top - 6, muscle.replace("_", " "), 10, extra=turn))
        pixels = np.repeat(np.repeat(rgb, row_px, axis=0), cell, axis=1)
        body.append(
            f'<image x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" '
            f'height="{rows * row_px:.1f}" preserveAspectRatio="none" '
            f'href="{png_data_uri(pixels)}"/>'
        )
        if matrix.ndim == 2:
            body.append(svg_text(x + width / 2, 30, title, 11, "middle"))
        x += width + (16 if matrix.ndim == 2 else 6)
    if show_ids:
        for r, study_id in enumerate(ids[order]):
            body.append(svg_text(left - 4, top + (r + 0.5) * row_px + 3.5, str(study_id), 9, "end"))
    bottom = top + rows * row_px + 16
    caption = "0 to the top of each panel's range (grey: not measured)"
    body.append(svg_ramp_legend(left, bottom, caption))
    body.append(svg_call_legend(left, bottom + 16, colours))
    bottom += 16
    grouping = f"; rows are bands of {band} studies" if band > 1 else ""
    body.append(svg_text(left, 14, f"{len(ids)} studies, rows ordered by {how}{grouping}", 12))
    return svg_document(max(x + 10, left + 560), bottom + 24, body, "cohort heat map")


def _cell_titles(
    matrix: np.ndarray,
    ids: np.ndarray,
    muscles: list[str],
    place: tuple[float, float, int, int],
    measure: str,
    unit: str,
) -> list[str]:
    """Transparent rectangles over a panel's cells, each with a tooltip of its value."""
    x, top, row_px, cell = place
    out = []
    for r, study_id in enumerate(ids):
        for j, muscle in enumerate(muscles):
            value = matrix[r, j]
            text = f"{value * 100:.1f} {unit}" if np.isfinite(value) else "not measured"
            tip = html.escape(f"{study_id}, {muscle.replace('_', ' ')}, {measure}: {text}")
            out.append(
                f'<rect x="{x + j * cell:.1f}" y="{top + r * row_px:.1f}" '
                f'width="{cell}" height="{row_px}" fill-opacity="0"><title>{tip}'
                "</title></rect>"
            )
    return out


def write_cohort_report(
    out: Path,
    summary: pd.DataFrame,
    template: Template | PanelEntry | Sequence[Template | PanelEntry],
    values: Mapping[str, dict[str, dict[str, float]]] | Sequence[pd.DataFrame],
    failures: pd.DataFrame | None = None,
    subjects: Iterable[str] = (),
    excluded: int = 0,
) -> None:
    """Write ``cohort_heatmap.svg`` and ``index.html`` for a batch output folder.

    Parameters
    ----------
    out : Path
        The batch output folder.
    summary : pandas.DataFrame
        The ``summary.tsv`` table (may be empty when every study failed).
    template : Template, PanelEntry or a sequence of them
        The template, or the differential panel, the studies were matched against (a
        :class:`PanelEntry` names a template and its classes, as a batch's ``run.json`` does).
    values : mapping or sequence of pandas.DataFrame
        Each study's :func:`cohort_values` by study id, or one study x muscle table per
        measure of ``COHORT_MEASURES`` (studies without values are grey).
    failures : pandas.DataFrame, optional
        The ``failures.tsv`` table: listed in the index with their reasons.
    subjects : iterable of str
        The subjects with a follow-up page (``subjects/<id>.html``), linked.
    excluded : int
        Studies left out by ``qc_ratings.tsv`` (said on the page).

    Notes
    -----
    The figure bands rows beyond ``COHORT_MAX_ROWS`` studies and the page lists at most
    ``INDEX_MAX_ROWS`` studies (with a note), so both stay usable at 100,000 studies.
    """
    esc = html.escape
    panel = (
        list(template)
        if isinstance(template, Sequence) and not isinstance(template, PanelEntry)
        else [template]
    )
    further = [t for t in panel[1:] if f"{t.name}_call" in summary]
    calls = [(panel[0].name, "call", panel[0].classes)] + [
        (t.name, f"{t.name}_call", t.classes) for t in further
    ]
    figure_html = "<p>No study was scored.</p>"
    if not summary.empty:
        ids = list(summary["study_id"])
        if isinstance(values, Mapping):
            matrices = [
                pd.DataFrame.from_dict(
                    {i: values[i].get(measure, {}) for i in ids if i in values},
                    orient="index",
                    dtype=float,
                )
                for measure in COHORT_MEASURES
            ]
        else:
            matrices = list(values)
        figure = cohort_figure(summary, *matrices, calls=calls).replace(
            "<svg ",
            '<svg xmlns="http://www.w3.org/2000/svg" ',
            1,  # a standalone SVG file needs it
        )
        atomic_write(
            out / "cohort_heatmap.svg", '<?xml version="1.0" encoding="UTF-8"?>\n' + figure
        )
        figure_html = (
            "<a href='cohort_heatmap.svg'><img src='cohort_heatmap.svg' alt='cohort "
            "heat map'></a><p class=small>Open the figure (click it) for each "
            "cell's value as a tooltip.</p>"
        )
    rows = []
    for _, row in summary.head(INDEX_MAX_ROWS).iterrows():
        link = f"{row['study_id']}/report.html"
        has_report = (out / row["study_id"] / "report.html").is_file()
        name = (
            f"<a href='{esc(link, quote=True)}'>{esc(row['study_id'])}</a>"
            if has_report
            else esc(row["study_id"])
        )
        low, high = row.get("p_imnm_lo"), row.get("p_imnm_hi")
        interval = (
            f"{low:.2f}&ndash;{high:.2f}"
            if isinstance(low, float)
            and np.isfinite(low)
            and isinstance(high, float)
            and np.isfinite(high)
            else ""
        )
        qc = row.get("qc")
        qc_text = esc(str(qc).replace(";", "; ")) if isinstance(qc, str) and qc else "none"
        more = "".join(
            f"<td class=l>{esc(str(row[f'{t.name}_call']))}</td>"
            f"<td>{_p(row[f'{t.name}_p_imnm'])}</td>"
            for t in further
        )
        rows.append(
            f"<tr><td class=l>{name}</td><td class=l>{esc(str(row['call']))}</td>"
            f"<td>{row['p_imnm']:.3f}</td><td>{interval}</td>"
            f"<td>{signed(row['log10_likelihood_ratio'])}</td>{more}"
            f"<td class=l>{qc_text}</td></tr>"
        )
    capped = (f"<p>The first {INDEX_MAX_ROWS} of {len(summary)} studies (by study id); all are "
              "in summary.tsv and summary.parquet, the outliers first in mosaic.html.</p>"
              if len(summary) > INDEX_MAX_ROWS else "")  # fmt: skip
    failures = failures if failures is not None else _read_failures(out / "failures.tsv")
    failed = "".join(
        f"<tr><td class=l>{esc(str(f['study_id']))}</td><td class=l>{esc(str(f['path']))}</td>"
        f"<td class=l>{esc(str(f['error']))}</td></tr>"
        for _, f in failures.iterrows()
    )
    failed_html = (
        f"<h2>Failed studies ({len(failures)})</h2><table><tr><th class=l>study</th>"
        f"<th class=l>folder</th><th class=l>reason</th></tr>{failed}</table>"
        if len(failures)
        else "<h2>Failed studies</h2><p>None.</p>"
    )
    page = (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><meta name=viewport "
        f"content='width=device-width, initial-scale=1'><title>mri_scoring cohort</title>"
        f"<style>{CSS}</style></head><body><h1>Cohort: {len(summary)} studies</h1>"
        f"<p class=disclaimer>{esc(DISCLAIMER)}</p>"
        f"<p>Template{'s' if len(panel) > 1 else ''} "
        f"{esc(', '.join(t.name for t in panel))}. Scored: {len(summary)}; failed: {len(failures)} "
        "(also in failures.tsv)"
        + (f"; excluded by qc_ratings.tsv: {excluded}" if excluded else "")
        + ". Tables: summary.tsv, muscles_long.tsv, "
        "features_long.tsv (and .parquet). QC queue: <a href='mosaic.html'>mosaic.html</a>, "
        "outliers.tsv.</p>"
        f"<h2>Cohort heat map</h2>{figure_html}"
        f"<h2>Studies</h2>{capped}<table><tr><th class=l>study</th><th class=l>call</th>"
        "<th>p(IMNM)</th><th>90 % interval</th><th>log10 LR</th>"
        + "".join(
            f"<th class=l>{esc(t.name)} call</th><th>{esc(t.name)} p(IMNM)</th>" for t in further
        )
        + "<th class=l>QC warnings</th></tr>"
        + "".join(rows)
        + "</table>"
        + failed_html
        + _followup_section(subjects)
        + "</body></html>"
    )
    atomic_write(out / "index.html", page)


def _p(value: object) -> str:
    """A probability to three decimals, empty when missing."""
    return f"{value:.3f}" if isinstance(value, float) and np.isfinite(value) else ""


def _followup_section(subjects: Iterable[str]) -> str:
    """Links to the per-subject follow-up pages (none: nothing)."""
    links = [
        f"<li><a href='subjects/{html.escape(sanitise_id(s), quote=True)}.html'>"
        f"{html.escape(s)}</a></li>"
        for s in subjects
    ]
    if not links:
        return ""
    return (
        "<h2>Follow-up</h2><p>Subjects with two or more sessions (changes against repeatability "
        "bands: longitudinal.tsv):</p><ul>" + "".join(links) + "</ul>"
    )


def _read_failures(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError):
        return pd.DataFrame(columns=["study_id", "path", "error"])
