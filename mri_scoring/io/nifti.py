"""Reading NIfTI: one read per file, gunzip, header checks, reorientation to RAS+.

Each file is hashed as read and decompressed into a buffer sized from its NIfTI header
(python-isal when installed, zlib otherwise).

Every failure is a one-line :class:`~mri_scoring.errors.StudyError` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import schema
from ..errors import QCFinding, StudyError
from ..memory_layout import dense_layout, smallest_label_dtype

__all__ = [
    "GUNZIP_CHUNK",
    "HEADER_BYTES",
    "MAX_DEFLATE_RATIO",
    "NiftiFile",
    "Volume",
    "grid_text",
    "integer_labels",
    "open_all",
    "read_volume",
    "resample_to",
    "same_grid",
]


def _describe_read_error(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    if cause is not None and isinstance(cause, (EOFError, zlib.error, gzip.BadGzipFile)):
        return _describe_read_error(cause)
    if isinstance(exc, EOFError) or "end-of-stream" in str(exc) or "ended before" in str(exc):
        return "the file ends early (truncated or incomplete gzip data)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, (zlib.error, gzip.BadGzipFile)):
        return f"corrupt gzip data ({exc})"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"cannot read as NIfTI ({text})"


@dataclass(kw_only=True)
class Volume:
    """A 3-D image read from ``path``: voxels (RAS+, memory order as read) and affine (mm)."""

    data: np.ndarray
    affine: np.ndarray
    path: Path
    sha256: str = ""
    float_storage: bool = True  # voxels stored as floats (integers cannot hold NaN or inf)


def _read_file_bytes(path: Path) -> bytes:
    """The bytes of ``path`` (one place, so that tests can simulate a read that fails)."""
    return path.read_bytes()


try:  # the faster gzip decoder of the optional extra "fast" (python-isal)
    from isal.igzip import IGzipFile as _GzipFile
except ImportError:  # pragma: no cover - depends on the environment
    _GzipFile = gzip.GzipFile


GUNZIP_CHUNK = 1 << 20
HEADER_BYTES = 544  # a NIfTI-2 header (540) and the extension flag; NIfTI-1 needs 348
MAX_DEFLATE_RATIO = 1032  # deflate's largest expansion (258 bytes from one 2-bit code)


class _NotNifti(ValueError):
    """The bytes start with no NIfTI-1/2 header."""


def _parse_header(prefix: bytes | np.ndarray) -> tuple[nib.Nifti1Header, np.dtype, tuple, int]:
    """The header, voxel dtype, shape and voxel offset of the NIfTI header at ``prefix``.

    Raises _NotNifti when ``prefix`` holds no NIfTI-1/2 header, nibabel's errors when the header
    is unreadable (an unknown data type code, inconsistent dimensions).
    """
    sizes = {int.from_bytes(bytes(prefix[:4]), order) for order in ("little", "big")}
    klass = nib.Nifti1Header if 348 in sizes else nib.Nifti2Header if 540 in sizes else None
    if klass is None or len(prefix) < (348 if klass is nib.Nifti1Header else 540):
        raise _NotNifti("no NIfTI-1/2 header")
    header = klass.from_fileobj(io.BytesIO(bytes(prefix[:HEADER_BYTES])), check=False)
    return header, header.get_data_dtype(), header.get_data_shape(), int(header["vox_offset"])


def _declared_bytes(prefix: bytes) -> int | None:
    """Header plus voxel bytes the NIfTI header at ``prefix`` describes; None if unreadable."""
    try:
        _, dtype, shape, offset = _parse_header(prefix)
    except Exception:  # not a header: the caller reports it on the bytes it gets
        return None
    return offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def _read_up_to(stream: io.BufferedIOBase, size: int) -> bytes:
    parts, total = [], 0
    while total < size:
        part = stream.read(size - total)
        if not part:
            break
        parts.append(part)
        total += len(part)
    return b"".join(parts)


def _gunzip(data: bytes) -> bytes | np.ndarray:
    """Decompress a gzipped NIfTI file into one buffer sized from its NIfTI header.

    The gzip trailer's size is never trusted: in a truncated or corrupt file the last four bytes
    are arbitrary, and sizing a buffer from them once allocated 1.8 GiB for a 40 MiB image. The
    buffer holds what the header declares (header and voxels), refused outright when more than
    deflate could expand ``data`` into; its pages are committed only as they are filled, so a
    file that ends early costs what it decompressed. The stream is then read to its end, which
    checks the CRC and the length in the trailer.

    Raises
    ------
    EOFError
        The data ends before the declared voxels (or could not hold them).
    zlib.error, gzip.BadGzipFile
        Corrupt data, or a CRC or length that does not match.
    """
    with _GzipFile(fileobj=io.BytesIO(data)) as stream:
        prefix = _read_up_to(stream, HEADER_BYTES)
        declared = _declared_bytes(prefix)
        if declared is None:  # not NIfTI: the caller reports it from these bytes
            return prefix
        if declared > len(data) * MAX_DEFLATE_RATIO + HEADER_BYTES:
            raise EOFError(
                f"the header describes {declared} bytes, more than {len(data)} "
                "bytes of gzip data can hold"
            )
        out = np.empty(max(declared, len(prefix)), dtype=np.uint8)
        out[: len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
        view = memoryview(out)
        filled = len(prefix)
        while filled < declared:  # 1 MiB at a time: a larger read is staged in a temporary
            n = stream.readinto(view[filled : min(filled + GUNZIP_CHUNK, declared)])
            if not n:
                raise EOFError("compressed file ended before the end of the data")
            filled += n
        while stream.read(GUNZIP_CHUNK):  # bytes past the voxels (rare): checked, not kept
            pass
    return out


@dataclass
class NiftiFile:
    """A NIfTI file read once: header as stored (not "fixed"), a zero-copy view of its voxels."""

    header: nib.Nifti1Header
    voxels: np.ndarray
    sha256: str


def _open_nifti(path: Path) -> NiftiFile:
    """Read, hash and decompress a NIfTI file once; the voxel array views the decompressed bytes.

    nibabel's own reader would copy the data twice more (BytesIO, then its array) and silently
    replace a zero voxel size by 1; here the header is read as stored so the checks see it.
    """
    try:
        data = _read_file_bytes(path)
    except OSError as exc:
        raise StudyError(_describe_read_error(exc), path) from None
    if not data:
        raise StudyError("the file is empty (0 bytes)", path)
    digest = hashlib.sha256(data).hexdigest()
    if data[:2] == b"\x1f\x8b":
        try:
            data = _gunzip(data)
        except Exception as exc:  # zlib, EOFError, isal's errors: say which
            raise StudyError(_describe_read_error(exc), path) from None
    else:  # a writeable buffer, so that arrays viewing it can be modified in place
        data = bytearray(data)
    if len(data) < 348:
        raise StudyError(f"the file ends early ({len(data)} bytes; a NIfTI header has 348)", path)
    try:
        header, dtype, shape, offset = _parse_header(data[:HEADER_BYTES])
    except _NotNifti:
        raise StudyError("not a NIfTI image (no valid NIfTI-1/2 header)", path) from None
    except Exception as exc:  # unknown data type code, inconsistent dimensions
        raise StudyError(_describe_read_error(exc), path) from None
    count = int(np.prod(shape, dtype=np.int64))
    needed = offset + count * dtype.itemsize
    if len(data) < needed:
        raise StudyError(
            f"the file ends early ({len(data)} bytes of data; the header describes {needed})", path
        )
    voxels = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape, order="F")
    return NiftiFile(header, voxels, digest)


def open_all(paths: list[Path], threads: int | None = None) -> list[NiftiFile]:
    """Open several NIfTI files at once (threads: reading, hashing and gunzip release the GIL).

    Results come back in the order of ``paths``; the first file (in that order) that fails
    raises its StudyError, so the message does not depend on which thread finished first.
    """
    workers = min(len(paths), threads or os.cpu_count() or 1)
    if workers <= 1:
        return [_open_nifti(path) for path in paths]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mri_scoring-read") as pool:
        return list(pool.map(_open_nifti, paths))


def read_volume(
    path: Path, qc: list[QCFinding], nifti: NiftiFile, storage: str = "float32"
) -> Volume:
    """Turn an opened NIfTI file into a RAS+ array; every failure is a one-line StudyError.

    ``storage`` says what the array holds: ``"float32"`` (scaled values), ``"integer"`` (the
    stored integers, for label maps) or ``"compact"`` (the stored integers, a view of the
    decompressed bytes, when the header applies no scaling; float32 otherwise).
    """
    header = nifti.header
    full_shape = tuple(int(n) for n in header.get_data_shape())
    shape = full_shape[:3] if len(full_shape) == 4 and full_shape[3] == 1 else full_shape
    if len(shape) != 3:
        raise StudyError(f"expected a 3-D image, got shape {full_shape}", path)
    if min(shape) < 1:
        raise StudyError(f"image has an empty dimension, shape {full_shape}", path)
    zooms = np.asarray(header["pixdim"][1:4], dtype=float)
    valid_zooms = bool(np.all(np.isfinite(zooms)) and np.all(zooms > 0))
    if not valid_zooms and int(header["sform_code"]) > 0:
        qc.append(
            QCFinding(
                "warning",
                schema.HEADER_PIXDIM_INVALID,
                f"pixdim {tuple(float(z) for z in zooms)} is invalid; the sform "
                "affine gives the voxel size",
                str(path),
            )
        )
    elif not valid_zooms:
        raise StudyError(
            f"invalid voxel size {tuple(float(z) for z in zooms)} mm in the header "
            "(pixdim): expected three positive numbers",
            path,
        )
    try:
        affine = header.get_best_affine()
    except Exception:  # a quaternion nibabel cannot use
        affine = np.full((4, 4), np.nan)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise StudyError("invalid affine in the header (sform/qform): not invertible", path)
    slope, inter = header.get_slope_inter()
    raw_slope = header["scl_slope"]
    if np.isfinite(raw_slope) and float(raw_slope) == 0.0 and storage != "integer":
        qc.append(
            QCFinding(
                "warning",
                schema.HEADER_SCL_SLOPE_ZERO,
                "scl_slope is 0 in the header; treated as unscaled (1)",
                str(path),
            )
        )
    voxels = nifti.voxels.reshape(shape, order="F")
    ornt = nib.orientations.io_orientation(affine)
    if not np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        # A view of the stored voxels; the conversion below then writes positive strides.
        voxels = nib.orientations.apply_orientation(voxels, ornt)
        affine = affine @ nib.orientations.inv_ornt_aff(ornt, shape)
    unscaled = (slope is None or slope == 1.0) and (inter is None or inter == 0.0)
    small_integers = voxels.dtype.kind in "iu" and voxels.dtype.itemsize <= 2
    keep = storage == "integer" or (storage == "compact" and unscaled and small_integers)
    try:
        if keep:
            # Flipped storage (e.g. LPS) gives a view with negative strides: copied once here
            # into memory order, so that every later read can index the voxels directly.
            data = dense_layout(voxels, voxels.dtype.newbyteorder("="))
        else:
            data = voxels.astype(np.float32, order="K")
            if slope is not None and slope != 1.0:
                data *= np.float32(slope)
            if inter is not None and inter != 0.0:
                data += np.float32(inter)
    except MemoryError:
        raise StudyError(f"not enough memory to read an image of shape {shape}", path) from None
    float_storage = nifti.voxels.dtype.kind in "fc"
    return Volume(
        data=data, affine=affine, path=path, sha256=nifti.sha256, float_storage=float_storage
    )  # memory order as read


def grid_text(volume: Volume) -> str:
    """File name, shape and voxel size of a volume, for an error message."""
    sizes = np.sqrt((volume.affine[:3, :3] ** 2).sum(axis=0))
    return (
        f"{volume.path.name} shape {tuple(volume.data.shape)}, voxel "
        f"{tuple(round(float(s), 3) for s in sizes)} mm"
    )


def same_grid(a: Volume, b: Volume, tolerance_mm: float) -> bool:
    """True if both volumes have one shape and affines equal within ``tolerance_mm``."""
    return a.data.shape == b.data.shape and np.allclose(a.affine, b.affine, atol=tolerance_mm)


def resample_to(volume: Volume, target: Volume) -> Volume:
    """``volume`` resampled (linear, 0 outside) onto the grid of ``target``, as float32."""
    from nibabel.processing import resample_from_to

    img = nib.Nifti1Image(volume.data, volume.affine)
    out = resample_from_to(img, (target.data.shape, target.affine), order=1, cval=0.0)
    data = np.asarray(out.dataobj, dtype=np.float32)
    return Volume(
        data=data, affine=target.affine, path=volume.path, sha256=volume.sha256, float_storage=True
    )


def integer_labels(volume: Volume, max_value: int) -> np.ndarray:
    """The voxels of a label map as integers in the smallest dtype that holds them.

    Parameters
    ----------
    volume : Volume
        The label map as read.
    max_value : int
        Largest label value accepted (``load.max_label_value`` of the settings).

    Returns
    -------
    ndarray
        uint8, uint16 or int32 labels, 0 = background.

    Raises
    ------
    StudyError
        NaN, non-integer, negative or too large values, or no labelled voxel.
    """
    data = volume.data
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            raise StudyError(
                f"{int((~finite).sum())} NaN or infinite label values: expected integer labels",
                volume.path,
            )
        rounded = np.round(data)
        bad = np.abs(data - rounded) > 1e-3
        if bad.any():
            example = float(data[bad].flat[0])
            raise StudyError(
                f"non-integer label values (e.g. {example:g}): expected an integer label map",
                volume.path,
            )
        data = rounded
    elif data.dtype.kind not in "iub":
        raise StudyError(f"label map has data type {data.dtype}: expected integers", volume.path)
    low, high = data.min(), data.max()
    if low < 0:
        raise StudyError(
            f"negative label value {int(low)}: expected 0 (background) or positive integers",
            volume.path,
        )
    if high > max_value:
        raise StudyError(
            f"label value {int(high)} exceeds the largest supported ({max_value})", volume.path
        )
    if high == 0:
        raise StudyError("label map is empty: no voxel is labelled", volume.path)
    return data.astype(smallest_label_dtype(int(high)), copy=False)
