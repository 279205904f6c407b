"""Per-muscle measures of one study, assembled into one table in one pass over the labels.

The work is confined to the bounding box of the labels (padded by the shell reach). The label
map is read once into a :class:`~.voxel_sets.LabelledRegion` (cores, shells, labelled voxels); the
measures read through it: fat fraction (:mod:`.fat`), edema and fascial edema (:mod:`.edema`),
atrophy (:mod:`.atrophy`). Missing inputs leave their columns NaN and say why (QC findings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..anatomy import GROUP, MUSCLE
from ..body import LimbOutline, outline_of_labels
from ..config import Settings, load_settings
from ..errors import QCFinding
from ..io.study import Study
from ..memory_layout import dense_layout
from .atrophy import AtrophyInputs, add_atrophy
from .compartments import measure_compartments
from .coverage import Coverage, SliceAreas, label_coverage, slice_areas
from .edema import EdemaMeasure, EdemaReference, measure_edema
from .fat import FatMeasure, measure_fat
from .masks import core_mask, exclusive_shell, padded_region, shell_reach_mm, steps_within
from .matched_levels import add_matched_levels
from .norms import ADULT, NO_NORM, body_size, ff_excess, norms_used
from .paediatric import age_years, sex_of
from .registry import MeasureInputs, run_registered
from .voxel_maps import VoxelMaps
from .voxel_sets import LabelledRegion, VoxelSet, run_parallel, thread_count

__all__ = [
    "MuscleTable",
    "quantify",
]


@dataclass(kw_only=True)
class MuscleTable:
    """Result of :func:`quantify`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per label (muscles, compartments, reference tissues, unknown names); the columns
        of :func:`~mri_scoring.schema.muscle_columns` that measuring fills. Missing measures are
        NaN.
    qc : list of QCFinding
        Findings raised while measuring (fat-water swap, semi-quantitative FF, ...).
    edema_reference : EdemaReference
    noise_sigma : float or None
        Estimated Dixon noise sigma (image units).
    voxel_maps : VoxelMaps or None
        The per-voxel masks and values the table was counted from (``quantify(...,
        voxel_maps=True)`` only).
    noise_source : str
        How ``noise_sigma`` was found: ``background``, ``tissue_differences``, ``none`` (the
        Rician correction was skipped) or "" (no Dixon images).
    slices : pandas.DataFrame
        ``slices.tsv``: one row per label and slice (``study_id``, ``label``, ``muscle``,
        ``side``, ``slice``, ``z_mm``, ``area_cm2``, ``ff_mean``).
    norms : dict
        Where each norm came from (``score.json`` ``norms``: ``volume``, ``fat``, ``t2``, each
        ``{basis, source, age_years}``, :func:`.norms.norms_used`).
    fat_scale : dict or None
        Subcutaneous-fat and marrow readings of a Dixon study (:mod:`.fat_scale`).
    compartments : pandas.DataFrame
        ``compartments.tsv``: one row per compartment and side (:mod:`.compartments`).
    """

    table: pd.DataFrame
    qc: list[QCFinding]
    edema_reference: EdemaReference
    noise_sigma: float | None = None
    voxel_maps: VoxelMaps | None = None
    noise_source: str = ""
    slices: pd.DataFrame | None = None
    norms: dict[str, dict[str, Any]] = field(default_factory=dict)
    fat_scale: dict[str, Any] | None = None
    compartments: pd.DataFrame | None = None


@dataclass(frozen=True, eq=False)
class _Counts:
    """Voxel counts per compact label (index 0 = background)."""

    voxels: np.ndarray
    core: np.ndarray
    small_core: np.ndarray
    shell: np.ndarray


def quantify(
    study: Study,
    settings: Settings | None = None,
    *,
    voxel_maps: bool = False,
    threads: int | None = None,
) -> MuscleTable:
    """Measure every label of a study in one pass.

    Parameters
    ----------
    study : Study
        A loaded (or phantom) study.
    settings : Settings, optional
        Default ``configs/settings.yaml``.
    voxel_maps : bool
        Also return the per-voxel masks and values behind the table (:class:`VoxelMaps`, for
        figures and map files; a few bytes per labelled voxel).
    threads : int, optional
        Threads for the independent steps (default: one per core, at most 4). A batch running
        one process per core passes 1. The numbers do not depend on it.

    Returns
    -------
    MuscleTable
    """
    settings = settings or load_settings()
    qset, eset = settings["quantify"], settings["edema"]
    region, counts = _labelled_region(study, qset, thread_count(threads))
    outline = _limb_outline(study, settings)
    fat = measure_fat(region, qset, settings["fat_scale"], outline)
    coverage = label_coverage(study.label_boxes, study.shape, study.affine)
    edema, areas = run_parallel(
        [
            partial(measure_edema, region, fat.ff, qset, eset),
            partial(slice_areas, region, fat.ff, coverage.axis),
        ],
        region.threads,
    )
    infos = [study.label_info[int(v)] for v in study.label_values]
    table = _assemble(study, infos, counts, fat, edema)
    qc = [*fat.qc, *edema.qc]
    slices, norms = _coverage_and_norms(study, table, coverage, areas, settings, qc)
    run_registered(MeasureInputs(study, region, table, fat.ff))
    maps = _voxel_maps(study, region, fat, edema) if voxel_maps else None
    compartments, compartment_qc = measure_compartments(study, settings, outline)
    qc.extend(compartment_qc)
    return MuscleTable(
        table=table,
        qc=qc,
        edema_reference=edema.reference,
        noise_sigma=fat.noise_sigma,
        voxel_maps=maps,
        noise_source=fat.noise_source,
        slices=slices,
        norms=norms,
        fat_scale=fat.fat_scale,
        compartments=compartments,
    )


def _limb_outline(study: Study, settings: Settings) -> LimbOutline | None:
    """Each limb's envelope on the slices the subcutaneous layer is read on, found once.

    The fat-scale check and the compartment measure both read the layer (with different body
    floors) on the same slices; None when no image outlines the body (neither reads it).
    """
    images = study.images
    if not ({"fat", "water"} <= images.keys() or "t1w" in images):
        return None
    return outline_of_labels(study.labels, study.voxel_size_mm, settings["fat_scale"]["max_slices"])


def _voxel_maps(
    study: Study, region: LabelledRegion, fat: FatMeasure, edema: EdemaMeasure
) -> VoxelMaps:
    """The measured voxels by flat C-order index into the grid, with their label values."""
    shape = study.shape
    c_order = (shape[1] * shape[2], shape[2], 1)
    values = study.label_values
    high = int(values.max()) if values.size else 0
    dtype = np.uint8 if high < 256 else np.uint16 if high < 65536 else np.int32
    lookup = np.concatenate([[0], values]).astype(dtype)
    return VoxelMaps(
        shape=shape,
        index=region.voxels.full_index(c_order),
        label=lookup[region.label],
        ff=fat.ff,
        core=region.use_core,
        edema_counted=edema.counted,
        edema=edema.edema,
        shell_index=region.shell.full_index(c_order),
        shell_label=lookup[region.shell_label],
        shell_edema=edema.shell_edema,
        z=_slice_index(region.voxels),
        shell_z=_slice_index(region.shell),
    )


def _slice_index(voxels: VoxelSet) -> np.ndarray:
    """Slice (z) index of each voxel of a VoxelSet on the full grid (int16 below 32768)."""
    dtype = np.int16 if voxels.full_shape[2] < 2**15 else np.int32
    return voxels.ijk[2].astype(dtype) + dtype(voxels.region[2].start)


def _coverage_and_norms(
    study: Study,
    table: pd.DataFrame,
    coverage: Coverage,
    areas: SliceAreas,
    settings: Settings,
    qc: list[QCFinding],
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Add coverage flags, max_csa_cm2, ff_excess and atrophy; the ``slices.tsv`` rows, the norms.

    Atrophy: the volume bases, then matched levels for the muscles the stack cuts. The table is
    changed in place; findings are appended to ``qc``.
    """
    table["max_csa_cm2"] = areas.max_csa_cm2[1:]
    is_muscle = table["kind"].isin((MUSCLE, GROUP)).to_numpy()
    coverage_cut = np.array([coverage.partial(i) for i in range(len(table))], bool)
    table["ff_excess"] = np.where(is_muscle, ff_excess(table["ff_mean"], study.metadata), np.nan)
    table["qc_flags"] = [
        ";".join(f for f in (flags, schema.PARTIAL_COVERAGE if cut else "") if f)
        for flags, cut in zip(table["qc_flags"], is_muscle & coverage_cut, strict=True)
    ]
    body, why_not = body_size(study.metadata)
    if why_not:
        qc.append(
            QCFinding(
                "warning", schema.BODY_SIZE_NOT_USED, why_not, str(study.files.get("metadata", ""))
            )
        )
    min_share = settings["atrophy"].get("min_share_muscles", 3)
    age, sex = age_years(study.metadata), sex_of(study.metadata)
    qc.extend(
        add_atrophy(
            table,
            AtrophyInputs(
                coverage=coverage, body=body, min_share_muscles=min_share, age_years=age, sex=sex
            ),
        )
    )
    norms = norms_used(study.metadata, body)
    qc.append(_norms_finding(norms, age, sex))
    rows = _slice_rows(table, areas.table)
    add_matched_levels(table, rows, coverage, settings["atrophy"].get("matched_levels", {}))
    return rows, norms


CHILDRENS = "children's"


def _norms_finding(
    norms: dict[str, dict[str, Any]], age: float | None, sex: str | None
) -> QCFinding:
    """The QC info line naming the norms used, their sources and the age."""
    used = [n["basis"] for n in norms.values() if n["basis"] != NO_NORM]
    child = any(b != ADULT for b in used)
    who = (
        "no age_years in study.json, adult norms assumed"
        if age is None
        else f"age {age:g} y{f', {sex}' if sex else ', sex not stated'}"
    )
    parts = "; ".join(f"{kind}: {n['basis']} ({n['source']})" for kind, n in norms.items())
    return QCFinding(
        "info",
        schema.NORMS_PAEDIATRIC if child else schema.NORMS_ADULT,
        f"{CHILDRENS if child else 'adult'} norms, {who}: {parts}",
    )


def _slice_rows(table: pd.DataFrame, areas: pd.DataFrame) -> pd.DataFrame:
    """``slices.tsv`` rows: the per-slice areas with the label's study, muscle and side."""
    names = table[["study_id", "label", "muscle", "side"]]
    rows = areas.merge(names, on="label", how="left")
    return rows[list(schema.SLICE_COLUMNS)]


def _labelled_region(
    study: Study, qset: dict[str, Any], threads: int
) -> tuple[LabelledRegion, _Counts]:
    """Cores, shells and labelled voxels of the region around all labels, read once."""
    voxel = study.voxel_size_mm
    n = len(study.label_values)
    infos = [study.label_info[int(v)] for v in study.label_values]
    kinds = np.array([""] + [i.kind for i in infos])
    is_muscle = np.isin(kinds, (MUSCLE, GROUP))

    shell_half = steps_within(shell_reach_mm(voxel, qset["fascial_shell_mm"]), voxel)
    region = padded_region(study.label_boxes, study.shape, shell_half)
    lab = np.ascontiguousarray(study.compact_labels(region))  # uint8 for up to 255 labels

    def labelled_voxels() -> tuple[VoxelSet, np.ndarray, np.ndarray]:
        core = core_mask(lab, voxel, qset["core_erosion_mm"])
        labelled = VoxelSet(np.flatnonzero(lab != 0), region, study.shape)  # bool: fast nonzero
        # compact dtype (uint8): 1 byte per voxel
        return labelled, lab.ravel()[labelled.index], core.ravel()[labelled.index]

    def shell_voxels() -> tuple[VoxelSet, np.ndarray]:
        shell = exclusive_shell(lab, voxel, qset["fascial_shell_mm"])
        index = np.flatnonzero(shell != 0)
        owner = shell.ravel()[index]
        muscle_shell = is_muscle[owner]  # shells are kept of muscles only
        return VoxelSet(index[muscle_shell], region, study.shape), owner[muscle_shell]

    # The two chains read the label map only: they run side by side.
    (labelled, lab_flat, core_flat), (shell, shell_lab) = run_parallel(
        [labelled_voxels, shell_voxels], threads
    )
    voxels = np.bincount(lab_flat, minlength=n + 1)
    core_count = np.bincount(lab_flat[core_flat], minlength=n + 1)
    small_core = (core_count < qset["min_core_voxels"]) & (voxels > 0)
    use_core = core_flat | small_core[lab_flat]
    # Voxels are read by flat index in each image's own memory layout; an image that is a
    # flipped or sliced view (never one loaded from files) is copied once into memory order.
    images = {role: dense_layout(image) for role, image in study.images.items()}
    labelled_region = LabelledRegion(
        study=study,
        labels=lab,
        voxels=labelled,
        label=lab_flat,
        use_core=use_core,
        kinds=kinds,
        is_muscle=is_muscle,
        shell=shell,
        shell_label=shell_lab,
        images=images,
        n_labels=n,
        threads=threads,
    )
    shell_count = np.bincount(shell_lab, minlength=n + 1)
    return labelled_region, _Counts(voxels, core_count, small_core, shell_count)


def _assemble(
    study: Study, infos: list, counts: _Counts, fat: FatMeasure, edema: EdemaMeasure
) -> pd.DataFrame:
    rows = np.arange(1, len(infos) + 1)
    data: dict[str, Any] = {
        "study_id": study.study_id,
        "label": study.label_values.astype(int),
        "muscle": [i.muscle for i in infos],
        "side": [i.side for i in infos],
        "group": [i.group for i in infos],
        "kind": [i.kind for i in infos],
        "voxels": counts.voxels[rows].astype(int),
        "volume_ml": counts.voxels[rows] * study.voxel_volume_ml,
        "core_voxels": counts.core[rows],
    }
    for column in ("ff_mean", "ff_median", "ff_p90", "ff_mean_whole", "ff_median_whole"):
        data[column] = fat.columns[column][rows] if column in fat.columns else np.nan
    for column in ("ff_median_fatref", "ff_mean_fatref"):  # empty without --fat-reference
        data[column] = fat.columns[column][rows] if column in fat.columns else np.nan
    data["ff_source"] = fat.source
    edema_cols = edema.columns
    for column in ("edema_fraction", "edema_z", "fascial_edema_fraction", "t2_median_ms"):
        data[column] = edema_cols[column][rows] if column in edema_cols else np.nan
    data["edema_source"] = edema_cols.get("edema_source", "")
    data["shell_voxels"] = counts.shell[rows]
    order = [c for c in schema.muscle_columns() if c in data]  # schema order, extras after
    table = pd.DataFrame({c: data[c] for c in [*order, *(c for c in data if c not in order)]})
    flags = []
    for i, info in enumerate(infos):
        row_flags = []
        if counts.small_core[i + 1]:
            row_flags.append(schema.SMALL_CORE_WHOLE_MASK_USED)
        if fat.source == "t1w_semiquantitative":
            row_flags.append(schema.FF_SEMIQUANTITATIVE)
        if info.kind == "unknown":
            row_flags.append(schema.UNKNOWN_LABEL)
        row_flags.extend(edema.flags.get(i + 1, ()))
        flags.append(";".join(row_flags))
    table["qc_flags"] = flags
    return table
