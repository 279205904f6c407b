"""Normative values a study is compared with: muscle volume from body size, thigh fat by age/sex.

The numbers live in ``configs/norms_body_age_sex.yaml`` with their sources (keys of
``configs/references.yaml``) and provenance marks; this module only reads and applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..anatomy import groups, norm_within
from ..config import load_config_file

__all__ = [
    "BodySize",
    "body_size",
    "expected_volume_ml",
    "ff_excess",
    "normal_thigh_ff",
    "stand_in",
]


def _norms() -> dict[str, Any]:
    return load_config_file("norms_body_age_sex.yaml")


@dataclass(frozen=True)
class BodySize:
    """Height and mass of the subject (from ``study.json``)."""

    height_m: float
    mass_kg: float

    @property
    def height_mass(self) -> float:
        """Height x mass (m kg), the regressor of the volume norms."""
        return self.height_m * self.mass_kg


def body_size(metadata: dict[str, Any]) -> tuple[BodySize | None, str]:
    """Body size from study metadata, or None with the reason.

    Parameters
    ----------
    metadata : dict
        ``study.json`` contents; ``height_m`` (metres) and ``mass_kg`` (kilograms) are read.

    Returns
    -------
    BodySize or None
        None when either is missing, not a number or outside the plausible adult range.
    str
        Why there is no body size ("" when there is one, or when neither field is given).

    Examples
    --------
    >>> body_size({"height_m": 1.75, "mass_kg": 70})[0].height_mass
    122.5
    >>> body_size({"height_m": 175, "mass_kg": 70})[1]
    'height_m 175 is outside 1-2.4 m (centimetres given for metres?): body size not used'
    """
    height, mass = metadata.get("height_m"), metadata.get("mass_kg")
    if height is None and mass is None:
        return None, ""
    if height is None or mass is None:
        missing = "height_m" if height is None else "mass_kg"
        return None, f"{missing} missing from study.json: body size not used"
    config = _norms()["muscle_volume"]
    checks = (
        ("height_m", height, config["height_m_range"], "m", "centimetres given for metres?"),
        ("mass_kg", mass, config["mass_kg_range"], "kg", "pounds given for kilograms?"),
    )
    for name, value, (low, high), unit, hint in checks:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"{name} {value!r} is not a number: body size not used"
        if not low <= value <= high:
            return (
                None,
                f"{name} {value:g} is outside {low:g}-{high:g} {unit} ({hint}): body size not used",
            )
    return BodySize(float(height), float(mass)), ""


def _coefficients(name: str) -> list[tuple[float, float]] | None:
    """(slope, intercept) terms whose sum is the norm of a muscle or compartment, or None."""
    config = _norms()["muscle_volume"]
    table, sums = config["coefficients"], config["sums"]
    if name in table:
        return [tuple(table[name])]
    members = sums.get(name)
    if members is None and name in groups():
        # a compartment label: its members, a member that is the sum of others counted once
        # (the whole biceps femoris by its two heads)
        # and a member counted within another (adductor minimus within adductor magnus) not
        # again
        listed = set(groups()[name])
        inside = norm_within()
        members = [
            m
            for m in groups()[name]
            if not listed.intersection(sums.get(m, ())) and inside.get(m) not in listed
        ]
    if members is None:
        return None
    terms: list[tuple[float, float]] = []
    for member in members:
        part = _coefficients(member)
        if part is None:
            return None
        terms.extend(part)
    return terms


def expected_volume_ml(name: str, size: BodySize) -> float | None:
    """Expected whole-muscle volume from body size (handsfield2014), or None if not listed.

    Parameters
    ----------
    name : str
        Canonical muscle (or group, for a compartment label) name.
    size : BodySize

    Returns
    -------
    float or None
        Volume in ml; None for muscles the regressions do not cover (see :func:`stand_in`).

    Examples
    --------
    >>> round(expected_volume_ml("vastus_lateralis", BodySize(1.75, 70.0)))
    824
    >>> expected_volume_ml("obturator_externus", BodySize(1.75, 70.0)) is None
    True
    """
    terms = _coefficients(name)
    if terms is None:
        return None
    return float(sum(slope * size.height_mass + intercept for slope, intercept in terms))


def stand_in(name: str) -> str:
    """What stands in for a body-size norm the regressions lack ("" when they have one).

    Examples
    --------
    >>> stand_in("obturator_externus")
    'share'
    """
    if _coefficients(name) is not None:
        return ""
    return str(_norms()["muscle_volume"]["stand_ins"].get(name, "share"))


def normal_thigh_ff(age_years: object, sex: object) -> float | None:
    """Mean healthy thigh intramuscular fat fraction for an age and sex (whole-thigh mean).

    Linear between the UK Biobank band midpoints (50 and 80 years), held constant outside them
    (``configs/norms_body_age_sex.yaml``, ``thigh_fat``).

    Parameters
    ----------
    age_years : float
        Age in years (any other ``study.json`` value, or none, gives None).
    sex : str
        ``study.json`` sex (``M``/``F``, ``male``/``female``; case-insensitive).

    Returns
    -------
    float or None
        Fraction 0-1; None when the age is not a number or the sex is not recognised.

    Examples
    --------
    >>> round(normal_thigh_ff(65, "F"), 4)
    0.0789
    >>> normal_thigh_ff(65, "unknown") is None
    True
    """
    config = _norms()["thigh_fat"]
    if isinstance(age_years, bool) or not isinstance(age_years, int | float):
        return None
    key = str(sex).strip().lower()
    for table_key, values in config["sex_values"].items():
        if key in values:
            return float(
                np.interp(float(age_years), config["band_midpoints_years"], config[table_key])
            )
    return None


def ff_excess(ff_mean: np.ndarray, metadata: dict[str, Any]) -> np.ndarray:
    """Fat fraction above the healthy whole-thigh mean for the subject's age and sex.

    Parameters
    ----------
    ff_mean : ndarray
        Core mean fat fraction per row (0-1).
    metadata : dict
        ``study.json`` contents (``age_years``, ``sex``).

    Returns
    -------
    ndarray
        ``ff_mean`` minus :func:`normal_thigh_ff`; all NaN when age or sex is missing.

    Examples
    --------
    >>> ff_excess(np.array([0.20]), {"age_years": 50, "sex": "male"}).round(4).tolist()
    [0.1417]
    >>> np.isnan(ff_excess(np.array([0.20]), {})).all()
    np.True_
    """
    normal = normal_thigh_ff(metadata.get("age_years"), metadata.get("sex"))
    values = np.asarray(ff_mean, dtype=float)
    return values - normal if normal is not None else np.full(values.shape, np.nan)
