"""Checked reading of template fields: one error per wrong field, naming file, place and value.

The class-dependent fields of a template (its two classes, each feature's probability and
pseudo-count strength per class) are read here in both schemas: named classes
(``classes: [IMNM, dystrophy]``, ``p: {<class>: ...}``) and the first schema
(``classes: {positive, negative}``, ``p_imnm``/``p_dm``).
"""

from __future__ import annotations

import math
from pathlib import Path
from types import EllipsisType
from typing import TypeVar

from ..errors import ConfigError
from .measures import FLOOR_COLUMNS

__all__ = [
    "Checker",
    "class_probabilities",
    "classes_field",
    "floors_field",
    "kind_names",
    "probability",
    "strengths",
]

_T = TypeVar("_T")  # the type a template field is checked to have


class Checker:
    """Reads the fields of one template file; every error names the file, place and value."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> ConfigError:
        """The error for a wrong field at ``where``."""
        return ConfigError(f"{self.path}: {where}: {message}")

    def get(
        self,
        data: dict,
        key: str,
        where: str,
        kind: type[_T] | tuple[type[_T], ...],
        default: _T | EllipsisType = ...,
    ) -> _T:
        """Field ``key`` of ``data``, checked to be of ``kind`` (``default`` when missing)."""
        if key not in data:
            if default is ...:
                raise self.fail(where, f"missing field '{key}'")
            return default
        value = data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(where, f"field '{key}' must be {kind_names(kinds)}, got {value!r}")
        if not isinstance(value, kinds):
            raise self.fail(where, f"field '{key}' must be {kind_names(kinds)}, got {value!r}")
        return value

    def number(
        self,
        data: dict,
        key: str,
        where: str,
        low: float,
        high: float,
        default: float | EllipsisType = ...,
        open_low: bool = False,
    ) -> float:
        """Number field ``key`` within ``[low, high]`` (``(low, high]`` with ``open_low``)."""
        value = float(self.get(data, key, where, (int, float), default))
        if not math.isfinite(value) or value > high or value < low or (open_low and value <= low):
            bound = f"({low}, {high}]" if open_low else f"[{low}, {high}]"
            raise self.fail(where, f"field '{key}' must be in {bound}, got {value!r}")
        return value


def kind_names(kinds: tuple) -> str:
    """The types of ``kinds`` in words (``a number or text``)."""
    return " or ".join(
        {
            int: "a number",
            float: "a number",
            str: "text",
            list: "a list",
            dict: "a mapping",
            bool: "true/false",
        }[k]
        for k in kinds
    )


def probability(check: Checker, data: dict, key: str, where: str) -> float:
    """A probability in (0, 1): 1 itself would make a feature's absence infinitely telling."""
    value = check.number(data, key, where, 0.0, 1.0, open_low=True)
    if value >= 1.0:
        raise check.fail(
            where,
            f"field '{key}' must be below 1 (a certain feature makes its "
            f"absence infinitely informative), got {value!r}",
        )
    return value


def floors_field(
    check: Checker,
    data: dict,
    where: str,
    needed: tuple[str, ...],
) -> dict[str, float]:
    """``floors: {column: value}`` of a counting measure (none for the others)."""
    if not needed:
        return {}
    spec = check.get(data, "floors", where, dict)
    bad = [k for k in spec if k not in FLOOR_COLUMNS]
    missing = [k for k in needed if k != "any" and k not in spec]
    if bad or missing or not spec:
        raise check.fail(
            f"{where}.floors",
            f"needs {' and '.join(needed)} (of {', '.join(FLOOR_COLUMNS)}); got {sorted(spec)}",
        )
    return {k: check.number(spec, k, f"{where}.floors", 0.0, 10.0) for k in spec}


def class_probabilities(
    check: Checker, data: dict, where: str, classes: tuple[str, str] | None
) -> dict[str, float]:
    """``p: {<class>: P(present | class)}`` (named classes), else ``p_imnm``/``p_dm``."""
    if classes is None:
        return {
            "p_positive": probability(check, data, "p_imnm", where),
            "p_negative": probability(check, data, "p_dm", where),
        }
    spec = check.get(data, "p", where, dict)
    unknown = sorted(set(spec) - set(classes))
    if unknown:
        raise check.fail(
            f"{where}.p", f"names {unknown}, not a class of the template ({', '.join(classes)})"
        )
    return {
        "p_positive": probability(check, spec, classes[0], f"{where}.p"),
        "p_negative": probability(check, spec, classes[1], f"{where}.p"),
    }


def strengths(
    check: Checker, data: dict, where: str, default: float, classes: tuple[str, str] | None = None
) -> dict[str, float]:
    """``strength``: Beta pseudo-counts of the two probabilities, one number or one per class.

    Per class: ``{imnm: n, dm: n}`` in the first schema, ``{<class>: n, <class>: n}`` with
    named classes.
    """
    value = data.get("strength", default)
    if isinstance(value, dict):
        keys = ("imnm", "dm") if classes is None else classes
        return {
            "strength_positive": check.number(
                value, keys[0], f"{where}.strength", 0.0, 1e7, open_low=True
            ),
            "strength_negative": check.number(
                value, keys[1], f"{where}.strength", 0.0, 1e7, open_low=True
            ),
        }
    n = check.number(data, "strength", where, 0.0, 1e7, default=default, open_low=True)
    return {"strength_positive": n, "strength_negative": n}


def classes_field(check: Checker, data: dict) -> tuple[bool, str, str]:
    """(named, positive, negative) from ``classes``.

    ``classes: [IMNM, dystrophy]`` names the two classes, the first positive (probabilities
    ``p: {<class>: ...}``, ``prior`` = p(first class), ``call_bounds: {<class>: p at least}``);
    the first schema, ``classes: {positive: IMNM, negative: DM}``, keeps its keys (``p_imnm``,
    ``p_dm``, ``prior_imnm``, ``call_bounds: {imnm_at_least, dm_at_most}``).
    """
    classes = check.get(data, "classes", "top level", (dict, list))
    if isinstance(classes, dict):
        return (
            False,
            check.get(classes, "positive", "classes", str),
            check.get(classes, "negative", "classes", str),
        )
    if (
        len(classes) != 2
        or not all(isinstance(c, str) and c.strip() for c in classes)
        or classes[0] == classes[1]
        or "indeterminate" in classes
    ):
        raise check.fail(
            "classes",
            "must name two different classes (text, not "
            f"'indeterminate'), the positive first; got {classes!r}",
        )
    return True, classes[0], classes[1]
