"""The study report: a self-contained HTML page per study.

Figures are drawn directly (:mod:`~mri_scoring.output.render`): charts and heat maps as SVG, image
slices as PNG data URIs. The HTML has inline CSS, no scripts and no external references, so a
report opens from a USB stick. Every text that comes from the input (study ids, label names,
file names, messages) is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..schema import DISCLAIMER
from .render import (
    CALL_RGB,
    CSS,
    grey_panel,
    hex_colour,
    png_data_uri,
    ramp_rgb,
    svg_document,
    svg_ramp_legend,
    svg_text,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..io.study import Study
    from .result import StudyResult

HEATMAP_MEASURES = (
    ("ff_median", "fat fraction", 0.0, 0.8),
    ("edema_fraction", "edema", 0.0, 1.0),
    ("fascial_edema_fraction", "fascial edema", 0.0, 1.0),
    ("atrophy_loss", "atrophy (1 - index)", 0.0, 1.0),
)
PANEL_PIXELS = 300
OUTLINE_RGB = (25, 255, 77)
BAR_COLOURS = {call: hex_colour(rgb) for call, rgb in CALL_RGB.items()}


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


# --------------------------------------------------------------------------- figures


def evidence_figure(result: StudyResult) -> str:
    """Inline SVG bar chart of each feature's log10 LR contribution; unavailable ones greyed."""
    features = result.likelihood.features
    label_width, plot_width, row, top = 250.0, 420.0, 24.0, 30.0
    values = [f.log10_lr_contribution if f.available else 0.0 for f in features]
    reach = max([abs(v) for v in values] + [0.5]) * 1.15
    zero = label_width + plot_width / 2.0
    scale = plot_width / 2.0 / reach
    height = top + row * len(features) + 46
    total = result.likelihood.log10_likelihood_ratio
    body = [svg_text(zero, 16, f"total log10 LR = {total:+.2f}", 12, "middle")]
    for i, (feature, value) in enumerate(zip(features, values, strict=True)):
        y = top + i * row
        body.append(svg_text(label_width - 8, y + row / 2 + 4, feature.id.replace("_", " "),
                             11, "end"))  # fmt: skip
        if not feature.available:
            body.append(svg_text(zero + 6, y + row / 2 + 4, "unavailable", 10, colour="#777"))
            continue
        colour = BAR_COLOURS["IMNM"] if value > 0 else BAR_COLOURS["DM"]
        x, width = (zero, value * scale) if value >= 0 else (zero + value * scale, -value * scale)
        body.append(f'<rect x="{x:.1f}" y="{y + 4:.1f}" width="{width:.1f}" '
                    f'height="{row - 8:.1f}" fill="{colour}"><title>'
                    f"{html.escape(feature.id)}: {value:+.3f}</title></rect>")  # fmt: skip
        end = x + width + 4 if value >= 0 else x - 4
        body.append(svg_text(end, y + row / 2 + 4, f"{value:+.2f}", 10,
                             "start" if value >= 0 else "end", "#444"))  # fmt: skip
    bottom = top + row * len(features)
    body.append(f'<line x1="{zero:.1f}" y1="{top - 4:.1f}" x2="{zero:.1f}" y2="{bottom:.1f}" '
                'stroke="#333" stroke-width="1"/>')  # fmt: skip
    magnitude = 10.0 ** np.floor(np.log10(reach / 4.0))
    step = next(m * magnitude for m in (1.0, 2.0, 5.0, 10.0) if reach / (m * magnitude) <= 4)
    for tick in np.arange(-np.floor(reach / step), np.floor(reach / step) + 1) * step:
        x = zero + tick * scale
        body.append(f'<line x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" y2="{bottom + 4:.1f}" '
                    'stroke="#333"/>')  # fmt: skip
        body.append(svg_text(x, bottom + 16, f"{tick:+g}" if tick else "0", 10, "middle"))
    body.append(svg_text(zero, bottom + 34, "log10 likelihood-ratio contribution "
                         "(\u2190 DM | IMNM \u2192)", 11, "middle"))  # fmt: skip
    return svg_document(label_width + plot_width + 40, height, body,
                        "log10 likelihood-ratio contribution per feature")  # fmt: skip


def muscle_heatmap_figure(table: pd.DataFrame) -> str | None:
    """Inline SVG heat map: muscles x {FF, edema, fascial edema, atrophy}, each side by side.

    Each cell carries its value as a tooltip; grey cells were not measured.
    """
    rows = table[table["kind"].isin(("muscle", "group"))].copy()
    if rows.empty:
        return None
    rows["atrophy_loss"] = 1.0 - rows["atrophy_index"].astype(float)
    order = list(dict.fromkeys(rows.sort_values(["group", "muscle"])["muscle"]))
    sides = [s for s in ("left", "right", "") if (rows["side"] == s).any()]
    columns, matrix = [], []
    for measure, label, low, high in HEATMAP_MEASURES:
        for side in sides:
            part = rows[rows["side"] == side].set_index("muscle")[measure].astype(float)
            part = part[~part.index.duplicated()].reindex(order).to_numpy()
            matrix.append((part, (part - low) / (high - low)))
            columns.append((label, side or "n/a"))
    label_width, cell_w, cell_h, top = 190.0, 44.0, 17.0, 58.0
    body = []
    for c, (label, side) in enumerate(columns):
        x = label_width + c * cell_w
        if c % len(sides) == 0:
            body.append(svg_text(x + cell_w * len(sides) / 2, 14, label, 11, "middle"))
        body.append(svg_text(x + cell_w / 2, top - 8, side, 10, "middle", "#555"))
    for r, muscle in enumerate(order):
        y = top + r * cell_h
        body.append(svg_text(label_width - 6, y + cell_h - 4, muscle.replace("_", " "), 11,
                             "end"))  # fmt: skip
        for c, (raw, scaled) in enumerate(matrix):
            value = raw[r]
            tip = f"{muscle} {columns[c][1]}, {columns[c][0]}: " + (
                f"{value:.3f}" if np.isfinite(value) else "not measured"
            )
            body.append(f'<rect x="{label_width + c * cell_w:.1f}" y="{y:.1f}" '
                        f'width="{cell_w - 1:.1f}" height="{cell_h - 1:.1f}" '
                        f'fill="{hex_colour(ramp_rgb(scaled[r]))}"><title>{html.escape(tip)}'
                        "</title></rect>")  # fmt: skip
    legend_y = top + len(order) * cell_h + 14
    body.append(svg_text(label_width - 6, legend_y + 9, "0", 10, "end"))
    body.append(svg_ramp_legend(label_width, legend_y, "1 (FF: 0.8); grey: not measured"))
    width = label_width + len(columns) * cell_w + 20
    return svg_document(width, legend_y + 24, body, "per-muscle heat map")


def _outline(labels: np.ndarray) -> np.ndarray:
    """Labelled pixels that touch a pixel of another label (or background)."""
    differs = np.zeros(labels.shape, bool)
    step_x = labels[1:, :] != labels[:-1, :]
    step_y = labels[:, 1:] != labels[:, :-1]
    differs[1:, :] |= step_x
    differs[:-1, :] |= step_x
    differs[:, 1:] |= step_y
    differs[:, :-1] |= step_y
    return differs & (labels > 0)


def _ff_slice(
    study: Study, step: int, noise_sigma: float | None
) -> Callable[[int], np.ndarray] | None:
    """A function k -> FF slice (strided), or None: only the slices shown are ever computed."""
    if "ff" in study.images:
        return lambda k: study.images["ff"][::step, ::step, k]
    if "fat" not in study.images or "water" not in study.images:
        return None
    fat, water = study.images["fat"], study.images["water"]
    # Air is pure noise whose ratio is meaningless: show black below a tenth of bright tissue
    # and below 8 noise sigmas (two Rician magnitudes rarely sum past that: no speckles).
    sample = fat[::4, ::4, ::2].astype(np.float32) + water[::4, ::4, ::2]
    floor = max(0.1 * float(np.nanpercentile(sample, 99)), 8.0 * (noise_sigma or 0.0))

    def ff(k: int) -> np.ndarray:
        f = fat[::step, ::step, k].astype(np.float32)  # stored integers may be 16-bit
        total = f + water[::step, ::step, k]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > floor, f / total, 0.0)

    return ff


def _display_range(study: Study, image: np.ndarray) -> tuple[float, float]:
    sample = image[::2, ::2, ::2][study.labels[::2, ::2, ::2] > 0].astype(np.float32)
    sample = sample[np.isfinite(sample)]
    return 0.0, (float(np.percentile(sample, 99.5)) * 1.2 if sample.size else 1.0)


def slice_panels(
    study: Study, noise_sigma: float | None = None
) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """Proximal, mid and distal slices with segmentation outlines, as RGB panels.

    One row over the FF map and one over STIR or the T2 map (the T1w image when that is all
    there is). Each panel is about ``PANEL_PIXELS`` wide: larger images are strided, smaller
    ones enlarged by whole pixels. ``noise_sigma`` (Dixon, as quantify measured it) sets the
    floor below which air shows black in the FF row.

    Returns
    -------
    list of (row title, [(caption, RGB array), ...])
    """
    labelled = np.flatnonzero(study.labels.any(axis=(0, 1)))
    if labelled.size == 0:
        return []
    levels = np.linspace(labelled.max(), labelled.min(), 5)[1:4].round().astype(int)
    largest = max(study.shape[:2])
    step = max(int(np.ceil(largest / PANEL_PIXELS)), 1)
    zoom = max(PANEL_PIXELS // largest, 1)
    rows = []
    ff = _ff_slice(study, step, noise_sigma)
    if ff is not None:
        rows.append(("fat fraction (0-1)", ff, (0.0, 1.0)))
    for role, title in (("stir", "STIR"), ("t2map", "water T2 (ms)"), ("t1w", "T1-weighted")):
        if role in study.images and (role != "t1w" or not rows):
            image = study.images[role]
            rows.append(
                (title, lambda k, im=image: im[::step, ::step, k], _display_range(study, image))
            )
            break
    out = []
    for title, slice_of, (low, high) in rows:
        panels = []
        for k, name in zip(levels, ("proximal", "mid", "distal"), strict=True):
            outline = _outline(study.labels[::step, ::step, k])
            rgb = grey_panel(slice_of(k), low, high, outline, OUTLINE_RGB, zoom)
            panels.append((f"{name} (slice {k})", rgb))
        out.append((title, panels))
    return out


def slice_figure(study: Study, noise_sigma: float | None = None) -> str | None:
    """HTML table of the slice panels (PNG data URIs) with captions, or None."""
    rows = slice_panels(study, noise_sigma)
    if not rows:
        return None
    cells = []
    for title, panels in rows:
        tds = "".join(
            f"<td class=panel>{_img(png_data_uri(rgb), f'{title}, {caption}')}"
            f"<br>{html.escape(title)}, {html.escape(caption)}</td>"
            for caption, rgb in panels
        )
        cells.append(f"<tr>{tds}</tr>")
    return (
        "<table class=slices>" + "".join(cells) + "</table><p class=small>Neurological view: "
        "world x (RAS+) increases to the right, so the patient's right thigh is on the right "
        "of each panel; anterior at the top; segmentation outlines in green.</p>"
    )


# --------------------------------------------------------------------------- study page


def _evidence_table(result: StudyResult) -> str:
    head = ("<tr><th class=l>feature</th><th>value</th><th>degree</th><th>log10 LR</th>"
            "<th>P(·|IMNM)</th><th>P(·|DM)</th><th class=l>muscles used / why unavailable</th>"
            "<th class=l>source</th></tr>")  # fmt: skip
    rows = []
    for f in result.likelihood.features:
        used = ", ".join(f.muscles_used) if f.available else f.reason
        rows.append(
            f"<tr class={'' if f.available else 'na'}><td class=l>{_fmt(f.description)}</td>"
            f"<td>{_fmt(f.value)}</td><td>{_fmt(f.degree, 2)}</td>"
            f"<td>{_fmt(f.log10_lr_contribution, 2)}</td><td>{_fmt(f.p_imnm, 2)}</td>"
            f"<td>{_fmt(f.p_dm, 2)}</td><td class=l>{_fmt(used)}</td>"
            f"<td class=l class=small>{_fmt(f.source)}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _muscle_table(table: pd.DataFrame) -> str:
    columns = ["muscle", "side", "group", "volume_ml", "ff_median", "ff_p90", "mercuri_grade",
               "edema_fraction", "edema_grade", "fascial_edema_fraction", "atrophy_index",
               "qc_flags"]  # fmt: skip
    columns = [c for c in columns if c in table.columns]
    head = "".join(
        f"<th class={'l' if c in ('muscle', 'side', 'group', 'qc_flags') else ''}>"
        f"{html.escape(c)}</th>"
        for c in columns
    )
    body = []
    for _, row in table.iterrows():
        cells = []
        for c in columns:
            value = row[c]
            text = _fmt(value, 0 if c.endswith("grade") else 3)
            cells.append(
                f"<td class={'l' if c in ('muscle', 'side', 'group', 'qc_flags') else ''}>"
                f"{text}</td>"
            )
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def study_report_html(result: StudyResult) -> str:
    """The self-contained ``report.html`` of one study."""
    like = result.likelihood
    esc = html.escape
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
             f"<title>mri_scoring: {esc(result.study_id)}</title><style>{CSS}</style></head><body>",
             f"<h1>Thigh MRI pattern report: {esc(result.study_id)}</h1>",
             f"<p class=disclaimer>{esc(DISCLAIMER)}</p>"]  # fmt: skip
    warnings = [q for q in result.qc if q.level == "warning"]
    if warnings:
        items = "".join(
            f"<li>{esc(q.code)}: {esc(q.message)}"
            f"{' (' + esc(Path(q.file).name) + ')' if q.file else ''}</li>"
            for q in warnings
        )
        parts.append(f"<div class=qc><b>Quality-control warnings</b><ul>{items}</ul></div>")
    parts.append(
        f"<h2>Result</h2><div class='call {esc(like.call)}'>call: <b>{esc(like.call)}</b> "
        f"&nbsp; p(IMNM) = {like.p_imnm:.3f} (90 % credible interval "
        f"{like.p_imnm_interval[0]:.2f}&ndash;{like.p_imnm_interval[1]:.2f}) &nbsp; log10 LR = "
        f"{like.log10_likelihood_ratio:+.2f}</div>"
        f"<p class=small>prior p(IMNM) = {like.prior_imnm:.2f}; template "
        f"{esc(result.template.name)}; call bounds: IMNM at p &ge; "
        f"{result.template.call_positive_at_least}, DM at p &le; "
        f"{result.template.call_negative_at_most}; a call needs the whole interval past "
        "its bound.</p>")  # fmt: skip
    if like.notes:
        parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in like.notes) + "</ul>")
    parts.append("<h2>Evidence per feature</h2>")
    parts.append(evidence_figure(result))
    parts.append(_evidence_table(result))
    heatmap = muscle_heatmap_figure(result.muscles)
    if heatmap:
        parts.append("<h2>Per-muscle heat map</h2>" + heatmap)
    if result.study is not None:
        slices = slice_figure(result.study, result.noise_sigma)
        if slices:
            parts.append("<h2>Slices with the segmentation</h2>" + slices)
    parts.append("<h2>Per-muscle measures</h2>" + _muscle_table(result.muscles))
    inputs = "".join(
        f"<li>{esc(role)}: {esc(v['file'])} <span class=small>sha256 "
        f"{esc(v['sha256'][:16])}…</span></li>"
        for role, v in result.inputs.items()
    )
    parts.append(
        f"<h2>Inputs</h2><ul>{inputs}</ul><p class=small>settings sha256 "
        f"{esc(result.config_sha256[:16])}…</p></body></html>"
    )
    return "\n".join(parts)
