"""The committed sample data are what ``sample_data/make_sample_data.py`` makes, array for array.

Guards sample studies that predate later phantom changes (regenerating them gave other arrays):
any change to the phantom's rules or the script must come with regenerated samples.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data"


def _script():
    spec = importlib.util.spec_from_file_location("make_sample_data",
                                                  SAMPLES / "make_sample_data.py")  # fmt: skip
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*")
                  if p.is_file() and p.name != "make_sample_data.py"
                  and "__pycache__" not in p.parts)  # fmt: skip


def test_make_sample_data_reproduces_the_committed_arrays(tmp_path):
    _script().main(tmp_path)
    assert _files(tmp_path) == _files(SAMPLES), "the same files"
    for relative in _files(SAMPLES):
        made, committed = tmp_path / relative, SAMPLES / relative
        if relative.name.endswith(".nii.gz"):
            a, b = nib.load(made), nib.load(committed)
            assert np.array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj)), relative
            assert np.array_equal(a.affine, b.affine), relative
            assert a.get_data_dtype() == b.get_data_dtype(), relative
        else:
            assert made.read_bytes() == committed.read_bytes(), relative


def test_sample_data_stays_small():
    size = sum((SAMPLES / p).stat().st_size for p in _files(SAMPLES))
    assert size < 10 * 1024 * 1024, f"sample_data/ holds {size / 2**20:.1f} MB"
    real = SAMPLES / "sample-musclemap-imnm"
    assert (real / "LICENSE").read_text().startswith("MIT License")
    assert "MuscleMap" in (real / "README.md").read_text()
