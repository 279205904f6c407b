"""SVG figures of the study report: evidence bars, left/right bars per muscle, colour bars.

Each function returns an inline ``<svg>`` element with a ``viewBox``, so the page scales it down
to narrow windows (never wider than its container). Values carry their units in labels and
tooltips: fat fraction and edema in %, log10 likelihood ratios bare.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from .render import (
    call_palette,
    hex_colour,
    ramp_rgb,
    signed,
    svg_document,
    svg_ramp_legend,
    svg_text,
)

__all__ = [
    "DM_COLOUR",
    "HEATMAP_MEASURES",
    "IMNM_COLOUR",
    "NEUTRAL_COLOUR",
    "NORMAL_FILL",
    "SIDE_COLOURS",
    "colour_bar",
    "evidence_figure",
    "muscle_heatmap_figure",
    "side_bars_figure",
    "side_bars_measures",
    "swatch_legend",
]

IMNM_COLOUR, DM_COLOUR, NEUTRAL_COLOUR = "#1f6fd1", "#d1621f", "#8c8c8c"
SIDE_COLOURS = {"left": "#7b3294", "right": "#1b9e77"}  # purple / green: no call colour
NORMAL_FILL = "#dcefdc"


def _ticks(reach: float) -> np.ndarray:
    magnitude = 10.0 ** np.floor(np.log10(reach / 4.0))
    step = next(m * magnitude for m in (1.0, 2.0, 5.0, 10.0) if reach / (m * magnitude) <= 4)
    return np.arange(-np.floor(reach / step), np.floor(reach / step) + 1) * step


def evidence_figure(
    features: Sequence, total: float, neutral: bool = False, classes: Sequence[str] = ("IMNM", "DM")
) -> str:
    """Bar chart of each feature's log10 likelihood-ratio contribution.

    Parameters
    ----------
    features : sequence of FeatureContribution
    total : float
        The study's log10 likelihood ratio (first class over second).
    neutral : bool
        Draw every bar grey (an indeterminate call: the bars are not read as either class).
    classes : sequence of str
        The template's two classes (positive first): bar colours and axis label.

    Returns
    -------
    str
        An SVG element; unavailable features are named with "unavailable".
    """
    label_width, plot_width, row, top = 230.0, 400.0, 24.0, 30.0
    palette = call_palette(list(classes))
    colours = [hex_colour(palette[c]) for c in classes[:2]]
    values = [f.log10_lr_contribution if f.available else 0.0 for f in features]
    reach = max([abs(v) for v in values] + [0.5]) * 1.15
    zero = label_width + plot_width / 2.0
    scale = plot_width / 2.0 / reach
    height = top + row * len(features) + 46
    body = [svg_text(zero, 16, f"total log10 LR = {signed(total)}", 12, "middle")]
    for i, (feature, value) in enumerate(zip(features, values, strict=True)):
        y = top + i * row
        body.append(
            svg_text(label_width - 8, y + row / 2 + 4, feature.id.replace("_", " "), 11, "end")
        )
        if not feature.available:
            body.append(svg_text(zero + 6, y + row / 2 + 4, "unavailable", 10, colour="#777"))
            continue
        colour = NEUTRAL_COLOUR if neutral else colours[0] if value > 0 else colours[1]
        x, width = (zero, value * scale) if value >= 0 else (zero + value * scale, -value * scale)
        body.append(
            f'<rect x="{x:.1f}" y="{y + 4:.1f}" width="{width:.1f}" '
            f'height="{row - 8:.1f}" fill="{colour}"><title>'
            f"{html.escape(feature.id)}: {signed(value, 3)}</title></rect>"
        )
        end = x + width + 4 if value >= 0 else x - 4
        body.append(
            svg_text(
                end, y + row / 2 + 4, signed(value), 10, "start" if value >= 0 else "end", "#444"
            )
        )
    bottom = top + row * len(features)
    body.append(
        f'<line x1="{zero:.1f}" y1="{top - 4:.1f}" x2="{zero:.1f}" y2="{bottom:.1f}" '
        'stroke="#333" stroke-width="1"/>'
    )
    for tick in _ticks(reach):
        x = zero + tick * scale
        body.append(
            f'<line x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" y2="{bottom + 4:.1f}" '
            'stroke="#333"/>'
        )
        body.append(svg_text(x, bottom + 16, f"{tick:+g}" if tick else "0", 10, "middle"))
    body.append(
        svg_text(
            zero,
            bottom + 34,
            f"log10 likelihood-ratio contribution (\u2190 {classes[1]} | {classes[0]} \u2192)",
            11,
            "middle",
        )
    )
    return svg_document(
        label_width + plot_width + 30,
        height,
        body,
        "log10 likelihood-ratio contribution per feature",
    )


def side_bars_figure(table: pd.DataFrame, normal_ff: float, normal_edema: float) -> str | None:
    """Per muscle, left and right bars of fat fraction and of edema (both in %).

    The normal range is shaded behind the bars.

    Parameters
    ----------
    table : pandas.DataFrame
        Muscle rows (``muscle``, ``side``, ``group``, ``ff_median``, ``edema_fraction``).
    normal_ff, normal_edema : float
        Upper ends (0-1) of the normal ranges drawn: the healthy fat-fraction ceiling and the
        edema fraction of edema grade 0.

    Returns
    -------
    str or None
        An SVG element; None without a measured muscle. Missing values are marked "n/m".
    """
    rows = table[table["kind"] == "muscle"]
    if rows.empty:
        return None
    order = list(dict.fromkeys(rows.sort_values(["group", "muscle"])["muscle"]))
    panels = [
        (c, t, lim)
        for c, t, lim in (
            ("ff_median", "fat fraction (%)", normal_ff),
            ("edema_fraction", "edema (% of muscle core)", normal_edema),
        )
        if rows[c].notna().any()
    ]
    if not panels:
        return None
    label_width, plot_width, gap, bar, top = 170.0, 230.0, 30.0, 6.0, 44.0
    row = 2 * bar + 6
    body = []
    values = {(m, s): r for (m, s), r in rows.set_index(["muscle", "side"]).iterrows()}
    for p, (column, title, normal) in enumerate(panels):
        x0 = label_width + p * (plot_width + gap)
        body.append(svg_text(x0 + plot_width / 2, 14, title, 11, "middle"))
        bottom = top + row * len(order)
        body.append(
            f'<rect x="{x0:.1f}" y="{top - 4:.1f}" width="{normal * plot_width:.1f}" '
            f'height="{bottom - top + 4:.1f}" fill="{NORMAL_FILL}"><title>normal range: '
            f"below {normal * 100:g} %</title></rect>"
        )
        for tick in (0, 25, 50, 75, 100):
            x = x0 + tick / 100 * plot_width
            body.append(
                f'<line x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" '
                f'y2="{bottom + 4:.1f}" stroke="#333"/>'
            )
            body.append(svg_text(x, bottom + 15, f"{tick}", 10, "middle"))
        body.append(
            f'<line x1="{x0:.1f}" y1="{top - 4:.1f}" x2="{x0:.1f}" y2="{bottom:.1f}" '
            'stroke="#333"/>'
        )
        for r, muscle in enumerate(order):
            for s, side in enumerate(("left", "right")):
                y = top + r * row + s * bar
                record = values.get((muscle, side))
                value = float(record[column]) if record is not None else float("nan")
                if not np.isfinite(value):
                    if record is not None:
                        body.append(svg_text(x0 + 3, y + bar, "n/m", 7, colour="#999"))
                    continue
                body.append(
                    f'<rect x="{x0:.1f}" y="{y:.1f}" '
                    f'width="{max(value, 0.0) * plot_width:.1f}" height="{bar - 1:.1f}" '
                    f'fill="{SIDE_COLOURS[side]}"><title>{html.escape(muscle)} {side}, '
                    f"{html.escape(title)}: {value * 100:.1f}</title></rect>"
                )
    for r, muscle in enumerate(order):
        body.append(
            svg_text(label_width - 6, top + r * row + bar + 3, muscle.replace("_", " "), 10, "end")
        )
    legend_y = top + row * len(order) + 34
    x = label_width
    for side, colour in SIDE_COLOURS.items():
        body.append(
            f'<rect x="{x:.1f}" y="{legend_y - 8:.1f}" width="10" height="8" fill="{colour}"/>'
        )
        body.append(
            svg_text(
                x + 14,
                legend_y,
                f"{side} (upper bar)" if side == "left" else f"{side} (lower bar)",
                10,
            )
        )
        x += 110
    body.append(
        f'<rect x="{x:.1f}" y="{legend_y - 8:.1f}" width="10" height="8" '
        f'fill="{NORMAL_FILL}" stroke="#9c9"/>'
    )
    ranges = {
        "ff_median": f"FF < {normal_ff * 100:g} %",
        "edema_fraction": f"edema < {normal_edema * 100:g} %",
    }
    shown = ", ".join(ranges[column] for column, _, _ in panels)
    body.append(svg_text(x + 14, legend_y, f"normal range ({shown}); n/m: not measured", 10))
    width = label_width + len(panels) * (plot_width + gap) + 10
    return svg_document(
        max(width, x + 400),
        legend_y + 10,
        body,
        f"{side_bars_measures(table)} per muscle, left and right",
    )


def side_bars_measures(table: pd.DataFrame) -> str:
    """What :func:`side_bars_figure` shows, as words.

    "fat fraction and edema", "fat fraction", "edema" or "": only measures with a value in
    some muscle are drawn.

    Examples
    --------
    >>> rows = pd.DataFrame({"kind": ["muscle"], "ff_median": [0.1], "edema_fraction": [None]})
    >>> side_bars_measures(rows)
    'fat fraction'
    """
    rows = table[table["kind"] == "muscle"]
    names = {"ff_median": "fat fraction", "edema_fraction": "edema"}
    shown = [
        name
        for column, name in names.items()
        if column in rows.columns and pd.to_numeric(rows[column]).notna().any()
    ]
    return " and ".join(shown)


def colour_bar(
    colours: Callable[[np.ndarray], np.ndarray],
    ticks: Sequence[tuple[float, str]],
    title: str,
    width: float = 260.0,
) -> str:
    """A horizontal colour bar with tick labels.

    Parameters
    ----------
    colours : callable
        Positions in [0, 1] -> RGB uint8 array (e.g. the overlay colour map).
    ticks : sequence of (position 0-1, label)
    title : str
        Shown left of the bar, e.g. ``"fat fraction (%)"``.

    Returns
    -------
    str
        An SVG element.
    """
    left, steps = 150.0, 64
    rgb = colours(np.linspace(0.0, 1.0, steps))
    step = width / steps
    body = [svg_text(left - 8, 17, title, 11, "end")]
    body += [
        f'<rect x="{left + i * step:.2f}" y="6" width="{step + 0.4:.2f}" height="14" '
        f'fill="{hex_colour(c)}"/>'
        for i, c in enumerate(rgb)
    ]
    for position, label in ticks:
        x = left + position * width
        body.append(f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="24" stroke="#333"/>')
        body.append(svg_text(x, 35, label, 10, "middle"))
    return svg_document(left + width + 20, 40, body, title)


def swatch_legend(items: Sequence[tuple[str, str]]) -> str:
    """Colour swatches with their meaning, as HTML (``[(css colour, text), ...]``)."""
    return "".join(
        f"<span class=swatch><i style='background:{html.escape(colour)}'></i>"
        f"{html.escape(text)}</span>"
        for colour, text in items
    )


HEATMAP_MEASURES = (  # column, title, full-scale value (0-1), unit text
    ("ff_median", "fat fraction", 0.8, "% FF"),
    ("edema_fraction", "edema", 1.0, "% of core"),
    ("fascial_edema_fraction", "fascial edema", 1.0, "% of shell"),
    ("atrophy_loss", "atrophy (1 - index)", 1.0, "% below expected share"),
)


def muscle_heatmap_figure(table: pd.DataFrame) -> str | None:
    """Heat map of muscles x {FF, edema, fascial edema, atrophy}, left and right side by side.

    Each cell's tooltip gives the muscle, side, measure and value in % (or "not measured"). A
    measure the study has no value of at all (edema in a T1w-only study) gets no columns.

    Returns
    -------
    str or None
        An SVG element; None without a muscle row.
    """
    rows = table[table["kind"].isin(("muscle", "group"))].copy()
    if rows.empty:
        return None
    rows["atrophy_loss"] = 1.0 - rows["atrophy_index"].astype(float)
    order = list(dict.fromkeys(rows.sort_values(["group", "muscle"])["muscle"]))
    sides = [s for s in ("left", "right", "") if (rows["side"] == s).any()]
    shown = [m for m in HEATMAP_MEASURES if rows[m[0]].astype(float).notna().any()]
    if not shown:
        return None
    columns, matrix = [], []
    for measure, label, high, unit in shown:
        for side in sides:
            part = rows[rows["side"] == side].set_index("muscle")[measure].astype(float)
            part = part[~part.index.duplicated()].reindex(order).to_numpy()
            matrix.append((part, part / high))
            columns.append((label, side or "n/a", unit))
    label_width, cell_w, cell_h, top = 170.0, 40.0, 17.0, 58.0
    body = []
    for c, (label, side, _) in enumerate(columns):
        x = label_width + c * cell_w
        if c % len(sides) == 0:  # "atrophy (1 - index)" is wider than its two columns
            for line, text in enumerate(label.replace(" (", "\n(").split("\n")):
                body.append(
                    svg_text(x + cell_w * len(sides) / 2, 14 + 13 * line, text, 11, "middle")
                )
        body.append(svg_text(x + cell_w / 2, top - 8, side, 10, "middle", "#555"))
    for r, muscle in enumerate(order):
        y = top + r * cell_h
        body.append(svg_text(label_width - 6, y + cell_h - 4, muscle.replace("_", " "), 11, "end"))
        for c, (raw, scaled) in enumerate(matrix):
            value = raw[r]
            label, side, unit = columns[c]
            tip = f"{muscle} {side}, {label}: " + (
                f"{value * 100:.1f} {unit}" if np.isfinite(value) else "not measured"
            )
            body.append(
                f'<rect x="{label_width + c * cell_w:.1f}" y="{y:.1f}" '
                f'width="{cell_w - 1:.1f}" height="{cell_h - 1:.1f}" '
                f'fill="{hex_colour(ramp_rgb(scaled[r]))}"><title>{html.escape(tip)}'
                "</title></rect>"
            )
    legend_y = top + len(order) * cell_h + 14
    body.append(svg_text(label_width - 6, legend_y + 9, "0 %", 10, "end"))
    full = [f"FF {m[2] * 100:g} %" for m in shown if m[0] == "ff_median"]
    others = [m[1].split(" (")[0] for m in shown if m[0] != "ff_median"]
    caption = "; ".join(full + ([", ".join(others) + " 100 %"] if others else []))
    body.append(svg_ramp_legend(label_width, legend_y, f"{caption}; grey: not measured"))
    width = label_width + len(columns) * cell_w + 20
    return svg_document(max(width, label_width + 560), legend_y + 24, body, "per-muscle heat map")
