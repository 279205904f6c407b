"""Enhanced MR DICOM as current scanners write it: no classic ScanningSequence, the sequence and
timing facts in the MR pulse sequence module and functional groups, a MESE one file per echo.

Truth is the phantom (written by ``mri_scoring.phantom.dicom_export``, which imports no
measurement code) and, when the shared folder is present, a real Siemens XA export (MyoQMRI's
``mese_product``, GPL-3.0, read in place and never copied).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest

from mri_scoring import phantom
from mri_scoring.io.dicom import convert_dicom
from mri_scoring.io.dicom_roles import classify, load_rules
from mri_scoring.io.dicom_series import discover_series
from mri_scoring.phantom import dicom_export as pdm

from .helpers import shared_dir

RULES = load_rules()
REAL = shared_dir() / "real_data"


@pytest.fixture(scope="module")
def study():
    return phantom.make_study("imnm", seed=1, shape=(64, 64, 8))


def test_enhanced_export_converts_mese_dixon_and_stir(study, tmp_path):
    """Guards the Siemens XA miss: an enhanced MESE (EchoPulseSequence SPIN, one file per echo,
    no ScanningSequence) was 'unrecognised' and no T2 map was made. Here every role is written
    enhanced; the MESE becomes one 4-D file and a T2 map close to the phantom's water T2."""
    roles = ("water", "fat", "stir", "t1w", "mese")
    numbers = pdm.export_study(study, tmp_path / "dicom", roles=roles, enhanced=roles)
    mese_files = sorted((tmp_path / "dicom" / f"{numbers['mese']:03d}").glob("*.dcm"))
    assert len(mese_files) == 16, "one file per echo"
    header = pydicom.dcmread(mese_files[0], stop_before_pixels=True)
    assert "ScanningSequence" not in header and header.EchoPulseSequence == "SPIN"
    assert int(header.NumberOfFrames) == study.shape[2]
    report = convert_dicom(tmp_path / "dicom", tmp_path / "bids", subject="X")
    assert report.messages == []
    assert {"water", "fat", "stir", "t1w", "mese", "t2map"} <= set(report.outputs)
    mese = nib.load(report.outputs["mese"])
    assert mese.shape == (*study.shape, 16)
    t2map = nib.as_closest_canonical(nib.load(report.outputs["t2map"]))
    assert np.allclose(t2map.affine, study.affine, atol=1e-3), "the phantom's grid, re-stored"
    fitted = np.asanyarray(t2map.dataobj)
    muscle = (study.labels > 0) & (study.images["ff"] < 0.3)
    truth = study.images["t2map"]
    error = np.median(np.abs(fitted[muscle] - truth[muscle]))
    assert error < 1.5, f"median T2 error {error:.2f} ms in muscle"


def test_enhanced_roles_come_from_pulse_sequence_and_modifier_groups(study, tmp_path):
    """With names that say nothing, the roles must come from the enhanced header alone: SPIN
    with 16 echoes across 16 files is a MESE, SPIN with InversionRecovery YES and TI 220 ms in
    the MR modifier group is a STIR. Guards reading only the classic top-level tags."""
    ctx = pdm.ExportContext("siemens")
    echoes = pdm.mese_echoes(study.images["water"], study.images["fat"], study.images["t2map"])
    specs = [
        pdm.SeriesSpec(
            number=7,
            description="series_a",
            image_type="ORIGINAL\\PRIMARY\\M\\NONE",
            data=echoes,
            echo_times_ms=[10.0 * k for k in range(1, 17)],
        ),
        pdm.SeriesSpec(
            number=8,
            description="series_b",
            image_type="ORIGINAL\\PRIMARY\\M\\NONE",
            data=study.images["stir"],
            scanning_sequence="SE\\IR",
            inversion_time_ms=220.0,
        ),
    ]
    for spec in specs:
        pdm.write_series(tmp_path / f"{spec.number:03d}", spec, study.affine, ctx, enhanced=True)
    found = {s.number: s for s in discover_series(tmp_path).series}
    assert found[7].scanning_sequence == ("SE",) and len(found[7].echo_times_ms) == 16
    assert found[8].scanning_sequence == ("SE", "IR") and found[8].inversion_time_ms == 220.0
    assert found[8].repetition_time_ms == 3000.0
    assert classify(found[7], RULES).role == "mese"
    assert classify(found[8], RULES).role == "stir"


def test_mese_names_and_siemens_sequence_name():
    """`mese`, `t2_mese` and the Siemens sequence name `*se2d<N>` name a MESE (with >= 4
    echoes); a single-echo `*se2d1` does not."""
    from mri_scoring.io.dicom_roles import SeriesInfo

    plain = ("ORIGINAL", "PRIMARY", "M")
    echoes = tuple(11.0 * k for k in range(1, 18))
    for name in ("mese_product", "t2_mese", "MESE thigh"):
        info = SeriesInfo(
            uid="1", number=1, description=name, image_type=plain, echo_times_ms=echoes
        )
        assert classify(info, RULES).role == "mese", name
    by_sequence = SeriesInfo(uid="2", number=2, description="calf", image_type=plain,
                             echo_times_ms=echoes,
                             sequence_name="*se2d17")  # fmt: skip
    assert classify(by_sequence, RULES).role == "mese"
    single = SeriesInfo(uid="3", number=3, description="calf", image_type=plain,
                        echo_times_ms=(12.0,),
                        sequence_name="*se2d1")  # fmt: skip
    assert classify(single, RULES).role is None


@pytest.mark.skipif(
    not (REAL / "myoqmri_mese").is_dir(),
    reason="../shared/real_data/myoqmri_mese absent (real data are not shipped)",
)
def test_real_siemens_enhanced_mese_converts(tmp_path):
    """MyoQMRI's Siemens XA export (17 files = 17 echoes, 8 frames each, EchoPulseSequence SPIN,
    no ScanningSequence, `mese_product`) was skipped as unrecognised; it must convert to a
    17-echo MESE and a T2 map whose muscle values are those of calf muscle at 3 T."""
    report = convert_dicom(REAL / "myoqmri_mese", tmp_path / "bids", subject="R")
    assert "mese" in report.outputs and "t2map" in report.outputs, report.rows
    (row,) = [r for r in report.rows if r["role"] == "mese"]  # (skipped-file rows besides)
    assert row["files"] == "17"
    assert nib.load(report.outputs["mese"]).shape[-1] == 17
    t2 = np.asanyarray(nib.load(report.outputs["t2map"]).dataobj)
    fitted = t2[(t2 > 0) & (t2 < 100)]
    assert fitted.size > 10000
    assert 25.0 < float(np.median(fitted)) < 45.0, "calf muscle water T2 at 3 T is ~30-40 ms"
