"""Atrophy: each muscle's share of its side's labelled muscle volume against normative shares.

A share (not an absolute volume) cancels body size to first order; the lean-volume variant
removes the fat that replaces atrophic muscle. The left/right volume ratio shows one-sided loss.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..anatomy import GROUP, MUSCLE, groups, unions
from ..config import load_config_file


def normative_shares() -> dict[str, float]:
    """Normative volume shares (``configs/normative.yaml``), groups as sums of their members.

    A union of other members (``biceps_femoris``, see :func:`~mri_scoring.anatomy.unions`) is
    not added to a group's sum: its parts already are.

    Returns
    -------
    dict of str to float
        Muscle or group name -> share of the summed muscle volume of one thigh.
    """
    shares = dict(load_config_file("normative.yaml")["shares"])
    combined = unions()
    for group, members in groups().items():
        shares.setdefault(group, sum(shares.get(m, 0.0) for m in members if m not in combined))
    return shares


def add_atrophy(table: pd.DataFrame) -> None:
    """Add observed / expected share of the side's labelled muscle volume (and lean volume).

    Adds, in place, ``lean_volume_ml``, ``volume_share``, ``expected_share``, ``atrophy_index``,
    ``atrophy_index_lean`` and ``lr_volume_ratio`` (NaN where not defined).

    Parameters
    ----------
    table : pandas.DataFrame
        Muscle table with ``kind``, ``muscle``, ``side``, ``volume_ml`` and ``ff_mean_whole``.
    """
    shares = normative_shares()
    table["lean_volume_ml"] = table["volume_ml"] * (1.0 - table["ff_mean_whole"])
    for column in (
        "volume_share",
        "expected_share",
        "atrophy_index",
        "atrophy_index_lean",
        "lr_volume_ratio",
    ):
        table[column] = np.nan
    eligible = table["kind"].isin((MUSCLE, GROUP)) & table["muscle"].isin(list(shares))
    for _side, part in table[eligible].groupby("side"):
        expected = part["muscle"].map(shares)
        expected = expected / expected.sum()
        observed = part["volume_ml"] / part["volume_ml"].sum()
        lean = part["lean_volume_ml"] / part["lean_volume_ml"].sum()
        table.loc[part.index, "volume_share"] = observed
        table.loc[part.index, "expected_share"] = expected
        table.loc[part.index, "atrophy_index"] = observed / expected
        table.loc[part.index, "atrophy_index_lean"] = lean / expected
    sided = table[eligible & table["side"].isin(("left", "right"))]
    volume = {
        (m, s): v
        for m, s, v in zip(sided["muscle"], sided["side"], sided["volume_ml"], strict=True)
    }
    for index, muscle, side in zip(sided.index, sided["muscle"], sided["side"], strict=True):
        other = volume.get((muscle, "right" if side == "left" else "left"))
        if other:
            table.loc[index, "lr_volume_ratio"] = volume[(muscle, side)] / other
