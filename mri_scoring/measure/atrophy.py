"""Atrophy: each fully covered muscle's volume against a norm, with the basis named.

Two bases, chosen per muscle (column ``atrophy_basis``):

* ``body_size`` -- measured volume over the whole-muscle volume expected from height x mass
  (:mod:`.norms`, handsfield2014): ``volume_ratio``. A loss every muscle shares (global atrophy)
  shows here. For a muscle the regressions do not list (obturator externus, pectineus, ...),
  the expected volume stands in as its normative share relative to the fully covered listed
  muscles of its side times their summed norm (marked in ``atrophy_note``).
* ``body_size_paediatric`` -- the same for a child (under 20 years): the norm grows with the
  child's limb lean mass for age, sex and height (:func:`.norms.volume_norm`, zemel2023), joined
  to the adult regressions at 18-20 years. Below the youngest reference age (5 years) there is
  no volume norm: the share basis and the left/right ratio only, and a QC note says so.
* ``share`` -- without height and mass: the muscle's share of the summed volume of the fully
  covered muscles of its side against normative shares (``configs/norms_volume_shares.yaml``,
  [elicited]), renormalised over the same muscles. A share cancels body size, and with it any
  loss all muscles share.
* ``none`` -- not assessed, with the reason in ``atrophy_note``: a muscle cut by the field of
  view (``partial_coverage``) never gets a volume-based atrophy value; the muscles named in
  ``atrophy.matched_levels`` are then judged from their cross-sections at matched levels
  (:mod:`.matched_levels`, basis ``matched_levels``).

Every expected volume has its normal band, ``expected_volume_p10_ml`` to ``_p90_ml`` (children
vary more than adults); ``atrophy_note`` says when the muscle lies outside it.

``atrophy_index`` is the value on the muscle's basis (``volume_ratio`` or the share index); the
lean variant removes the fat that replaces atrophic muscle. The left/right volume ratio shows
one-sided loss; it is computed unless a side is cut in-plane (the stack ends cut both sides at
the same level).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import schema
from ..anatomy import GROUP, MUSCLE, groups, unions
from ..config import load_config_file
from ..errors import QCFinding
from .coverage import IN_PLANE, Coverage
from .norms import BodySize, stand_in, volume_norm
from .paediatric import youngest_volume_age

__all__ = [
    "BODY_BASES",
    "BODY_SIZE",
    "BODY_SIZE_PAEDIATRIC",
    "NONE",
    "SHARE",
    "AtrophyInputs",
    "add_atrophy",
    "normative_shares",
]

BODY_SIZE, BODY_SIZE_PAEDIATRIC, SHARE, NONE = "body_size", "body_size_paediatric", "share", "none"
BODY_BASES = (BODY_SIZE, BODY_SIZE_PAEDIATRIC)


def normative_shares() -> dict[str, float]:
    """Normative volume shares (``configs/norms_volume_shares.yaml``), groups summed.

    A union of other members (``biceps_femoris``, see :func:`~mri_scoring.anatomy.unions`) is
    not added to a group's sum: its parts already are.

    Returns
    -------
    dict of str to float
        Muscle or group name -> share of the summed muscle volume of one thigh.
    """
    shares = dict(load_config_file("norms_volume_shares.yaml")["shares"])
    combined = unions()
    for group, members in groups().items():
        shares.setdefault(group, sum(shares.get(m, 0.0) for m in members if m not in combined))
    return shares


@dataclass(frozen=True, kw_only=True)
class AtrophyInputs:
    """What the atrophy measure needs besides the muscle table.

    Attributes
    ----------
    coverage : Coverage
        Per-label coverage, in table row order.
    body : BodySize or None
        Height and mass, when given and plausible.
    min_share_muscles : int
        Fewest fully covered muscles on a side for a share to mean anything.
    age_years : float or None
        Age (None: adult norms).
    sex : str or None
        ``male``, ``female`` or None.
    """

    coverage: Coverage
    body: BodySize | None
    min_share_muscles: int = 3
    age_years: float | None = None
    sex: str | None = None

    @property
    def too_young(self) -> bool:
        """Below the youngest age with a volume norm (no expected volume, never extrapolated)."""
        return self.age_years is not None and self.age_years < youngest_volume_age()


def add_atrophy(table: pd.DataFrame, inputs: AtrophyInputs) -> list[QCFinding]:
    """Add the atrophy columns to a muscle table, in place.

    Adds ``lean_volume_ml``, ``expected_volume_ml`` with its band (``expected_volume_p10_ml``,
    ``expected_volume_p90_ml``), ``volume_ratio``, ``volume_share``,
    ``expected_share``, ``atrophy_index``, ``atrophy_index_lean``, ``atrophy_basis``,
    ``atrophy_note`` and ``lr_volume_ratio`` (NaN / empty where not defined).

    Parameters
    ----------
    table : pandas.DataFrame
        Muscle table (one row per compact label, in order) with ``kind``, ``muscle``, ``side``,
        ``volume_ml`` and ``ff_mean_whole``.
    inputs : AtrophyInputs

    Returns
    -------
    list of QCFinding
        Study-level findings (global atrophy not assessable without body size).
    """
    qc: list[QCFinding] = []
    coverage, body = inputs.coverage, inputs.body
    shares = normative_shares()
    partial = np.array([coverage.partial(i) for i in range(len(table))], bool)
    table["lean_volume_ml"] = table["volume_ml"] * (1.0 - table["ff_mean_whole"])
    for column in (
        "expected_volume_ml",
        "expected_volume_p10_ml",
        "expected_volume_p90_ml",
        "volume_ratio",
        "volume_share",
        "expected_share",
        "atrophy_index",
        "atrophy_index_lean",
        "lr_volume_ratio",
    ):
        table[column] = np.nan
    table["atrophy_basis"] = NONE
    table["atrophy_note"] = ""
    is_muscle = table["kind"].isin((MUSCLE, GROUP)).to_numpy()

    covered = is_muscle & ~partial
    if body is not None and not inputs.too_young:
        _body_size_basis(table, covered, inputs, shares)
    no_norm = (
        " (no height_m/mass_kg)"
        if body is None
        else " (below the volume norms' youngest age)"
        if inputs.too_young
        else ""
    )
    _share_basis(
        table,
        covered & table["muscle"].isin(list(shares)).to_numpy(),
        shares,
        inputs.min_share_muscles,
        no_norm,
    )
    for index in np.flatnonzero(is_muscle & partial):
        table.iat[index, table.columns.get_loc("atrophy_note")] = (
            coverage.reason(index) + "; volume-based atrophy not assessed"
        )

    _add_lr_ratio(table, is_muscle, coverage)
    if body is not None and inputs.too_young:
        qc.append(
            QCFinding(
                "info",
                schema.VOLUME_NORM_BELOW_REFERENCE_AGE,
                f"age {inputs.age_years:g} y is below the youngest reference age of the volume "
                f"norms ({youngest_volume_age():g} y, zemel2023): no expected volume; atrophy is "
                "judged from each muscle's share of the labelled volume and from the left/right "
                "comparison, so a loss every muscle shares cannot be seen",
            )
        )
    elif body is None:
        qc.append(
            QCFinding(
                "info",
                schema.GLOBAL_ATROPHY_NOT_ASSESSABLE,
                "no height_m and mass_kg in study.json: atrophy is judged from each muscle's share "
                "of the labelled volume and from the left/right comparison, so a loss of muscle "
                "that every muscle shares (global atrophy) cannot be seen",
            )
        )
    cut = int((is_muscle & partial).sum())
    if cut:
        qc.append(
            QCFinding(
                "info",
                schema.PARTIAL_COVERAGE,
                f"{cut} of {int(is_muscle.sum())} muscle labels reach the first or last slice or "
                "the in-plane edge of the field of view: their volume-based atrophy is not "
                "assessed (flag partial_coverage)",
            )
        )
    return qc


def _body_size_basis(
    table: pd.DataFrame, covered: np.ndarray, inputs: AtrophyInputs, shares: dict[str, float]
) -> None:
    """Volume over the body-size norm; stand-ins scaled from the listed muscles of their side."""
    body: BodySize = inputs.body  # type: ignore[assignment]
    min_muscles = inputs.min_share_muscles
    norms = {
        m: volume_norm(m, body, inputs.age_years, inputs.sex) for m in table["muscle"].unique()
    }
    muscle_rows = table["kind"].isin((MUSCLE, GROUP)).to_numpy()
    for column, field in (
        ("expected_volume_ml", "expected_ml"),
        ("expected_volume_p10_ml", "p10_ml"),
        ("expected_volume_p90_ml", "p90_ml"),
    ):
        values = table["muscle"].map(lambda m, f=field: getattr(norms[m], f, None)).astype(float)
        values[~muscle_rows] = np.nan
        table[column] = values
    basis = BODY_SIZE_PAEDIATRIC if any(n.paediatric for n in norms.values() if n) else BODY_SIZE
    listed = covered & np.isfinite(table["expected_volume_ml"].to_numpy())
    table.loc[listed, "atrophy_basis"] = basis
    # A muscle the regressions do not list: its normative share relative to the fully covered
    # muscles they do list, times their summed body-size norm (a stand-in, [elicited] shares).
    for side in table.loc[covered, "side"].unique():
        same_side = (table["side"] == side).to_numpy()
        anchors = table[listed & same_side & table["muscle"].isin(list(shares)).to_numpy()]
        missing = table[covered & same_side & ~listed & table["muscle"].isin(list(shares))]
        if missing.empty or len(anchors) < min_muscles:
            continue
        anchor_share = float(anchors["muscle"].map(shares).sum())
        for index, muscle in zip(missing.index, missing["muscle"], strict=True):
            for column in (
                "expected_volume_ml",
                "expected_volume_p10_ml",
                "expected_volume_p90_ml",
            ):
                table.loc[index, column] = (
                    shares[muscle] / anchor_share * float(anchors[column].sum())
                )
            table.loc[index, "atrophy_basis"] = basis
            table.loc[index, "atrophy_note"] = (
                f"not in handsfield2014 ({stand_in(muscle)} stand-in): expected volume = its "
                f"normative share [elicited] relative to {len(anchors)} fully covered listed "
                "muscles of this side, times their body-size norm"
            )
    use = (table["atrophy_basis"] == basis).to_numpy()
    expected = table["expected_volume_ml"]
    table.loc[use, "volume_ratio"] = (table["volume_ml"] / expected)[use]
    table.loc[use, "atrophy_index"] = table.loc[use, "volume_ratio"]
    table.loc[use, "atrophy_index_lean"] = (table["lean_volume_ml"] / expected)[use]
    _band_notes(table, use)


def _band_notes(table: pd.DataFrame, use: np.ndarray) -> None:
    """Say in ``atrophy_note`` when an assessed volume lies outside its normal band."""
    for index in table.index[use]:
        volume = float(table.at[index, "volume_ml"])
        low = float(table.at[index, "expected_volume_p10_ml"])
        high = float(table.at[index, "expected_volume_p90_ml"])
        if low <= volume <= high:
            continue
        where = "below" if volume < low else "above"
        band = f"{where} its normal band ({low:.0f}-{high:.0f} ml, 10th-90th centile)"
        note = str(table.at[index, "atrophy_note"])
        table.at[index, "atrophy_note"] = f"{note}; {band}" if note else band


def _share_basis(
    table: pd.DataFrame,
    eligible: np.ndarray,
    shares: dict[str, float],
    min_muscles: int,
    no_norm: str,
) -> None:
    """Share of the fully covered labelled volume of each side against normative shares."""
    for _side, part in table[eligible].groupby("side"):
        if len(part) < min_muscles:
            alone = part.index[table.loc[part.index, "atrophy_basis"] == NONE]
            table.loc[alone, "atrophy_note"] = (
                f"only {len(part)} fully covered muscle{'' if len(part) == 1 else 's'} on "
                "this side: no volume share"
            )
            continue
        expected_share = part["muscle"].map(shares)
        expected_share = expected_share / expected_share.sum()
        observed = part["volume_ml"] / part["volume_ml"].sum()
        lean = part["lean_volume_ml"] / part["lean_volume_ml"].sum()
        table.loc[part.index, "volume_share"] = observed
        table.loc[part.index, "expected_share"] = expected_share
        take = part.index[~table.loc[part.index, "atrophy_basis"].isin(BODY_BASES)]
        table.loc[take, "atrophy_index"] = (observed / expected_share)[take]
        table.loc[take, "atrophy_index_lean"] = (lean / expected_share)[take]
        table.loc[take, "atrophy_basis"] = SHARE
        table.loc[take, "atrophy_note"] = (
            "share of the fully covered labelled volume of this side"
            + no_norm
            + ": a loss every muscle shares is not visible"
        )


def _add_lr_ratio(table: pd.DataFrame, is_muscle: np.ndarray, coverage: Coverage) -> None:
    """Left/right volume ratio, unless either side is cut in-plane."""
    cut_in_plane = np.array([IN_PLANE in c for c in coverage.cuts], bool)
    sided = table[is_muscle & table["side"].isin(("left", "right")).to_numpy()]
    volume = {}
    for index, muscle, side, value in zip(
        sided.index, sided["muscle"], sided["side"], sided["volume_ml"], strict=True
    ):
        volume[(muscle, side)] = (value, bool(cut_in_plane[table.index.get_loc(index)]))
    for index, muscle, side in zip(sided.index, sided["muscle"], sided["side"], strict=True):
        own, own_cut = volume[(muscle, side)]
        other, other_cut = volume.get((muscle, "right" if side == "left" else "left"), (0, True))
        if other and not own_cut and not other_cut:
            table.loc[index, "lr_volume_ratio"] = own / other
