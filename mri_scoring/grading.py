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
        rows = []
        for name, part in frame.groupby(key, sort=True):
            row = {
                key: name,
                "sides": ",".join(sorted(s for s in part["side"].unique() if s)),
                "voxels": int(part["voxels"].sum()),
                "volume_ml": part["volume_ml"].sum(),
            }
            for column in fractions:
                values = part[column].to_numpy(dtype=float)
                weights = part["voxels"].to_numpy(dtype=float)
                ok = np.isfinite(values)
                row[column] = (
                    float(np.average(values[ok], weights=weights[ok])) if ok.any() else np.nan
                )
            if key == "muscle":
                row.update(_lr_differences(part))
            rows.append(row)
        return pd.DataFrame(rows)

    return pool(measured, "muscle"), pool(measured[measured["group"] != ""], "group")


LR_DIFFERENCES = {"ff_lr_difference": "ff_median", "edema_lr_difference": "edema_fraction"}
"""Right-minus-left columns of ``muscles_pooled.tsv`` and the muscle-table column each reads."""


def _lr_differences(part: pd.DataFrame) -> dict[str, float]:
    """Right minus left of each :data:`LR_DIFFERENCES` column (NaN without both sides)."""
    out = {}
    for name, column in LR_DIFFERENCES.items():
        side = {}
        for which in ("left", "right"):
            rows = part[(part["side"] == which) & np.isfinite(part[column].to_numpy(float))]
            if len(rows):
                side[which] = float(
                    np.average(rows[column].to_numpy(float), weights=rows["voxels"].to_numpy(float))
                )
        out[name] = side["right"] - side["left"] if len(side) == 2 else np.nan
    return out
