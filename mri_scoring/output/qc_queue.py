"""The cohort QC queue of a batch: ``outliers.tsv`` and the paged ``mosaic.html``.

``outliers.tsv`` lists every per-muscle value far from the batch: the modified z-score
0.6745 (x - median) / MAD per muscle, side and measure across the studies
(``configs/cohort_qc.yaml``), worst first. ``mosaic.html`` shows each study's mid-thigh
thumbnail (``<study>/thumb.png``, drawn by the worker that scored it), the studies with the
worst outliers first, at most ``page_size`` per page (``mosaic.html``, ``mosaic-2.html``, ...),
with the reviewer's ``qc_ratings.tsv`` ratings and notes.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import load_config_file
from ..files import atomic_write
from ..io.discover import sanitise_id
from ..io.qc_ratings import Rating
from .render import CSS
from .thumbnail import THUMB_NAME

__all__ = [
    "OUTLIER_COLUMNS",
    "find_outliers",
    "mosaic_order",
    "qc_settings",
    "robust_z",
    "write_mosaic",
]

OUTLIER_COLUMNS = ["study_id", "muscle", "side", "measure", "value", "z", "reason"]
MAD_TO_Z = 0.6745  # [ref: iglewicz1993] the normal's 0.75 quantile: MAD / 0.6745 estimates SD
MEAN_AD_TO_SD = 1.2533  # sqrt(pi / 2): mean absolute deviation to SD under normality


def qc_settings() -> dict:
    """``configs/cohort_qc.yaml``."""
    return load_config_file("cohort_qc.yaml")


def robust_z(values: pd.Series, groups: list[pd.Series], min_studies: int) -> pd.Series:
    """Modified z-score of each value within its group (NaN where it cannot be judged).

    Missing values and values with a missing group key have NaN z and are not counted.

    Examples
    --------
    >>> values = pd.Series([1.0] * 9 + [1.1, 5.0])
    >>> z = robust_z(values, [pd.Series(["a"] * 11)], min_studies=10)
    >>> bool(z.iloc[-1] > 3.5), float(z.iloc[0])
    (True, 0.0)
    """
    keys = pd.MultiIndex.from_arrays([g.to_numpy() for g in groups])
    codes = np.where(keys.to_frame().isna().any(axis=1).to_numpy(), -1, keys.factorize()[0])
    numbers = values.to_numpy(float)
    z, _ = _grouped_z(numbers, np.where(np.isnan(numbers), -1, codes), min_studies)
    return pd.Series(z, index=values.index)


def _grouped_z(
    values: np.ndarray, group: np.ndarray, min_studies: int
) -> tuple[np.ndarray, np.ndarray]:
    """Modified z of each value within its group, and its group's median.

    ``group`` holds integer codes, -1 for a value in no group (NaN z and median). Where the MAD
    is 0 the mean absolute deviation stands in (x sqrt(pi/2)); groups smaller than
    ``min_studies``, or with no spread at all, have NaN z.
    """
    z = np.full(values.shape, np.nan)
    median = np.full(values.shape, np.nan)
    order = np.argsort(group, kind="stable")
    for members in np.split(order, np.flatnonzero(np.diff(group[order])) + 1):
        if members.size == 0 or group[members[0]] < 0:
            continue
        v = values[members]
        middle = np.median(v)
        deviation = np.abs(v - middle)
        mad = np.median(deviation)
        scale = mad / MAD_TO_Z if mad > 0 else deviation.mean() * MEAN_AD_TO_SD
        median[members] = middle
        if scale > 0 and members.size >= min_studies:
            z[members] = (v - middle) / scale
    return z, median


def find_outliers(muscles_long: str | Path, settings: Mapping | None = None) -> pd.DataFrame:
    """Per-muscle values of a batch far from the batch (``outliers.tsv``), worst first.

    The long table's keys are read as categories and each (muscle, side) as one integer code:
    a cohort's table has ~46 rows a study, and Python strings per cell and pandas' group
    transforms made this the batch driver's largest step (+200 MiB at 10,000 studies).

    Parameters
    ----------
    muscles_long : path
        The batch's ``muscles_long.tsv`` (rows of kind ``muscle`` are screened).
    settings : mapping, optional
        The ``outliers`` section of ``configs/cohort_qc.yaml`` (default: the shipped one).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`OUTLIER_COLUMNS`; sorted by ``|z|`` (largest first), then id.
    """
    settings = settings or qc_settings()["outliers"]
    try:
        header = pd.read_csv(muscles_long, sep="\t", nrows=0).columns
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return pd.DataFrame(columns=OUTLIER_COLUMNS)
    measures = [m for m in settings["measures"] if m in header]
    keys = [c for c in ("study_id", "muscle", "side", "kind") if c in header]
    if not measures or len(keys) < 4:
        return pd.DataFrame(columns=OUTLIER_COLUMNS)
    table = pd.read_csv(muscles_long, sep="\t", usecols=keys + measures, keep_default_na=False,
                        na_values=[""], dtype=dict.fromkeys(keys, "category"))  # fmt: skip
    table = table[(table["kind"] == "muscle").to_numpy()]
    muscle, side = table["muscle"].cat.codes.to_numpy(), table["side"].cat.codes.to_numpy()
    group = np.where((muscle < 0) | (side < 0), -1, muscle.astype(np.int64) * 4096 + side)

    def names(column: str, rows: np.ndarray) -> np.ndarray:  # strings of the hits only
        values = table[column].cat
        return np.asarray(values.categories.astype(str))[values.codes.to_numpy()[rows]]

    found = []
    for measure in measures:
        values = table[measure].to_numpy(float)
        measured = np.isfinite(values)
        z, median = _grouped_z(values, np.where(measured, group, -1), int(settings["min_studies"]))
        hit = np.flatnonzero(np.abs(z) > float(settings["z_threshold"]))
        if hit.size:
            found.append(pd.DataFrame({
                "study_id": names("study_id", hit), "muscle": names("muscle", hit),
                "side": names("side", hit), "measure": measure,
                "value": values[hit], "z": z[hit],
                "reason": [f"{measure} {v:.3g} is {abs(s):.1f} robust SD "
                           f"{'above' if s > 0 else 'below'} the batch median {m:.3g}"
                           for v, s, m in zip(values[hit], z[hit], median[hit], strict=True)],
            }))  # fmt: skip
    if not found:
        return pd.DataFrame(columns=OUTLIER_COLUMNS)
    out = pd.concat(found, ignore_index=True)
    order = np.lexsort((out["measure"], out["side"], out["muscle"], out["study_id"],
                        -out["z"].abs().to_numpy()))  # fmt: skip
    return out.iloc[order].reset_index(drop=True)[OUTLIER_COLUMNS]


def mosaic_order(ids: Sequence[str], outliers: pd.DataFrame) -> list[tuple[str, float, str]]:
    """``(study_id, worst |z|, its reason)`` of every study, the worst outliers first."""
    worst: dict[str, tuple[float, str]] = {}
    for study_id, z, reason in outliers[["study_id", "z", "reason"]].itertuples(index=False):
        if study_id not in worst:  # the table is sorted worst first
            worst[study_id] = (abs(float(z)), str(reason))
    flagged = sorted(worst, key=lambda s: (-worst[s][0], s))
    rest = [s for s in ids if s not in worst]
    return [(s, *worst[s]) for s in flagged] + [(s, 0.0, "") for s in rest]


def _page_name(page: int) -> str:
    return "mosaic.html" if page == 1 else f"mosaic-{page}.html"


def write_mosaic(out: Path, ids: Sequence[str], outliers: pd.DataFrame,
                 ratings: Mapping[str, Rating], excluded: int = 0,
                 page_size: int | None = None) -> int:  # fmt: skip
    """Write ``mosaic.html`` (and further pages); returns the number of pages.

    Parameters
    ----------
    out : Path
        The batch output folder (thumbnails at ``<study>/thumb.png``).
    ids : sequence of str
        The studies shown (scored and not excluded), in ``summary.tsv`` order.
    outliers : pandas.DataFrame
        :func:`find_outliers`.
    ratings : mapping
        ``qc_ratings.tsv`` by study id (shown under each thumbnail).
    excluded : int
        Studies left out by ``qc_ratings.tsv`` (said on each page).
    page_size : int, optional
        Default ``configs/cohort_qc.yaml`` ``mosaic.page_size``.
    """
    esc = html.escape
    size = int(page_size or qc_settings()["mosaic"]["page_size"])
    order = mosaic_order(ids, outliers)
    pages = max(1, -(-len(order) // size))
    for old in out.glob("mosaic-*.html"):
        number = old.stem.removeprefix("mosaic-")
        if number.isdigit() and int(number) > pages:
            old.unlink(missing_ok=True)  # pages of an earlier, larger batch
    for page in range(1, pages + 1):
        cells = []
        for study_id, z, reason in order[(page - 1) * size : page * size]:
            folder = sanitise_id(study_id)
            has_thumb = (out / folder / THUMB_NAME).is_file()
            image = (f"<img src='{esc(folder, quote=True)}/{THUMB_NAME}' loading=lazy "
                     f"alt='{esc(study_id, quote=True)} mid-thigh slice'>"
                     if has_thumb else "<div class=nothumb>no image</div>")  # fmt: skip
            rating = ratings.get(study_id)
            note = f": {esc(rating.note)}" if rating and rating.note else ""
            rated = f"<br>rating {rating.rating or '-'}{note}" if rating else ""
            flag = f"<br><b>|z| {z:.1f}</b>: {esc(reason)}" if reason else ""
            link = f"{esc(folder, quote=True)}/report.html"
            cells.append(f"<figure><a href='{link}'>{image}</a><figcaption>"
                         f"{esc(study_id)}{flag}{rated}</figcaption></figure>")  # fmt: skip
        links = " ".join(f"<a href='{_page_name(p)}'>{p}</a>" if p != page else f"<b>{p}</b>"
                         for p in range(1, pages + 1))  # fmt: skip
        note = f" {excluded} studies excluded by qc_ratings.tsv are not shown." if excluded else ""
        body = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>mri_scoring "
                f"mosaic {page}/{pages}</title><style>{CSS} figure{{display:inline-block;"
                "width:170px;margin:4px;vertical-align:top;font-size:11px}} figure img{width:160px}"
                ".nothumb{width:160px;height:120px;background:#ddd}</style></head><body>"
                f"<h1>QC mosaic: {len(order)} studies, page {page} of {pages}</h1><p>Mid-thigh "
                "slice, fat fraction over the muscles; studies with the largest outliers "
                f"(outliers.tsv) first. Rate them in qc_ratings.tsv (study_id, rating 1-5, "
                f"exclude true/false, note).{note}</p><p>Pages: {links}</p>"
                + "".join(cells) + "</body></html>")  # fmt: skip
        atomic_write(out / _page_name(page), body)
    return pages
