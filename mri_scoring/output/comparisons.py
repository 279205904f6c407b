"""The report's comparison sections: the panel's rows, then each template's evidence.

One row per template of the panel (:func:`panel_section`), then each template's result,
evidence bars and evidence table (:func:`comparison_section`).

Kept apart from :mod:`~mri_scoring.output.report`, which lays out the whole page.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np

from .figures import evidence_figure
from .render import signed

if TYPE_CHECKING:  # pragma: no cover
    from ..pattern.likelihood import Likelihood
    from ..pattern.templates import Template
    from .result import StudyResult

__all__ = ["MEASURE_UNITS", "comparison_section", "panel_section"]

MEASURE_UNITS = {
    "ff_excess": (100.0, "pp", "fat fraction above the reference muscles (percentage points)"),
    "ff_contrast": (100.0, "pp", "fat-fraction difference (percentage points)"),
    "edema_fraction": (100.0, "%", "of the muscle core read as edema"),
    "fascial_edema_fraction": (100.0, "%", "of the fascial shell read as edema"),
    "atrophy": (100.0, "%", "volume below the expected volume (body size) or share"),
    "share_involved": (100.0, "%", "mean involvement degree over the muscles"),
    "involvement": (100.0, "%", "mean involvement degree over the muscles"),
    "asymmetric_pairs": (1.0, "pairs", "muscles whose right and left differ beyond the floor"),
    "sparing_index": (100.0, "pp", "median FF of the muscles minus that of the spared ones"),
    "edema_fat_ratio": (1.0, "", "edematous muscles per fatty muscle (edema_fat_ratio)"),
    "subcutaneous_edema_fraction": (100.0, "%", "of the subcutaneous fat read as edema (STIR)"),
    "edema_sparing": (100.0, "pp", "other groups' edema above the listed muscles' (points)"),
    "lr_symmetry": (100.0, "%", "left/right agreement of per-muscle involvement"),
}


def _fmt(value: object, digits: int = 1, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, (float, np.floating)) and not np.isfinite(value)):
        return ""
    if isinstance(value, (float, np.floating, int, np.integer)) and not isinstance(value, bool):
        return f"{float(value) * scale:.{digits}f}"
    return html.escape(str(value))


def _signed(value: object) -> str:
    """A contribution with its sign ("+0.00", never "-0.00"); empty when there is none."""
    return signed(float(value)) if _fmt(value) else ""


# --------------------------------------------------------------------------- references


def _interval(like: Likelihood) -> str:
    interval = getattr(like, "p_imnm_interval", None)
    if interval is not None and len(interval) == 2 and None not in interval:
        return f"{interval[0]:.2f}\u2013{interval[1]:.2f}"
    return ""


def _call_section(template: Template, like: Likelihood) -> str:
    esc = html.escape
    first, second = template.classes
    spread = f" (90 % interval {_interval(like)})" if _interval(like) else ""
    if like.call == "indeterminate":
        box = (
            f"<div class='call indeterminate'>call: <b>indeterminate</b></div>"
            f"<p class=small>p({esc(first)}) = {like.p_imnm:.3f}{spread}, log10 LR = "
            f"{signed(like.log10_likelihood_ratio)}: computed, but not read as {esc(first)} "
            f"or {esc(second)} (see the notes). Evidence bars are grey for this "
            "reason.</p>"
        )
    else:
        box = (
            f"<div class='call {esc(like.call)}'>call: <b>{esc(like.call)}</b> &nbsp; "
            f"p({esc(first)}) = {like.p_imnm:.3f}{spread} &nbsp; log10 LR = "
            f"{signed(like.log10_likelihood_ratio)}</div>"
        )
    notes = "".join(f"<li>{esc(n)}</li>" for n in like.notes)
    return (
        box
        + (f"<ul>{notes}</ul>" if notes else "")
        + f"<p class=small>prior p({esc(first)}) = {like.prior_imnm:.2f}; template "
        f"{esc(template.name)}; call bounds: {esc(first)} at p &ge; "
        f"{template.call_positive_at_least:g}, {esc(second)} at p &le; "
        f"{template.call_negative_at_most:g} (the point posterior; the interval is shown, not "
        "required past the bound), otherwise indeterminate; reading: "
        f"{esc(getattr(like, 'reading', '') or '-')}.</p>"
    )


def _strongest(template: Template, like: Likelihood) -> str:
    """The feature with the largest contribution, with the class it favours."""
    used = [f for f in like.features if f.available and f.log10_lr_contribution]
    if not used:
        return "no feature contributes"
    top = max(used, key=lambda f: abs(f.log10_lr_contribution))
    favours = template.positive if top.log10_lr_contribution > 0 else template.negative
    return (
        f"{html.escape(top.description)} ({signed(top.log10_lr_contribution)}, favours "
        f"{html.escape(favours)})"
    )


def panel_section(result: StudyResult) -> str:
    """One row per comparison of the panel: p, interval, call, strongest evidence."""
    rows = []
    for c in result.comparisons:
        like, t = c.likelihood, c.template
        rows.append(
            f"<tr><td class=l><a href='#{html.escape(t.name, quote=True)}'>"
            f"{html.escape(t.positive)} or {html.escape(t.negative)}?</a><br><span class=small>"
            f"{html.escape(t.name)}</span></td><td>{like.p_imnm:.3f}</td>"
            f"<td>{_interval(like)}</td><td class=l><span class='call {html.escape(like.call)}' "
            f"style='font-size:13px;padding:2px 6px;margin:0'>{html.escape(like.call)}</span>"
            f"</td><td class=l>{_strongest(t, like)}</td></tr>"
        )
    return (
        "<h2>Differential</h2><table><tr><th class=l>comparison</th><th>p(first class)</th>"
        "<th>90 % interval</th><th class=l>call</th><th class=l>strongest evidence</th></tr>"
        + "".join(rows)
        + "</table><p class=small>Each row asks one question of the same "
        "measurements (a template with two classes); the first class is IMNM in every "
        "comparison. Each comparison's evidence follows below.</p>"
    )


def comparison_section(template: Template, like: Likelihood) -> str:
    """One template's result, evidence bars and evidence table."""
    name = html.escape(template.name, quote=True)
    return (
        f"<h2 id='{name}'>{html.escape(template.positive)} or {html.escape(template.negative)}"
        f" ({html.escape(template.name)})</h2>"
        + _call_section(template, like)
        + "<h3>Evidence per feature</h3>"
        + evidence_figure(
            like.features,
            like.log10_likelihood_ratio,
            neutral=like.call == "indeterminate",
            classes=template.classes,
        )
        + _evidence_table(template, like)
    )


def _evidence_table(template: Template, like: Likelihood) -> str:
    measures = {f.id: f for f in template.features}
    first, second = (html.escape(c) for c in template.classes)
    head = (
        "<tr><th class=l>feature</th><th>value</th><th>cut-off</th><th>degree</th>"
        f"<th>log10 LR</th><th>P(·|{first})</th><th>P(·|{second})</th>"
        "<th class=l>muscles used / why unavailable</th><th class=l>source</th></tr>"
    )
    rows = []
    for f in like.features:
        spec = measures.get(f.id)
        scale, unit, what = MEASURE_UNITS.get(getattr(spec, "measure", ""), (1.0, "", ""))
        value = f"{_fmt(f.value, 1, scale)} {unit}" if f.value is not None else ""
        cut = getattr(getattr(spec, "cut", None), "threshold", None)
        cut_text = f"{_fmt(cut, 1, scale)} {unit}" if isinstance(cut, (int, float)) else ""
        used = ", ".join(m.replace("_", " ") for m in f.muscles_used) if f.available else f.reason
        rows.append(
            f"<tr class={'' if f.available else 'na'}><td class=l>{_fmt(f.description)}"
            f"<br><span class=small>{html.escape(what)}</span></td><td>{value}</td>"
            f"<td>{cut_text}</td><td>{_fmt(f.degree, 2)}</td>"
            f"<td>{_signed(f.log10_lr_contribution)}</td><td>{_fmt(f.p_imnm, 2)}</td>"
            f"<td>{_fmt(f.p_dm, 2)}</td><td class=l><span class=small>{_fmt(used)}</span></td>"
            f"<td class=l><span class=small>{_fmt(f.source)}</span></td></tr>"
        )
    return (
        f"<table>{head}{''.join(rows)}</table><p class=small>degree: how far the value is "
        "past the cut-off (0-1, a soft threshold); log10 LR: the feature's contribution to "
        f"the likelihood ratio (positive favours {first}).</p>"
    )
