"""The muscle vocabulary: canonical names, groups, sides and label-name matching.

Everything anatomical is read from ``configs/anatomy.yaml``; the published label schemes of other
segmentation tools are in ``configs/label_schemes/``.

Examples
--------
>>> match_label_name("Adductor Brevis (L)").muscle
'adductor_brevis'
>>> match_label_name("RST").side
'right'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from .config import config_dir, load_config_file

__all__ = [
    "GROUP",
    "MUSCLE",
    "OTHER_MUSCLE",
    "REFERENCE",
    "SCHEME_FILES",
    "SIDES",
    "UNKNOWN",
    "LabelInfo",
    "LabelScheme",
    "SchemeMatch",
    "group_of",
    "groups",
    "identify_scheme",
    "label_scheme",
    "match_label_name",
    "normalise",
    "side_tokens",
    "unions",
    "vocabulary",
]

SIDES = ("left", "right")
# Kinds of label. OTHER_MUSCLE: a known muscle outside the thigh vocabulary (calf, trunk,
# shoulder): measured and listed, never in a template, group or atrophy share.
MUSCLE, GROUP, REFERENCE, OTHER_MUSCLE, UNKNOWN = (
    "muscle",
    "group",
    "reference",
    "other_muscle",
    "unknown",
)


@dataclass(kw_only=True, frozen=True)
class LabelInfo:
    """What one label value means.

    Attributes
    ----------
    value : int
        The integer in the label map.
    name : str
        The name as given in the label table (or the scheme).
    kind : str
        ``"muscle"``, ``"group"`` (a compartment label such as TotalSegmentator's),
        ``"reference"`` (bone, marrow, fat), ``"other_muscle"`` (a known muscle outside the
        thigh vocabulary, e.g. calf or trunk) or ``"unknown"``.
    muscle : str
        Canonical name: a vocabulary muscle, a group name for compartments, a reference tissue
        name, or the normalised unknown name.
    side : str
        ``"left"``, ``"right"`` or ``""`` when the name carries no side.
    group : str
        The muscle's group (``""`` when none).
    """

    value: int
    name: str
    kind: str
    muscle: str
    side: str
    group: str


def normalise(name: str) -> str:
    """Lower case, with every run of non-alphanumeric characters turned into one ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


@cache
def _anatomy() -> dict:
    return load_config_file("anatomy.yaml")


@cache
def vocabulary() -> frozenset[str]:
    """Canonical muscle names."""
    return frozenset(_anatomy()["muscles"])


@cache
def groups() -> dict[str, tuple[str, ...]]:
    """Group name -> member muscles (gracilis in adductors per ``gracilis_in_adductors``)."""
    config = _anatomy()
    out = {}
    for group, members in config["groups"].items():
        if group == "adductors" and not config.get("gracilis_in_adductors", True):
            members = [m for m in members if m != "gracilis"]
        out[group] = tuple(members)
    return out


@cache
def unions() -> dict[str, tuple[str, ...]]:
    """Muscles that are the union of other vocabulary muscles (``unions`` of anatomy.yaml).

    Returns
    -------
    dict of str to tuple of str
        E.g. ``biceps_femoris`` -> its long and short heads: a map labels one or the other, so a
        group's volume never adds the union to its parts.
    """
    return {name: tuple(parts) for name, parts in (_anatomy().get("unions") or {}).items()}


@cache
def norm_within() -> dict[str, str]:
    """Muscles whose volume norm is counted within another's (``norm_within`` of anatomy.yaml).

    Returns
    -------
    dict of str to str
        E.g. ``adductor_minimus`` -> ``adductor_magnus``.
    """
    return dict(_anatomy().get("norm_within") or {})


def reference_tissue(name: str) -> str:
    """The tissue (``bone``, ``marrow``, ``subcutaneous_fat``) of a reference name, or ``""``.

    Examples
    --------
    >>> reference_tissue("femur_marrow"), reference_tissue("vastus_lateralis")
    ('marrow', '')
    """
    return str(_anatomy()["reference_tissues"].get(name, ""))


@cache
def not_tissues() -> frozenset[str]:
    """Normalised table names that are no tissue (``Clear Label``, ``background``).

    Examples
    --------
    >>> "clear_label" in not_tissues()
    True
    """
    return frozenset(_anatomy().get("not_tissues") or ())


@cache
def group_of(muscle: str) -> str:
    """The group a canonical muscle belongs to, or ``""``."""
    for group, members in groups().items():
        if muscle in members:
            return group
    return ""


@cache
def side_tokens() -> dict[str, str]:
    """Normalised side token -> ``"left"`` or ``"right"`` (``configs/anatomy.yaml``)."""
    tokens = _anatomy()["side_tokens"]
    return {str(token): side for side in SIDES for token in tokens[side]}


def _split_side(tokens: list[str]) -> tuple[list[str], str]:
    known = side_tokens()
    if len(tokens) > 1 and tokens[0] in known:
        return tokens[1:], known[tokens[0]]
    if len(tokens) > 1 and tokens[-1] in known:
        return tokens[:-1], known[tokens[-1]]
    return tokens, ""


def _resolve(stem: str) -> tuple[str, str] | None:
    """Map a side-less normalised name to (kind, canonical) or None."""
    config = _anatomy()
    stem = config["aliases"].get(stem, stem)
    if stem in vocabulary():
        return MUSCLE, stem
    if stem in config["compartments"]:
        return GROUP, config["compartments"][stem]
    if stem in config["reference_tissues"]:
        return REFERENCE, stem
    if stem in config["other_muscles"]:
        return OTHER_MUSCLE, stem
    return None


def match_label_name(name: str, value: int = 0) -> LabelInfo:
    """Resolve a label-table name to a canonical muscle, side and group.

    Parameters
    ----------
    name : str
        Any of the naming styles users write: ``adductor_brevis_left``, ``Adductor Brevis (L)``,
        ``L adductor brevis``, abbreviations such as ``LAB`` or ``AB_L``.
    value : int
        The label value, carried into the result.

    Returns
    -------
    LabelInfo
        ``kind == "unknown"`` when the vocabulary does not know the name.
    """
    tokens = normalise(name).split("_") if normalise(name) else []
    if len(tokens) > 1 and tokens[0].isdigit() and not tokens[1].isdigit():
        tokens = tokens[1:]  # a numbering ("31 Biceps femoris long Left"), not the name
    stem_tokens, side = _split_side(tokens)
    resolved = _resolve("_".join(stem_tokens))
    if resolved is None and not side and len(tokens) == 1 and len(tokens[0]) in (2, 3, 4):
        # Glued side + abbreviation, e.g. Musclesense's "RST", "LAM", "LBF".
        token = tokens[0]
        if token[0] in ("l", "r") and _resolve(token[1:]) is not None:
            resolved, side = _resolve(token[1:]), side_tokens()[token[0]]
    if resolved is None:
        return LabelInfo(
            value=value,
            name=name,
            kind=UNKNOWN,
            muscle="_".join(stem_tokens) or normalise(name),
            side=side,
            group="",
        )
    kind, canonical = resolved
    group = group_of(canonical) if kind == MUSCLE else (canonical if kind == GROUP else "")
    return LabelInfo(value=value, name=name, kind=kind, muscle=canonical, side=side, group=group)


@dataclass(frozen=True)
class LabelScheme:
    """A published label scheme: name and its value -> name table."""

    name: str
    names: dict[int, str]


SCHEME_FILES = {
    "musclemap": "musclemap_wholebody.tsv",
    "musclesense": "musclesense_thigh.tsv",
    "totalsegmentator": "totalsegmentator_thigh_shoulder_muscles_mr.tsv",
}


@cache
def label_scheme(name: str) -> LabelScheme:
    """Load one of the published schemes of ``configs/label_schemes/`` by its short name."""
    path = config_dir() / "label_schemes" / SCHEME_FILES[name]
    names: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            index, label_name = line.split("\t")[:2]
            names[int(index)] = label_name
    return LabelScheme(name, names)


@dataclass(frozen=True)
class SchemeMatch:
    """A published scheme identified from the values of a label map without a table.

    Attributes
    ----------
    scheme : LabelScheme
        The scheme that holds the most of the map's values.
    unmatched : tuple of int
        Values present in the map but not in the scheme (kept as unknown labels, warned).
    coverage : float
        Share of the map's non-zero values that the scheme holds (0-1).
    """

    scheme: LabelScheme
    unmatched: tuple[int, ...]
    coverage: float

    @property
    def name(self) -> str:
        """The scheme's short name (``musclemap``, ``musclesense``, ``totalsegmentator``)."""
        return self.scheme.name

    @property
    def small_integer(self) -> bool:
        """True for schemes whose codes are small integers that other tools use too.

        Musclesense (1-31) and TotalSegmentator (1-18) share values with each other and with
        unsided maps (e.g. an 11-label model numbering its muscles 1-11 in both thighs): such a
        match is only a guess until the geometry agrees. MuscleMap's four-digit codes are not.
        """
        return max(self.scheme.names) < 1000


def identify_scheme(values: set[int], min_coverage: float = 1.0) -> SchemeMatch | None:
    """Pick the published scheme that holds (nearly) all label ``values`` (0 excluded).

    Parameters
    ----------
    values : set of int
        Label values present in the map.
    min_coverage : float
        Least share of ``values`` the scheme must hold (``load.scheme_min_coverage`` in the
        settings); values outside it are reported, not dropped.

    Returns
    -------
    SchemeMatch or None
        None when no scheme holds enough of the values.

    Notes
    -----
    The scheme holding the most values wins. MuscleMap's four-digit codes are unambiguous.
    Musclesense (1-11, 21-31) and TotalSegmentator (1-18) overlap on 1-11: values above 18 mean
    Musclesense; values 12-18 mean TotalSegmentator; otherwise a set of 1-8 only is
    TotalSegmentator's thigh compartments and anything reaching 9-11 is Musclesense. A
    small-integer match is still to be confirmed by the label geometry (see
    ``mri_scoring.io.label_geometry``).

    Examples
    --------
    >>> identify_scheme({7221, 7222, 6211}).name
    'musclemap'
    >>> identify_scheme({1, 2, 3, 4, 5, 6, 7, 8}).name
    'totalsegmentator'
    >>> match = identify_scheme({7221, 7222, 6211, 9999}, min_coverage=0.7)
    >>> match.name, match.unmatched
    ('musclemap', (9999,))
    """
    values = {v for v in values if v != 0}
    if not values:
        return None
    held = {n: values & set(label_scheme(n).names) for n in SCHEME_FILES}
    best = max(len(h) for h in held.values())
    if best == 0 or best / len(values) < min_coverage:
        return None
    candidates = [n for n, h in held.items() if len(h) == best]
    if len(candidates) == 1:
        name = candidates[0]
    elif max(values) <= 8 and "totalsegmentator" in candidates:
        name = "totalsegmentator"
    else:
        name = "musclesense" if "musclesense" in candidates else candidates[0]
    unmatched = tuple(sorted(values - held[name]))
    return SchemeMatch(label_scheme(name), unmatched, best / len(values))
