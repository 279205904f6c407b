"""Helpers for tests: writing phantom studies in many shapes and breaking them on purpose."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from mri_scoring import phantom

TINY = (64, 64, 10)


def shared_dir() -> Path:
    """The read-only shared folder beside the clone (``<repo>/../shared``; CI puts it there).

    ``MRI_SCORING_SHARED`` points elsewhere (a git worktree whose parent holds no ``shared``).
    Tests that read it skip with the reason when it is absent: nothing in it is shipped.
    """
    import os

    override = os.environ.get("MRI_SCORING_SHARED")
    return Path(override) if override else Path(__file__).resolve().parents[1].parent / "shared"


def write_phantom(folder: Path, pattern: str = "imnm", seed: int = 0, shape=TINY, **kwargs):
    """Write one phantom study in the simple layout; returns (folder, in-memory study)."""
    layout = kwargs.pop("layout", "simple")
    write_kwargs = {
        k: kwargs.pop(k) for k in ("ff_scale", "label_names", "write_table") if k in kwargs
    }
    study = phantom.make_study(pattern, seed=seed, shape=shape, **kwargs)
    path = phantom.write_study(study, folder, layout=layout, **write_kwargs)
    return path, study


def reorient_folder(folder: Path, ornt: np.ndarray) -> None:
    """Re-store every NIfTI file of a folder with another axis order / flips (same world)."""
    for path in folder.glob("*.nii*"):
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
        img2 = nib.Nifti1Image(data, img.affine, img.header).as_reoriented(ornt)
        img2.set_qform(img2.affine, code=1)
        img2.set_sform(img2.affine, code=1)
        nib.save(img2, path)


def copy_study(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def crash_on_marked_study(files, out, options):
    """A batch task that kills its worker process for a study whose id contains 'crash'
    (stands in for an out-of-memory kill); other studies are scored normally."""
    import os

    from mri_scoring.pipeline import score_one

    if "crash" in files.study_id:
        os._exit(137)
    return score_one(files, out, options)


def batch_command(root: Path, out: Path, *options: str) -> list[str]:
    """The command line of a quiet ``mri-scoring batch`` run, for tests that kill it midway."""
    cli = [sys.executable, "-m", "mri_scoring.cli", "--quiet", "batch"]
    return [*cli, str(root), "--out", str(out), *options]


def nominal_body() -> dict[str, float]:
    """Height and mass at which the phantom's whole muscles have the published norm volumes."""
    from mri_scoring.config import load_config_file

    return dict(load_config_file("phantom.yaml")["anatomy"]["nominal_body"])
