"""Studies: finding role files in a folder (simple layout, BIDS), loading NIfTI, spatial checks.

Everything a later stage needs is on the :class:`Study`: arrays on one RAS+ grid, the resolved
label table, metadata and QC findings. Later stages never open files.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import json
import logging
import os
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .anatomy import SIDES, LabelInfo, identify_scheme, label_scheme, match_label_name
from .config import Settings, load_config_file, load_settings
from .errors import QCFinding, StudyError

log = logging.getLogger(__name__)

IMAGE_ROLES = ("fat", "water", "ff", "stir", "t2map", "t1w")


@dataclass
class Study:
    """One study on the label map's grid, reoriented to RAS+.

    Attributes
    ----------
    study_id : str
        Sanitised identifier (safe as a folder name).
    labels : ndarray of unsigned (or int32) integers, shape (X, Y, Z)
        Label map, 0 = background, in the smallest dtype that holds its values.
    affine : ndarray, shape (4, 4)
        Voxel -> world (RAS+, mm) transform of every array.
    images : dict of str -> ndarray
        Images by role: ``fat``, ``water`` (Dixon magnitudes), ``ff`` (fat fraction 0-1),
        ``stir`` (arbitrary units), ``t2map`` (ms), ``t1w`` (arbitrary units). float32, except
        that an image stored as 8- or 16-bit integers with no scaling in its header keeps its
        stored integers (a view of the decompressed file: half the memory, no conversion); use
        :meth:`float_image` for arithmetic, as integer sums can overflow. The fat-fraction map
        is always float32.
    label_info : dict of int -> LabelInfo
        Meaning of every label value present in the map.
    metadata : dict
        Contents of ``study.json`` (or BIDS sidecars), possibly empty.
    qc : list of QCFinding
        Findings raised while loading.
    files : dict of str -> Path
        Source file of each role.
    path : Path or None
        The study folder, if loaded from disk.
    input_sha256 : dict of str -> str
        SHA-256 of each source file's bytes, by role (hashed as the file is read).
    """

    study_id: str
    labels: np.ndarray
    affine: np.ndarray
    images: dict[str, np.ndarray]
    label_info: dict[int, LabelInfo]
    metadata: dict = field(default_factory=dict)
    qc: list[QCFinding] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    path: Path | None = None
    input_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def voxel_size_mm(self) -> tuple[float, float, float]:
        """Voxel edge lengths in mm (columns of the affine)."""
        sizes = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return (float(sizes[0]), float(sizes[1]), float(sizes[2]))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres."""
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.labels.shape)  # type: ignore[return-value]

    def float_image(self, role: str) -> np.ndarray:
        """The image of ``role`` as float32: the array itself, or a converted copy when it is
        kept as stored 16-bit integers (safe for arithmetic; integer sums can overflow)."""
        return self.images[role].astype(np.float32, copy=False)

    @cached_property
    def label_values(self) -> np.ndarray:
        """Original label values, sorted; compact label ``i + 1`` is ``label_values[i]``."""
        return np.array(sorted(self.label_info), dtype=np.int64)

    def compact_labels(self, region: tuple[slice, ...] | None = None) -> np.ndarray:
        """Label map (or a region of it) renumbered 1..K in the order of :attr:`label_values`.

        Computed on demand and not kept: the renumbered map would cost another volume of memory.
        """
        labels = self.labels if region is None else self.labels[region]
        values = self.label_values
        dtype = _smallest_label_dtype(len(values))
        high = int(values.max()) if values.size else 0
        if high < 1 << 20:
            lut = np.zeros(high + 1, dtype)
            lut[values] = np.arange(1, len(values) + 1)
            return lut[labels]
        compact = (np.searchsorted(values, labels) + 1).astype(dtype)
        compact[labels == 0] = 0
        return compact

    @cached_property
    def label_boxes(self) -> list[tuple[slice, ...] | None]:
        """Bounding box of each label (``ndimage.find_objects`` on the compact labels)."""
        compact = self.compact_labels()
        if compact.flags.f_contiguous and not compact.flags.c_contiguous:
            # find_objects is 4x faster along memory order: use the C-ordered transposed view.
            boxes = ndimage.find_objects(compact.T, max_label=len(self.label_values))
            return [None if b is None else b[::-1] for b in boxes]
        return list(ndimage.find_objects(compact, max_label=len(self.label_values)))


# --------------------------------------------------------------------------- discovery


@dataclass
class StudyFiles:
    """The files of one study, found by role.

    Attributes
    ----------
    folder : Path
        Folder holding the images (BIDS: the ``anat`` folder).
    study_id : str
        Sanitised identifier (unique within a batch after :func:`discover_studies`).
    roles : dict of str -> list of Path
        Role -> matching files (more than one is an ambiguity reported at load time).
    layout : str
        ``"simple"`` or ``"bids"``.
    """

    folder: Path
    study_id: str
    roles: dict[str, list[Path]]
    layout: str = "simple"


def sanitise_id(text: str) -> str:
    """Make a string safe as one folder name: letters, digits, ``.``, ``_``, ``-`` only.

    Examples
    --------
    >>> sanitise_id("../../etc/passwd")
    'etc_passwd'
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._-")
    cleaned = re.sub(r"_+", "_", cleaned)[:120].strip("._-")
    return cleaned or "study"


def _layouts() -> dict:
    return load_config_file("layouts.yaml")


def _strip_nifti(name: str) -> str | None:
    lower = name.lower()
    for ext in (".nii.gz", ".nii"):
        if lower.endswith(ext):
            return name[: -len(ext)]
    return None


def match_roles(names: list[str], folder: Path) -> dict[str, list[Path]]:
    """Assign file names in one folder to roles using the patterns of ``configs/layouts.yaml``.

    NIfTI roles match the name without ``.nii``/``.nii.gz``; ``label_table`` and ``metadata``
    match whole names. Per role the first pattern with a match wins. Matching ignores case.
    """
    roles: dict[str, list[Path]] = {}
    nifti = {name: _strip_nifti(name) for name in names}
    claimed: set[str] = set()
    for role, patterns in _layouts()["roles"].items():
        whole_name = role in ("label_table", "metadata")
        for pattern in patterns:
            hits = sorted(
                name
                for name in names
                if name not in claimed
                and (
                    fnmatch.fnmatchcase(name.lower(), pattern.lower())
                    if whole_name
                    else nifti[name] is not None
                    and fnmatch.fnmatchcase(nifti[name].lower(), pattern.lower())
                )
            )
            if hits:
                roles[role] = [folder / h for h in hits]
                claimed.update(hits)
                break
    return roles


def _list_files(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return [e.name for e in entries if not e.name.startswith(".") and e.is_file()]
    except OSError:
        return []


def _read_study_id(metadata_files: list[Path] | None) -> str | None:
    if not metadata_files:
        return None
    try:
        data = json.loads(metadata_files[0].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # reported when the study is loaded
    value = data.get("study_id") if isinstance(data, dict) else None
    return sanitise_id(value) if isinstance(value, (str, int)) and str(value).strip() else None


def _bids_entities(anat: Path, root: Path) -> tuple[str, str]:
    parts = anat.relative_to(root).parts
    subject = next((p for p in parts if p.startswith("sub-")), "")
    session = next((p for p in parts if p.startswith("ses-")), "")
    return subject, session


def _bids_study(anat: Path, root: Path) -> StudyFiles | None:
    names = _list_files(anat)
    roles = match_roles(names, anat)
    subject, session = _bids_entities(anat, root)
    if "labels" not in roles:
        pattern = f"derivatives/*/{subject}/" + (f"{session}/" if session else "") + "anat"
        for seg_dir in sorted(root.glob(pattern)):
            seg_roles = match_roles(_list_files(seg_dir), seg_dir)
            for role in ("labels", "label_table"):
                roles.setdefault(role, []).extend(seg_roles.get(role, []))
        roles = {role: files for role, files in roles.items() if files}
    if not _has_role_files(roles):
        return None
    study_id = sanitise_id(subject + (f"_{session}" if session else ""))
    return StudyFiles(anat, study_id, roles, "bids")


def _walk(root: Path, skip: set[str]):
    """Folders below root (root included), depth first, never following symlinked folders."""
    stack = [root]
    seen: set[tuple[int, int]] = set()
    while stack:
        folder = stack.pop()
        try:
            stat = folder.stat()
        except OSError:
            continue
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            continue
        seen.add(key)
        files: list[str] = []
        subfolders: list[Path] = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if entry.name not in skip:
                                subfolders.append(Path(entry.path))
                        elif entry.is_file():
                            files.append(entry.name)
                    except OSError:
                        continue
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc.strerror or exc)
            continue
        yield folder, files
        stack.extend(sorted(subfolders, reverse=True))


def _has_role_files(roles: dict[str, list[Path]]) -> bool:
    return any(role in roles for role in (*IMAGE_ROLES, "labels"))


def _study_in(folder: Path, names: list[str]) -> StudyFiles | None:
    """The study a folder holds: a BIDS ``sub-*/[ses-*/]anat`` folder (None when it holds no
    role file, here or under ``derivatives/``) or the simple layout (roles possibly empty)."""
    if folder.name == "anat" and any(p.startswith("sub-") for p in folder.parts):
        subject_dir = next((p for p in folder.parents if p.name.startswith("sub-")), folder)
        return _bids_study(folder, subject_dir.parent)
    roles = match_roles(names, folder)
    study_id = _read_study_id(roles.get("metadata")) or sanitise_id(folder.resolve().name)
    return StudyFiles(folder, study_id, roles, "simple")


def discover_studies(root: str | Path) -> list[StudyFiles]:
    """Find every study under ``root`` (simple layout and BIDS, DESIGN §2.1-2.2).

    A simple-layout study is a folder whose files match an image or label role. In a BIDS
    dataset (a ``sub-*`` folder or ``dataset_description.json`` at the root) every
    ``sub-*/[ses-*/]anat`` folder is a study, its segmentation beside it or under
    ``derivatives/<pipeline>/``. Ids are unique: when two studies would share one, each takes its
    path relative to ``root`` joined with ``_``. Symlinked folders are not followed; unreadable
    folders are logged and skipped.

    Parameters
    ----------
    root : path
        A study folder or a folder of studies.

    Returns
    -------
    list of StudyFiles
        Sorted by path.
    """
    root = Path(root)
    if not root.is_dir():
        raise StudyError("is not a folder", root)
    studies: list[StudyFiles] = []
    for folder, names in _walk(root, skip={"derivatives"}):
        study = _study_in(folder, names)
        if study is not None and (study.layout == "bids" or _has_role_files(study.roles)):
            studies.append(study)
    counts: dict[str, int] = {}
    for study in studies:
        counts[study.study_id] = counts.get(study.study_id, 0) + 1
    for study in studies:
        if counts[study.study_id] > 1:
            relative = study.folder.relative_to(root).parts or (root.name,)
            study.study_id = sanitise_id("_".join(relative))
    return sorted(studies, key=lambda s: str(s.folder))


def study_files(path: str | Path) -> StudyFiles:
    """The :class:`StudyFiles` of one study folder (simple layout or a BIDS ``anat`` folder)."""
    path = Path(path)
    if not path.is_dir():
        raise StudyError("is not a study folder (expected a folder holding a label map)", path)
    found = _study_in(path, _list_files(path))
    # A folder named explicitly is a study even with no role file: loading says what is missing.
    return found or StudyFiles(path, sanitise_id(path.resolve().name), {}, "simple")


# --------------------------------------------------------------------------- reading


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


@dataclass
class _Volume:
    data: np.ndarray
    affine: np.ndarray
    path: Path
    sha256: str = ""
    float_storage: bool = True  # voxels stored as floats (integers cannot hold NaN or inf)


def _read_file_bytes(path: Path) -> bytes:
    return path.read_bytes()


try:  # the faster gzip decoder of the optional extra "fast" (python-isal)
    from isal.igzip import IGzipFile as _GzipFile
except ImportError:  # pragma: no cover - depends on the environment
    _GzipFile = gzip.GzipFile


GUNZIP_CHUNK = 1 << 20


def _gunzip(data: bytes) -> bytes | bytearray:
    """Decompress gzip data into a buffer sized from the gzip trailer (no growing copies).

    The trailer holds the uncompressed size modulo 2**32; if the stream does not end exactly
    there (multi-member files, sizes over 4 GiB), the stream is decompressed in full instead.
    """
    size = int.from_bytes(data[-4:], "little") if len(data) >= 18 else 0
    with _GzipFile(fileobj=io.BytesIO(data)) as stream:
        if size:
            out = bytearray(size)
            view = memoryview(out)
            filled = 0
            while filled < size:  # 1 MiB at a time: a larger read is staged in a temporary
                n = stream.readinto(view[filled : filled + GUNZIP_CHUNK])
                if not n:
                    break
                filled += n
            if filled == size and not stream.read(1):
                return out
            if filled < size:
                raise EOFError("compressed file ended before the end of the data")
            stream.seek(0)
        return bytearray(stream.read())


@dataclass
class _Nifti:
    """A NIfTI file read once: header as stored (not "fixed"), a zero-copy view of its voxels."""

    header: nib.Nifti1Header
    voxels: np.ndarray
    sha256: str


def _open_nifti(path: Path) -> _Nifti:
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
    sizes = {int.from_bytes(data[:4], order) for order in ("little", "big")}
    klass = nib.Nifti1Header if 348 in sizes else nib.Nifti2Header if 540 in sizes else None
    if klass is None:
        raise StudyError("not a NIfTI image (no valid NIfTI-1/2 header)", path)
    try:
        header = klass.from_fileobj(io.BytesIO(data[:544]), check=False)
        dtype = header.get_data_dtype()
        shape = header.get_data_shape()
        offset = int(header["vox_offset"])
    except Exception as exc:  # unknown data type code, inconsistent dimensions
        raise StudyError(_describe_read_error(exc), path) from None
    count = int(np.prod(shape, dtype=np.int64))
    needed = offset + count * dtype.itemsize
    if len(data) < needed:
        raise StudyError(f"the file ends early ({len(data)} bytes of data; the header "
                         f"describes {needed})", path)  # fmt: skip
    voxels = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape, order="F")
    return _Nifti(header, voxels, digest)


def _open_all(paths: list[Path], threads: int | None = None) -> list[_Nifti]:
    """Open several NIfTI files at once (threads: reading, hashing and gunzip release the GIL).

    Results come back in the order of ``paths``; the first file (in that order) that fails
    raises its StudyError, so the message does not depend on which thread finished first.
    """
    workers = min(len(paths), threads or os.cpu_count() or 1)
    if workers <= 1:
        return [_open_nifti(path) for path in paths]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mri_scoring-read") as pool:
        return list(pool.map(_open_nifti, paths))


def _read_nifti(
    path: Path, qc: list[QCFinding], nifti: _Nifti, storage: str = "float32"
) -> _Volume:
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
        qc.append(QCFinding("warning", "header_pixdim_invalid",
                            f"pixdim {tuple(float(z) for z in zooms)} is invalid; the sform "
                            "affine gives the voxel size", str(path)))  # fmt: skip
    elif not valid_zooms:
        raise StudyError(f"invalid voxel size {tuple(float(z) for z in zooms)} mm in the header "
                         "(pixdim): expected three positive numbers", path)  # fmt: skip
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
                "header_scl_slope_zero",
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
    return _Volume(data, affine, path, nifti.sha256, float_storage)  # memory order as read


def dense_steps(array: np.ndarray) -> tuple[int, ...] | None:
    """Element steps per axis if the array fills its memory densely with positive strides.

    True of C- and F-ordered arrays and of any axis permutation of them, not of flipped or
    sliced views. For such an array, element ``idx`` is at position ``sum(idx * steps)`` of
    ``array.ravel(order="K")`` (a view in memory order). Returns None otherwise.
    """
    item = array.itemsize
    steps = [0 if n == 1 else s // item for s, n in zip(array.strides, array.shape, strict=True)]
    expected = 1
    for axis in sorted((a for a, n in enumerate(array.shape) if n > 1), key=lambda a: steps[a]):
        if array.strides[axis] != expected * item:
            return None
        expected *= array.shape[axis]
    return tuple(steps)


def dense_layout(array: np.ndarray, dtype: np.dtype | None = None) -> np.ndarray:
    """The array itself if :func:`dense_steps` holds (and it has ``dtype``), else one copy laid
    out in memory order (a flipped view becomes positively strided, axis order kept)."""
    if dense_steps(array) is not None and (dtype is None or array.dtype == dtype):
        return array
    return np.array(array, dtype=dtype, order="K")


def _grid_text(volume: _Volume) -> str:
    sizes = np.sqrt((volume.affine[:3, :3] ** 2).sum(axis=0))
    return (
        f"{volume.path.name} shape {tuple(volume.data.shape)}, voxel "
        f"{tuple(round(float(s), 3) for s in sizes)} mm"
    )


def _same_grid(a: _Volume, b: _Volume, tolerance_mm: float) -> bool:
    return a.data.shape == b.data.shape and np.allclose(a.affine, b.affine, atol=tolerance_mm)


def _resample(volume: _Volume, target: _Volume) -> _Volume:
    from nibabel.processing import resample_from_to

    img = nib.Nifti1Image(volume.data, volume.affine)
    out = resample_from_to(img, (target.data.shape, target.affine), order=1, cval=0.0)
    data = np.asarray(out.dataobj, dtype=np.float32)
    return _Volume(data, target.affine, volume.path, volume.sha256, True)


def _integer_labels(volume: _Volume, max_value: int) -> np.ndarray:
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
    return data.astype(_smallest_label_dtype(int(high)), copy=False)


def _smallest_label_dtype(high: int) -> type:
    """uint8, uint16 or int32: labels take no more memory than their largest value needs."""
    return np.uint8 if high < 256 else np.uint16 if high < 65536 else np.int32


def read_label_table(path: Path) -> dict[int, str]:
    """Parse a BIDS dseg look-up table (tab-separated, columns ``index`` and ``name``).

    Raises
    ------
    StudyError
        Naming the file, the line and what was expected.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise StudyError("label table is not UTF-8 text", path) from None
    except OSError as exc:
        raise StudyError(f"cannot read the label table ({exc.strerror or exc})", path) from None
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        raise StudyError("label table is empty: expected a header 'index<TAB>name' and rows", path)
    header = [h.strip().lower() for h in lines[0].split("\t")]
    if "index" not in header or "name" not in header:
        raise StudyError(
            f"label table header {lines[0]!r} lacks the columns 'index' and 'name' (tab-separated)",
            path,
        )
    i_index, i_name = header.index("index"), header.index("name")
    table: dict[int, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) <= max(i_index, i_name):
            raise StudyError(
                f"line {number}: expected {len(header)} tab-separated cells, got {len(cells)}", path
            )
        raw_index, name = cells[i_index].strip(), cells[i_name].strip()
        try:
            index = int(raw_index)
        except ValueError:
            raise StudyError(
                f"line {number}: index {raw_index!r} is not an integer", path
            ) from None
        if index < 0:
            raise StudyError(f"line {number}: index {index} is negative", path)
        if not name:
            raise StudyError(f"line {number}: empty name for index {index}", path)
        if index in table:
            raise StudyError(
                f"line {number}: duplicate index {index} (also {table[index]!r})", path
            )
        table[index] = name
    return table


_METADATA_TYPES = {
    "study_id": (str, int),
    "age_years": (int, float),
    "sex": (str,),
    "antibody": (str,),
    "fat_fraction_scale": (str,),
}


def read_metadata(path: Path) -> dict:
    """Read ``study.json``: a JSON object; known fields are type-checked."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise StudyError("not UTF-8 text", path) from None
    except json.JSONDecodeError as exc:
        raise StudyError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", path
        ) from None
    except OSError as exc:
        raise StudyError(f"cannot read ({exc.strerror or exc})", path) from None
    if not isinstance(data, dict):
        raise StudyError(f"expected a JSON object, got {type(data).__name__}", path)
    for key, types in _METADATA_TYPES.items():
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            expected = " or ".join(t.__name__ for t in types)
            raise StudyError(f"field '{key}' must be {expected}, got {value!r}", path)
    scale = data.get("fat_fraction_scale")
    if scale is not None and scale not in ("fraction", "percent"):
        raise StudyError(
            f"field 'fat_fraction_scale' must be 'fraction' or 'percent', got {scale!r}", path
        )
    return data


def _resolve_labels(
    values: set[int],
    table: dict[int, str] | None,
    scheme_option: str,
    label_path: Path,
    qc: list[QCFinding],
) -> dict[int, LabelInfo]:
    if scheme_option == "tsv" and table is None:
        raise StudyError(
            "--labels tsv was given but the study has no label table (labels.tsv or *_dseg.tsv)",
            label_path,
        )
    if scheme_option in ("musclemap", "musclesense", "totalsegmentator"):
        table = label_scheme(scheme_option).names
    elif table is None:
        scheme = identify_scheme(values)
        if scheme is None:
            shown = ", ".join(str(v) for v in sorted(values)[:12])
            raise StudyError(
                f"no label table, and the label values ({shown}) match no known "
                "scheme (MuscleMap, Musclesense, TotalSegmentator): add labels.tsv",
                label_path,
            )
        table = scheme.names
        qc.append(
            QCFinding(
                "info",
                "label_scheme_detected",
                f"no label table; values identified as the {scheme.name} scheme",
                str(label_path),
            )
        )
    missing = sorted(values - set(table))
    if missing:
        shown = ", ".join(str(v) for v in missing[:12])
        qc.append(
            QCFinding(
                "warning",
                "label_not_in_table",
                f"label values {shown} are in the map but not in the table; kept as "
                "unknown and excluded from templates",
                str(label_path),
            )
        )
    info: dict[int, LabelInfo] = {}
    unknown = []
    for value in sorted(values):
        name = table.get(value, f"label_{value}")
        info[value] = match_label_name(name, value)
        if info[value].kind == "unknown" and value in table:
            unknown.append(name)
    if unknown:
        qc.append(
            QCFinding(
                "warning",
                "label_unknown",
                f"names the vocabulary does not know (kept, excluded from "
                f"templates): {', '.join(unknown[:12])}",
                str(label_path),
            )
        )
    return info


def _check_sides(study: Study) -> None:
    wrong = []
    for value, box in zip(study.label_values, study.label_boxes, strict=True):
        info = study.label_info[int(value)]
        if info.side not in SIDES or box is None:
            continue
        centre = [(s.start + s.stop - 1) / 2.0 for s in box]
        x_world = float(study.affine[0, :3] @ centre + study.affine[0, 3])
        if (info.side == "left") != (x_world < 0):
            wrong.append(f"{info.name} (x = {x_world:+.0f} mm)")
    if wrong:
        study.qc.append(
            QCFinding(
                "warning",
                "side_mismatch",
                "muscles lie on the other side from their name in world coordinates (RAS+: left is "
                f"x < 0): {', '.join(wrong[:8])}; check the label table or the image orientation",
                str(study.files.get("labels", "")),
            )
        )


def _fat_fraction_map(volume: _Volume, declared: str | None, settings: Settings) -> np.ndarray:
    data = volume.data
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        raise StudyError("fat-fraction map has no finite value", volume.path)
    p99 = float(np.percentile(finite, 99))
    scale = declared or (
        "percent" if p99 > settings["load"]["ff_map_percent_detect"] else "fraction"
    )
    if scale == "percent":
        data = data / np.float32(100.0)
        finite = finite / np.float32(100.0)
    tolerance = settings["load"]["ff_map_tolerance"]
    low, high = float(finite.min()), float(finite.max())
    if low < -tolerance or high > 1.0 + tolerance:
        unit = "percent (0-100)" if scale == "percent" else "a fraction (0-1)"
        raise StudyError(
            f"fat-fraction values outside the possible range for {unit}: min {low:g}, max {high:g}",
            volume.path,
        )
    return np.clip(data, 0.0, 1.0, out=data)


def _one(roles: dict[str, list[Path]], role: str) -> Path | None:
    files = roles.get(role)
    if not files:
        return None
    if len(files) > 1:
        names = ", ".join(str(f) for f in files)
        raise StudyError(
            f"several files match the role '{role}': {names}; keep one or set the "
            "role patterns in configs/layouts.yaml",
            files[0].parent,
        )
    return files[0]


def load_study(
    path: str | Path | StudyFiles,
    *,
    labels: str = "auto",
    resample: bool = False,
    settings: Settings | None = None,
    read_threads: int | None = None,
) -> Study:
    """Load a study: every image on the label grid, RAS+, with its label table.

    The files are read, hashed and decompressed concurrently (one thread per file, up to the
    number of cores); see :class:`Study` for the array types.

    Parameters
    ----------
    path : path or StudyFiles
        A simple-layout study folder, a BIDS ``anat`` folder, or a discovered study.
    labels : {"auto", "tsv", "musclemap", "musclesense", "totalsegmentator"}
        Label scheme: ``auto`` uses the table when there is one, otherwise identifies the scheme
        from the values present.
    resample : bool
        Resample images that are not on the label grid (linear) instead of refusing them.
    settings : Settings, optional
        Default: ``configs/settings.yaml``.
    read_threads : int, optional
        Files read at once (default: one per core). A batch running one process per core
        passes 1: threads then only compete with the other processes.

    Returns
    -------
    Study

    Raises
    ------
    StudyError
        A one-line message naming the file or field and what was expected.
    """
    settings = settings or load_settings()
    if labels not in LABEL_OPTIONS:
        raise StudyError(f"--labels must be one of {', '.join(LABEL_OPTIONS)}, got {labels!r}")
    found = path if isinstance(path, StudyFiles) else study_files(path)
    qc: list[QCFinding] = []
    roles = found.roles
    label_path = _one(roles, "labels")
    if label_path is None:
        raise StudyError("no label map (expected labels.nii.gz or *_dseg.nii.gz)", found.folder)
    metadata_path = _one(roles, "metadata")
    metadata = read_metadata(metadata_path) if metadata_path else {}
    image_paths = {role: _one(roles, role) for role in IMAGE_ROLES}
    image_paths = {role: p for role, p in image_paths.items() if p is not None}
    for a, b in (("fat", "water"), ("water", "fat")):
        if a in image_paths and b not in image_paths:
            qc.append(
                QCFinding(
                    "warning",
                    "dixon_incomplete",
                    f"{a} image without {b} image: Dixon fat fraction needs both; {a} ignored",
                    str(image_paths[a]),
                )
            )
            del image_paths[a]
    if not image_paths:
        raise StudyError(
            "no usable image: expected fat+water, ff, stir, t2map or t1w NIfTI "
            "files beside the label map",
            found.folder,
        )

    opened = _open_all([label_path, *image_paths.values()], read_threads)
    opened.reverse()  # popped in reading order; each buffer is released once converted
    label_volume = _read_nifti(label_path, qc, opened.pop(), storage="integer")
    hashes = {"labels": label_volume.sha256}
    label_array = _integer_labels(label_volume, settings["load"]["max_label_value"])
    tolerance = settings["load"]["grid_tolerance_mm"]
    images: dict[str, np.ndarray] = {}
    for role, image_path in image_paths.items():
        # Integer images without scaling stay as stored (half the memory of float32); the
        # fat-fraction map is divided and range-checked, so it is always float32.
        storage = "float32" if role == "ff" else "compact"
        volume = _read_nifti(image_path, qc, opened.pop(), storage=storage)
        if not _same_grid(volume, label_volume, tolerance):
            if not resample:
                raise StudyError(
                    f"{image_path.name} is not on the label map's grid: {_grid_text(volume)} vs "
                    f"{_grid_text(label_volume)} (affines differ by more than {tolerance} mm); "
                    "resample it, or use the resample option (--resample)",
                    image_path,
                )
            qc.append(
                QCFinding(
                    "info",
                    "resampled",
                    f"{image_path.name} resampled onto the label grid (linear)",
                    str(image_path),
                )
            )
            volume = _resample(volume, label_volume)
        # Integer voxels cannot be NaN: only float images are checked (saves a volume of bools).
        bad = ~np.isfinite(volume.data) if volume.float_storage else None
        n_bad = int(bad.sum()) if bad is not None else 0
        if n_bad:
            volume.data[bad] = np.nan
            qc.append(
                QCFinding(
                    "warning",
                    "nonfinite_voxels",
                    f"{n_bad} NaN or infinite voxels excluded",
                    str(image_path),
                )
            )
        if role == "ff":
            scale = metadata.get("fat_fraction_scale") or _sidecar_units(image_path)
            volume.data = _fat_fraction_map(volume, scale, settings)
        images[role] = volume.data
        hashes[role] = volume.sha256

    table_path = _table_for(label_path, roles)
    table = read_label_table(table_path) if table_path and labels in ("auto", "tsv") else None
    values = _present_values(label_array)
    label_info = _resolve_labels(values, table, labels, label_path, qc)
    study_id = found.study_id  # from study.json or the folder (BIDS: sub/ses), made unique
    files = {"labels": label_path, **image_paths}
    for role, extra in (("label_table", table_path), ("metadata", metadata_path)):
        if extra:
            files[role] = extra
            hashes[role] = hashlib.sha256(extra.read_bytes()).hexdigest()
    study = Study(
        study_id=study_id,
        labels=label_array,
        affine=label_volume.affine,
        images=images,
        label_info=label_info,
        metadata=metadata,
        qc=qc,
        files=files,
        path=found.folder,
        input_sha256=hashes,
    )
    if not any(info.kind in ("muscle", "group") for info in label_info.values()):
        qc.append(
            QCFinding(
                "warning",
                "no_known_muscle",
                "no label is a known thigh muscle or compartment",
                str(label_path),
            )
        )
    _check_sides(study)
    return study


LABEL_OPTIONS = ("auto", "tsv", "musclemap", "musclesense", "totalsegmentator")


def _table_for(label_path: Path, roles: dict[str, list[Path]]) -> Path | None:
    stem = _strip_nifti(label_path.name) or label_path.stem
    beside = label_path.with_name(stem + ".tsv")
    if beside.is_file():
        return beside
    for candidate in roles.get("label_table", []):
        if candidate.parent == label_path.parent:
            return candidate
    return None


def _sidecar_units(image_path: Path) -> str | None:
    stem = _strip_nifti(image_path.name) or image_path.stem
    sidecar = image_path.with_name(stem + ".json")
    if not sidecar.is_file():
        return None
    try:
        units = json.loads(sidecar.read_text(encoding="utf-8")).get("Units", "")
    except (OSError, ValueError, AttributeError):
        return None
    units = str(units).strip().lower()
    return "percent" if units in ("%", "percent") else "fraction" if units == "fraction" else None


def _present_values(labels: np.ndarray) -> set[int]:
    """Label values present in the map (0 excluded), without sorting the volume."""
    high = int(labels.max())
    if high < 1 << 24:
        seen = np.zeros(high + 1, bool)
        seen[labels.ravel(order="K")] = True
        return {int(v) for v in np.flatnonzero(seen) if v}
    return {int(v) for v in np.unique(labels) if v}
