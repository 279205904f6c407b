"""Normative values a study is compared with: muscle volume from body size, thigh fat by age/sex.

Children's norms (:mod:`.paediatric`) are joined to the adult ones here.

The numbers live in ``configs/norms_body_age_sex.yaml`` with their sources (keys of
``configs/references.yaml``) and provenance marks; this module only reads and applies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from ..anatomy import groups, norm_within
from ..config import load_config_file
from .paediatric import (
    adult_weight,
    child_ff,
    child_scales,
    paediatric_config,
    reference_adult,
    sex_of,
    youngest_volume_age,
)
from .paediatric import age_years as paediatric_age
from .paediatric import source as paediatric_source

__all__ = [
    "ADULT",
    "JOINED",
    "NO_NORM",
    "PAEDIATRIC",
    "BodySize",
    "VolumeNorm",
    "body_size",
    "expected_volume_ml",
    "ff_excess",
    "normal_thigh_ff",
    "norms_used",
    "stand_in",
    "volume_norm",
]


@cache
def _norms() -> dict[str, Any]:
    """``configs/norms_body_age_sex.yaml`` (cached per process; treat as read-only)."""
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

    Plausible at any age, infancy to old age (``configs/norms_body_age_sex.yaml``,
    ``body_size``): height, mass and mass for height (body-mass index) inside wide bands, so that
    a unit mistake (cm for m, lb for kg) is caught in children and adults alike.

    Parameters
    ----------
    metadata : dict
        ``study.json`` contents; ``height_m`` (metres) and ``mass_kg`` (kilograms) are read.

    Returns
    -------
    BodySize or None
        None when either is missing, not a number or implausible.
    str
        Why there is no body size, naming the value and the likely mistake ("" when there is
        one, or when neither field is given).

    Examples
    --------
    >>> body_size({"height_m": 1.10, "mass_kg": 18.5})
    (BodySize(height_m=1.1, mass_kg=18.5), '')
    >>> body_size({"height_m": 175, "mass_kg": 70})[1]
    'height_m 175 is outside 0.45-2.4 m (centimetres given for metres?): body size not used'
    >>> body_size({"height_m": 1.10, "mass_kg": 180})[1][:60]
    'mass_kg 180 at height_m 1.1 is a body-mass index of 149 kg/m'
    """
    height, mass = metadata.get("height_m"), metadata.get("mass_kg")
    if height is None and mass is None:
        return None, ""
    if height is None or mass is None:
        missing = "height_m" if height is None else "mass_kg"
        return None, f"{missing} missing from study.json: body size not used"
    config = _norms()["body_size"]
    checks = (  # name, value, range, unit, hint when too high, hint when too low
        (
            "height_m",
            height,
            config["height_m_range"],
            "m",
            "centimetres given for metres?",
            "not a height in metres?",
        ),
        (
            "mass_kg",
            mass,
            config["mass_kg_range"],
            "kg",
            "pounds given for kilograms?",
            "not a mass in kilograms?",
        ),
    )
    for name, value, (low, high), unit, too_high, too_low in checks:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"{name} {value!r} is not a number: body size not used"
        if not low <= value <= high:
            hint = too_high if value > high else too_low
            return (
                None,
                f"{name} {value:g} is outside {low:g}-{high:g} {unit} ({hint}): body size not used",
            )
    bmi = float(mass) / float(height) ** 2
    low, high = config["bmi_range"]
    if not low <= bmi <= high:
        hint = (
            "pounds given for kilograms, or height in the wrong unit?"
            if bmi > high
            else "height or mass in the wrong unit?"
        )
        return None, (
            f"mass_kg {mass:g} at height_m {height:g} is a body-mass index of "
            f"{bmi:.0f} kg/m2, outside {low:g}-{high:g} ({hint}): body size not used"
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


@dataclass(frozen=True)
class VolumeNorm:
    """Expected whole-muscle volume of one muscle with its normal band (ml).

    Attributes
    ----------
    expected_ml, p10_ml, p90_ml : float
        Median expected volume and the 10th / 90th centile of healthy muscles.
    paediatric : bool
        Whether a child's norm (alone or joined to the adult's) was used.
    """

    expected_ml: float
    p10_ml: float
    p90_ml: float
    paediatric: bool


def _adult_band(expected: float) -> tuple[float, float]:
    """10th / 90th centile of an adult muscle around its expected volume."""
    config = _norms()["muscle_volume"]
    spread = float(config["band_z"]) * float(config["band_log_sd"])
    return expected * math.exp(-spread), expected * math.exp(spread)


def volume_norm(
    name: str, size: BodySize, age: float | None = None, sex: str | None = None
) -> VolumeNorm | None:
    """Expected volume and normal band of a muscle for body size, age and sex.

    Adults (and unknown age): the handsfield2014 regression. Children: the same muscle in the
    reference adult of ``configs/paediatric.yaml`` times the child's appendicular lean mass for
    age, sex and height over that adult's (zemel2023): no adult intercept below adulthood. The
    two are joined over ``adult_join_years`` (:func:`.paediatric.adult_weight`).

    Parameters
    ----------
    name : str
        Canonical muscle (or group) name.
    size : BodySize
    age : float, optional
        Age in years (None: adult).
    sex : str, optional
        ``male`` or ``female`` (None: the mean of both for a child).

    Returns
    -------
    VolumeNorm or None
        None for a muscle the regressions do not list, and below the youngest reference age.

    Examples
    --------
    >>> round(volume_norm("vastus_lateralis", BodySize(1.75, 70.0)).expected_ml)
    824
    >>> volume_norm("vastus_lateralis", BodySize(0.85, 12.0), age=2.0) is None
    True
    """
    adult = expected_volume_ml(name, size)
    if adult is None:
        return None
    weight = adult_weight(age)
    if weight >= 1.0:
        return VolumeNorm(adult, *_adult_band(adult), False)
    scales = child_scales(float(age), size.height_m, sex)  # type: ignore[arg-type]
    if scales is None:
        return None
    reference = float(expected_volume_ml(name, BodySize(*reference_adult())) or 0.0)
    child = np.mean([[s.ratio, s.ratio_p10, s.ratio_p90] for s in scales], axis=0) * reference
    grown = np.array([adult, *_adult_band(adult)])
    mixed = (1.0 - weight) * child + weight * grown
    return VolumeNorm(float(mixed[0]), float(mixed[1]), float(mixed[2]), True)


def normal_thigh_ff(age_years: object, sex: object) -> float | None:
    """Mean healthy thigh intramuscular fat fraction for an age and sex (whole-thigh mean).

    Adults: linear between the UK Biobank band midpoints (50 and 80 years), held constant
    outside them (``configs/norms_body_age_sex.yaml``, ``thigh_fat``). Children: the healthy
    children's figure of ``configs/paediatric.yaml``, joined to the adult's over
    ``adult_join_years``.

    Parameters
    ----------
    age_years : float
        Age in years (any other ``study.json`` value, or none, gives None).
    sex : str
        ``study.json`` sex (``M``/``F``, ``male``/``female``; case-insensitive).

    Returns
    -------
    float or None
        Fraction 0-1; None when the age is not a number or the sex is not recognised (a child
        below the adult join has the same figure for both sexes, so there the sex may be
        missing).

    Examples
    --------
    >>> round(normal_thigh_ff(65, "F"), 4)
    0.0789
    >>> normal_thigh_ff(65, "unknown") is None
    True
    >>> normal_thigh_ff(9, "M")
    0.02
    """
    config = _norms()["thigh_fat"]
    metadata = {"age_years": age_years, "sex": sex}
    age, known_sex = paediatric_age(metadata), sex_of(metadata)
    if age is None:
        return None
    adult = None
    if known_sex is not None:
        adult = float(np.interp(age, config["band_midpoints_years"], config[known_sex]))
    weight = adult_weight(age)
    if weight >= 1.0:
        return adult
    if adult is None and weight > 0.0:
        return None
    return (1.0 - weight) * child_ff(known_sex) + weight * (adult or 0.0)


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


ADULT, PAEDIATRIC, JOINED, NO_NORM = "adult", "paediatric", "paediatric_adult_join", "none"
"""Values of ``basis`` in ``score.json`` ``norms``."""


def _basis(age: float | None) -> str:
    weight = adult_weight(age)
    return ADULT if weight >= 1.0 else PAEDIATRIC if weight <= 0.0 else JOINED


def norms_used(metadata: dict[str, Any], body: BodySize | None) -> dict[str, dict[str, Any]]:
    """Where each norm of a study came from: ``score.json`` ``norms``.

    Parameters
    ----------
    metadata : dict
        ``study.json`` contents (``age_years``, ``sex``).
    body : BodySize or None
        The plausible body size (None: no volume norm).

    Returns
    -------
    dict
        ``volume``, ``fat`` and ``t2``, each ``{"basis", "source", "age_years"}``; ``basis`` is
        ``adult``, ``paediatric``, ``paediatric_adult_join`` (between the two over the join
        ages) or ``none`` (``source`` then says why).

    Examples
    --------
    >>> norms_used({"age_years": 9, "sex": "M"}, BodySize(1.33, 28.0))["fat"]["basis"]
    'paediatric'
    >>> norms_used({}, None)["volume"]["basis"]
    'none'
    """
    age = paediatric_age(metadata)
    basis = _basis(age)
    sources = {
        ADULT: {
            "volume": "handsfield2014",
            "fat": "ukbiobank_thigh2024",
            "t2": "pai2008 (settings.yaml edema.t2_normal_ms)",
        },
        PAEDIATRIC: {k: paediatric_source(k) for k in ("volume", "fat", "t2")},
    }
    sources[JOINED] = {
        k: f"{sources[PAEDIATRIC][k]}; joined to {sources[ADULT][k]}" for k in sources[ADULT]
    }
    out = {
        kind: {"basis": basis, "source": sources[basis][kind], "age_years": age}
        for kind in ("volume", "fat", "t2")
    }
    if basis != ADULT and sex_of(metadata) != "male":
        for kind in ("fat", "t2"):  # healthy boys' figures: for girls a judgement
            out[kind]["source"] += f" ({paediatric_config()[kind]['female_mark']} for girls)"
    if body is None:
        out["volume"].update(basis=NO_NORM, source="no plausible height_m and mass_kg")
    elif basis != ADULT and age is not None and age < youngest_volume_age():
        out["volume"].update(
            basis=NO_NORM,
            source=(
                f"age {age:g} y is below the youngest reference age of the volume norms "
                f"({youngest_volume_age():g} y, zemel2023)"
            ),
        )
    if age is None:
        out["volume"]["source"] += " (no age_years: adult norms assumed)"
        out["t2"]["source"] += " (no age_years: adult norms assumed)"
    if normal_thigh_ff(metadata.get("age_years"), metadata.get("sex")) is None:
        out["fat"].update(basis=NO_NORM, source="no age_years or sex in study.json")
    return out
