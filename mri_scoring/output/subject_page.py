"""The per-subject follow-up page: trajectories per muscle group and the changes that count.

A self-contained HTML page (inline SVG, no scripts, no external files), like the study reports.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

from .longitudinal import NOT_ASSESSABLE, SessionComparison, SessionRecord
from .render import CSS, signed

__all__ = [
    "CHANGES",
    "CHANGE_COLOURS",
    "GROUP_ORDER",
    "MEASURE_CHANGES",
    "SIDE_COLOURS",
    "group_trajectory",
    "subject_page_html",
]

GROUP_ORDER = ("quadriceps", "hamstrings", "adductors", "pelvic_hip", "anterior_other")
SIDE_COLOURS = {"left": "#1f6fb4", "right": "#c2410c", "": "#444444"}
CHANGE_COLOURS = {"worse": "#b91c1c", "better": "#15803d", "higher": "#7c3aed", "lower": "#0e7490"}


def group_trajectory(sessions: list[SessionRecord], column: str) -> pd.DataFrame:
    """Voxel-weighted group means of ``column`` per session and side (rows: session order).

    Parameters
    ----------
    sessions : list of SessionRecord
        One subject's sessions, in order.
    column : str
        A muscle-table column (``ff_median``, ``edema_fraction``).

    Returns
    -------
    pandas.DataFrame
        Columns ``session_id``, ``group``, ``side``, ``value`` (NaN where nothing was measured).
    """
    rows = []
    for record in sessions:
        table = record.muscles
        if column not in table.columns:
            continue
        muscles = table[table.get("kind", "muscle") == "muscle"]
        for (group, side), part in muscles.groupby(["group", "side"], dropna=False):
            values = pd.to_numeric(part[column], errors="coerce")
            weights = pd.to_numeric(part["voxels"], errors="coerce").where(values.notna())
            total = float(weights.sum())
            value = float((values * weights).sum() / total) if total > 0 else math.nan
            side = "" if pd.isna(side) else str(side)
            rows.append(
                {"session_id": record.session_id, "group": str(group), "side": side, "value": value}
            )
    return pd.DataFrame(rows, columns=["session_id", "group", "side", "value"])


def _line_chart(
    title: str, labels: list[str], series: dict[str, list[float]], y_max: float, unit: str
) -> str:
    """A small SVG line chart: one line per series over the sessions, each point titled."""
    width, height, left, bottom, top = 300, 170, 40, 30, 22
    n = max(len(labels), 2)
    x = [left + 8 + i * (width - left - 48) / (n - 1) for i in range(len(labels))]

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - min(max(v / y_max, 0), 1))

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="{left}" y="14" class="t">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - 8}" y2="{y(0):.1f}" class="ax"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{y(0):.1f}" class="ax"/>',
        f'<text x="{left - 4}" y="{y(y_max) + 4:.1f}" class="l" text-anchor="end">'
        f"{y_max * 100:.0f}{unit}</text>",
        f'<text x="{left - 4}" y="{y(0) + 4:.1f}" class="l" text-anchor="end">0</text>',
    ]
    for i, label in enumerate(labels):
        parts.append(
            f'<text x="{x[i]:.1f}" y="{height - 10}" class="l" text-anchor="middle">'
            f"{html.escape(label)}</text>"
        )
    for name, values in series.items():
        colour = SIDE_COLOURS.get(name, "#444444")
        points = [(x[i], y(v), v) for i, v in enumerate(values) if np.isfinite(v)]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        for (px, py, v), label in zip(points, labels, strict=False):
            parts.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}">'
                f"<title>{html.escape(name or 'both')} {html.escape(label)}: "
                f"{v * 100:.1f}{unit}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)


CHANGES = ("worse", "better")  # of a muscle measure against its band
MEASURE_CHANGES = (
    ("change_ff", "delta_ff", 100, "points"),
    ("change_edema", "delta_edema_fraction", 100, "points"),
    ("change_volume", "delta_volume_ml", 1, "ml"),
)


def _name(text: object) -> str:
    """A muscle, group or feature id as words (``biceps_femoris_long_head``)."""
    return html.escape(str(text).replace("_", " "))


def _changes_table(comparison: SessionComparison) -> str:
    """Rows with a change beyond a band (worse/better), then a count of what was not assessable.

    Stable and not-assessable rows are left out of the table: listing every muscle under
    "changes beyond the bands" (as once, because a volume cut by the field of view is "not
    assessable" in almost every muscle) buries the few that changed.
    """
    muscles = comparison.muscles
    changed = muscles[muscles[[c for c, *_ in MEASURE_CHANGES]].isin(CHANGES).any(axis=1)]
    cells = []
    for _, row in changed.iterrows():

        def cell(change: str, delta: float, scale: float, unit: str) -> str:
            colour = CHANGE_COLOURS.get(change, "#6b7280")
            text = "–" if not np.isfinite(delta) else f"{signed(delta * scale, 1)} {unit}"
            label = change if change != NOT_ASSESSABLE else "n/a"
            return f'<td style="color:{colour}">{html.escape(label)} ({text})</td>'

        cells.append(
            f"<tr><td>{_name(row['muscle'])}</td><td>{html.escape(str(row['side']))}"
            f"</td><td>{html.escape(str(row['session_from']))} → "
            f"{html.escape(str(row['session_to']))}</td>"
            + "".join(cell(row[c], row[d], scale, unit) for c, d, scale, unit in MEASURE_CHANGES)
            + "</tr>"
        )
    table = (
        "<table><thead><tr><th>muscle</th><th>side</th><th>sessions</th><th>fat fraction</th>"
        "<th>edema</th><th>volume</th></tr></thead><tbody>" + "".join(cells) + "</tbody></table>"
        if cells
        else "<p>No muscle changed beyond the repeatability bands.</p>"
    )
    counts = []
    for column, _, _, _ in MEASURE_CHANGES:
        n = int((muscles[column] == NOT_ASSESSABLE).sum())
        if n:
            what = column.removeprefix("change_").replace("ff", "fat fraction")
            counts.append(f"{what} in {n}")
    stable = len(muscles) - len(changed)
    summary = (
        f"<p>{stable} of {len(muscles)} muscle rows (muscle, side, pair) show no change "
        "beyond the bands."
        + (
            f" Not assessable: {', '.join(counts)} rows (labelled or "
            "measured in one session only, or cut by the field of view)."
            if counts
            else ""
        )
        + "</p>"
    )
    return table + summary


def _feature_changes(comparison: SessionComparison) -> str:
    """Template features and p(IMNM) that moved beyond their band (higher/lower)."""
    features = comparison.features
    moved = features[features["change"].isin(("higher", "lower"))]
    if moved.empty:
        return "<p>No template feature and no p(IMNM) moved beyond its band.</p>"
    rows = "".join(
        f"<tr><td>{'p(IMNM)' if r['feature'] == 'p_imnm' else _name(r['feature'])}</td>"
        f"<td>{html.escape(str(r['session_from']))} → {html.escape(str(r['session_to']))}</td>"
        f"<td>{r['value_from']:.2f} → {r['value_to']:.2f}</td>"
        f'<td style="color:{CHANGE_COLOURS[r["change"]]}">{html.escape(r["change"])}</td></tr>'
        for _, r in moved.iterrows()
    )
    return (
        "<table><thead><tr><th>feature</th><th>sessions</th><th>value</th><th>change</th>"
        "</tr></thead><tbody>" + rows + "</tbody></table>"
        "<p>A pattern feature or p(IMNM) going up is not worse in itself.</p>"
    )


def subject_page_html(
    subject_id: str, sessions: list[SessionRecord], comparison: SessionComparison, disclaimer: str
) -> str:
    """The follow-up page of one subject.

    Parameters
    ----------
    subject_id : str
    sessions : list of SessionRecord
        The subject's sessions, in order.
    comparison : SessionComparison
        :func:`~mri_scoring.output.longitudinal.compare_records` of those sessions.
    disclaimer : str
        The research-use statement shown at the top.

    Returns
    -------
    str
        A complete HTML document.
    """
    labels = [r.date or r.session_id for r in sessions]
    ids = [r.session_id for r in sessions]
    charts = []
    for column, title, y_max in (
        ("ff_median", "fat fraction", 0.6),
        ("edema_fraction", "edema", 1.0),
    ):
        trajectory = group_trajectory(sessions, column)
        for group in [g for g in GROUP_ORDER if g in set(trajectory["group"])]:
            part = trajectory[trajectory["group"] == group]
            series = {}
            for side in sorted(set(part["side"])):
                by_session = dict(
                    zip(
                        part.loc[part["side"] == side, "session_id"],
                        part.loc[part["side"] == side, "value"],
                        strict=True,
                    )
                )
                series[side] = [by_session.get(s, math.nan) for s in ids]
            charts.append(
                _line_chart(f"{group.replace('_', ' ')}: {title}", labels, series, y_max, " %")
            )
    p_series = {"": [r.features.get("p_imnm") or math.nan for r in sessions]}
    charts.append(_line_chart("p(IMNM)", labels, p_series, 1.0, " %"))
    rows = "".join(
        f"<tr><td>{html.escape(r.session_id)}</td><td>{html.escape(r.date or '–')}</td>"
        f'<td><a href="../{html.escape(r.study_id)}/report.html">{html.escape(r.study_id)}</a>'
        "</td></tr>"
        for r in sessions
    )
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in comparison.warnings)
    warning_block = f'<ul class="warn">{warnings}</ul>' if warnings else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Follow-up {html.escape(subject_id)}</title>
<style>{CSS}
.charts{{display:flex;flex-wrap:wrap;gap:.6rem}} .chart{{max-width:100%;height:auto}}
.t{{font-size:12px;font-weight:600}} .l{{font-size:10px;fill:#444}} .ax{{stroke:#999}}
table{{border-collapse:collapse;font-size:.9rem}} td,th{{border-bottom:1px solid #ddd;
padding:.2rem .5rem;text-align:left}} .warn{{color:#92400e}}
.key span{{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 .8rem}}
</style></head><body>
<h1>Follow-up: {html.escape(subject_id)}</h1>
<p class="disclaimer">{html.escape(disclaimer)}</p>
{warning_block}
<h2>Sessions</h2>
<table><thead><tr><th>session</th><th>date</th><th>study</th></tr></thead><tbody>{rows}
</tbody></table>
<h2>Trajectories per muscle group</h2>
<p class="key">Voxel-weighted group means of the per-muscle core medians:
<span style="background:{SIDE_COLOURS["left"]}"></span>left
<span style="background:{SIDE_COLOURS["right"]}"></span>right</p>
<div class="charts">{"".join(charts)}</div>
<h2>Changes beyond the repeatability bands</h2>
{_changes_table(comparison)}
<h3>Template features and p(IMNM)</h3>
{_feature_changes(comparison)}
<p>Bands (configs/longitudinal.yaml): a change inside them is "stable"; "n/a" = not assessable
(the muscle was labelled or measured in one session only, or cut by the field of view).</p>
</body></html>
"""
