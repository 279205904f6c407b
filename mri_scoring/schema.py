"""Names shared by every stage: the muscle-table columns and the measurement QC codes.

Kept apart from the code that fills them so that a later stage (grading, output) can order or
read the columns without importing the measurement code.
"""

from __future__ import annotations

MUSCLE_COLUMNS: list[str] = [
    "study_id", "label", "muscle", "side", "group", "kind", "voxels", "volume_ml", "core_voxels",
    "ff_mean", "ff_median", "ff_p90", "ff_mean_whole", "ff_median_whole", "ff_source",
    "mercuri_grade", "edema_fraction", "edema_z", "edema_source", "edema_grade",
    "t2_median_ms", "fascial_edema_fraction", "shell_voxels", "lean_volume_ml", "volume_share",
    "expected_share", "atrophy_index", "atrophy_index_lean", "lr_volume_ratio",
    "expected_volume_ml", "volume_ratio", "atrophy_basis", "atrophy_note", "max_csa_cm2",
    "ff_excess", "qc_flags",
]  # fmt: skip
"""Columns of ``muscles.tsv``, in output order (extra columns follow them)."""

SLICE_COLUMNS: tuple[str, ...] = (
    "study_id", "label", "muscle", "side", "slice", "z_mm", "area_cm2", "ff_mean",
)
"""Columns of ``slices.tsv`` (one row per label and slice; ``slice`` indexes the stack axis,
``z_mm`` is the world z of the slice centre, ``ff_mean`` the whole-mask mean in that slice)."""

# QC codes raised while measuring (study-level findings in ``score.json``).
FF_SEMIQUANTITATIVE = "ff_semiquantitative"
FAT_WATER_SWAP_SUSPECTED = "fat_water_swap_suspected"
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
# Per-row flags (the ``qc_flags`` column, ``;``-separated).
SMALL_CORE_WHOLE_MASK_USED = "small_core_whole_mask_used"
UNKNOWN_LABEL = "unknown_label"
EDEMA_TOO_FEW_VOXELS = "edema_too_few_voxels"
FASCIAL_TOO_FEW_VOXELS = "fascial_too_few_voxels"
PARTIAL_COVERAGE = "partial_coverage"

MEASURE_QC_CODES: dict[str, str] = {
    FF_SEMIQUANTITATIVE: "fat fraction estimated from T1w intensities, not a Dixon/PDFF measure",
    FAT_WATER_SWAP_SUSPECTED: "fat and reference tissue read lean: fat and water may be swapped",
    T2_FAT_NOT_EXCLUDED: "no fat-fraction image: fatty voxels may pass for edema on the T2 map",
    EDEMA_REFERENCE_MISSING: "too few non-fatty muscle voxels for a normal-muscle STIR reference",
    EDEMA_REFERENCE_UNCERTAIN: "little muscle reads normal: the STIR reference may be edematous",
    EDEMA_REFERENCE_REANCHORED: "most muscle reads edematous: the reference is the darker muscle",
    EDEMA_REFERENCE_UNVERIFIED: "STIR reference from muscle only: total edema would read normal",
    EDEMA_REFERENCE_UNTRUSTED: "STIR reference outside its prior: edema cells left empty",
    EDEMA_REFERENCE_FROM_T2MAP: "the T2 map found the STIR reference edematous: edema from T2",
    NOISE_FROM_TISSUE: "no image background: Dixon noise sigma read from muscle voxel differences",
    NOISE_SIGMA_UNKNOWN: "no noise sigma: the Rician correction and noise floor were skipped",
    T2MAP_ASSUMPTIONS: "the T2 map is read as fat-corrected water T2 at the stated field strength",
    EDEMA_TOO_FEW_VOXELS: "too few assessable voxels for an edema fraction: cell left empty",
    FASCIAL_TOO_FEW_VOXELS: "too few shell voxels for a fascial-edema fraction: cell left empty",
    SMALL_CORE_WHOLE_MASK_USED: "the eroded core was too small: the whole mask was measured",
    UNKNOWN_LABEL: "a label name outside the vocabulary (measured, not used by templates)",
    GLOBAL_ATROPHY_NOT_ASSESSABLE: "no height and mass: a loss shared by every muscle is not seen",
    BODY_SIZE_NOT_USED: "height_m / mass_kg missing one of the two, not a number or implausible",
    PARTIAL_COVERAGE: "the label reaches the first/last slice or the in-plane edge of the grid: "
    "the muscle continues beyond the field of view, so its volume is not assessed",
}
"""Every QC code and row flag the measurement stage emits, with its meaning."""

FF_SOURCES = ("dixon", "ff_map", "t1w_semiquantitative", "")
"""Values of the ``ff_source`` column ("" = no fat-fraction image)."""

EDEMA_SOURCES = ("stir", "t2map", "")
"""Values of the ``edema_source`` column ("" = no STIR or T2 map)."""

SUMMARY_FIXED = ["study_id", "p_imnm", "p_imnm_lo", "p_imnm_hi", "log10_likelihood_ratio", "call",
                 "qc"]  # fmt: skip
"""The first columns of ``summary.tsv`` (``qc``: the study's warning codes); each template
feature's degree follows."""

DISCLAIMER = ("Research software: pattern similarity to published IMNM and DM imaging findings. "
              "Not a diagnostic device; not for clinical decisions.")  # fmt: skip
"""The ``disclaimer`` of every ``score.json`` and the banner of every report page."""
