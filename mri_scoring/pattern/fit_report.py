"""The fit report (``<FITTED>_report.html``): ROC, calibration, fitted vs elicited probabilities."""

from __future__ import annotations

import html

import numpy as np
from scipy.stats import beta

from ..svg import svg_document, svg_text
from .templates import Template

__all__ = [
    "fit_report_html",
    "reliability",
]

_SIZE, _PAD = 260.0, 40.0
_FITTED, _ELICITED = "#1f5fa8", "#b0522a"


def _roc(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-p, kind="stable")
    hits = y[order]
    tpr = np.concatenate([[0.0], np.cumsum(hits) / max(hits.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(1 - hits) / max((1 - hits).sum(), 1)])
    return fpr, tpr


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 5) -> list[tuple[float, float, int]]:
    """(mean predicted, observed share, count) per equal-width probability bin with studies.

    Parameters
    ----------
    y : numpy.ndarray
        1 for the positive class, 0 otherwise.
    p : numpy.ndarray
        Predicted p(positive).
    bins : int

    Returns
    -------
    list of tuple
    """
    index = np.minimum((p * bins).astype(int), bins - 1)
    return [
        (float(p[index == b].mean()), float(y[index == b].mean()), int((index == b).sum()))
        for b in range(bins)
        if (index == b).any()
    ]


def _axes(title: str, xlabel: str, ylabel: str) -> list[str]:
    s, o = _SIZE, _PAD
    body = [
        f'<rect x="{o}" y="10" width="{s}" height="{s}" fill="none" stroke="#333"/>',
        f'<line x1="{o}" y1="{10 + s}" x2="{o + s}" y2="10" stroke="#bbb" stroke-dasharray="4 3"/>',
        svg_text(o + s / 2, s + 40, xlabel, 11, "middle"),
        svg_text(
            12, 10 + s / 2, ylabel, 11, "middle", extra=f' transform="rotate(-90 12 {10 + s / 2})"'
        ),
        svg_text(o + s / 2, s + 56, title, 12, "middle"),
    ]
    for t in (0.0, 0.5, 1.0):
        body.append(svg_text(o + t * s, s + 24, f"{t:g}", 10, "middle"))
        body.append(svg_text(o - 4, 14 + (1 - t) * s, f"{t:g}", 10, "end"))
    return body


def _points(x: np.ndarray, y: np.ndarray) -> str:
    return " ".join(
        f"{_PAD + a * _SIZE:.1f},{10 + (1 - b) * _SIZE:.1f}" for a, b in zip(x, y, strict=True)
    )


def _plots(
    y: np.ndarray, p_fit: np.ndarray, p_elicited: np.ndarray, figures: dict[str, float]
) -> str:
    roc = _axes("ROC (out-of-fold)", "false-positive rate", "true-positive rate")
    cal = _axes("calibration (out-of-fold)", "predicted p", "observed share")
    for p, colour in ((p_fit, _FITTED), (p_elicited, _ELICITED)):
        fpr, tpr = _roc(y, p)
        roc.append(
            f'<polyline points="{_points(fpr, tpr)}" fill="none" stroke="{colour}" '
            'stroke-width="2"/>'
        )
        rows = reliability(y, p)
        cal.append(
            f'<polyline points="{_points(*np.array([(a, b) for a, b, _ in rows]).T)}" '
            f'fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        for a, b, n in rows:
            cal.append(
                f'<circle cx="{_PAD + a * _SIZE:.1f}" cy="{10 + (1 - b) * _SIZE:.1f}" '
                f'r="{2 + np.sqrt(n) / 2:.1f}" fill="{colour}" opacity="0.6"/>'
            )
    legend = [
        svg_text(_PAD + 8, 30, f"fitted AUC {figures['auc']:.3f}", 11, colour=_FITTED),
        svg_text(_PAD + 8, 46, f"elicited AUC {figures['elicited_auc']:.3f}", 11, colour=_ELICITED),
    ]
    width, height = _SIZE + _PAD + 20, _SIZE + 70
    return svg_document(width, height, roc + legend, "ROC curves") + svg_document(
        width, height, cal, "calibration curves"
    )


def _interval(p: float, n: float) -> str:
    low, high = beta.ppf([0.05, 0.95], n * p, n * (1 - p))
    return f"{p:.2f} <span class=small>({low:.2f}&ndash;{high:.2f}, n={n:.0f})</span>"


def fit_report_html(
    elicited: Template,
    fitted: Template,
    y: np.ndarray,
    p_fit: np.ndarray,
    p_elicited: np.ndarray,
    figures: dict[str, float],
    counts: dict[str, int],
) -> str:
    """A self-contained HTML page describing one fit.

    Parameters
    ----------
    elicited, fitted : Template
        The template fitted from and the fitted result.
    y : numpy.ndarray
        1 for the positive class.
    p_fit : numpy.ndarray
        Out-of-fold p(positive) of the fitted model.
    p_elicited : numpy.ndarray
        p(positive) of the template as given.
    figures : dict
        ``auc``, ``brier``, ``elicited_auc``, ``elicited_brier``.
    counts : dict
        Studies per class.

    Returns
    -------
    str
    """
    esc = html.escape
    pos, neg = elicited.positive, elicited.negative
    rows = "".join(
        f"<tr><td class=l>{esc(a.id)}</td>"
        f"<td>{_interval(a.p_positive, a.strength_positive)}</td>"
        f"<td>{_interval(b.p_positive, b.strength_positive)}</td>"
        f"<td>{_interval(a.p_negative, a.strength_negative)}</td>"
        f"<td>{_interval(b.p_negative, b.strength_negative)}</td><td>{b.weight:.2f}</td></tr>"
        for a, b in zip(elicited.features, fitted.features, strict=True)
    )
    table_rows = "".join(
        f"<tr><td>{a:.2f}</td><td>{b:.2f}</td><td>{n}</td></tr>"
        for a, b, n in reliability(y, p_fit)
    )
    cohort = ", ".join(f"{n} {esc(c)}" for c, n in counts.items())
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>mri_scoring fit: {esc(fitted.name)}</title><style>"
        "body{font-family:Helvetica,Arial,sans-serif;margin:24px;max-width:1100px;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}.l{text-align:left}.small{color:#666;font-size:11px}</style>"
        f"</head><body><h1>Template fit: {esc(fitted.name)}</h1>"
        "<p class=small>Research software; not a diagnostic device.</p>"
        f"<p>Cohort: {cohort} (fingerprint "
        f"<code>{esc(str(fitted.provenance['cohort']['fingerprint'])[:16])}</code>). "
        f"Out-of-fold ({esc(str(fitted.provenance['cross_validation']['folds']))}-fold) "
        f"AUC {figures['auc']:.3f}, Brier {figures['brier']:.3f}; the elicited template on the "
        f"same studies: AUC {figures['elicited_auc']:.3f}, Brier "
        f"{figures['elicited_brier']:.3f}.</p>{_plots(y, p_fit, p_elicited, figures)}"
        "<h2>Reliability of the fitted model (out-of-fold)</h2><table><tr><th>mean predicted"
        f"</th><th>observed {esc(pos)} share</th><th>studies</th></tr>{table_rows}</table>"
        f"<h2>Probabilities: elicited vs fitted (mean, 90 % Beta interval, strength)</h2>"
        f"<table><tr><th class=l>feature</th><th>P(·|{esc(pos)}) elicited</th><th>fitted</th>"
        f"<th>P(·|{esc(neg)}) elicited</th><th>fitted</th><th>group weight</th></tr>"
        f"{rows}</table></body></html>"
    )
