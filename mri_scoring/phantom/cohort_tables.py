"""Phantom cohorts: measured tables of two classes with known Bayes-optimal odds.

The classes are IMNM and DM by default; ``classes=("IMNM", "dystrophy")`` draws IMNM against
muscular dystrophy and ``("IMNM", "ASS")`` against antisynthetase syndrome from the same
generator (each finding's ``p_<class>`` in the config; a finding without a probability for one
of the two classes takes no part).

The generator (``configs/phantom_cohort.yaml``) is independent of the pattern template: it
draws *findings* per region (fat, edema, fascial edema, atrophy, subcutaneous edema, adductor
sparing, symmetry) whose presence moves with a latent severity shared by the whole study and a
latent per finding group (within-group correlation), then renders each finding into per-muscle
measured values (and a ``compartments.tsv`` table). Because the rendering noise does not depend
on the class, the *observed* findings (:func:`observed`: symmetry needs some involvement,
sparing needs edema elsewhere and hides the adductors' own edema) carry every bit of class
information the tables do, so :func:`bayes_log10_lr` gives the best ranking any method on the
tables can reach (the Bayes-optimal AUC). Imports no measurement or pattern code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from ..anatomy import group_of
from ..config import config_dir, load_yaml
from ..files import atomic_write

__all__ = [
    "CLASSES",
    "KNOWN_CLASSES",
    "PhantomCohort",
    "bayes_log10_lr",
    "draw_findings",
    "make_cohort",
    "observed",
    "render_compartments",
    "render_tables",
    "write_cohort",
]

CLASSES = ("IMNM", "DM")
KNOWN_CLASSES = ("IMNM", "DM", "dystrophy", "ASS")
"""Classes the generator has frequencies for (``p_<lower-case class>`` of each finding)."""
_QUADRATURE_NODES = 24
_SIDE_SEED = 104729  # one-sided findings draw their side from their own stream


def _key(name: str) -> str:
    if name not in KNOWN_CLASSES:
        raise ValueError(f"phantom cohort class {name!r}: expected one of {KNOWN_CLASSES}")
    return f"p_{name.lower()}"


def _config() -> dict:
    return load_yaml(config_dir() / "phantom_cohort.yaml")


@dataclass(kw_only=True)
class PhantomCohort:
    """A generated cohort.

    Attributes
    ----------
    study_ids : list of str
    diagnosis : numpy.ndarray of str
        One of the cohort's two classes per study (``IMNM`` or ``DM`` by default).
    findings : numpy.ndarray of bool, shape (n_studies, n_findings)
    finding_names : list of str
    tables : list of pandas.DataFrame
        Measured (ungraded) muscle tables, one row per muscle and side.
    bayes_log10_lr : numpy.ndarray
        log10 P(observed findings | first class) / P(... | second class) under the generator.
    compartments : list of pandas.DataFrame
        ``compartments.tsv`` tables (subcutaneous edema per side), one per study.
    classes : tuple of str
        The two classes, the first one the positive.
    """

    study_ids: list[str]
    diagnosis: np.ndarray
    findings: np.ndarray
    finding_names: list[str]
    tables: list[pd.DataFrame]
    bayes_log10_lr: np.ndarray
    compartments: list[pd.DataFrame] | None = None
    classes: tuple[str, str] = CLASSES


def _intercepts(
    config: dict,
    classes: tuple[str, str] = CLASSES,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Finding names, class intercepts (2, J) and group index per finding (of these classes).

    A ``marginal: true`` finding carries a published (population) rate p: its intercept is set
    so that the probability averaged over the latents equals p.
    """
    keys = [_key(c) for c in classes]
    names = [n for n, f in config["findings"].items() if all(k in f for k in keys)]
    groups = sorted({config["findings"][n]["group"] for n in names})
    spread = np.sqrt(1.0 + config["severity_loading"] ** 2 + config["group_loading"] ** 2)
    probit = np.array(
        [
            [
                ndtri(config["findings"][n][key])
                * (spread if config["findings"][n].get("marginal") else 1.0)
                for n in names
            ]
            for key in keys
        ]
    )
    group_index = np.array([groups.index(config["findings"][n]["group"]) for n in names])
    return names, probit, group_index


def draw_findings(
    n: int,
    seed: int,
    classes: tuple[str, str] = CLASSES,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Draw n studies (alternating the two classes) and their binary findings.

    Parameters
    ----------
    n : int
        Number of studies.
    seed : int
        Seed of every random draw.
    classes : tuple of str
        The two classes (default IMNM and DM).

    Returns
    -------
    tuple
        (diagnosis array of str, findings bool array (n, J), finding names).
    """
    config = _config()
    names, a, group_index = _intercepts(config, classes)
    rng = np.random.default_rng(seed)
    diagnosis = np.array([classes[i % 2] for i in range(n)])
    cls = (diagnosis == classes[1]).astype(int)
    severity = rng.standard_normal(n)
    group_latent = rng.standard_normal((n, group_index.max() + 1))
    z = (
        a[cls]
        + config["severity_loading"] * severity[:, None]
        + config["group_loading"] * group_latent[:, group_index]
    )
    findings = rng.random((n, len(names))) < ndtr(z)
    return diagnosis, findings, names


def observed(findings: np.ndarray, names: list[str]) -> np.ndarray:
    """What the tables show of each finding: +1 present, -1 absent, 0 not seen.

    ``seen_with`` findings are seen only when one of the named findings is present (and then
    hide the ``hides`` findings when present); ``seen_with_kinds`` findings only when a finding
    of those kinds is present.

    Parameters
    ----------
    findings : numpy.ndarray of bool, shape (n, J)
    names : list of str
        Finding names (columns of ``findings``).

    Returns
    -------
    numpy.ndarray of int, shape (n, J)
    """
    spec = _config()["findings"]
    sign = np.where(findings, 1, -1)
    for j, name in enumerate(names):
        entry = spec[name]
        if "seen_with" in entry:
            cols = [names.index(m) for m in entry["seen_with"] if m in names]
            seen = findings[:, cols].any(axis=1)
            sign[~seen, j] = 0
            hidden = seen & findings[:, j]
            for other in entry.get("hides", []):
                if other in names:
                    sign[hidden, names.index(other)] = 0
        if "seen_with_kinds" in entry:
            kinds = [k for k, n in enumerate(names) if spec[n]["kind"] in entry["seen_with_kinds"]]
            sign[~findings[:, kinds].any(axis=1), j] = 0
    return sign


def bayes_log10_lr(findings: np.ndarray, classes: tuple[str, str] = CLASSES) -> np.ndarray:
    """Exact log10 likelihood ratio (first class over second) of the observed findings.

    Integrates the latent severity and the group latents by Gauss-Hermite quadrature; findings
    the tables cannot show (:func:`observed`) are summed over. The side of a one-sided finding
    carries no class information (drawn alike in every class).

    Parameters
    ----------
    findings : numpy.ndarray of bool, shape (n, J)
    classes : tuple of str
        The classes the findings were drawn for (their columns follow).

    Returns
    -------
    numpy.ndarray of shape (n,)
    """
    config = _config()
    names, a, group_index = _intercepts(config, classes)
    x, w = np.polynomial.hermite_e.hermegauss(_QUADRATURE_NODES)
    w = w / w.sum()
    b, r = config["severity_loading"], config["group_loading"]
    sign = observed(findings, names).astype(float)  # (n, J)
    log_like = []
    for c in range(2):
        # z[n, s, u, j] is too large at once; loop over severity nodes
        total = np.zeros(findings.shape[0])
        for s, ws in zip(x, w, strict=True):
            per_group = np.ones(findings.shape[0])
            for k in range(group_index.max() + 1):
                cols = group_index == k
                z = a[c, cols][None, None, :] + b * s + r * x[None, :, None]  # (1, U, Jk)
                seen = sign[:, None, cols]
                p = np.where(seen == 0, 1.0, ndtr(seen * z))  # (n, U, Jk)
                per_group *= (p.prod(axis=2) * w[None, :]).sum(axis=1)
            total += ws * per_group
        log_like.append(np.log(total))
    return (log_like[0] - log_like[1]) / np.log(10.0)


def render_tables(
    findings: np.ndarray,
    names: list[str],
    seed: int,
    study_ids: list[str],
    paired_sides: bool = False,
) -> list[pd.DataFrame]:
    """Per-muscle measured tables for each study's findings (class-free noise).

    A study without the ``symmetric`` finding (in cohorts that draw it) shows its muscle
    findings on one side only (drawn per study); a seen ``adductor_sparing`` finding leaves the
    adductors' edema normal.

    Parameters
    ----------
    findings : numpy.ndarray of bool, shape (n, J)
    names : list of str
        Finding names (columns of ``findings``).
    seed : int
    study_ids : list of str
    paired_sides : bool
        Draw one value per muscle and let the two sides differ by at most the config's
        ``side_difference`` (a finding present on both sides reads alike on both, as in a
        patient). False: each side drawn on its own, as the IMNM-vs-DM cohorts always were
        (their studies stay the same).

    Returns
    -------
    list of pandas.DataFrame
        Columns ``study_id``, ``label``, ``muscle``, ``side``, ``group``, ``kind``, ``voxels``,
        ``volume_ml``, ``ff_median``, ``edema_fraction``, ``fascial_edema_fraction``,
        ``atrophy_index``.
    """
    config = _config()
    rng = np.random.default_rng(seed + 7919)
    one_side = np.random.default_rng(seed + _SIDE_SEED).integers(0, 2, findings.shape)
    pair_rng = np.random.default_rng(seed + 2 * _SIDE_SEED)
    muscles = sorted({m for f in config["findings"].values() for m in f["muscles"]})
    values = config["values"]
    columns = list(values["normal"])
    seen = observed(findings, names)
    tables = []
    for i, study_id in enumerate(study_ids):
        low = np.array([[values["normal"][c][0] for c in columns]] * len(muscles) * 2)
        high = np.array([[values["normal"][c][1] for c in columns]] * len(muscles) * 2)
        both: tuple[int, ...] = (0, 1)
        if "symmetric" in names:  # an asymmetric study shows its findings on one side
            study_side = int(rng.integers(2))
            if not findings[i, names.index("symmetric")]:
                both = (study_side,)
        for j, name in enumerate(names):
            spec = config["findings"][name]
            if not findings[i, j] or spec["kind"] not in values:
                continue
            sides = [one_side[i, j]] if spec.get("sides") == "one" else both
            for column, (lo, hi) in values[spec["kind"]].items():
                c = columns.index(column)
                for m in spec["muscles"]:
                    for side in sides:
                        row = 2 * muscles.index(m) + side
                        low[row, c], high[row, c] = lo, hi  # one finding kind per column
        if "adductor_sparing" in names and seen[i, names.index("adductor_sparing")] > 0:
            c = columns.index("edema_fraction")
            for m in config["findings"]["adductor_sparing"]["muscles"]:
                for side in range(2):
                    row = 2 * muscles.index(m) + side
                    low[row, c], high[row, c] = values["normal"]["edema_fraction"]
        drawn = low + (high - low) * rng.random(low.shape)
        if paired_sides:  # the right side reads the left side's value, within the difference
            spread = np.asarray(config["side_difference"], float) * (
                pair_rng.random(drawn[1::2].shape) - 0.5
            )
            drawn[1::2] = np.clip(drawn[0::2] + spread, low[1::2], high[1::2])
        rows = []
        for k, m in enumerate(muscles):
            for side_index, side in enumerate(("left", "right")):
                row = dict(zip(columns, drawn[2 * k + side_index], strict=True))
                rows.append(
                    {
                        "study_id": study_id,
                        "label": 2 * k + side_index + 1,
                        "muscle": m,
                        "side": side,
                        "group": group_of(m),
                        "kind": "muscle",
                        "voxels": int(config["voxels"]),
                        "volume_ml": float(config["voxels"]) / 1000.0,
                        **row,
                    }
                )
        tables.append(pd.DataFrame(rows))
    return tables


def render_compartments(
    findings: np.ndarray, names: list[str], seed: int, study_ids: list[str]
) -> list[pd.DataFrame]:
    """``compartments.tsv`` tables: subcutaneous edema per side (present or normal range)."""
    config = _config()
    rng = np.random.default_rng(seed + 3 * _SIDE_SEED)  # its own stream
    ranges = config["subcutaneous"]
    j = names.index("subcutaneous_edema") if "subcutaneous_edema" in names else None
    out = []
    for i, study_id in enumerate(study_ids):
        lo, hi = ranges["present" if j is not None and findings[i, j] else "normal"]
        edema = lo + (hi - lo) * rng.random(2)
        out.append(
            pd.DataFrame(
                {
                    "study_id": study_id,
                    "compartment": "subcutaneous",
                    "side": ["left", "right"],
                    "voxels": 3000,
                    "thickness_mm": 14.0,
                    "ff_median": 0.9,
                    "edema_fraction": edema,
                    "edema_source": "stir",
                    "note": "",
                }
            )
        )
    return out


def make_cohort(n: int, seed: int, classes: tuple[str, str] = CLASSES) -> PhantomCohort:
    """Draw a cohort of n studies (alternating the classes) with tables and Bayes-optimal odds.

    Parameters
    ----------
    n : int
    seed : int
        Two seeds give two independent cohorts.
    classes : tuple of str
        The two classes, default ``("IMNM", "DM")``; ``("IMNM", "dystrophy")`` for the
        muscular-dystrophy differential, ``("IMNM", "ASS")`` for antisynthetase syndrome.
        Cohorts other than the default draw paired sides (:func:`render_tables`).

    Returns
    -------
    PhantomCohort

    Examples
    --------
    >>> cohort = make_cohort(4, seed=1)
    >>> [str(d) for d in cohort.diagnosis], len(cohort.tables[0]) > 20
    (['IMNM', 'DM', 'IMNM', 'DM'], True)
    >>> [str(d) for d in make_cohort(2, seed=1, classes=("IMNM", "ASS")).diagnosis]
    ['IMNM', 'ASS']
    """
    diagnosis, findings, names = draw_findings(n, seed, classes)
    ids = [f"cohort{seed}-{i:04d}" for i in range(n)]
    return PhantomCohort(
        study_ids=ids,
        diagnosis=diagnosis,
        findings=findings,
        finding_names=names,
        tables=render_tables(findings, names, seed, ids, paired_sides=tuple(classes) != CLASSES),
        bayes_log10_lr=bayes_log10_lr(findings, classes),
        compartments=render_compartments(findings, names, seed, ids),
        classes=(classes[0], classes[1]),
    )


def write_cohort(cohort: PhantomCohort, out: str | Path) -> Path:
    """Write each study's ``muscles.tsv`` and ``compartments.tsv``, and ``OUT/labels.tsv``.

    ``OUT/labels.tsv`` has ``study_id`` and ``diagnosis``. The layout of a batch output folder,
    so ``mri-scoring fit OUT OUT/labels.tsv`` reads it.

    Parameters
    ----------
    cohort : PhantomCohort
    out : path

    Returns
    -------
    Path
        The labels file.
    """
    out = Path(out)
    for study_id, table in zip(cohort.study_ids, cohort.tables, strict=True):
        (out / study_id).mkdir(parents=True, exist_ok=True)
        atomic_write(out / study_id / "muscles.tsv", table.to_csv(sep="\t", index=False))
    for study_id, table in zip(cohort.study_ids, cohort.compartments or [], strict=False):
        atomic_write(out / study_id / "compartments.tsv", table.to_csv(sep="\t", index=False))
    labels = pd.DataFrame({"study_id": cohort.study_ids, "diagnosis": cohort.diagnosis})
    atomic_write(out / "labels.tsv", labels.to_csv(sep="\t", index=False))
    return out / "labels.tsv"
