"""Atrophy of a muscle the stack cuts, from its cross-sections at matched levels.

A muscle cut by the first or last slice has no whole volume, so the volume bases of
:mod:`.atrophy` leave it unassessed. Its cross-sectional areas in the covered slices can still be
compared with those of its neighbours *at the same levels*: summed over the slices where the
muscle and at least one neighbour are labelled, ``area(muscle) / area(neighbours)`` over the
normal ratio (``atrophy.matched_levels`` in ``configs/settings.yaml``, each ratio [elicited] or
sourced) is the ``atrophy_index`` on the basis ``matched_levels``. Fewer covered slices than
``min_slices`` leave it unassessed with the reason. A muscle cut in-plane (the grid's side
edge) is not judged: its areas are themselves partial.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..anatomy import GROUP, MUSCLE
from .coverage import IN_PLANE, Coverage

__all__ = ["MATCHED_LEVELS", "add_matched_levels"]

MATCHED_LEVELS = "matched_levels"


def add_matched_levels(
    table: pd.DataFrame, slices: pd.DataFrame, coverage: Coverage, config: dict[str, Any]
) -> None:
    """Judge the configured muscles the stack cuts from matched-level area ratios, in place.

    Parameters
    ----------
    table : pandas.DataFrame
        Muscle table (one row per compact label, in order) after :func:`.atrophy.add_atrophy`.
    slices : pandas.DataFrame
        ``slices.tsv`` rows (``label``, ``slice``, ``area_cm2``).
    coverage : Coverage
        Per-label coverage, in table row order.
    config : dict
        ``min_slices`` and ``muscles``: name -> ``neighbours`` (list) and ``normal_ratio``.

    Examples
    --------
    >>> from mri_scoring.measure.coverage import Coverage
    >>> t = pd.DataFrame({"label": [1, 2], "muscle": ["a", "b"], "side": ["left", "left"],
    ...                   "kind": ["muscle", "muscle"], "atrophy_index": [np.nan, np.nan],
    ...                   "atrophy_index_lean": [np.nan, np.nan], "atrophy_basis": ["none", "none"],
    ...                   "atrophy_note": ["", ""]})
    >>> s = pd.DataFrame({"label": [1, 1, 2, 2], "slice": [4, 5, 4, 5],
    ...                   "area_cm2": [1.0, 1.0, 4.0, 4.0]})
    >>> cov = Coverage(2, [("last_slice",), ()], True)
    >>> add_matched_levels(t, s, cov, {"min_slices": 2,
    ...                    "muscles": {"a": {"neighbours": ["b"], "normal_ratio": 0.5}}})
    >>> float(t.loc[0, "atrophy_index"]), t.loc[0, "atrophy_basis"]
    (0.5, 'matched_levels')
    """
    muscles = config.get("muscles") or {}
    min_slices = int(config.get("min_slices", 2))
    is_muscle = table["kind"].isin((MUSCLE, GROUP)).to_numpy()
    area = slices.pivot_table(index="slice", columns="label", values="area_cm2", aggfunc="sum")
    for index in np.flatnonzero(is_muscle):
        muscle, side = table["muscle"].iat[index], table["side"].iat[index]
        cuts = coverage.cuts[index]
        if muscle not in muscles or not cuts or IN_PLANE in cuts:
            continue
        spec = muscles[muscle]
        label = int(table["label"].iat[index])
        same_side = table["side"].eq(side).to_numpy() & is_muscle
        neighbours = table[same_side & table["muscle"].isin(spec["neighbours"]).to_numpy()]
        own = area[label] if label in area.columns else pd.Series(dtype=float)
        ref_labels = [v for v in neighbours["label"].astype(int) if v in area.columns]
        ref = area[ref_labels].sum(axis=1, min_count=1) if ref_labels else own * np.nan
        levels = own.index[(own.fillna(0) > 0) & (ref.fillna(0) > 0)]
        note_at = table.columns.get_loc("atrophy_note")
        if len(levels) < min_slices:
            table.iat[index, note_at] = (
                f"{table['atrophy_note'].iat[index]}; at matched levels: covered in "
                f"{len(levels)} slice{'' if len(levels) == 1 else 's'} with a neighbour "
                f"({', '.join(spec['neighbours'])}), at least {min_slices} needed"
            ).lstrip("; ")
            continue
        ratio = float(own[levels].sum() / ref[levels].sum())
        table.iat[index, table.columns.get_loc("atrophy_index")] = ratio / spec["normal_ratio"]
        table.iat[index, table.columns.get_loc("atrophy_index_lean")] = np.nan
        table.iat[index, table.columns.get_loc("atrophy_basis")] = MATCHED_LEVELS
        table.iat[index, note_at] = (
            f"cut by the stack: cross-section {ratio:.2f} x its neighbours' "
            f"({', '.join(spec['neighbours'])}) over {len(levels)} matched slices, against a "
            f"normal {spec['normal_ratio']:g}"
        )
