"""DICOM export to a BIDS study folder that ``batch`` scores as it is.

discover (pydicom, headers only) -> check each series (readable files, no missing slices) ->
assign roles (:mod:`.dicom_roles`) -> convert each chosen series with dcm2niix (the field's
converter; nothing here decodes pixel data) -> BIDS names -> water-T2 map fitted from a
multi-echo spin-echo series (:mod:`mri_scoring.measure.t2fit`) -> ``conversion.tsv``.

Output under ``BIDS_ROOT``::

    dataset_description.json
    conversion.tsv                                   one row per series and per skipped file
    sub-<L>[/ses-<S>]/anat/sub-<L>[_ses-<S>]_<suffix>.nii.gz (+ dcm2niix's .json sidecar)
    derivatives/mri_scoring-t2fit/sub-<L>/[ses-<S>/]anat/..._desc-mese_fatfrac.nii.gz

with suffixes ``water``, ``fat``, ``fatfrac``, ``inphase``, ``opphase``, ``acq-stir_T2w``,
``T1w``, ``T2map`` and ``MESE`` (4-D echoes, echo times in the sidecar).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..config import Settings, load_settings
from ..files import atomic_write
from .dicom_guard import DicomError, DicomUsageError, SkippedFile
from .dicom_refs import keep_refs
from .dicom_roles import Assignment, RoleRules, SeriesInfo, assign_roles, load_rules
from .dicom_series import choose_patient, discover_series, skip_messages
from .role_content import ff_map_as_fraction

__all__ = [
    "T2FIT_PIPELINE",
    "TSV_COLUMNS",
    "ConversionReport",
    "DicomError",
    "DicomUsageError",
    "bids_label",
    "convert_dicom",
    "dcm2niix_path",
]

log = logging.getLogger(__name__)
T2FIT_PIPELINE = "mri_scoring-t2fit"


# --------------------------------------------------------------------------- dcm2niix


def dcm2niix_path() -> str:
    """Path of the dcm2niix executable: the ``dcm2niix`` wheel's binary, else one on PATH.

    Returns
    -------
    str

    Raises
    ------
    DicomError
        When neither is found, saying how to install it.
    """
    try:
        import dcm2niix  # the PyPI wheel ships the binary beside its module

        candidate = Path(getattr(dcm2niix, "bin", ""))
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("dcm2niix")
    if found:
        return found
    raise DicomError(
        "dcm2niix not found: install it with 'pip install dcm2niix' (a dependency of "
        "mri-scoring) or put a dcm2niix executable on PATH"
    )


def _run_dcm2niix(files: list[Path], series: SeriesInfo, workdir: Path) -> list[Path]:
    """Convert one series in isolation (its files linked into a folder of their own)."""
    source = workdir / "in"
    target = workdir / "out"
    source.mkdir()
    target.mkdir()
    for i, path in enumerate(files):
        link = source / f"{i:06d}.dcm"
        try:
            link.symlink_to(path.resolve())
        except OSError:
            shutil.copyfile(path, link)
    command = [
        dcm2niix_path(),
        "-z",
        "y",
        "-b",
        "y",
        "-ba",
        "y",
        "-f",
        "series",
        "-o",
        str(target),
        str(source),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    outputs = sorted(target.glob("*.nii.gz"))
    if result.returncode != 0 or not outputs:
        lines = [ln for ln in (result.stderr + result.stdout).splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"exit status {result.returncode}"
        raise _SeriesFailure(f"dcm2niix could not convert it: {detail}")
    return outputs


class _SeriesFailure(Exception):
    """One series fails; the others go on."""


# --------------------------------------------------------------------------- conversion


@dataclass
class ConversionReport:
    """What :func:`convert_dicom` did.

    Attributes
    ----------
    rows : list of dict
        One per series, then one per skipped file: the columns of ``conversion.tsv``.
    outputs : dict of str -> Path
        Role -> file written (``t2map`` included when fitted).
    anat : Path or None
        The BIDS ``anat`` folder, None when nothing was converted.
    messages : list of str
        One line per series that could not be converted and per skipped file (the files of
        another patient in one line per patient).
    skipped : list of SkippedFile
        The files that took no part, each also a row of ``conversion.tsv``.
    """

    rows: list[dict[str, str]]
    outputs: dict[str, Path]
    anat: Path | None
    messages: list[str]
    skipped: list[SkippedFile] = field(default_factory=list)


TSV_COLUMNS = (
    "subject",
    "session",
    "series_number",
    "series_description",
    "image_type",
    "echo_times_ms",
    "files",
    "role",
    "output",
)


def bids_label(text: str) -> str:
    """A BIDS entity label: letters and digits only.

    Examples
    --------
    >>> bids_label("PAT-0042 / left")
    'PAT0042left'
    """
    return re.sub(r"[^A-Za-z0-9]", "", str(text))


def _single_output(outputs: list[Path]) -> Path:
    magnitude = [p for p in outputs if not re.search(r"_(ph|real|imaginary)(_|\.nii)", p.name)]
    if len(magnitude) != 1:
        names = ", ".join(p.name for p in outputs)
        raise _SeriesFailure(f"dcm2niix wrote {len(outputs)} images for one role ({names})")
    return magnitude[0]


def _sidecar(path: Path) -> dict:
    json_path = path.with_name(path.name[: -len(".nii.gz")] + ".json")
    try:
        return json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _save(image: nib.Nifti1Image, sidecar: dict, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, _nifti_gz(image))
    side = target.with_name(target.name[: -len(".nii.gz")] + ".json")
    atomic_write(side, json.dumps(sidecar, indent=2, sort_keys=True) + "\n")


def _nifti_gz(image: nib.Nifti1Image) -> bytes:
    import gzip

    return gzip.compress(image.to_bytes(), compresslevel=3, mtime=0)  # speed over size


def _stack_echoes(outputs: list[Path]) -> tuple[nib.Nifti1Image, dict, list[float]]:
    """One 4-D image from dcm2niix's per-echo files, in echo-time order."""
    volumes = []
    for path in outputs:
        side = _sidecar(path)
        if "EchoTime" not in side:
            raise _SeriesFailure(f"{path.name}: dcm2niix sidecar has no EchoTime")
        volumes.append((float(side["EchoTime"]) * 1000.0, nib.load(path), side))
    volumes.sort(key=lambda v: v[0])
    first = volumes[0][1]
    for _, image, _ in volumes:
        if len(image.shape) != 3:
            raise _SeriesFailure("dcm2niix wrote a 4-D image per echo; cannot order the echoes")
        if image.shape != first.shape or not np.allclose(image.affine, first.affine, atol=1e-3):
            raise _SeriesFailure("the echoes of the series are not on one grid")
    data = np.stack([np.asanyarray(v[1].dataobj) for v in volumes], axis=-1)
    image = nib.Nifti1Image(data, first.affine, first.header)
    te_ms = [round(v[0], 4) for v in volumes]
    sidecar = dict(volumes[0][2])
    sidecar["EchoTime"] = [t / 1000.0 for t in te_ms]
    sidecar["EchoTimeUnits"] = "s"
    return image, sidecar, te_ms


def _fit_t2map(
    image: nib.Nifti1Image, te_ms: list[float], tr_ms: float | None, settings: Settings
) -> tuple[nib.Nifti1Image, nib.Nifti1Image | None, dict]:
    from ..measure.t2fit import fit_t2

    cfg = settings["t2fit"]
    echoes = np.asanyarray(image.dataobj).astype(np.float32)
    fit = fit_t2(echoes, np.asarray(te_ms), settings=cfg, repetition_time_ms=tr_ms)
    t2 = nib.Nifti1Image(fit.t2_water_ms.astype(np.float32), image.affine)
    ff = None
    if fit.fat_fraction is not None:
        ff = nib.Nifti1Image(
            np.nan_to_num(fit.fat_fraction, nan=0.0).astype(np.float32), image.affine
        )
    for img in (t2, ff):
        if img is not None:
            img.set_qform(image.affine, code=1)
            img.set_sform(image.affine, code=1)
    meta = {
        "Units": "ms",
        "Description": "water T2 fitted voxel-wise from the MESE series; 0 = not fitted",
        "FitMethod": fit.method,
        "FitSettings": cfg,
        "NoiseSigma": fit.noise_sigma,
        "EchoTimes_ms": te_ms,
    }
    return t2, ff, meta


def _write_tsv(root: Path, rows: list[dict[str, str]], subject: str, session: str) -> None:
    """Write conversion.tsv: this study's rows replace its earlier ones, other studies' stay."""

    def clean(text: str) -> str:
        return str(text).replace("\t", " ").replace("\n", " ")

    path = root / "conversion.tsv"
    kept: list[str] = []
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        if lines and lines[0].split("\t") == list(TSV_COLUMNS):
            kept = [ln for ln in lines[1:] if ln.split("\t")[:2] != [subject, session]]
    new = ["\t".join(clean(row.get(c, "")) for c in TSV_COLUMNS) for row in rows]
    atomic_write(path, "\n".join(["\t".join(TSV_COLUMNS), *kept, *new]) + "\n")


def convert_dicom(
    dicom_dir: str | Path,
    out_root: str | Path,
    *,
    subject: str | None = None,
    session: str | None = None,
    role_map: dict[int, str] | None = None,
    rules: RoleRules | None = None,
    settings: Settings | None = None,
    patient: str | None = None,
    dicom_refs: bool = False,
) -> ConversionReport:
    """Convert a DICOM export into one BIDS study folder that ``batch`` can score.

    Parameters
    ----------
    dicom_dir : path
        A scanner or PACS export of one patient's study (any depth).
    out_root : path
        BIDS dataset root (created if missing).
    subject, session : str, optional
        BIDS labels (default subject: the PatientID, letters and digits only; else ``01``).
    role_map : dict, optional
        Series number -> role or ``skip`` (``--map``), overriding the rules.
    rules : RoleRules, optional
        Default: ``configs/dicom_roles.yaml``.
    settings : Settings, optional
        Default: ``configs/settings.yaml`` (``t2fit`` section).
    patient : str, optional
        The DICOM PatientID to convert when the folder holds several patients (``--patient``);
        the other patients' files are listed as skipped.
    dicom_refs : bool
        Also keep each converted image's DICOM references (UIDs, per-slice instance and
        frame, patient and study modules; identifying) under ``sourcedata/dicom_refs/``
        (:mod:`.dicom_refs`), so results can be written back as DICOM.

    Returns
    -------
    ConversionReport
        A file that cannot be used never stops the conversion: it is skipped, with its reason,
        in ``skipped``, ``messages`` and a row of ``conversion.tsv``.

    Raises
    ------
    DicomUsageError
        Several patients and no ``patient``, or no series of ``patient``.
    DicomError
        No usable MR series under ``dicom_dir``, or dcm2niix missing.
    """
    dicom_dir, out_root = Path(dicom_dir), Path(out_root)
    if not dicom_dir.is_dir():
        raise DicomError(f"{dicom_dir}: not a folder")
    rules = rules or load_rules()
    settings = settings or load_settings()
    scan = choose_patient(discover_series(dicom_dir), dicom_dir, patient)
    dcm2niix_path()
    sub = bids_label(subject or scan.series[0].patient_id) or "01"
    ses = bids_label(session) if session else ""
    prefix = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
    relative = Path(f"sub-{sub}") / (f"ses-{ses}" if ses else "") / "anat"
    anat = out_root / relative
    assignments = assign_roles(scan.series, rules, role_map)
    messages = skip_messages(scan.skipped, dicom_dir)
    outputs: dict[str, Path] = {}
    mese = next((a for a in assignments if a.role == "mese"), None)
    scanner_map = next((a for a in assignments if a.role == "t2map"), None)
    if mese and scanner_map:
        scanner_map.status = f"skipped: T2 map fitted from {mese.series.label} instead"
        scanner_map.role = None
    rows = []
    for a in assignments:
        output = ""
        if a.role:
            try:
                written = _convert_one(a, rules, anat, prefix, settings, out_root, relative)
                outputs.update(written)
                if dicom_refs:
                    messages.extend(keep_refs(a.series, written, out_root))
                output = ", ".join(str(p.relative_to(out_root)) for p in written.values())
            except (_SeriesFailure, OSError, ValueError, nib.filebasedimages.ImageFileError) as exc:
                a.status = f"skipped: {exc}"
                messages.append(f"{a.series.label}: {exc}")
        elif a.series.problems:
            messages.append(f"{a.series.label}: {a.status.removeprefix('skipped: ')}")
        s = a.series
        rows.append(
            {
                "subject": sub,
                "session": ses,
                "series_number": "" if s.number is None else str(s.number),
                "series_description": s.description or s.protocol,
                "image_type": "\\".join(s.image_type),
                "echo_times_ms": ",".join(f"{t:g}" for t in s.echo_times_ms),
                "files": f"{len(s.files)} ({scan.lost[s.uid]})"
                if s.uid in scan.lost
                else str(len(s.files)),
                "role": a.status,
                "output": output,
            }
        )
    for f in scan.skipped:
        rows.append(
            {
                "subject": sub,
                "session": ses,
                "series_number": "" if f.series_number is None else str(f.series_number),
                "series_description": f.series_description,
                "files": f.path.relative_to(dicom_dir).as_posix(),
                "role": f"skipped: {f.reason}",
            }
        )
    out_root.mkdir(parents=True, exist_ok=True)
    description = out_root / "dataset_description.json"
    if not description.exists():
        atomic_write(
            description,
            json.dumps(
                {"Name": "mri-scoring convert", "BIDSVersion": "1.9.0", "DatasetType": "raw"},
                indent=2,
            )
            + "\n",
        )
    _write_tsv(out_root, rows, sub, ses)
    return ConversionReport(rows, outputs, anat if outputs else None, messages, scan.skipped)


def _converted_files(a: Assignment, workdir: Path) -> list[Path]:
    """dcm2niix's output of one series: one run, or one run per file for an enhanced MESE.

    An enhanced MESE written one file per echo (Siemens XA) is converted file by file: every
    file is a whole volume of one echo, and dcm2niix v1.0.20260724, given several non-Philips
    enhanced files in one run, wrote all but the last as float32 with values near 1e-33
    (phantom exports; MyoQMRI's Siemens export was not affected). Echo order comes from the
    sidecars either way.
    """
    if a.role == "mese" and a.series.multiframe and len(a.series.files) > 1:
        out: list[Path] = []
        for i, path in enumerate(a.series.files):
            run = workdir / f"file{i:04d}"
            run.mkdir()
            out.extend(_run_dcm2niix([path], a.series, run))
        return out
    return _run_dcm2niix(a.series.files, a.series, workdir)


def _convert_one(
    a: Assignment,
    rules: RoleRules,
    anat: Path,
    prefix: str,
    settings: Settings,
    out_root: Path,
    relative: Path,
) -> dict[str, Path]:
    suffix = rules.outputs.get(a.role)
    if not suffix:
        raise _SeriesFailure(f"role '{a.role}' has no output name in the rules file")
    with tempfile.TemporaryDirectory(prefix="mri-scoring-dcm-") as tmp:
        converted = _converted_files(a, Path(tmp))
        written: dict[str, Path] = {}
        if a.role == "mese":
            image, sidecar, te_ms = _stack_echoes(converted)
            if len(te_ms) < 4:
                raise _SeriesFailure(f"a MESE fit needs at least 4 echoes, got {len(te_ms)}")
            target = anat / f"{prefix}_{suffix}.nii.gz"
            _save(image, sidecar, target)
            written["mese"] = target
            tr_s = sidecar.get("RepetitionTime")
            tr_ms = float(tr_s) if isinstance(tr_s, (int, float)) else None
            t2, ff, meta = _fit_t2map(image, te_ms, tr_ms * 1000.0 if tr_ms else None, settings)
            meta["Sources"] = [str(target.relative_to(out_root))]
            t2_path = anat / f"{prefix}_{rules.outputs.get('t2map', 'T2map')}.nii.gz"
            _save(t2, meta, t2_path)
            written["t2map"] = t2_path
            if ff is not None:
                ff_path = (
                    out_root
                    / "derivatives"
                    / T2FIT_PIPELINE
                    / relative
                    / f"{prefix}_desc-mese_fatfrac.nii.gz"
                )
                ff_meta = {
                    "Units": "fraction",
                    "Description": "fat fraction implied by the bi-component EPG T2 fit "
                    "(not a Dixon PDFF)",
                    "Sources": meta["Sources"],
                }
                _save(ff, ff_meta, ff_path)
                written["mese_fatfrac"] = ff_path
            return written
        path = _single_output(converted)
        image = nib.load(path)
        if len(image.shape) != 3:
            raise _SeriesFailure(f"expected one 3-D volume, dcm2niix wrote shape {image.shape}")
        target = anat / f"{prefix}_{suffix}.nii.gz"
        sidecar = _sidecar(path)
        if a.role == "ff":
            _save(*ff_map_as_fraction(image, sidecar), target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target.with_name(target.name + ".tmp"))
            os.replace(target.with_name(target.name + ".tmp"), target)
            atomic_write(
                target.with_name(target.name[: -len(".nii.gz")] + ".json"),
                json.dumps(sidecar, indent=2, sort_keys=True) + "\n",
            )
        written[a.role] = target
        return written
