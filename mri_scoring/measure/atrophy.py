"""Atrophy: each fully covered muscle's volume against a norm, with the basis named.

Two bases, chosen per muscle (column ``atrophy_basis``):

* ``body_size`` -- measured volume over the whole-muscle volume expected from height x mass
  (:mod:`.norms`, handsfield2014): ``volume_ratio``. A loss every muscle shares (global atrophy)
  shows here. For a muscle the regressions do not list (obturator externus, pectineus, ...),
  the expected volume stands in as its normative share relative to the fully covered listed
  muscles of its side times their summed norm (marked in ``atrophy_note``).
* ``share`` -- without height and mass: the muscle's share of the summed volume of the fully
  covered muscles of its side against normative shares (``configs/norms_volume_shares.yaml``,
  [elicited]), renormalised over the same muscles. A share cancels body size, and with it any
  loss all muscles share.
* ``none`` -- not assessed, with the reason in ``atrophy_note``: a muscle cut by the field of
  view (``partial_coverage``) never gets a volume-based atrophy value.

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
from .norms import BodySize, expected_volume_ml, stand_in

__all__ = [
    "BODY_SIZE",
    "NONE",
    "SHARE",
    "AtrophyInputs",
    "add_atrophy",
    "normative_shares",
]

BODY_SIZE, SHARE, NONE = "body_size", "share", "none"


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


@dataclass(frozen=True)
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
    """

    coverage: Coverage
    body: BodySize | None
    min_share_muscles: int = 3


def add_atrophy(table: pd.DataFrame, inputs: AtrophyInputs) -> list[QCFinding]:
    """Add the atrophy columns to a muscle table, in place.

    Adds ``lean_volume_ml``, ``expected_volume_ml``, ``volume_ratio``, ``volume_share``,
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
    if body is not None:
        _body_size_basis(table, covered, body, shares, inputs.min_share_muscles)
    _share_basis(
        table,
        covered & table["muscle"].isin(list(shares)).to_numpy(),
        shares,
        inputs.min_share_muscles,
        body is not None,
    )
    for index in np.flatnonzero(is_muscle & partial):
        table.iat[index, table.columns.get_loc("atrophy_note")] = (
            coverage.reason(index) + "; volume-based atrophy not assessed"
        )

    _add_lr_ratio(table, is_muscle, coverage)
    if body is None:
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
    table: pd.DataFrame,
    covered: np.ndarray,
    body: BodySize,
    shares: dict[str, float],
    min_muscles: int,
) -> None:
    """Volume over the body-size norm; stand-ins scaled from the listed muscles of their side."""
    expected = table["muscle"].map(lambda m: expected_volume_ml(m, body)).astype(float)
    expected[~table["kind"].isin((MUSCLE, GROUP))] = np.nan
    table["expected_volume_ml"] = expected
    listed = covered & np.isfinite(expected.to_numpy())
    table.loc[listed, "atrophy_basis"] = BODY_SIZE
    # A muscle the regressions do not list: its normative share relative to the fully covered
    # muscles they do list, times their summed body-size norm (a stand-in, [elicited] shares).
    for side in table.loc[covered, "side"].unique():
        same_side = (table["side"] == side).to_numpy()
        anchors = table[listed & same_side & table["muscle"].isin(list(shares)).to_numpy()]
        missing = table[covered & same_side & ~listed & table["muscle"].isin(list(shares))]
        if missing.empty or len(anchors) < min_muscles:
            continue
        anchor_share = float(anchors["muscle"].map(shares).sum())
        anchor_volume = float(anchors["expected_volume_ml"].sum())
        for index, muscle in zip(missing.index, missing["muscle"], strict=True):
            table.loc[index, "expected_volume_ml"] = shares[muscle] / anchor_share * anchor_volume
            table.loc[index, "atrophy_basis"] = BODY_SIZE
            table.loc[index, "atrophy_note"] = (
                f"not in handsfield2014 ({stand_in(muscle)} stand-in): expected volume = its "
                f"normative share [elicited] relative to {len(anchors)} fully covered listed "
                "muscles of this side, times their body-size norm"
            )
    use = (table["atrophy_basis"] == BODY_SIZE).to_numpy()
    expected = table["expected_volume_ml"]
    table.loc[use, "volume_ratio"] = (table["volume_ml"] / expected)[use]
    table.loc[use, "atrophy_index"] = table.loc[use, "volume_ratio"]
    table.loc[use, "atrophy_index_lean"] = (table["lean_volume_ml"] / expected)[use]


def _share_basis(
    table: pd.DataFrame,
    eligible: np.ndarray,
    shares: dict[str, float],
    min_muscles: int,
    has_body: bool,
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
        take = part.index[table.loc[part.index, "atrophy_basis"] != BODY_SIZE]
        table.loc[take, "atrophy_index"] = (observed / expected_share)[take]
        table.loc[take, "atrophy_index_lean"] = (lean / expected_share)[take]
        table.loc[take, "atrophy_basis"] = SHARE
        table.loc[take, "atrophy_note"] = (
            "share of the fully covered labelled volume of this side"
            + ("" if has_body else " (no height_m/mass_kg)")
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
