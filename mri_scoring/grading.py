"""Semi-quantitative grades from measures; thresholds in ``configs/settings.yaml`` (``grades``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .config import Settings, load_settings
from .schema import muscle_columns

__all__ = [
    "LR_DIFFERENCES",
    "band_grade",
    "grade",
    "pooled_tables",
]


def band_grade(values: np.ndarray | pd.Series, bands: list[float]) -> np.ndarray:
    """Number of band edges at or below each value (0..len(bands)); NaN stays NaN.

    Examples
    --------
    >>> band_grade(np.array([0.05, 0.15, 0.7, np.nan]), [0.1, 0.2, 0.35, 0.6]).tolist()
    [0.0, 1.0, 4.0, nan]
    """
    values = np.asarray(values, dtype=float)
    if list(bands) != sorted(bands):
        raise ValueError(f"grade bands must increase: {bands}")
    grades = np.searchsorted(np.asarray(bands, dtype=float), values, side="right").astype(float)
    grades[~np.isfinite(values)] = np.nan
    return grades


def grade(table: pd.DataFrame, settings: Settings | None = None) -> pd.DataFrame:
    """Add ``mercuri_grade`` and ``edema_grade`` and order the columns.

    ``mercuri_grade`` is 0-4, from ``ff_median``; ``edema_grade`` 0-3, from ``edema_fraction``;
    columns in the order of ``schema.muscle_columns()``.

    The FF bands are an [elicited] mapping of Dixon FF onto the Mercuri scale (a Dixon FF is not
    the visually fatty share of the muscle); the edema bands follow Wilks 2025 (see settings).
    """
    bands = (settings or load_settings())["grades"]
    out = table.copy()
    out["mercuri_grade"] = band_grade(out["ff_median"], bands["mercuri_ff_bands"])
    out["edema_grade"] = band_grade(out["edema_fraction"], bands["edema_fraction_bands"])
    ordered = [c for c in muscle_columns() if c in out.columns]
    return out[ordered + [c for c in out.columns if c not in ordered]]


def pooled_tables(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per muscle (sides pooled) and per group summaries of a graded muscle table.

    Volumes add; fractions and FF are averaged weighted by the voxels that measured them (an
    approximation for medians and p90, stated in the column names' docs: pooled medians are the
    voxel-weighted mean of the side medians). Per muscle, ``ff_lr_difference`` and
    ``edema_lr_difference`` are the right side's ``ff_median`` and ``edema_fraction`` minus the
    left side's (NaN unless both sides are measured).

    Examples
    --------
    >>> table = pd.DataFrame({"muscle": ["gracilis"] * 2, "side": ["left", "right"],
    ...     "group": ["medial"] * 2, "kind": ["muscle"] * 2, "voxels": [10, 10],
    ...     "volume_ml": [1.0, 1.0], "ff_mean": [0.1, 0.3], "ff_median": [0.1, 0.3],
    ...     "ff_p90": [0.2, 0.4], "edema_fraction": [0.0, 0.5],
    ...     "fascial_edema_fraction": [0.0, 0.0], "atrophy_index": [1.0, 1.0]})
    >>> muscles, _ = pooled_tables(table)
    >>> [round(float(muscles[c].iloc[0]), 2) for c in LR_DIFFERENCES]
    [0.2, 0.5]
    """
    measured = table[table["kind"].isin(("muscle", "group"))].copy()
    fractions = [
        "ff_mean",
        "ff_median",
        "ff_p90",
        "edema_fraction",
        "fascial_edema_fraction",
        "atrophy_index",
    ]

    def pool(frame: pd.DataFrame, key: str) -> pd.DataFrame:
        # numpy on the few columns pooled, one index array per group: pandas' boolean
        # selection of the whole wide table per muscle and side cost ~0.3 s of every study
        names, group = np.unique(frame[key].to_numpy(str), return_inverse=True)
        sides = frame["side"].to_numpy(str)
        voxels = frame["voxels"].to_numpy(float)
        volumes = frame["volume_ml"].to_numpy(float)
        columns = {c: frame[c].to_numpy(float) for c in {*fractions, *LR_DIFFERENCES.values()}}
        rows = []
        for index, name in enumerate(names):
            at = np.flatnonzero(group == index)
            row = {
                key: name,
                "sides": ",".join(sorted({s for s in sides[at] if s})),
                "voxels": int(voxels[at].sum()),
                "volume_ml": float(np.nansum(volumes[at])),
            }
            for column in fractions:
                row[column] = _weighted_mean(columns[column][at], voxels[at])
            if key == "muscle":
                left, right = at[sides[at] == "left"], at[sides[at] == "right"]
                for out, column in LR_DIFFERENCES.items():
                    row[out] = _weighted_mean(columns[column][right], voxels[right]) - (
                        _weighted_mean(columns[column][left], voxels[left])
                    )
            rows.append(row)
        return pd.DataFrame(rows)

    return pool(measured, "muscle"), pool(measured[measured["group"] != ""], "group")


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """Mean of the finite ``values`` weighted by ``weights``; NaN when none is finite."""
    ok = np.isfinite(values)
    return float(np.average(values[ok], weights=weights[ok])) if ok.any() else np.nan


LR_DIFFERENCES = {"ff_lr_difference": "ff_median", "edema_lr_difference": "edema_fraction"}
"""Right-minus-left columns of ``muscles_pooled.tsv`` and the muscle-table column each reads."""
