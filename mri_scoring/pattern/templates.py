"""Pattern templates: loading and validating the YAML files of ``configs/templates/``.

A template is data, never code: it is read with ``yaml.safe_load`` and checked field by field
before anything runs; every error names the file, the feature and the field.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from ..anatomy import groups, vocabulary
from ..config import config_dir, load_yaml
from ..errors import ConfigError
from .measures import MEASURES, PER_MUSCLE_COLUMNS
from .template_checks import (
    Checker,
    class_probabilities,
    classes_field,
    floors_field,
    strengths,
)

__all__ = [
    "DEFAULT_STRENGTH",
    "DEFAULT_TEMPLATE",
    "SIDE_RULES",
    "EvidenceGroup",
    "Feature",
    "SoftCut",
    "Template",
    "effective_number",
    "load_template",
    "template_path",
]

SIDE_RULES = ("mean", "max", "min")
DEFAULT_TEMPLATE = "imnm_vs_dm.yaml"
DEFAULT_STRENGTH = 10.0
"""Beta pseudo-counts of a probability whose template entry names no ``strength``."""

_T = TypeVar("_T")  # the type a template field is checked to have


@dataclass(frozen=True)
class SoftCut:
    """A soft threshold: ``degree = 1 / (1 + exp(-(value - threshold) / width))``."""

    threshold: float
    width: float

    def degree(self, value: float) -> float:
        """Soft degree (0-1) of ``value`` past the threshold: a logistic of width ``width``."""
        z = (value - self.threshold) / self.width
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


@dataclass(kw_only=True, frozen=True)
class Feature:
    """One template feature (see ``configs/templates/imnm_vs_dm.yaml`` for the fields)."""

    id: str
    description: str
    measure: str
    muscles: tuple[str, ...]
    reference: tuple[str, ...]
    sides: str
    group_fallback: bool
    cut: SoftCut
    p_positive: float
    p_negative: float
    source: str
    per_muscle: dict[str, SoftCut] = field(default_factory=dict)
    strength_positive: float = DEFAULT_STRENGTH
    strength_negative: float = DEFAULT_STRENGTH
    weight: float = 1.0
    floors: dict[str, float] = field(default_factory=dict)
    applies_from: float | None = None


@dataclass(kw_only=True, frozen=True)
class EvidenceGroup:
    """Features that read overlapping evidence, combined with a dependence correction.

    Attributes
    ----------
    id : str
    features : tuple of str
        Feature ids (each feature in at most one group).
    correlation : float
        Mean pairwise within-class correlation of the members' degrees, 0-1.
    weight : float
        ``effective_number(len(features), correlation) / len(features)``: the power applied
        to each member's likelihood (1 = independent, 1/M = one feature's worth).
    source : str
    """

    id: str
    features: tuple[str, ...]
    correlation: float
    weight: float
    source: str


def effective_number(members: int, correlation: float) -> float:
    """Effective number of independent features among ``members`` equicorrelated ones.

    Nyholt's estimate ``M_eff = 1 + (M - 1) * (1 - Var(lambda) / M)`` from the eigenvalues of
    the correlation matrix (Nyholt 2004, Am J Hum Genet 74:765); for M features with equal
    pairwise correlation r the eigenvalue variance is ``M r^2``, so
    ``M_eff = 1 + (M - 1) * (1 - r^2)``.

    Parameters
    ----------
    members : int
        Number of features M (at least 1).
    correlation : float
        Pairwise correlation r, clipped to 0-1.

    Returns
    -------
    float
        Between 1 (fully dependent) and M (independent).

    Examples
    --------
    >>> effective_number(2, 0.0), effective_number(2, 1.0), round(effective_number(3, 0.5), 2)
    (2.0, 1.0, 2.5)
    """
    r = min(max(float(correlation), 0.0), 1.0)
    return 1.0 + (members - 1) * (1.0 - r * r)


@dataclass(kw_only=True, frozen=True)
class Template:
    """A validated pattern template."""

    name: str
    description: str
    positive: str
    negative: str
    prior: float
    prior_alternatives: tuple[dict, ...]
    call_positive_at_least: float
    call_negative_at_most: float
    min_involved_muscles: int
    involved_if: dict[str, float]
    features: tuple[Feature, ...]
    path: str
    sha256: str
    prior_strength: float = 4.0
    lean_beyond: float = 0.15
    absence_gate: SoftCut | None = None
    groups: tuple[EvidenceGroup, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, str]:
        """The two classes, the positive (first) one first."""
        return (self.positive, self.negative)

    def feature(self, feature_id: str) -> Feature:
        """The feature with id ``feature_id`` (KeyError if the template has none)."""
        for f in self.features:
            if f.id == feature_id:
                return f
        raise KeyError(feature_id)


def _muscle_list(check: Checker, data: dict, key: str, where: str, required: bool) -> tuple:
    names = check.get(data, key, where, list, ... if required else [])
    known = vocabulary() | set(groups())
    for name in names:
        if not isinstance(name, str) or name not in known:
            raise check.fail(
                where,
                f"'{key}' names {name!r}, which is neither a vocabulary "
                "muscle nor a group (configs/anatomy.yaml)",
            )
    if required and not names:
        raise check.fail(where, f"'{key}' is empty")
    return tuple(names)


def _cut(check: Checker, data: dict, where: str) -> SoftCut:
    threshold = check.number(data, "threshold", where, -10.0, 10.0)
    width = check.number(data, "width", where, 0.0, 10.0, open_low=True)
    return SoftCut(threshold, width)


def _feature(
    check: Checker,
    data: object,
    index: int,
    default_strength: float,
    classes: tuple[str, str] | None,
) -> Feature:
    if not isinstance(data, dict):
        raise check.fail(f"features[{index}]", "each feature must be a mapping")
    feature_id = check.get(data, "id", f"features[{index}]", str)
    where = f"feature '{feature_id}'"
    measure = check.get(data, "measure", where, str)
    if measure not in MEASURES:
        raise check.fail(where, f"unknown measure {measure!r}; known: {', '.join(MEASURES)}")
    sides = check.get(data, "sides", where, str, "mean")
    if sides not in SIDE_RULES:
        raise check.fail(
            where, f"field 'sides' must be one of {', '.join(SIDE_RULES)}, got {sides!r}"
        )
    spec_of = MEASURES[measure]
    reference = _muscle_list(check, data, "reference", where, required=spec_of.needs_reference)
    per_muscle: dict[str, SoftCut] = {}
    if spec_of.per_muscle:
        spec = check.get(data, "per_muscle", where, dict)
        if spec_of.per_muscle == "one":
            inner = check.get(spec, "measure", f"{where}.per_muscle", str)
            if inner not in PER_MUSCLE_COLUMNS:
                raise check.fail(
                    f"{where}.per_muscle",
                    f"unknown measure {inner!r}; known: {', '.join(PER_MUSCLE_COLUMNS)}",
                )
            per_muscle[inner] = _cut(check, spec, f"{where}.per_muscle")
        else:
            for inner, cut in spec.items():
                if inner not in PER_MUSCLE_COLUMNS or not isinstance(cut, dict):
                    raise check.fail(
                        f"{where}.per_muscle",
                        f"{inner!r} must be one of "
                        f"{', '.join(PER_MUSCLE_COLUMNS)} with threshold and width",
                    )
                per_muscle[inner] = _cut(check, cut, f"{where}.per_muscle.{inner}")
            if not per_muscle:
                raise check.fail(f"{where}.per_muscle", "names no measure")
    return Feature(
        floors=floors_field(check, data, where, spec_of.floors),
        id=feature_id,
        description=check.get(data, "description", where, str),
        measure=measure,
        muscles=_muscle_list(check, data, "muscles", where, spec_of.reads == "muscles"),
        reference=reference,
        sides=sides,
        group_fallback=bool(check.get(data, "group_fallback", where, bool, False)),
        cut=_cut(check, data, where),
        **class_probabilities(check, data, where, classes),
        source=check.get(data, "source", where, str),
        per_muscle=per_muscle,
        **strengths(check, data, where, default_strength, classes),
        applies_from=_applies_from(check, data, where),
    )


def _applies_from(check: Checker, data: dict, where: str) -> float | None:
    """``applies_from``: below this basis the measure is undefined (unavailable), or None."""
    if "applies_from" not in data:
        return None
    return check.number(data, "applies_from", where, 0.0, 1000.0)


def _groups(check: Checker, data: dict, ids: list[str]) -> tuple[EvidenceGroup, ...]:
    spec = check.get(data, "dependence", "top level", dict, {})
    raw = check.get(spec, "groups", "dependence", list, [])
    out, seen = [], set()
    for i, item in enumerate(raw):
        where = f"dependence.groups[{i}]"
        if not isinstance(item, dict):
            raise check.fail(where, "each group must be a mapping")
        group_id = check.get(item, "id", where, str)
        members = tuple(check.get(item, "features", where, list))
        unknown = [m for m in members if m not in ids]
        if unknown or not members:
            raise check.fail(where, f"names unknown features {unknown} (known: {', '.join(ids)})")
        twice = seen.intersection(members)
        if twice:
            raise check.fail(where, f"features in two groups: {', '.join(sorted(twice))}")
        seen.update(members)
        r = check.number(item, "correlation", where, 0.0, 1.0)
        out.append(
            EvidenceGroup(
                id=group_id,
                features=members,
                correlation=r,
                weight=effective_number(len(members), r) / len(members),
                source=str(item.get("source", "")),
            )
        )
    return tuple(out)


def template_path(name: str | Path) -> Path:
    """The file of a template given by name (``configs/templates/<name>.yaml``) or path.

    Examples
    --------
    >>> template_path("imnm_vs_dm").name
    'imnm_vs_dm.yaml'
    """
    text = str(name)
    if text.endswith((".yaml", ".yml")) or "/" in text or Path(text).is_file():
        return Path(text)
    return config_dir() / "templates" / f"{text}.yaml"


def load_template(path: str | Path | None = None) -> Template:
    """Load and validate a pattern template.

    Parameters
    ----------
    path : path or str, optional
        A template YAML file or a shipped template's name (``imnm_vs_dystrophy``); default
        ``configs/templates/imnm_vs_dm.yaml``.

    Raises
    ------
    ConfigError
        Naming the file, the feature and the field, e.g.
        ``imnm_vs_dm.yaml: feature 'adductor_brevis_edema': field 'p_imnm' must be in (0.0, 1.0]``.
    """
    path = template_path(path if path is not None else Path(DEFAULT_TEMPLATE).stem)
    if not path.is_file():
        raise ConfigError(f"{path}: template file not found")
    data = load_yaml(path)
    check = Checker(path)
    if not isinstance(data, dict):
        raise check.fail("top level", "a template must be a mapping")
    named, positive, negative = classes_field(check, data)
    bounds = check.get(data, "call_bounds", "top level", dict)
    applicability = check.get(data, "applicability", "top level", dict, {})
    involved_if = check.get(applicability, "involved_if", "applicability", dict, {})
    for key, value in involved_if.items():
        if key not in (
            "mercuri_grade_at_least",
            "edema_grade_at_least",
            "fascial_edema_fraction_at_least",
        ):
            raise check.fail("applicability.involved_if", f"unknown criterion {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise check.fail("applicability.involved_if", f"{key} must be a number")
    raw_features = check.get(data, "features", "top level", list)
    if not raw_features:
        raise check.fail("top level", "'features' is empty")
    default_strength = check.number(
        data, "elicited_strength", "top level", 0.0, 1e7, default=DEFAULT_STRENGTH, open_low=True
    )
    features = tuple(
        _feature(check, f, i, default_strength, (positive, negative) if named else None)
        for i, f in enumerate(raw_features)
    )
    ids = [f.id for f in features]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise check.fail("features", f"duplicate feature ids: {', '.join(duplicates)}")
    evidence_groups = _groups(check, data, ids)
    weights = {m: g.weight for g in evidence_groups for m in g.features}
    features = tuple(replace(f, weight=weights.get(f.id, 1.0)) for f in features)
    gate_spec = check.get(applicability, "absence_counts_from", "applicability", dict, {})
    gate = None
    if gate_spec:
        gate_cut = check.get(
            gate_spec, "involved_muscles", "applicability.absence_counts_from", dict
        )
        gate = _cut(check, gate_cut, "applicability.absence_counts_from.involved_muscles")
    if named:  # call a class when its own posterior is at least its bound
        positive_at_least = check.number(bounds, positive, "call_bounds", 0.0, 1.0)
        bound = check.number(bounds, negative, "call_bounds", 0.0, 1.0)
        negative_at_most = round(1.0 - bound, 12)
        prior = check.number(data, "prior", "top level", 0.0, 1.0, open_low=True)
    else:
        positive_at_least = check.number(bounds, "imnm_at_least", "call_bounds", 0.0, 1.0)
        negative_at_most = check.number(bounds, "dm_at_most", "call_bounds", 0.0, 1.0)
        prior = check.number(data, "prior_imnm", "top level", 0.0, 1.0, open_low=True)
    if negative_at_most >= positive_at_least:
        raise check.fail(
            "call_bounds",
            "the two call bounds overlap (p(first class) must pass "
            "one bound or the other, never both)",
        )
    if prior >= 1.0:
        raise check.fail("top level", f"the prior must be below 1, got {prior!r}")
    lean_beyond = check.number(bounds, "lean_beyond", "call_bounds", 0.0, 0.5, default=0.15)
    alternatives = check.get(data, "prior_alternatives", "top level", list, [])
    return Template(
        name=check.get(data, "name", "top level", str),
        description=check.get(data, "description", "top level", str, ""),
        positive=positive,
        negative=negative,
        prior=prior,
        prior_alternatives=tuple(a for a in alternatives if isinstance(a, dict)),
        call_positive_at_least=positive_at_least,
        call_negative_at_most=negative_at_most,
        min_involved_muscles=int(
            check.number(applicability, "min_involved_muscles", "applicability", 0, 1000, default=0)
        ),
        involved_if={k: float(v) for k, v in involved_if.items()},
        features=features,
        path=str(path),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        prior_strength=check.number(
            data, "prior_strength", "top level", 0.0, 1e7, default=4.0, open_low=True
        ),
        lean_beyond=lean_beyond,
        absence_gate=gate,
        groups=evidence_groups,
        provenance=check.get(data, "provenance", "top level", dict, {}),
    )
