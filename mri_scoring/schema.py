"""The one table of output columns and the one registry of QC codes, shared by every stage.

Kept apart from the code that fills them so that a later stage (grading, output) can order or
read the columns without importing the measurement code.

:data:`COLUMNS` holds one :class:`Column` record per column of ``muscles.tsv``,
``slices.tsv`` and ``summary.tsv``: its name, table, unit, the report's scale and header and a
one-line description. The muscle-table order (:func:`muscle_columns`), the report's per-muscle
table and units (:func:`report_columns`), the cohort figure's channels (:func:`cohort_columns`)
and the README's column list (:func:`columns_markdown`) are read from it.

:data:`QC_CODES` holds one :class:`QCCode` per QC code (study finding or ``qc_flags`` row
flag): its level and one-line meaning. Code raises them by the module constants below
(``schema.PARTIAL_COVERAGE``, ...), never as bare strings.

Examples
--------
>>> muscle_columns()[:3]
['study_id', 'label', 'muscle']
>>> column("ff_median").unit
'fraction'
>>> QC_CODES[PARTIAL_COVERAGE].level
'row flag'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "COLUMNS",
    "COMPARTMENT_COLUMNS",
    "DISCLAIMER",
    "EDEMA_SOURCES",
    "FF_SOURCES",
    "QC_CODES",
    "QC_LEVELS",
    "SLICE_COLUMNS",
    "SUMMARY_FIXED",
    "SUMMARY_POPULATION",
    "TABLES",
    "Column",
    "QCCode",
    "cohort_columns",
    "column",
    "columns_markdown",
    "muscle_columns",
    "qc_markdown",
    "report_columns",
]

TABLES = ("muscles", "slices", "compartments", "summary")
"""The tables whose columns :data:`COLUMNS` records (``<table>.tsv`` of a study or batch)."""


@dataclass(frozen=True, kw_only=True)
class Column:
    """One output column.

    Attributes
    ----------
    name : str
        The column's name in its TSV file.
    table : str
        ``muscles`` (``muscles.tsv``, ``muscles_long.tsv`` and the report's table), ``slices``
        (``slices.tsv``) or ``summary`` (``summary.tsv``); see :data:`TABLES`.
    unit : str
        Unit of the value as written: ``ml``, ``cm2``, ``ms``, ``mm``, ``fraction`` (0-1),
        ``ratio``, ``z``, ``count``, ``grade``, ``index``, ``probability``, ``log10`` or
        ``text``.
    header : str
        Human header with the unit as shown (e.g. ``FF median (%)``): the report's column
        header when ``report_scale`` is set or the column is a text column of the report.
    description : str
        One line: what the value is.
    report : bool
        Shown in the report's per-muscle table (``muscles`` columns only).
    report_scale : float or None
        Factor from the written value to the shown one (100 for a fraction shown in %); None
        for a text column.
    report_digits : int
        Decimals shown in the report.
    cohort : bool
        A channel of the cohort heat map (``cohort_heatmap.svg``).
    """

    name: str
    table: str
    unit: str
    header: str
    description: str
    report: bool = False
    report_scale: float | None = 1.0
    report_digits: int = 0
    cohort: bool = False


_TEXT, _PCT, _1, _2, _0 = (None, 0), (100.0, 1), (1.0, 1), (1.0, 2), (1.0, 0)


def _m(
    name: str,
    unit: str,
    header: str,
    description: str,
    report: tuple[float | None, int] | None = None,
    cohort: bool = False,
) -> Column:
    """A ``muscles.tsv`` column; ``report`` = (scale, digits) of the report's table, or None."""
    scale, digits = report or (1.0, 0)
    return Column(
        name=name,
        table="muscles",
        unit=unit,
        header=header,
        description=description,
        report=report is not None,
        report_scale=scale,
        report_digits=digits,
        cohort=cohort,
    )


# A table, one record per column with its fields in a fixed order: ruff format would give each
# field its own line.
# fmt: off
COLUMNS: tuple[Column, ...] = (
    # muscles.tsv, in output order (columns a measure adds without a record follow them).
    _m("study_id", "text", "study", "the study's id"),
    _m("label", "count", "label", "the label value in the label map"),
    _m("muscle", "text", "muscle", "the muscle, compartment or reference tissue name", _TEXT),
    _m("side", "text", "side", "left, right or empty (unsided)", _TEXT),
    _m("group", "text", "group", "the muscle's compartment", _TEXT),
    _m("kind", "text", "kind", "muscle, group (compartment), reference or unknown"),
    _m("voxels", "count", "voxels", "labelled voxels"),
    _m("volume_ml", "ml", "volume (ml)", "labelled volume", _1),
    _m("core_voxels", "count", "core voxels", "voxels of the eroded core"),
    _m("ff_mean", "fraction", "FF mean (%)", "mean fat fraction over the core"),
    _m("ff_median", "fraction", "FF median (%)", "median fat fraction over the core", _PCT,
       cohort=True),
    _m("ff_p90", "fraction", "FF p90 (%)", "90th percentile of the core's fat fraction", _PCT),
    _m("ff_mean_whole", "fraction", "FF mean, whole mask (%)",
       "mean fat fraction over the whole mask"),
    _m("ff_median_whole", "fraction", "FF median, whole mask (%)",
       "median fat fraction over the whole mask"),
    _m("ff_median_fatref", "fraction", "FF median, fat-referenced (%)",
       "ff_median x fat_scale.adipose_ff / subcutaneous fat FF; empty without --fat-reference"),
    _m("ff_mean_fatref", "fraction", "FF mean, fat-referenced (%)",
       "ff_mean x fat_scale.adipose_ff / subcutaneous fat FF; empty without --fat-reference"),
    _m("ff_source", "text", "FF source", "dixon, ff_map, t1w_semiquantitative or empty"),
    _m("mercuri_grade", "grade", "Mercuri grade (FF)",
       "0-4 from ff_median and grades.mercuri_ff_bands", _0),
    _m("edema_fraction", "fraction", "edema (% of core)", "share of the core read as edema",
       _PCT, cohort=True),
    _m("edema_z", "z", "edema z", "STIR core median against the normal-muscle reference, in SDs"),
    _m("edema_source", "text", "edema source", "stir, t2map or empty"),
    _m("edema_grade", "grade", "edema grade", "0-3 from edema_fraction and its bands", _0),
    _m("t2_median_ms", "ms", "T2 median (ms)", "median water T2 of the core (T2 map)", _1),
    _m("fascial_edema_fraction", "fraction", "fascial edema (% of shell)",
       "share of the peri-muscular shell read as edema", _PCT, cohort=True),
    _m("shell_voxels", "count", "shell voxels", "voxels of the peri-muscular shell"),
    _m("lean_volume_ml", "ml", "lean volume (ml)", "volume_ml x (1 - ff_mean_whole)"),
    _m("volume_share", "fraction", "volume share", "share of its side's covered muscle volume"),
    _m("expected_share", "fraction", "expected share", "the normative share, renormalised"),
    _m("atrophy_index", "ratio", "atrophy index (measured / expected)",
       "volume_ratio or the share index, on atrophy_basis", _2),
    _m("atrophy_index_lean", "ratio", "lean atrophy index", "atrophy_index of the lean volume"),
    _m("lr_volume_ratio", "ratio", "left/right volume ratio", "this side's volume / the other's"),
    _m("expected_volume_ml", "ml", "expected volume (ml)",
       "whole-muscle volume expected for body size (and, under 20 y, age and sex)"),
    _m("expected_volume_p10_ml", "ml", "expected volume p10 (ml)",
       "10th centile of healthy muscles: the normal band's lower end"),
    _m("expected_volume_p90_ml", "ml", "expected volume p90 (ml)",
       "90th centile of healthy muscles: the normal band's upper end"),
    _m("volume_ratio", "ratio", "volume ratio", "volume_ml / expected_volume_ml"),
    _m("atrophy_basis", "text", "atrophy basis",
       "body_size, body_size_paediatric, share, matched_levels or none", _TEXT),
    _m("atrophy_note", "text", "atrophy note", "why atrophy was not assessed, or a stand-in"),
    _m("max_csa_cm2", "cm2", "max CSA (cm2)", "largest cross-sectional area over the slices"),
    _m("ff_excess", "fraction", "FF excess (pp)", "ff_mean minus the healthy mean for age and sex"),
    _m("qc_flags", "text", "QC flags", "the row's QC flags, ';'-separated", _TEXT),
    # slices.tsv: one row per label and slice.
    *(Column(name=n, table="slices", unit=u, header=h, description=d) for n, u, h, d in (
        ("study_id", "text", "study", "the study's id"),
        ("label", "count", "label", "the label value"),
        ("muscle", "text", "muscle", "the label's muscle"),
        ("side", "text", "side", "left, right or empty"),
        ("slice", "index", "slice", "index along the stack axis"),
        ("z_mm", "mm", "z (mm)", "world z of the slice centre"),
        ("area_cm2", "cm2", "area (cm2)", "cross-sectional area in the slice plane"),
        ("ff_mean", "fraction", "FF mean (%)", "whole-mask mean fat fraction in the slice"),
    )),
    # compartments.tsv: one row per compartment and side (subcutaneous for now).
    *(Column(name=n, table="compartments", unit=u, header=h, description=d) for n, u, h, d in (
        ("study_id", "text", "study", "the study's id"),
        ("compartment", "text", "compartment", "subcutaneous (the fat between skin and muscle)"),
        ("side", "text", "side", "left or right"),
        ("voxels", "count", "voxels", "measured voxels, clear of skin and muscle borders"),
        ("thickness_mm", "mm", "thickness (mm)", "median thickness, skin surface to muscle"),
        ("ff_median", "fraction", "FF median (%)", "median fat fraction of the measured voxels"),
        ("edema_fraction", "fraction", "edema (%)",
         "share read as edema on STIR against the fat's own level (STIR only)"),
        ("edema_source", "text", "edema source", "stir or empty"),
        ("note", "text", "note", "why a cell is empty (thin fat, no STIR, ...)"),
    )),
    # summary.tsv: one row per study; each template feature's degree follows these.
    *(Column(name=n, table="summary", unit=u, header=h, description=d) for n, u, h, d in (
        ("study_id", "text", "study", "the study's id"),
        ("p_imnm", "probability", "P(IMNM)", "posterior at the template's prior"),
        ("p_imnm_lo", "probability", "P(IMNM) 5 %", "lower end of the 90 % interval"),
        ("p_imnm_hi", "probability", "P(IMNM) 95 %", "upper end of the 90 % interval"),
        ("log10_likelihood_ratio", "log10", "log10 LR", "evidence for IMNM over DM"),
        ("call", "text", "call",
         "the first template's call: one of its two classes (IMNM, DM) or indeterminate"),
        ("qc", "text", "QC", "the study's QC warning codes"),
        # with a population prior only (after the features): never p_imnm or the call
        ("population", "text", "population", "the population prior preset"),
        ("p_imnm_population", "probability", "P(IMNM), population",
         "posterior at the population prior (same likelihood ratio)"),
        ("p_imnm_population_lo", "probability", "P(IMNM) population 5 %",
         "lower end of its 90 % interval"),
        ("p_imnm_population_hi", "probability", "P(IMNM) population 95 %",
         "upper end of its 90 % interval"),
    )),
)
# fmt: on
"""Every output column, one record each (see :class:`Column`)."""


def column(name: str, table: str = "muscles") -> Column:
    """The record of one column of a table.

    Raises
    ------
    KeyError
        No such column.
    """
    for record in COLUMNS:
        if record.name == name and record.table == table:
            return record
    raise KeyError(f"no column {name!r} in {table}.tsv (add a Column record to schema.COLUMNS)")


def _names(table: str) -> list[str]:
    return [c.name for c in COLUMNS if c.table == table]


def muscle_columns() -> list[str]:
    """Columns of ``muscles.tsv``, in output order (extra columns follow them)."""
    return _names("muscles")


def report_columns() -> list[Column]:
    """The columns of the report's per-muscle table, in order."""
    return [c for c in COLUMNS if c.table == "muscles" and c.report]


def cohort_columns() -> tuple[str, ...]:
    """The muscle-table columns drawn as channels of the cohort heat map, in order."""
    return tuple(c.name for c in COLUMNS if c.table == "muscles" and c.cohort)


def columns_markdown(table: str = "muscles") -> str:
    """The README's list of a table's columns (name, unit, description), one line each."""
    return "\n".join(
        f"- `{c.name}` ({c.unit}): {c.description}" for c in COLUMNS if c.table == table
    )


SLICE_COLUMNS: tuple[str, ...] = tuple(_names("slices"))
"""Columns of ``slices.tsv`` (one row per label and slice; ``slice`` indexes the stack axis,
``z_mm`` is the world z of the slice centre, ``ff_mean`` the whole-mask mean in that slice)."""

COMPARTMENT_COLUMNS: tuple[str, ...] = tuple(_names("compartments"))
"""Columns of ``compartments.tsv`` (one row per compartment and side; ``edema_fraction`` from
STIR only; ``note`` says why a cell is empty)."""

SUMMARY_POPULATION = [
    "population",
    "p_imnm_population",
    "p_imnm_population_lo",
    "p_imnm_population_hi",
]
"""``summary.tsv`` columns of a population prior (after the features; only when some study of
the table has one): the preset's name and the posterior at its prior, never ``p_imnm``."""

SUMMARY_FIXED = [n for n in _names("summary") if n not in SUMMARY_POPULATION]
"""The first columns of ``summary.tsv`` (``qc``: the study's warning codes); each template
feature's degree follows."""

QC_LEVELS = ("warning", "info", "row flag")
"""A QC code's level: a study finding (``warning`` or ``info``, in ``score.json``; warnings
also in ``summary.tsv``'s ``qc``) or a ``row flag`` of the ``qc_flags`` column."""


@dataclass(frozen=True)
class QCCode:
    """One QC code: its level (:data:`QC_LEVELS`) and one line of meaning."""

    code: str
    level: str
    meaning: str


# Study findings of reading (io).
IMAGE_NOT_USED = "image_not_used"
DIXON_INCOMPLETE = "dixon_incomplete"
RESAMPLED = "resampled"
NONFINITE_VOXELS = "nonfinite_voxels"
NO_KNOWN_MUSCLE = "no_known_muscle"
LABEL_SCHEME_DETECTED = "label_scheme_detected"
LABEL_NOT_IN_TABLE = "label_not_in_table"
LABEL_UNKNOWN = "label_unknown"
LABEL_TABLE_IGNORED = "label_table_ignored"
HEADER_PIXDIM_INVALID = "header_pixdim_invalid"
HEADER_SCL_SLOPE_ZERO = "header_scl_slope_zero"
UNSIDED_LABELS_SPLIT = "unsided_labels_split"
SIDE_CHECK_SKIPPED = "side_check_skipped"
SIDE_MISMATCH = "side_mismatch"
LABEL_FILE_IGNORED = "label_file_ignored"
ADDUCTOR_MINIMUS_APART = "adductor_minimus_apart"
ROLE_REASSIGNED = "role_reassigned"
ROLE_CONTENT_MISMATCH = "role_content_mismatch"
T2MAP_SECONDS = "t2map_seconds"
# Study findings of measuring.
FF_SEMIQUANTITATIVE = "ff_semiquantitative"
FAT_WATER_SWAP_SUSPECTED = "fat_water_swap_suspected"
FAT_SCALE_COMPRESSED = "fat_scale_compressed"
FAT_REFERENCE_UNAVAILABLE = "fat_reference_unavailable"
T2_FAT_NOT_EXCLUDED = "t2_fat_not_excluded"
EDEMA_REFERENCE_MISSING = "edema_reference_missing"
EDEMA_REFERENCE_UNCERTAIN = "edema_reference_uncertain"
EDEMA_REFERENCE_REANCHORED = "edema_reference_reanchored"
EDEMA_REFERENCE_UNVERIFIED = "edema_reference_unverified"
EDEMA_REFERENCE_UNTRUSTED = "edema_reference_untrusted"
EDEMA_REFERENCE_FROM_T2MAP = "edema_reference_from_t2map"
T2MAP_ASSUMPTIONS = "t2map_assumptions"
NOISE_FROM_TISSUE = "noise_from_tissue"
NOISE_SIGMA_UNKNOWN = "noise_sigma_unknown"
GLOBAL_ATROPHY_NOT_ASSESSABLE = "global_atrophy_not_assessable"
BODY_SIZE_NOT_USED = "body_size_not_used"
# Study findings of writing.
DICOM_OUT_UNAVAILABLE = "dicom_out_unavailable"
VOLUME_NORM_BELOW_REFERENCE_AGE = "volume_norm_below_reference_age"
NORMS_PAEDIATRIC = "norms_paediatric"
NORMS_ADULT = "norms_adult"
SUBCUTANEOUS_NOT_MEASURED = "subcutaneous_not_measured"
# Per-row flags (the ``qc_flags`` column, ``;``-separated).
SMALL_CORE_WHOLE_MASK_USED = "small_core_whole_mask_used"
UNKNOWN_LABEL = "unknown_label"
EDEMA_TOO_FEW_VOXELS = "edema_too_few_voxels"
FASCIAL_TOO_FEW_VOXELS = "fascial_too_few_voxels"
PARTIAL_COVERAGE = "partial_coverage"

_W, _I, _R = QC_LEVELS
# An aligned table (code, level, meaning), one record per line: ruff format would split it.
# fmt: off
QC_CODES: dict[str, QCCode] = {q.code: q for q in (
    # Study findings of reading (io).
    QCCode(IMAGE_NOT_USED, _I, "image files whose names match no role in configs/layouts.yaml"),
    QCCode(DIXON_INCOMPLETE, _W, "one Dixon image without the other: no Dixon FF"),
    QCCode(RESAMPLED, _I, "an image was resampled onto the label grid (linear)"),
    QCCode(NONFINITE_VOXELS, _W, "NaN or infinite voxels of an image, excluded"),
    QCCode(NO_KNOWN_MUSCLE, _W, "no label is a known thigh muscle or compartment"),
    QCCode(LABEL_SCHEME_DETECTED, _I, "no label table: values identified as a known scheme"),
    QCCode(LABEL_NOT_IN_TABLE, _W, "label values in the map but not in the table: unknown"),
    QCCode(LABEL_UNKNOWN, _W, "label names the vocabulary does not know (kept, not used)"),
    QCCode(LABEL_TABLE_IGNORED, _W, "--labels was given: the study's label table is ignored"),
    QCCode(HEADER_PIXDIM_INVALID, _W, "invalid pixdim: the sform affine gives the voxel size"),
    QCCode(HEADER_SCL_SLOPE_ZERO, _W, "scl_slope is 0 in the header: read as unscaled (1)"),
    QCCode(UNSIDED_LABELS_SPLIT, _I, "unsided labels in both thighs split at the body midline"),
    QCCode(SIDE_CHECK_SKIPPED, _I, "sides not checked: no body midline found"),
    QCCode(SIDE_MISMATCH, _W, "muscles lie on the other side of the body midline from their name"),
    QCCode(LABEL_FILE_IGNORED, _I, "a .txt beside the label map in no label table format: unused"),
    QCCode(ADDUCTOR_MINIMUS_APART, _I, "adductor minimus labelled apart: AM features use AM only"),
    QCCode(ROLE_REASSIGNED, _W, "a file found by name for one role holds another: used as that"),
    QCCode(ROLE_CONTENT_MISMATCH, _W, "a file's values contradict its role or declared scale"),
    QCCode(T2MAP_SECONDS, _I, "the T2 map was in seconds (BIDS): converted to ms"),
    # Study findings of measuring.
    QCCode(FF_SEMIQUANTITATIVE, _W, "FF from T1w intensities, not a Dixon/PDFF (also a row flag)"),
    QCCode(FAT_WATER_SWAP_SUSPECTED, _W, "fat and reference tissue read lean: fat/water swapped?"),
    QCCode(FAT_SCALE_COMPRESSED, _W, "subcutaneous fat reads below calibrated Dixon: FF reads low"),
    QCCode(FAT_REFERENCE_UNAVAILABLE, _W, "--fat-reference without a subcutaneous fat reading"),
    QCCode(T2_FAT_NOT_EXCLUDED, _I, "no FF image: fatty voxels may pass for edema on the T2 map"),
    QCCode(EDEMA_REFERENCE_MISSING, _W, "too few non-fatty muscle voxels for a STIR reference"),
    QCCode(EDEMA_REFERENCE_UNCERTAIN, _W, "little muscle reads normal: reference may be edematous"),
    QCCode(EDEMA_REFERENCE_REANCHORED, _I,
           "most muscle reads edematous: reference = darker muscle"),
    QCCode(EDEMA_REFERENCE_UNVERIFIED, _I,
           "STIR reference from muscle only: total edema reads normal"),
    QCCode(EDEMA_REFERENCE_UNTRUSTED, _W,
           "STIR reference outside its prior: edema cells empty (also a row flag)"),
    QCCode(EDEMA_REFERENCE_FROM_T2MAP, _W,
           "the T2 map found the STIR reference edematous: edema from T2"),
    QCCode(NOISE_FROM_TISSUE, _I,
           "no image background: Dixon noise sigma from muscle voxel differences"),
    QCCode(NOISE_SIGMA_UNKNOWN, _W, "no noise sigma: Rician correction and noise floor skipped"),
    QCCode(T2MAP_ASSUMPTIONS, _I,
           "T2 map read as fat-corrected water T2 at the stated field strength"),
    QCCode(GLOBAL_ATROPHY_NOT_ASSESSABLE, _I,
           "no height and mass: a loss every muscle shares is not seen"),
    QCCode(BODY_SIZE_NOT_USED, _W, "height_m / mass_kg: one missing, not a number or implausible"),
    # Study findings of writing.
    QCCode(DICOM_OUT_UNAVAILABLE, _W, "--dicom-out: no DICOM references, no DICOM results (why)"),
    QCCode(VOLUME_NORM_BELOW_REFERENCE_AGE, _I,
           "younger than the volume norms' youngest age: no expected volume"),
    QCCode(NORMS_PAEDIATRIC, _I, "children's norms (volume, fat, T2): their sources and the age"),
    QCCode(NORMS_ADULT, _I, "adult norms (volume, fat, T2): their sources and the age"),
    QCCode(SUBCUTANEOUS_NOT_MEASURED, _I,
           "a side's subcutaneous fat not measured (thin, no outline image): compartments.tsv"),
    # Row flags of the qc_flags column.
    QCCode(EDEMA_TOO_FEW_VOXELS, _R, "too few assessable voxels for an edema fraction: cell empty"),
    QCCode(FASCIAL_TOO_FEW_VOXELS, _R,
           "too few shell voxels for a fascial-edema fraction: cell empty"),
    QCCode(SMALL_CORE_WHOLE_MASK_USED, _R,
           "the eroded core was too small: the whole mask was measured"),
    QCCode(UNKNOWN_LABEL, _R,
           "a label name outside the vocabulary (measured, not used by templates)"),
    QCCode(PARTIAL_COVERAGE, _R, "label cut by the field of view: volume not assessed (also info)"),
)}
# fmt: on
"""Every QC code: study findings of reading and measuring, and ``qc_flags`` row flags."""


def qc_markdown() -> str:
    """The README's QC code list (code, level, meaning), one line each."""
    return "\n".join(f"- `{q.code}` ({q.level}): {q.meaning}" for q in QC_CODES.values())


FF_SOURCES = ("dixon", "ff_map", "t1w_semiquantitative", "")
"""Values of the ``ff_source`` column ("" = no fat-fraction image)."""

EDEMA_SOURCES = ("stir", "t2map", "")
"""Values of the ``edema_source`` column ("" = no STIR or T2 map)."""

DISCLAIMER = (
    "Research software: pattern similarity to published IMNM, DM and muscular-dystrophy "
    "imaging findings. Not a diagnostic device; not for clinical decisions."
)
"""The ``disclaimer`` of every ``score.json`` and the banner of every report page."""
