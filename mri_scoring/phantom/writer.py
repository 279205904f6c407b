"""Writing a phantom study to disk: the simple layout or BIDS, plus its ``truth.json``.

The files are byte-identical for the same study: the NIfTI header's description is fixed and the
gzip stream carries no modification time.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np

from ..files import JSONValue, atomic_write
from ..io.study import Study

__all__ = [
    "write_study",
]


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path, kind: str) -> None:
    if kind == "labels":
        img = nib.Nifti1Image(array.astype(np.int16), affine)
    elif kind == "magnitude":
        scaled = np.clip(np.round(array * 1000.0), 0, 32767).astype(np.int16)
        img = nib.Nifti1Image(scaled, affine)
    else:
        img = nib.Nifti1Image(array.astype(np.float32), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    # Fixed header fields so the same study gives byte-identical files.
    img.header["descrip"] = b"mri_scoring phantom"
    data = img.to_bytes()
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    atomic_write(path, data)


def _json_bytes(data: JSONValue) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def write_study(
    study: Study,
    folder: str | Path,
    layout: str = "simple",
    *,
    ff_scale: str = "fraction",
    label_names: dict[int, str] | None = None,
    write_table: bool = True,
    subject: str | None = None,
    session: str | None = "01",
) -> Path:
    """Write a study in the simple layout or BIDS (``configs/layouts.yaml``), plus ``truth.json``.

    Parameters
    ----------
    study : Study
        Usually a :class:`PhantomStudy`.
    folder : path
        Simple layout: the study folder. BIDS: the dataset root.
    layout : {"simple", "bids"}
    ff_scale : {"fraction", "percent"}
        How the FF map is stored (percent is declared in ``study.json`` / the sidecar too).
    label_names : dict, optional
        Names to write into the label table (default: the study's own names).
    write_table : bool
        Write the label table (``labels.tsv`` / ``*_dseg.tsv``).
    subject, session : str, optional
        BIDS entities (default subject: the study id without separators).

    Returns
    -------
    Path
        The folder holding the label map.
    """
    folder = Path(folder)
    if layout not in ("simple", "bids"):
        raise ValueError(f"layout must be 'simple' or 'bids', got {layout!r}")
    names = label_names or {v: info.name for v, info in study.label_info.items()}
    metadata = {k: v for k, v in study.metadata.items() if k != "phantom"}
    if "ff" in study.images:
        metadata["fat_fraction_scale"] = ff_scale
    kinds = {
        "fat": "magnitude",
        "water": "magnitude",
        "stir": "magnitude",
        "t1w": "magnitude",
        "ff": "float",
        "t2map": "float",
    }
    if layout == "simple":
        anat = folder
        anat.mkdir(parents=True, exist_ok=True)
        files = {role: anat / f"{role}.nii.gz" for role in study.images}
        label_path, table_path = anat / "labels.nii.gz", anat / "labels.tsv"
        meta_path = anat / "study.json"
    else:
        sub = subject or "".join(ch for ch in study.study_id if ch.isalnum())
        ses_dir = f"ses-{session}" if session else ""
        prefix = f"sub-{sub}" + (f"_ses-{session}" if session else "")
        anat = folder / f"sub-{sub}" / ses_dir / "anat"
        seg_dir = folder / "derivatives" / "segmentation" / f"sub-{sub}" / ses_dir / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        seg_dir.mkdir(parents=True, exist_ok=True)
        suffix = {
            "fat": "fat",
            "water": "water",
            "ff": "fatfrac",
            "stir": "stir",
            "t2map": "T2map",
            "t1w": "T1w",
        }
        files = {role: anat / f"{prefix}_{suffix[role]}.nii.gz" for role in study.images}
        label_path = seg_dir / f"{prefix}_dseg.nii.gz"
        table_path = seg_dir / f"{prefix}_dseg.tsv"
        meta_path = anat / "study.json"
        description = folder / "dataset_description.json"
        if not description.exists():
            atomic_write(
                description, _json_bytes({"Name": "mri_scoring phantoms", "BIDSVersion": "1.9.0"})
            )
    for role, path in files.items():
        array = study.images[role]
        if role == "ff" and ff_scale == "percent":
            array = array * 100.0
        _save_nifti(array, study.affine, path, kinds[role])
    _save_nifti(study.labels, study.affine, label_path, "labels")
    if write_table:
        rows = ["index\tname"] + [f"{v}\t{names[v]}" for v in sorted(names)]
        atomic_write(table_path, ("\n".join(rows) + "\n").encode())
    atomic_write(meta_path, _json_bytes(metadata))
    truth = getattr(study, "truth", None)
    if truth:
        atomic_write(anat / "truth.json", _json_bytes(truth))
    return label_path.parent
