"""DICOM conversion and MESE water-T2 fit time (run on demand, not in CI).

    python benchmarks/bench_dicom.py [--shape 256 256 20] [--echoes 16] [--runs 3]

Writes a phantom study as classic single-frame DICOM (Siemens naming): a 16-echo MESE series
and Dixon water + fat + STIR, to a scratch folder (default: a temporary one), then times
(1) header discovery and role assignment (pydicom), (2) ``convert_dicom`` of the Dixon + STIR
series (dcm2niix), (3) ``convert_dicom`` of the MESE series alone (dcm2niix, echo stacking and
the default EPG fit), and (4) the fits alone on the converted echoes: EPG and mono-exponential.
Medians of ``--runs`` with min-max; the machine is shared, read the ranges.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from mri_scoring import phantom
from mri_scoring.io.dicom import ConversionReport, convert_dicom
from mri_scoring.io.dicom_roles import assign_roles, load_rules
from mri_scoring.io.dicom_series import discover_series
from mri_scoring.measure.t2fit import fit_t2
from mri_scoring.phantom import dicom_export as pdm


def _timed(fn: Callable[[], object], runs: int) -> tuple[float, float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 20))
    parser.add_argument("--echoes", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (kept)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-dicom-"))
    shape = tuple(args.shape)
    study = phantom.make_study("imnm", seed=0, shape=shape, roles=("water", "fat", "stir", "t2map"))
    te_ms = list(10.0 * np.arange(1, args.echoes + 1))
    echoes = pdm.mese_echoes(
        study.images["water"], study.images["fat"], study.images["t2map"],
        n_echoes=args.echoes, noise=0.02, seed=1,
    )  # fmt: skip
    ctx = pdm.ExportContext("siemens")
    mese_dir, dixon_dir = work / "mese", work / "dixon"
    for folder in (mese_dir, dixon_dir):
        shutil.rmtree(folder, ignore_errors=True)
    spec = pdm.vendor_series("siemens", "mese", 10, echoes, echo_times_ms=te_ms, scale=4000.0)
    pdm.write_series(mese_dir, spec, study.affine, ctx)
    pdm.export_study(study, dixon_dir, roles=("water", "fat", "stir"))
    n_files = sum(1 for _ in mese_dir.iterdir())
    size_mib = sum(p.stat().st_size for p in mese_dir.iterdir()) / 2**20
    print(f"MESE {shape} x {args.echoes} echoes: {n_files} files, {size_mib:.0f} MiB")

    rules = load_rules()
    rows = []
    t = _timed(lambda: assign_roles(discover_series(mese_dir).series, rules), args.runs)
    rows.append(("discover + roles, MESE series (pydicom headers)", t))

    def convert(src: Path, name: str) -> ConversionReport:
        out = work / f"out-{name}"
        shutil.rmtree(out, ignore_errors=True)
        return convert_dicom(src, out, subject="bench")

    t = _timed(lambda: convert(dixon_dir, "dixon"), args.runs)
    rows.append(("convert Dixon water + fat + STIR (dcm2niix)", t))
    t = _timed(lambda: convert(mese_dir, "mese"), args.runs)
    rows.append(("convert MESE (dcm2niix + stack + EPG fit)", t))
    report = convert(mese_dir, "mese")
    data = np.asanyarray(nib.load(report.outputs["mese"]).dataobj).astype(np.float32)
    fitted = {}
    for method in ("epg", "mono"):
        t = _timed(lambda m=method: fitted.setdefault(m, fit_t2(data, te_ms, method=m)), args.runs)
        rows.append((f"fit alone: {method}", t))
    for label, (median, low, high) in rows:
        print(f"| {label} | {median:.2f} s ({low:.2f}-{high:.2f}) |")
    fit = fitted["epg"]
    print(
        f"voxels fitted: {int(fit.fitted.sum())} of {fit.fitted.size}; "
        f"noise sigma {fit.noise_sigma:.1f}"
    )


if __name__ == "__main__":
    main()
