"""Decompression memory is bounded by what the data can produce, not by a gzip trailer.

A file cut short has no trailer: its last four bytes are arbitrary compressed data, and sizing the
buffer from them allocated up to 4 GiB (measured: 4.2 GiB peak for a 512x512x80 image cut by
200 bytes, against 0.39 GiB for scoring the intact study).
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import mri_scoring as ms
from mri_scoring.errors import StudyError

from .helpers import write_phantom

FORGED_SIZE = 1 << 30  # a trailer claiming 1 GiB


def _cut(path: Path, n_bytes: int, forged_trailer: int | None = None) -> None:
    data = path.read_bytes()[:-n_bytes]
    if forged_trailer is not None:
        data = data[:-4] + forged_trailer.to_bytes(4, "little")
    path.write_bytes(data)


def _load_error(folder: Path) -> str:
    with pytest.raises(StudyError) as info:
        ms.load_study(folder)
    return str(info.value)


def test_truncated_file_with_a_huge_trailer_allocates_what_the_header_declares(tmp_path):
    """Regression: the buffer was sized from the last four bytes (here forged to say 1 GiB)."""
    folder, _ = write_phantom(tmp_path / "s", "imnm", seed=3, shape=(64, 64, 10))
    stir = folder / "stir.nii.gz"
    image = nib.load(stir)
    declared = 352 + int(np.prod(image.shape)) * image.get_data_dtype().itemsize
    _cut(stir, 200, forged_trailer=FORGED_SIZE)
    tracemalloc.start()
    try:
        message = _load_error(folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "stir.nii.gz" in message and "ends early" in message, message
    # One-sided: the whole study (4 images and the labels) may be held once or twice, plus
    # reading buffers; never anything near the forged 1 GiB.
    assert peak < 20 * declared + (8 << 20), f"peak {peak} bytes for {declared}-byte images"


@pytest.mark.parametrize("damage", ["crc", "length"])
def test_a_file_failing_its_crc_or_length_check_is_refused(tmp_path, damage):
    """The trailer is checked, not trusted: a wrong CRC or length is corrupt data. Guards a
    reader that stops at the size the header declares and never reaches the trailer."""
    folder, _ = write_phantom(tmp_path / "s", "dm", seed=4, shape=(48, 48, 8))
    path = folder / "water.nii.gz"
    data = bytearray(path.read_bytes())
    if damage == "crc":
        data[-8:-4] = bytes(4 * [0x55])
    else:
        data[-4:] = (int.from_bytes(data[-4:], "little") + 1).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    message = _load_error(folder)
    assert "water.nii.gz" in message and "corrupt gzip data" in message, message


def test_a_header_declaring_more_than_the_file_can_hold_is_refused_before_allocating(tmp_path):
    """A header declaring 4000^3 int16 voxels in a 1 kB gzip file: refused without a 128 GB
    allocation (deflate expands at most 1032-fold)."""
    folder, _ = write_phantom(tmp_path / "s", "dm", seed=5, shape=(48, 48, 8))
    header = nib.Nifti1Header()
    header.set_data_shape((4000, 4000, 4000))
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352
    (folder / "stir.nii.gz").write_bytes(gzip.compress(header.binaryblock + bytes(4 + 1000)))
    tracemalloc.start()
    try:
        message = _load_error(folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "stir.nii.gz" in message and "ends early" in message, message
    assert peak < 64 << 20, f"peak {peak} bytes"


def _big_study(folder: Path) -> Path:
    """A 512x512x80 int16 study: a 128x128x20 phantom repeated 4x along each axis."""
    small, _ = write_phantom(folder.parent / "small", "imnm", seed=6, shape=(128, 128, 20))
    folder.mkdir(parents=True)
    for path in small.iterdir():
        if not path.name.endswith(".nii.gz"):
            (folder / path.name).write_bytes(path.read_bytes())
            continue
        image = nib.load(path)
        data = np.asanyarray(image.dataobj)
        for axis in range(3):
            data = np.repeat(data, 4, axis=axis)
        affine = image.affine.copy()
        affine[:3, :3] /= 4
        stored = data if path.name.startswith("labels") else np.round(data).astype(np.int16)
        nib.save(nib.Nifti1Image(stored, affine), folder / path.name)
    return folder


# The child is started by a small helper process that waits for it and prints its peak: on Linux
# a process forked straight from pytest inherits pytest's resident size as its own high-water
# mark (kept across exec in ru_maxrss), so late in a full test run, with pytest grown past the
# study's real peak, every child would report pytest's size and the comparison below would be
# between two copies of that number.
_WAIT_HELPER = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "print(usage.ru_maxrss)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def _peak_rss_kib(command: list[str]) -> tuple[int, str, int]:
    """Exit code, stderr and peak resident memory (KiB) of one child process (wait4)."""
    done = subprocess.run([sys.executable, "-c", _WAIT_HELPER, *command], capture_output=True,
                          text=True, check=False)  # fmt: skip
    return done.returncode, done.stderr, int(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "wait4"), reason="peak memory of a child needs wait4")
def test_truncated_512x512x80_image_fails_with_less_memory_than_the_intact_study(tmp_path):
    """The issue's case: a 512x512x80 int16 STIR cut 200 bytes short. ``score`` names the file,
    exits 2, and peaks below merely loading the intact study (4.2 GiB against 0.39 GiB for
    scoring it before the fix; loading is a lower bound of scoring, and cheaper to run)."""
    folder = _big_study(tmp_path / "big")
    assert nib.load(folder / "stir.nii.gz").shape == (512, 512, 80)
    load = "import sys, mri_scoring; mri_scoring.load_study(sys.argv[1])"
    code, stderr, intact_kib = _peak_rss_kib([sys.executable, "-c", load, str(folder)])
    assert code == 0, stderr
    cli = [sys.executable, "-m", "mri_scoring.cli", "score"]
    _cut(folder / "stir.nii.gz", 200)
    code, stderr, cut_kib = _peak_rss_kib([*cli, str(folder), "--out", str(tmp_path / "b")])
    assert code == 2, stderr
    assert "stir.nii.gz" in stderr and "ends early" in stderr, stderr
    assert "Traceback" not in stderr
    print(f"peak RSS: loading the intact study {intact_kib / 1024:.0f} MiB, truncated "
          f"{cut_kib / 1024:.0f} MiB")  # fmt: skip
    assert cut_kib < intact_kib, (
        f"a truncated file peaked at {cut_kib} KiB, above loading the intact study "
        f"({intact_kib} KiB): failing must not cost more than reading"
    )
