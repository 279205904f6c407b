"""Synthetic bilateral thigh phantoms with known ground truth, and the tools that write them.

The phantom is a stack of axial slices from the hip (proximal) to above the knee (distal), both
thighs side by side, left thigh at negative world x (RAS+). Its truth comes from its own
definitions (``configs/phantom.yaml``, ``configs/phantom_cohort.yaml``): no module of this
subpackage imports measurement code or reads the measurement settings (``tests/test_phantom.py``
walks their imports).

Modules, each its own job (imports run one way: ``drawing`` <- ``truth``, ``growth`` <- ``studies``,
``writer`` on its own):

==================  ================================================================================
``drawing``         ``configs/phantom.yaml`` access, tissue codes, the drawn thighs, atrophy, smooth
                    random fields, coil bias, Rician noise
``truth``           ``MuscleSpec``, the truth's own interior (an erosion in mm), the truth table
``writer``          ``write_study``: simple layout or BIDS, fixed headers, the same bytes each time
``growth``          the phantom's own growth rule for a child phantom (size, height, mass)
``studies``         ``make_study``, ``pattern_specs``, ``PhantomStudy``, the label table
``cohort_tables``   measured tables in the batch layout drawn from per-class finding frequencies
                    (no images), for calibration tests
``dicom_export``    DICOM series as Siemens, Philips and GE write them (Dixon, STIR, MESE)
``mese``            MESE echo trains: an isochromat (Bloch) simulation of CPMG (``dicom_export``)
``real_anatomy``    images painted on a real label map by the phantom's rules (a sample study)
==================  ================================================================================

The public names of ``drawing``, ``truth``, ``writer`` and ``studies`` are re-exported here;
``cohort_tables`` and ``dicom_export`` are imported by name (they pull in pandas and pydicom).
Before 2026-12 these were top-level modules: ``mri_scoring.phantom_cohort`` is now
``mri_scoring.phantom.cohort_tables`` and ``mri_scoring.phantom_dicom`` is
``mri_scoring.phantom.dicom_export``.

Examples
--------
>>> from mri_scoring import phantom
>>> study = phantom.make_study("imnm", seed=0, shape=(96, 96, 16))
>>> study.truth["muscles"]["adductor_magnus_left"]["ff_median"] > 0.3
True
"""

from __future__ import annotations

from .studies import (
    DEFAULT_FOV_MM,
    IMAGE_ROLES,
    PATTERNS,
    MuscleSpec,
    PhantomStudy,
    check_vocabulary,
    interior_depth_mm,
    label_table,
    make_study,
    normal_volume_shares,
    pattern_specs,
    phantom_muscles,
    truth_interior,
    write_study,
)

__all__ = [
    "DEFAULT_FOV_MM",
    "IMAGE_ROLES",
    "PATTERNS",
    "MuscleSpec",
    "PhantomStudy",
    "check_vocabulary",
    "interior_depth_mm",
    "label_table",
    "make_study",
    "normal_volume_shares",
    "pattern_specs",
    "phantom_muscles",
    "truth_interior",
    "write_study",
]
