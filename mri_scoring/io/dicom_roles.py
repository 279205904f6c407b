"""Which DICOM series is which image role: header facts in, a role or a reason out.

The rules live in ``configs/dicom_roles.yaml`` (with their sources); this module only applies
them. A series is never guessed: no matching rule, or two roles equally clear, leaves it
unassigned with the reason, and conversion.tsv lists it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import load_config_file, load_yaml
from ..errors import ConfigError

__all__ = [
    "ROLES",
    "SKIP",
    "Assignment",
    "Classification",
    "RoleRules",
    "SeriesInfo",
    "assign_roles",
    "classify",
    "load_rules",
    "read_role_map",
]

ROLES = ("water", "fat", "ff", "inphase", "opphase", "stir", "t1w", "mese", "t2map")
SKIP = "skip"


@dataclass(kw_only=True)
class SeriesInfo:
    """Header facts of one DICOM series (one SeriesInstanceUID).

    Attributes
    ----------
    uid : str
        SeriesInstanceUID.
    number : int or None
        SeriesNumber.
    description, protocol : str
        SeriesDescription and ProtocolName.
    image_type : tuple of str
        Upper-case tokens of ImageType, the first frame's FrameType and the Philips private
        image type.
    scanning_sequence : tuple of str
        ScanningSequence tokens; for enhanced files made from EchoPulseSequence (``SPIN`` ->
        ``SE``, ``GRADIENT`` -> ``GR``) and the MR modifier group's InversionRecovery (``IR``).
    sequence_name : str
        PulseSequenceName (enhanced) or SequenceName (classic), e.g. Siemens ``*se2d17``.
    echo_times_ms : tuple of float
        Distinct echo times, ascending.
    inversion_time_ms : float or None
    repetition_time_ms : float or None
    manufacturer, patient_id : str
    files : list of Path
        Files of the series.
    multiframe : bool
        The files are enhanced multi-frame files (each one holds many frames).
    problems : list of str
        Why the series cannot be converted as it is (broken file, missing slices); empty if fine.
    """

    uid: str
    number: int | None = None
    description: str = ""
    protocol: str = ""
    image_type: tuple[str, ...] = ()
    scanning_sequence: tuple[str, ...] = ()
    sequence_name: str = ""
    echo_times_ms: tuple[float, ...] = ()
    inversion_time_ms: float | None = None
    repetition_time_ms: float | None = None
    manufacturer: str = ""
    patient_id: str = ""
    files: list[Path] = field(default_factory=list)
    multiframe: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """How messages name the series: ``series 7 (t2_tirm_tra)``."""
        number = self.number if self.number is not None else "?"
        name = self.description or self.protocol or self.uid
        return f"series {number} ({name})"


@dataclass(frozen=True)
class Classification:
    """The role of one series, or why it has none."""

    role: str | None
    clarity: int
    reason: str


@dataclass(kw_only=True, frozen=True)
class _Rule:
    role: str
    clarity: int
    source: str
    conditions: dict[str, Any]
    pattern: re.Pattern | None
    sequence_pattern: re.Pattern | None = None


_CONDITIONS = {
    "image_type_all",
    "image_type_any",
    "not_image_type_any",
    "description",
    "scanning_sequence_any",
    "not_scanning_sequence_any",
    "min_echoes",
    "max_echoes",
    "inversion_time_ms",
    "sequence_name",
    "reason",
    "clarity",
    "source",
}


def _compile(entry: dict, role: str, where: str) -> _Rule:
    unknown = set(entry) - _CONDITIONS
    if unknown:
        raise ConfigError(f"{where}: unknown rule keys {sorted(unknown)} in role '{role}'")
    patterns: dict[str, re.Pattern | None] = {}
    for key in ("description", "sequence_name"):
        patterns[key] = None
        if key in entry:
            try:
                patterns[key] = re.compile(entry[key], re.IGNORECASE)
            except re.error as exc:
                raise ConfigError(f"{where}: role '{role}': bad {key} pattern: {exc}") from None
    return _Rule(
        role=role,
        clarity=int(entry.get("clarity", 1)),
        source=str(entry.get("source", "")),
        conditions=entry,
        pattern=patterns["description"],
        sequence_pattern=patterns["sequence_name"],
    )


@dataclass(frozen=True)
class RoleRules:
    """Compiled rules of ``configs/dicom_roles.yaml``."""

    exclude: tuple[_Rule, ...]
    roles: tuple[_Rule, ...]
    outputs: dict[str, str]


def load_rules(path: str | Path | None = None) -> RoleRules:
    """Load and compile the role rules (default: the shipped ``configs/dicom_roles.yaml``).

    Parameters
    ----------
    path : path, optional
        Another rules file with the same structure.

    Returns
    -------
    RoleRules
    """
    data = load_yaml(path) if path else load_config_file("dicom_roles.yaml")
    where = str(path or "configs/dicom_roles.yaml")
    if not isinstance(data, dict) or "roles" not in data:
        raise ConfigError(f"{where}: expected a mapping with 'exclude', 'roles' and 'outputs'")
    exclude = tuple(_compile(e, "exclude", where) for e in data.get("exclude") or [])
    rules = []
    for role, entries in data["roles"].items():
        if role not in ROLES:
            raise ConfigError(f"{where}: unknown role '{role}' (known: {', '.join(ROLES)})")
        rules.extend(_compile(e, role, where) for e in entries)
    return RoleRules(exclude, tuple(rules), dict(data.get("outputs") or {}))


def _matches(rule: _Rule, series: SeriesInfo) -> bool:
    c = rule.conditions
    tokens = set(series.image_type)
    sequence = set(series.scanning_sequence)
    n_echoes = len(series.echo_times_ms)
    checks = [
        all(t.upper() in tokens for t in c.get("image_type_all", [])),
        not c.get("image_type_any") or any(t.upper() in tokens for t in c["image_type_any"]),
        not any(t.upper() in tokens for t in c.get("not_image_type_any", [])),
        not c.get("scanning_sequence_any")
        or any(t.upper() in sequence for t in c["scanning_sequence_any"]),
        not any(t.upper() in sequence for t in c.get("not_scanning_sequence_any", [])),
        n_echoes >= c.get("min_echoes", 0),
        n_echoes <= c.get("max_echoes", 10**6),
    ]
    if "inversion_time_ms" in c:
        low, high = c["inversion_time_ms"]
        ti = series.inversion_time_ms
        checks.append(ti is not None and low <= ti <= high)
    if rule.pattern is not None:
        names = (series.description, series.protocol)
        checks.append(any(rule.pattern.search(name or "") for name in names))
    if rule.sequence_pattern is not None:
        checks.append(bool(rule.sequence_pattern.search(series.sequence_name)))
    return all(checks)


def classify(series: SeriesInfo, rules: RoleRules) -> Classification:
    """The role of one series by its clearest matching rule.

    Parameters
    ----------
    series : SeriesInfo
        Header facts.
    rules : RoleRules
        From :func:`load_rules`.

    Returns
    -------
    Classification
        ``role`` None with the reason when excluded, unrecognised or ambiguous.

    Examples
    --------
    >>> s = SeriesInfo(uid="1.2", number=3, description="t2_tirm_tra",
    ...                image_type=("ORIGINAL", "PRIMARY", "M"), scanning_sequence=("SE", "IR"),
    ...                echo_times_ms=(40.0,), inversion_time_ms=220.0)
    >>> classify(s, load_rules()).role
    'stir'
    """
    for rule in rules.exclude:
        if _matches(rule, series):
            return Classification(None, 0, str(rule.conditions.get("reason", "excluded")))
    best: dict[str, _Rule] = {}
    for rule in rules.roles:
        if _matches(rule, series) and rule.clarity > getattr(best.get(rule.role), "clarity", 0):
            best[rule.role] = rule
    if not best:
        return Classification(None, 0, "unrecognised: no role rule matched its header")
    top = max(rule.clarity for rule in best.values())
    leaders = sorted(role for role, rule in best.items() if rule.clarity == top)
    if len(leaders) > 1:
        return Classification(
            None, top, f"ambiguous: matches {' and '.join(leaders)} equally; assign it with --map"
        )
    rule = best[leaders[0]]
    evidence = (
        "image type"
        if "image_type_all" in rule.conditions or ("image_type_any" in rule.conditions)
        else "name"
        if rule.pattern is not None or rule.sequence_pattern is not None
        else "acquisition"
    )
    return Classification(rule.role, top, f"{evidence} rule ({rule.source or 'rules file'})")


def read_role_map(path: str | Path) -> dict[int, str]:
    """Read a ``--map`` file: YAML mapping series number -> role (or ``skip``).

    Parameters
    ----------
    path : path
        For example ``{7: stir, 12: water, 13: skip}``.

    Returns
    -------
    dict of int -> str
    """
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of series number to role, e.g. '7: stir'")
    mapping: dict[int, str] = {}
    for key, role in data.items():
        try:
            number = int(key)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: '{key}' is not a series number") from None
        if role not in (*ROLES, SKIP):
            known = ", ".join((*ROLES, SKIP))
            raise ConfigError(f"{path}: series {number}: unknown role {role!r} (known: {known})")
        mapping[number] = str(role)
    return mapping


@dataclass
class Assignment:
    """The outcome for one series: its role (``status`` = role) or ``skipped: <why>``."""

    series: SeriesInfo
    role: str | None
    status: str
    clarity: int = 0


def assign_roles(
    series: list[SeriesInfo], rules: RoleRules, role_map: dict[int, str] | None = None
) -> list[Assignment]:
    """Give each series a role; one series per role, the clearest (then the latest) wins.

    Parameters
    ----------
    series : list of SeriesInfo
        Every series found.
    rules : RoleRules
        From :func:`load_rules`.
    role_map : dict, optional
        Series number -> role or ``skip``, from ``--map``: overrides the rules (clarity 9).

    Returns
    -------
    list of Assignment
        In the order of ``series``.
    """
    role_map = role_map or {}
    out: list[Assignment] = []
    for s in series:
        if s.problems:
            out.append(Assignment(s, None, "skipped: " + "; ".join(s.problems)))
            continue
        if s.number in role_map:
            role = role_map[s.number]
            if role == SKIP:
                out.append(Assignment(s, None, "skipped: by --map"))
            else:
                out.append(Assignment(s, role, role, 9))
            continue
        c = classify(s, rules)
        if c.role is None:
            out.append(Assignment(s, None, f"skipped: {c.reason}"))
        else:
            out.append(Assignment(s, c.role, c.role, c.clarity))
    by_role: dict[str, list[Assignment]] = {}
    for a in out:
        if a.role:
            by_role.setdefault(a.role, []).append(a)
    for role, group in by_role.items():
        if len(group) < 2:
            continue
        group.sort(key=lambda a: (a.clarity, a.series.number or 0), reverse=True)
        winner = group[0]
        for loser in group[1:]:
            why = "clearer" if loser.clarity < winner.clarity else "later"
            loser.status = f"skipped: second {role} series; {winner.series.label} chosen ({why})"
            loser.role = None
    return out
