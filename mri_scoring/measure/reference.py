"""Is the normal-muscle STIR reference normal? Checks that survive diffuse edema.

STIR edema is read against the study's own normal muscle. When most muscle is edematous, the
muscles' own signal peaks at the edematous level, and a reference taken from that peak reads
every muscle as normal: a silent 0. Three independent things expose or repair this:

* **a darker cluster.** Edema only brightens. A substantial share of non-fatty muscle that is
  clearly darker than the apparent normal level (by the ratio that makes a voxel edema-like) is
  the real normal muscle: the reference is moved down to it (:func:`anchored_normal_level`).
* **tissues edema cannot reach.** Suppressed fat (femoral marrow, subcutaneous fat) on the same
  STIR. The normal-muscle level relative to it is a property of the protocol; when a prior range
  is configured, a reference outside it is not trusted (:func:`judge_reference`).
* **a water-T2 map.** The water T2 of the voxels the STIR reference calls normal must be normal;
  otherwise the T2 map's absolute thresholds are used instead.

Every function here is pure (arrays and numbers in, numbers out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "FROM_T2MAP",
    "ONE_SD_TAIL",
    "REANCHORED",
    "TRUSTED",
    "UNTRUSTED",
    "UNVERIFIED",
    "NormalLevel",
    "ReferenceRule",
    "ReferenceVerdict",
    "anchored_normal_level",
    "half_sample_mode",
    "judge_reference",
    "normal_mode_and_sigma",
]

TRUSTED, REANCHORED, UNVERIFIED, UNTRUSTED, FROM_T2MAP = (
    "trusted",
    "reanchored",
    "unverified",
    "untrusted",
    "from_t2map",
)
"""Verdicts on a STIR normal-muscle reference (``EdemaReference.details['verdict']``)."""


def half_sample_mode(values: np.ndarray) -> float:
    """Half-sample mode (Bickel & Fruehwirth 2006): repeatedly keep the densest half.

    Parameters
    ----------
    values : ndarray
        1-D sample.

    Returns
    -------
    float
        The mode estimate.

    Examples
    --------
    >>> half_sample_mode(np.array([1.0, 2.0, 2.0, 2.0, 5.0, 9.0]))
    2.0
    """
    x = np.sort(values)
    while x.size > 3:
        half = (x.size + 1) // 2
        widths = x[half - 1 :] - x[: x.size - half + 1]
        start = int(np.argmin(widths))
        x = x[start : start + half]
    return float(x.mean())


ONE_SD_TAIL = 0.3173
"""Share of a Gaussian's half below its mode that lies more than one SD below it (2 x 0.1587)."""


@dataclass(kw_only=True, frozen=True)
class ReferenceRule:
    """How the normal-muscle STIR level is read (from ``settings.yaml`` ``edema``).

    Attributes
    ----------
    min_ratio : float
        Edema-like voxels are at least this ratio above normal (``stir_min_ratio``).
    z_threshold : float
        Edema-like voxels are also above ``mode + z_threshold * sigma`` (``stir_z_threshold``).
    darker_share : float
        Share of the voxels a darker cluster must hold to be taken as the normal muscle
        (``stir_darker_cluster_share``; infinite: never move).
    min_voxels : int
        ... and at least this many voxels (``reference_min_voxels``).
    max_moves : int
        At most this many moves down to a darker cluster (``reference_max_moves``).
    mode_quantile : float
        The mode is looked for below this quantile of the values (``reference_mode_quantile``).
    """

    min_ratio: float
    z_threshold: float
    darker_share: float
    min_voxels: int = 50
    max_moves: int = 3
    mode_quantile: float = 0.6

    @classmethod
    def from_settings(cls, edema: dict[str, Any], darker_share: float) -> ReferenceRule:
        """The rule from the ``edema`` settings section, with the darker-cluster share given."""
        return cls(
            min_ratio=float(edema["stir_min_ratio"]),
            z_threshold=float(edema["stir_z_threshold"]),
            darker_share=float(darker_share),
            min_voxels=int(edema["reference_min_voxels"]),
            max_moves=int(edema["reference_max_moves"]),
            mode_quantile=float(edema["reference_mode_quantile"]),
        )

    def edema_threshold(self, mode: float, sigma: float) -> float:
        """The level above which a voxel is edema-like, for a normal level and its spread.

        Examples
        --------
        >>> rule = ReferenceRule(min_ratio=1.2, z_threshold=3.0, darker_share=0.05)
        >>> rule.edema_threshold(1.0, 0.1)
        1.3
        """
        return max(mode + self.z_threshold * sigma, mode * self.min_ratio)


def normal_mode_and_sigma(
    values: np.ndarray, mode_quantile: float = 0.6, sample: int = 200_000
) -> tuple[float, float]:
    """Mode of normal tissue and its spread from the dark side of the distribution.

    Edema only brightens, so the part of the distribution below the normal peak is normal tissue
    and noise. The mode is the half-sample mode of the values below the ``mode_quantile``
    quantile; sigma is read where the cumulative count reaches :data:`ONE_SD_TAIL` of the mass
    below the mode (one SD for a Gaussian), which edema cannot reach.

    Parameters
    ----------
    values : ndarray
        Bias-corrected STIR of assessable muscle voxels (linear units).
    mode_quantile : float
        Quantile below which the mode is looked for (``reference_mode_quantile``).
    sample : int
        At most about this many values are looked at (strided).

    Returns
    -------
    mode, sigma : float
        In the units of ``values``.
    """
    step = max(values.size // sample, 1)
    subset = np.sort(values[::step])
    low = subset[: max(int(mode_quantile * subset.size), 4)]
    mode = half_sample_mode(low)
    below = subset[subset <= mode]
    if below.size < 10:
        return mode, float(np.std(subset))
    one_sd = float(below[int(ONE_SD_TAIL * below.size)])
    return mode, max(mode - one_sd, 1e-6)


@dataclass(kw_only=True, frozen=True)
class NormalLevel:
    """The normal-muscle level chosen from the muscles' own STIR distribution.

    Attributes
    ----------
    mode, sigma : float
        Normal level and its spread (units of the values).
    steps : int
        How many times the level was moved down to a darker cluster (0: the main peak).
    apparent_mode : float
        The main peak before any move.
    darker_share : float
        Share of the values below ``mode / min_ratio`` at the end (what is still darker than the
        chosen level).
    reference_share : float
        Share of the values at or below the chosen level's edema threshold.
    """

    mode: float
    sigma: float
    steps: int
    apparent_mode: float
    darker_share: float
    reference_share: float


def anchored_normal_level(values: np.ndarray, rule: ReferenceRule) -> NormalLevel:
    """Normal-muscle level that moves down to a darker cluster when one exists.

    The main peak of the distribution is the normal level only if nothing substantial lies
    clearly below it. Voxels darker than ``mode / rule.min_ratio`` are as far below the peak as
    an edema-like voxel must be above it; when they are at least ``rule.darker_share`` of the
    muscle (and ``rule.min_voxels``), the peak is edematous muscle and their own mode is the
    normal level (repeated up to ``rule.max_moves`` times).

    Parameters
    ----------
    values : ndarray
        Bias-corrected STIR of assessable (non-fatty, core) muscle voxels, linear units.
    rule : ReferenceRule
        Ratios, shares and counts that decide (from the settings).

    Returns
    -------
    NormalLevel

    Examples
    --------
    Four fifths of the muscle at 1.9x the normal level, one fifth normal:

    >>> rng = np.random.default_rng(0)
    >>> v = np.concatenate([rng.normal(1.0, 0.03, 2000), rng.normal(1.9, 0.05, 8000)])
    >>> rule = ReferenceRule(min_ratio=1.2, z_threshold=3.0, darker_share=0.05)
    >>> level = anchored_normal_level(v, rule)
    >>> round(level.mode, 1), level.steps
    (1.0, 1)
    """
    mode, sigma = normal_mode_and_sigma(values, rule.mode_quantile)
    apparent, steps = mode, 0
    floor = max(rule.darker_share * values.size, rule.min_voxels)
    for _ in range(rule.max_moves):
        darker = values[values < mode / rule.min_ratio]
        if darker.size < floor:
            break
        mode, sigma = normal_mode_and_sigma(darker, rule.mode_quantile)
        steps += 1
    threshold = rule.edema_threshold(mode, sigma)
    return NormalLevel(
        mode=mode,
        sigma=sigma,
        steps=steps,
        apparent_mode=apparent,
        darker_share=float(np.mean(values < mode / rule.min_ratio)),
        reference_share=float(np.mean(values <= threshold)),
    )


@dataclass
class ReferenceVerdict:
    """Whether a STIR normal-muscle reference can be trusted, and why.

    Attributes
    ----------
    verdict : str
        One of :data:`TRUSTED`, :data:`REANCHORED`, :data:`UNVERIFIED`, :data:`UNTRUSTED`,
        :data:`FROM_T2MAP`.
    reason : str
        One sentence for the QC finding (empty when trusted).
    checks : dict
        What was compared (for ``score.json``).
    """

    verdict: str
    reason: str = ""
    checks: dict[str, Any] = field(default_factory=dict)


def judge_reference(
    level: NormalLevel,
    fat_levels: dict[str, float],
    fat_ratio_range: tuple[float, float] | None,
    reference_t2_ms: float | None,
    t2_edema_ms: float,
) -> ReferenceVerdict:
    """Check a STIR normal-muscle level against tissues edema cannot reach and a T2 map.

    Parameters
    ----------
    level : NormalLevel
        From :func:`anchored_normal_level`.
    fat_levels : dict of str to float
        Median bias-corrected STIR of suppressed-fat tissues (e.g. ``"marrow"``,
        ``"subcutaneous_fat"``), same units as ``level.mode``; NaN or missing when not measured.
    fat_ratio_range : (float, float) or None
        Prior range of normal muscle / suppressed fat on this protocol's STIR (None: no prior).
    reference_t2_ms : float or None
        Median water T2 (ms) of the voxels the STIR reference calls normal (None: no T2 map).
    t2_edema_ms : float
        Water T2 above which muscle is edema-like (ms, for the study's field strength).

    Returns
    -------
    ReferenceVerdict
        The T2 map decides first (absolute scale), then the fat prior; without either the
        reference is ``unverified`` (or ``reanchored`` when it moved to a darker cluster).

    Examples
    --------
    >>> level = NormalLevel(mode=1.9, sigma=0.05, steps=0, apparent_mode=1.9, darker_share=0.0,
    ...                     reference_share=0.95)
    >>> judge_reference(level, {"marrow": 0.139}, (4.0, 11.0), None, 40.0).verdict
    'untrusted'
    >>> judge_reference(level, {}, None, 47.0, 40.0).verdict
    'from_t2map'
    """
    ratios = {
        tissue: level.mode / value
        for tissue, value in fat_levels.items()
        if value is not None and np.isfinite(value) and value > 0
    }
    checks: dict[str, Any] = {
        "reanchor_steps": level.steps,
        "apparent_mode": level.apparent_mode,
        "reference_share": level.reference_share,
        "normal_to_fat_ratio": ratios,
        "normal_to_fat_prior": list(fat_ratio_range) if fat_ratio_range else None,
        "reference_t2_ms": reference_t2_ms,
    }
    if reference_t2_ms is not None and np.isfinite(reference_t2_ms):
        if reference_t2_ms > t2_edema_ms:
            return ReferenceVerdict(
                FROM_T2MAP,
                f"the muscle the STIR reference calls normal has water T2 {reference_t2_ms:.1f} ms "
                f"(edema-like above {t2_edema_ms:g} ms): the STIR reference is edematous; edema "
                "is measured on the T2 map instead",
                checks,
            )
        return ReferenceVerdict(REANCHORED if level.steps else TRUSTED, "", checks)
    if fat_ratio_range and ratios:
        low, high = fat_ratio_range
        ratio = float(np.median(list(ratios.values())))
        if not low <= ratio <= high:
            return ReferenceVerdict(
                UNTRUSTED,
                f"the normal-muscle STIR reference is {ratio:.1f}x suppressed fat "
                f"({', '.join(ratios)}), outside the prior range {low:g}-{high:g}x for normal "
                "muscle: the muscles may be diffusely edematous (or the fat poorly suppressed)",
                checks,
            )
        return ReferenceVerdict(REANCHORED if level.steps else TRUSTED, "", checks)
    if level.steps:
        return ReferenceVerdict(REANCHORED, "", checks)
    why = "no T2 map" + ("" if ratios else ", no suppressed-fat reference tissue found")
    if ratios and not fat_ratio_range:
        why += ", no prior range configured for normal muscle / suppressed fat"
    return ReferenceVerdict(
        UNVERIFIED,
        f"the normal-muscle STIR reference comes from the muscles themselves ({why}): muscle "
        "that is edematous throughout, with no normal muscle left, would read as normal",
        checks,
    )
