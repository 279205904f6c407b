"""The one registry of per-muscle measures: which muscle-table columns each one fills.

Every column of ``muscles.tsv`` is filled by one entry of :data:`MEASURES` and described by one
record of :data:`mri_scoring.schema.COLUMNS` (name, unit, report header, description);
``tests/test_registry.py`` checks both ways. The built-in measures are computed in
:func:`~mri_scoring.measure.quantify.quantify`'s one pass over the labels (and the grades in
:mod:`mri_scoring.grading`); their entries name the columns they fill.

A new per-muscle measure is a function of :class:`MeasureInputs` returning one value per table
row for each of its columns, registered with :func:`register`; ``quantify`` calls it after the
built-in measures, so it may read their columns. Then add one :class:`~mri_scoring.schema.Column`
record per column to :data:`mri_scoring.schema.COLUMNS` (and its phantom truth): the column
appears in ``muscles.tsv``, ``muscles_long.tsv`` and, with ``report`` set, the report's table.

Examples
--------
>>> sorted(MEASURES["fat"].columns)[:2]
['ff_mean', 'ff_mean_whole']
>>> problems()
[]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import schema

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..io.study import Study
    from .voxel_sets import LabelledRegion

__all__ = ["MEASURES", "Measure", "MeasureInputs", "problems", "register", "run_registered"]


@dataclass(frozen=True)
class MeasureInputs:
    """What a registered measure may read.

    Attributes
    ----------
    study : Study
        The loaded study (images, label meanings, metadata).
    region : LabelledRegion
        The labelled voxels, cores and shells of the region around the labels, read once.
    table : pandas.DataFrame
        The muscle table so far, one row per label (the built-in columns are filled).
    ff : numpy.ndarray or None
        Fat fraction of each labelled voxel (``region.voxels`` order), None without one.
    """

    study: Study
    region: LabelledRegion
    table: pd.DataFrame
    ff: np.ndarray | None


@dataclass(frozen=True, kw_only=True)
class Measure:
    """One per-muscle measure: its name, the columns it fills, how it is computed.

    ``compute`` is None for a built-in measure (computed in quantify's one pass or in grading);
    otherwise it maps :class:`MeasureInputs` to ``{column: one value per table row}``.
    """

    name: str
    columns: tuple[str, ...]
    compute: Callable[[MeasureInputs], Mapping[str, Any]] | None = None
    where: str = "measure.quantify"


def _builtin(name: str, where: str, *columns: str) -> Measure:
    return Measure(name=name, columns=columns, where=where)


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        _builtin("identity", "measure.quantify", "study_id", "label", "muscle", "side", "group",
                 "kind"),
        _builtin("volume", "measure.quantify", "voxels", "volume_ml", "core_voxels",
                 "shell_voxels"),
        _builtin("fat", "measure.fat", "ff_mean", "ff_median", "ff_p90", "ff_mean_whole",
                 "ff_median_whole", "ff_source"),
        _builtin("fat_reference", "measure.fat_scale", "ff_median_fatref", "ff_mean_fatref"),
        _builtin("edema", "measure.edema", "edema_fraction", "edema_z", "edema_source",
                 "t2_median_ms", "fascial_edema_fraction"),
        _builtin("grades", "grading", "mercuri_grade", "edema_grade"),
        _builtin("atrophy", "measure.atrophy", "lean_volume_ml", "volume_share",
                 "expected_share", "atrophy_index", "atrophy_index_lean", "lr_volume_ratio",
                 "expected_volume_ml", "expected_volume_p10_ml", "expected_volume_p90_ml",
                 "volume_ratio", "atrophy_basis", "atrophy_note"),
        _builtin("max_csa", "measure.coverage", "max_csa_cm2"),
        _builtin("ff_excess", "measure.norms", "ff_excess"),
        _builtin("qc_flags", "measure.quantify", "qc_flags"),
    )
}  # fmt: skip  # (name, where, columns...) per entry: ruff would give each column a line
"""Every per-muscle measure, built-in or registered, by name."""


def register(
    name: str, columns: tuple[str, ...]
) -> Callable[[Callable[[MeasureInputs], Mapping[str, Any]]], Callable[..., Any]]:
    """Register a per-muscle measure (a decorator).

    Parameters
    ----------
    name : str
        The measure's name (unique).
    columns : tuple of str
        The muscle-table columns it fills; each needs a record in
        :data:`mri_scoring.schema.COLUMNS` (:func:`problems` says which do not).

    Raises
    ------
    ValueError
        The name is taken or a column is filled by another measure.
    """

    def decorator(
        function: Callable[[MeasureInputs], Mapping[str, Any]],
    ) -> Callable[[MeasureInputs], Mapping[str, Any]]:
        taken = {c: m.name for m in MEASURES.values() for c in m.columns}
        clash = [c for c in columns if c in taken]
        if name in MEASURES or clash:
            raise ValueError(f"measure {name!r} or its columns {clash} are already registered")
        MEASURES[name] = Measure(
            name=name, columns=tuple(columns), compute=function, where=function.__module__
        )
        return function

    return decorator


def problems() -> list[str]:
    """What is wrong between :data:`MEASURES` and the muscle columns of the schema.

    A registered column without a :class:`~mri_scoring.schema.Column` record (it would not be
    written, or be written without unit and header), a muscle column no measure fills, a column
    two measures fill. Empty when the two agree.
    """
    declared = schema.muscle_columns()
    out = []
    seen: dict[str, str] = {}
    for measure in MEASURES.values():
        for column in measure.columns:
            if column not in declared:
                out.append(
                    f"measure {measure.name!r} fills {column!r}, which has no Column "
                    "record in schema.COLUMNS"
                )
            if column in seen:
                out.append(f"{column!r} is filled by both {seen[column]!r} and {measure.name!r}")
            seen[column] = measure.name
    out += [f"column {c!r} is filled by no measure" for c in declared if c not in seen]
    return out


def run_registered(inputs: MeasureInputs) -> None:
    """Fill the columns of every registered (not built-in) measure into ``inputs.table``."""
    rows = len(inputs.table)
    for measure in MEASURES.values():
        if measure.compute is None:
            continue
        values = measure.compute(inputs)
        if set(values) != set(measure.columns):
            raise ValueError(
                f"measure {measure.name!r} returned {sorted(values)}, registered "
                f"{sorted(measure.columns)}"
            )
        for column in measure.columns:
            value = values[column]
            if np.ndim(value) and len(value) != rows:
                raise ValueError(
                    f"measure {measure.name!r}: {column} has {len(value)} values for {rows} rows"
                )
            inputs.table[column] = value
