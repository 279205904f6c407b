"""Population priors from the review: the same likelihood ratio read with a population's prior.

Presets (``configs/population_priors.yaml``, sources there) are keyed by template; a template
without a published share has none. A preset feeds only the population posterior
(``p_imnm_population``, ``score.json`` ``population``): ``p_imnm`` and the call stay at the
template's prior (or ``--prior``), so calls and their calibration do not change with age.

Which preset: ``--population`` > ``study.json`` ``population`` > age (under
:data:`ADULT_AGE_YEARS`: ``juvenile``, said in a note; from it: ``adult``); no age and no
preset: none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import load_config_file
from ..errors import ConfigError, StudyError
from .likelihood import Likelihood, credible_interval, posterior
from .templates import Template

__all__ = [
    "ADULT_AGE_YEARS",
    "PRESETS",
    "PopulationPosterior",
    "check_preset",
    "choose_preset",
    "population_posterior",
    "presets",
]

PRESETS = ("juvenile", "juvenile_asian", "adult")
"""Preset names a user may give (``--population``, ``study.json`` ``population``)."""
ADULT_AGE_YEARS = 18.0
"""Age from which the age default is ``adult`` rather than ``juvenile``."""


@dataclass(frozen=True, kw_only=True)
class PopulationPosterior:
    """The template's likelihood ratio read with a population's prior.

    Attributes
    ----------
    name : str
        Preset name.
    prior, strength : float
        Prior p(positive) in the population and its Beta pseudo-count strength.
    source : str
        References and derivation (``configs/population_priors.yaml``).
    p_imnm : float
        Posterior p(positive) by Bayes' rule on the study's likelihood ratio and ``prior``.
    interval : tuple of float
        [5 %, 95 %] credible bounds (the same Monte Carlo as ``p_imnm_interval``).
    chosen_by : str
        ``option``, ``study.json`` or ``age`` (with ``note`` saying so).
    note : str
        Why this preset (empty when it was asked for).
    """

    name: str
    prior: float
    strength: float
    source: str
    p_imnm: float
    interval: tuple[float, float]
    chosen_by: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """``score.json`` ``population``."""
        return {
            "name": self.name,
            "prior": self.prior,
            "strength": self.strength,
            "source": self.source,
            "p_imnm": self.p_imnm,
            "interval": list(self.interval),
            "chosen_by": self.chosen_by,
            "note": self.note,
        }


def presets(template: str) -> dict[str, dict[str, Any]]:
    """The population presets of a template (empty when it has no published share)."""
    return dict(load_config_file("population_priors.yaml").get(template, {}) or {})


def check_preset(name: str) -> str:
    """A valid preset name, or a :class:`ConfigError` naming the choices.

    Examples
    --------
    >>> check_preset("juvenile")
    'juvenile'
    """
    if name not in PRESETS:
        raise ConfigError(
            f"population {name!r} is not a preset: choose one of {', '.join(PRESETS)}"
        )
    return name


def choose_preset(option: str | None, metadata: dict[str, Any]) -> tuple[str, str, str] | None:
    """(preset, chosen_by, note) by the precedence option > study.json > age; None if none.

    Examples
    --------
    >>> choose_preset(None, {"age_years": 9})
    ('juvenile', 'age', 'age 9 y (under 18): the juvenile population prior')
    >>> choose_preset("adult", {"population": "juvenile", "age_years": 9})[:2]
    ('adult', 'option')
    >>> choose_preset(None, {}) is None
    True
    """
    if option:
        return check_preset(option), "option", ""
    stated = metadata.get("population")
    if stated not in (None, ""):
        if stated not in PRESETS:
            raise StudyError(
                f"study.json: population {stated!r} is not a preset: choose one of "
                f"{', '.join(PRESETS)} (or leave it out)"
            )
        return str(stated), "study.json", ""
    age = metadata.get("age_years")
    if isinstance(age, bool) or not isinstance(age, int | float) or age < 0:
        return None
    if age < ADULT_AGE_YEARS:
        return (
            "juvenile",
            "age",
            f"age {age:g} y (under {ADULT_AGE_YEARS:g}): the juvenile population prior",
        )
    return (
        "adult",
        "age",
        f"age {age:g} y ({ADULT_AGE_YEARS:g} or over): the adult population prior",
    )


def _degrees(likelihood: Likelihood, template: Template) -> np.ndarray:
    """Each template feature's degree as the likelihood used it (NaN where unavailable)."""
    by_id = {c.id: c.degree for c in likelihood.features if c.available and c.degree is not None}
    return np.array([by_id.get(f.id, np.nan) for f in template.features], dtype=float)


def population_posterior(
    likelihood: Likelihood, template: Template, option: str | None, metadata: dict[str, Any]
) -> PopulationPosterior | None:
    """The population posterior of a scored study, or None (no preset chosen, or none published).

    Parameters
    ----------
    likelihood : Likelihood
        The study's likelihood at the template prior (unchanged here).
    template : Template
    option : str or None
        ``--population``.
    metadata : dict
        ``study.json`` (``population``, ``age_years``).

    Returns
    -------
    PopulationPosterior or None
    """
    chosen = choose_preset(option, metadata)
    if chosen is None:
        return None
    name, chosen_by, note = chosen
    preset = presets(template.name).get(name)
    if preset is None:
        return None
    prior, strength = float(preset["prior"]), float(preset["strength"])
    low, high = credible_interval(
        _degrees(likelihood, template), template, likelihood.absence_gate, prior, strength
    )
    return PopulationPosterior(
        name=name,
        prior=prior,
        strength=strength,
        source=str(preset["source"]),
        p_imnm=posterior(likelihood.log10_likelihood_ratio, prior),
        interval=(low, high),
        chosen_by=chosen_by,
        note=note,
    )
