"""Children's norms: limb lean mass for age, sex and height, healthy fat and MRI T2 of children.

The numbers live in ``configs/paediatric.yaml`` with their sources; :mod:`.norms` joins them to
the adult norms over ``adult_join_years`` (:func:`adult_weight`). Nothing here is an adult norm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from ..config import load_config_file

__all__ = [
    "SEXES",
    "ChildScale",
    "adult_weight",
    "age_years",
    "child_ff",
    "child_scales",
    "child_t2",
    "paediatric_config",
    "reference_adult",
    "sex_of",
    "source",
    "youngest_volume_age",
]

SEXES = ("male", "female")


@cache
def paediatric_config() -> dict[str, Any]:
    """``configs/paediatric.yaml`` (cached; treat as read-only)."""
    return load_config_file("paediatric.yaml")


def age_years(metadata: dict[str, Any]) -> float | None:
    """``study.json`` ``age_years`` as a number of years, or None (missing, not a number, < 0).

    Examples
    --------
    >>> age_years({"age_years": 9}), age_years({"age_years": "nine"}), age_years({})
    (9.0, None, None)
    """
    value = metadata.get("age_years")
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return None
    return float(value)


def sex_of(metadata: dict[str, Any]) -> str | None:
    """``male``, ``female`` or None from ``study.json`` ``sex``.

    The accepted values are those of ``configs/norms_body_age_sex.yaml`` (``sex_values``).

    Examples
    --------
    >>> sex_of({"sex": "F"}), sex_of({"sex": "x"})
    ('female', None)
    """
    key = str(metadata.get("sex", "")).strip().lower()
    for name, values in _sex_values().items():
        if key in values:
            return str(name)
    return None


@cache
def _sex_values() -> dict[str, list[str]]:
    """``study.json`` sex values (lower case) of each sex (``configs/norms_body_age_sex.yaml``)."""
    return dict(load_config_file("norms_body_age_sex.yaml")["thigh_fat"]["sex_values"])


def adult_weight(age: float | None) -> float:
    """Weight of the adult norm (0 = the child's alone, 1 = the adult's alone) at an age.

    A smoothstep over ``adult_join_years``; 1 when the age is unknown (adult norms assumed).

    Examples
    --------
    >>> adult_weight(10.0), adult_weight(19.0), adult_weight(25.0), adult_weight(None)
    (0.0, 0.5, 1.0, 1.0)
    """
    if age is None:
        return 1.0
    start, end = paediatric_config()["adult_join_years"]
    x = min(max((age - start) / (end - start), 0.0), 1.0)
    return float(x * x * (3.0 - 2.0 * x))


def youngest_volume_age() -> float:
    """Youngest age (years) with a volume norm (the Zemel table's first band)."""
    return float(paediatric_config()["volume"]["youngest_age_years"])


def _lms(age: float, sex: str) -> tuple[float, float, float]:
    """(L, M, S) of the ALMI at an age: linear between band midpoints, held at the ends."""
    table = paediatric_config()["volume"]
    ages = table["band_midpoints_years"]
    row = table[sex]
    return tuple(float(np.interp(age, ages, row[key])) for key in ("L", "M", "S"))  # type: ignore[return-value]


def _centile(lms: tuple[float, float, float], z: float) -> float:
    """The LMS value at standard-normal deviate z: M (1 + L S z)^(1/L) (M exp(S z) at L = 0)."""
    lam, median, spread = lms
    if abs(lam) < 1e-9:
        return median * math.exp(spread * z)
    return median * (1.0 + lam * spread * z) ** (1.0 / lam)


@dataclass(frozen=True)
class ChildScale:
    """A child's limb lean mass over the reference adult's, with the normal band.

    Attributes
    ----------
    sex : str
        ``male`` or ``female``.
    ratio, ratio_p10, ratio_p90 : float
        Expected (median) lean-mass ratio, and its 10th / 90th centile for one muscle.
    """

    sex: str
    ratio: float
    ratio_p10: float
    ratio_p90: float


def child_scales(age: float, height_m: float, sex: str | None) -> list[ChildScale] | None:
    """Lean-mass ratios child / reference adult, one per sex (both when the sex is unknown).

    The child's appendicular lean mass is the ALMI median for age and sex times height squared;
    the reference adult's is the last band's median of his sex times his height squared.

    Parameters
    ----------
    age : float
        Age in years.
    height_m : float
        Height in metres.
    sex : str or None
        ``male``, ``female`` or None (the mean of both is then used by the caller).

    Returns
    -------
    list of ChildScale or None
        None below :func:`youngest_volume_age` (no norm, never an extrapolation).

    Examples
    --------
    >>> five, fifteen = child_scales(5, 1.10, "male")[0], child_scales(15, 1.70, "male")[0]
    >>> round(five.ratio / fifteen.ratio, 3)
    0.247
    >>> girl, boy = child_scales(9.9, 1.40, "female")[0], child_scales(9.9, 1.40, "male")[0]
    >>> round(girl.ratio / boy.ratio, 2)
    0.95
    """
    if age < youngest_volume_age():
        return None
    config = paediatric_config()["volume"]
    z = float(config["band_z"])
    out = []
    for name in (sex,) if sex in SEXES else SEXES:
        lms = _lms(age, name)
        reference = config["reference_adult"]
        adult_lms = _lms(float(config["band_midpoints_years"][-1]), str(reference["sex"]))
        lean = lms[1] * height_m**2
        adult_lean = adult_lms[1] * float(reference["height_m"]) ** 2
        ratio = lean / adult_lean
        # centile spreads of the ALMI and of single muscles around it, as sd of ln, combined
        low, high = (math.log(_centile(lms, s * z) / lms[1]) for s in (-1.0, 1.0))
        muscle = float(config["per_muscle_log_sd"]) * z
        low = -math.hypot(low, muscle)
        high = math.hypot(high, muscle)
        out.append(ChildScale(name, ratio, ratio * math.exp(low), ratio * math.exp(high)))
    return out


def reference_adult() -> tuple[float, float]:
    """(height_m, mass_kg) of the adult whose per-muscle volumes are carried down to children."""
    reference = paediatric_config()["volume"]["reference_adult"]
    return float(reference["height_m"]), float(reference["mass_kg"])


def child_ff(sex: str | None) -> float:
    """Healthy children's muscle fat fraction (0-1); the mean of both sexes when unknown."""
    fat = paediatric_config()["fat"]
    names = (sex,) if sex in SEXES else SEXES
    return float(np.mean([fat[name] for name in names]))


def child_t2() -> tuple[float, float]:
    """Healthy children's MRI T2 of muscle (centre, sd) in ms at 3 T (a T2-map normal)."""
    t2 = paediatric_config()["t2"]
    return float(t2["normal_ms"]), float(t2["sd_ms"])


def source(kind: str) -> str:
    """The ``source`` of a child's norm (``volume``, ``fat`` or ``t2``) in the config."""
    return str(paediatric_config()[kind]["source"])
