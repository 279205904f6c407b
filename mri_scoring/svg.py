"""SVG text and documents without a plotting library: shared by every stage that draws.

The study report and cohort figures (:mod:`mri_scoring.output.render`) and the fit report
(:mod:`mri_scoring.pattern.fit_report`) draw their charts with these two primitives; kept out of
either room so that neither imports the other.
"""

from __future__ import annotations

import html

__all__ = [
    "svg_document",
    "svg_text",
]


def svg_text(
    x: float,
    y: float,
    text: str,
    size: int = 11,
    anchor: str = "start",
    colour: str = "#222",
    extra: str = "",
) -> str:
    """An SVG ``<text>`` element at (x, y), its text HTML-escaped."""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'fill="{colour}"{extra}>{html.escape(text)}</text>'
    )


def svg_document(width: float, height: float, body: list[str], title: str) -> str:
    """An inline SVG element with an accessible title."""
    return (
        f'<svg role="img" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'font-family="Helvetica,Arial,sans-serif"><title>{html.escape(title)}</title>'
        + "".join(body)
        + "</svg>"
    )
