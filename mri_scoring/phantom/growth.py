"""The phantom's own growth rule: how big a child phantom's thigh is, and its height and mass.

Constants in ``configs/phantom.yaml`` (``growth``), sources there. Written apart from the
measurement norms (``measure.norms``, ``configs/paediatric.yaml``): a child phantom checked
against the norms is then a comparison of two definitions, not of the norms with themselves.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .drawing import phantom_config

__all__ = [
    "SEXES",
    "adult_age",
    "body_for_age",
    "check_sex",
    "healthy_ff",
    "volume_fraction",
]

SEXES = ("male", "female")


def _growth() -> dict[str, Any]:
    return phantom_config()["growth"]


def check_sex(sex: str | None) -> str:
    """``male`` (the default) or ``female``; anything else is an error.

    Examples
    --------
    >>> check_sex(None), check_sex("female")
    ('male', 'female')
    """
    if sex is None:
        return "male"
    if sex not in SEXES:
        raise ValueError(f"phantom sex must be one of {SEXES}, got {sex!r}")
    return sex


def volume_fraction(age_years: float, sex: str | None = None) -> float:
    """Whole muscle volume of a child phantom relative to the drawn adult (0-1].

    Log-linear between the ages of ``growth.ages_years`` (held below the first, 1 from the last);
    girls ``female_factor`` times the boys'.

    Examples
    --------
    >>> round(volume_fraction(15.0) / volume_fraction(5.0), 2)   # bolsterlee_growth: ~5x
    5.0
    >>> volume_fraction(30.0)
    1.0
    """
    growth = _growth()
    log_fraction = np.interp(age_years, growth["ages_years"], np.log(growth["volume_fraction"]))
    fraction = float(np.exp(log_fraction))
    if check_sex(sex) == "female":
        fraction *= float(growth["female_factor"])
    return fraction


def body_for_age(age_years: float, sex: str | None = None) -> dict[str, float]:
    """Typical height (m) and mass (kg) for an age and sex, for the phantom's ``study.json``.

    Examples
    --------
    >>> body_for_age(10.0, "male")
    {'height_m': 1.39, 'mass_kg': 32.0}
    """
    growth = _growth()
    table = growth[check_sex(sex)]
    ages = growth["body_ages_years"]
    return {
        key: round(float(np.interp(age_years, ages, table[key])), 3)
        for key in ("height_m", "mass_kg")
    }


def healthy_ff() -> float:
    """Healthy muscle fat fraction of a child phantom."""
    return float(_growth()["healthy_ff"])


def adult_age() -> float:
    """Age from which the phantom is the drawn adult (its last growth age)."""
    return float(_growth()["ages_years"][-1])
