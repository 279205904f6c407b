"""Water-T2 reference numbers of a study: the normal range and edema cut for its field strength.

Used by :mod:`.edema` for T2 maps (and to check a STIR reference against a T2 map).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .paediatric import adult_weight, age_years, child_t2

__all__ = [
    "T2Range",
    "t2_range",
]


@dataclass(kw_only=True, frozen=True)
class T2Range:
    """Water-T2 numbers for the study's field strength (ms).

    Attributes
    ----------
    normal_ms, sd_ms, edema_ms : float
        Centre and spread of normal muscle, and the edema-like cut.
    field_strength_t : float
        Field strength the numbers are for.
    stated : bool
        Whether ``field_strength_t`` came from the study (``study.json``) or was assumed.
    median_grid_ms : tuple of float
        Low, high and step of the histogram per-label T2 medians are read from.
    """

    normal_ms: float
    sd_ms: float
    edema_ms: float
    field_strength_t: float
    stated: bool
    median_grid_ms: tuple[float, float, float]


def t2_range(eset: dict[str, Any], metadata: dict[str, Any]) -> T2Range:
    """Normal water-T2 range shifted for the field strength stated in ``study.json``.

    A child (``study.json`` ``age_years`` below the adult join) is compared with healthy
    children's MRI T2 (``configs/paediatric.yaml``), joined to the adult numbers at 18-20 years;
    the edema-like cut keeps the adult cut's distance above the normal centre.

    Parameters
    ----------
    eset : dict
        The ``edema`` settings (``t2_normal_ms``, ``t2_normal_sd_ms``, ``t2_edema_ms`` for
        ``t2_field_strength_t``; ``t2_offset_ms_by_field_t``).
    metadata : dict
        Study metadata; ``field_strength_t`` (tesla) is optional.

    Returns
    -------
    T2Range
        Shifted by the offset of the nearest tabulated field strength.

    Examples
    --------
    >>> eset = {"t2_normal_ms": 33.0, "t2_normal_sd_ms": 2.5, "t2_edema_ms": 40.0,
    ...         "t2_field_strength_t": 3.0, "t2_offset_ms_by_field_t": {1.5: 2.0, 3.0: 0.0},
    ...         "t2_median_grid_ms": [0.0, 200.0, 0.05]}
    >>> t2_range(eset, {"field_strength_t": 1.5}).edema_ms
    42.0
    >>> child = t2_range(eset, {"age_years": 9})
    >>> child.normal_ms, child.sd_ms, round(child.edema_ms, 1)
    (33.6, 2.0, 40.6)
    """
    stated = metadata.get("field_strength_t")
    try:
        field_t = float(stated) if stated is not None else float(eset["t2_field_strength_t"])
    except (TypeError, ValueError):
        field_t, stated = float(eset["t2_field_strength_t"]), None
    offsets = {float(k): float(v) for k, v in eset["t2_offset_ms_by_field_t"].items()}
    offset = offsets[min(offsets, key=lambda k: abs(k - field_t))] if offsets else 0.0
    normal, sd = float(eset["t2_normal_ms"]), float(eset["t2_normal_sd_ms"])
    weight = adult_weight(age_years(metadata))
    if weight < 1.0:
        child_normal, child_sd = child_t2()
        normal = weight * normal + (1.0 - weight) * child_normal
        sd = weight * sd + (1.0 - weight) * child_sd
    cut_above = float(eset["t2_edema_ms"]) - float(eset["t2_normal_ms"])
    return T2Range(
        normal_ms=normal + offset,
        sd_ms=sd,
        edema_ms=normal + cut_above + offset,
        field_strength_t=field_t,
        stated=stated is not None,
        median_grid_ms=tuple(float(x) for x in eset["t2_median_grid_ms"]),
    )
