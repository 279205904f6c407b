"""The :class:`Study` container and :func:`load_study`: every image on the label grid, checked.

Everything a later stage needs is on the :class:`Study`: arrays on one RAS+ grid, the resolved
label table, metadata and QC findings. Later stages never open files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .. import schema
from ..anatomy import LabelInfo
from ..config import Settings, load_settings
from ..errors import QCFinding, StudyError
from ..memory_layout import smallest_label_dtype
from .discover import IMAGE_ROLES, StudyFiles, study_files, unclaimed_images
from .label_files import find_label_table, read_any_table
from .label_geometry import resolve_geometry
from .label_profiles import LabelProfiles, label_profiles
from .nifti import (
    Volume,
    grid_text,
    integer_labels,
    open_all,
    read_volume,
    resample_to,
    same_grid,
)
from .role_content import check_roles
from .tables import (
    LABEL_OPTIONS,
    ignored_table_finding,
    read_metadata,
    resolve_labels,
    shown_values,
    sidecar_units,
)

__all__ = [
    "Study",
    "load_study",
]


@dataclass(kw_only=True)
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
    profiles : LabelProfiles or None
        Per-label voxel counts along each axis, when the loader already counted them (else
        counted on first use of :attr:`label_boxes`).
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
    profiles: LabelProfiles | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        """One line: id, grid, image roles and label count (not the arrays).

        Examples
        --------
        >>> import numpy as np
        >>> Study(
        ...     study_id="s1",
        ...     labels=np.zeros((4, 5, 6), np.uint8),
        ...     affine=np.diag([2.0, 2.0, 5.0, 1.0]),
        ...     images={"fat": np.zeros((4, 5, 6), np.float32)},
        ...     label_info={},
        ... )
        Study('s1', shape=(4, 5, 6), voxel_mm=(2, 2, 5), images=[fat], labels=0)
        """
        voxel = ", ".join(f"{v:g}" for v in self.voxel_size_mm)
        return (
            f"Study({self.study_id!r}, shape={self.shape}, voxel_mm=({voxel}), "
            f"images=[{', '.join(self.images)}], labels={len(self.label_info)})"
        )

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
        """Grid shape (X, Y, Z) of every array."""
        return tuple(int(n) for n in self.labels.shape)  # type: ignore[return-value]

    def float_image(self, role: str) -> np.ndarray:
        """The image of ``role`` as float32, safe for arithmetic.

        The array itself, or a converted copy when it is kept as stored 16-bit integers
        (integer sums can overflow).
        """
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
        dtype = smallest_label_dtype(len(values))
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
        """Bounding box of each label, in the order of :attr:`label_values` (None: no voxel).

        The boxes ``scipy.ndimage.find_objects`` gives for :meth:`compact_labels`, read off the
        per-axis label counts (one walk over the map, or none when the loader counted them).
        """
        if self.profiles is not None:
            return self.profiles.select(self.label_values).boxes()
        return label_profiles(self.labels, self.label_values).boxes()


def _fat_fraction_map(
    volume: Volume, declared: str | None, settings: Settings, qc: list[QCFinding]
) -> np.ndarray:
    data = volume.data
    is_finite = np.isfinite(data)
    finite = data.reshape(-1) if is_finite.all() else data[is_finite]
    if finite.size == 0:
        raise StudyError("fat-fraction map has no finite value", volume.path)
    p99 = float(np.percentile(finite, 99))
    looks_percent = p99 > settings["load"]["ff_map_percent_detect"]
    tolerance = settings["load"]["ff_map_tolerance"]
    if declared == "fraction" and looks_percent and float(finite.max()) <= 100.0 * (1 + tolerance):
        # percent declared as a fraction: read as a fraction every muscle would be >100 % fat
        qc.append(
            QCFinding(
                "warning",
                schema.ROLE_CONTENT_MISMATCH,
                f"the fat-fraction map is declared a fraction (0-1) but its 99th percentile is "
                f"{p99:.4g} and its maximum {float(finite.max()):.4g}: percent values; read as "
                "percent",
                str(volume.path),
            )
        )
        declared = "percent"
    scale = declared or ("percent" if looks_percent else "fraction")
    low, high = float(finite.min()), float(finite.max())
    if scale == "percent":
        data = data / np.float32(100.0)
        low, high = low / 100.0, high / 100.0
    if low < -tolerance or high > 1.0 + tolerance:
        unit = "percent (0-100)" if scale == "percent" else "a fraction (0-1)"
        raise StudyError(
            f"fat-fraction values outside the possible range for {unit}: min {low:g}, max {high:g}",
            volume.path,
        )
    return np.clip(data, 0.0, 1.0, out=data)


def _check_role_content(
    images: dict[str, np.ndarray],
    image_paths: dict[str, Path],
    hashes: dict[str, str],
    labels: np.ndarray,
    label_info: dict[int, LabelInfo],
    affine: np.ndarray,
    qc: list[QCFinding],
    settings: Settings,
    label_path: Path,
) -> None:
    """Content against role (:mod:`.role_content`); a reassigned file keeps its hash."""
    before = dict(image_paths)
    muscles = [v for v, i in label_info.items() if i.kind in ("muscle", "other_muscle")]
    labelled = [v for v, i in label_info.items() if i.kind != "unknown"]
    voxel = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    check_roles(
        images, image_paths, labels, muscles, labelled, voxel, qc, settings["load"]["role_content"]
    )
    for role, path in before.items():
        if image_paths.get(role) != path:
            digest = hashes.pop(role, None)
            new_role = next((r for r, p in image_paths.items() if p == path), None)
            if new_role and digest:
                hashes[new_role] = digest
    if not images:
        raise StudyError(
            "no usable image left after the role-content checks (see the QC findings: an "
            "image did not hold what its role says)",
            label_path,
        )


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
    unused = unclaimed_images(found.folder, roles)
    if unused:
        qc.append(
            QCFinding(
                "info",
                schema.IMAGE_NOT_USED,
                f"image files found but not used (their names match no role in "
                f"configs/layouts.yaml): {shown_values([p.name for p in unused], 8)}",
                str(found.folder),
            )
        )
    image_paths = {role: _one(roles, role) for role in IMAGE_ROLES}
    image_paths = {role: p for role, p in image_paths.items() if p is not None}
    for a, b in (("fat", "water"), ("water", "fat")):
        if a in image_paths and b not in image_paths:
            qc.append(
                QCFinding(
                    "warning",
                    schema.DIXON_INCOMPLETE,
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

    opened = open_all([label_path, *image_paths.values()], read_threads)
    opened.reverse()  # popped in reading order; each buffer is released once converted
    label_volume = read_volume(label_path, qc, opened.pop(), storage="integer")
    hashes = {"labels": label_volume.sha256}
    label_array = integer_labels(label_volume, settings["load"]["max_label_value"])
    tolerance = settings["load"]["grid_tolerance_mm"]
    images: dict[str, np.ndarray] = {}
    for role, image_path in image_paths.items():
        # Integer images without scaling stay as stored (half the memory of float32); the
        # fat-fraction map is divided and range-checked, so it is always float32.
        storage = "float32" if role == "ff" else "compact"
        volume = read_volume(image_path, qc, opened.pop(), storage=storage)
        if not same_grid(volume, label_volume, tolerance):
            if not resample:
                raise StudyError(
                    f"{image_path.name} is not on the label map's grid: {grid_text(volume)} vs "
                    f"{grid_text(label_volume)} (affines differ by more than {tolerance} mm); "
                    "resample it, or use the resample option (--resample)",
                    image_path,
                )
            qc.append(
                QCFinding(
                    "info",
                    schema.RESAMPLED,
                    f"{image_path.name} resampled onto the label grid (linear)",
                    str(image_path),
                )
            )
            volume = resample_to(volume, label_volume)
        # Integer voxels cannot be NaN: only float images are checked (saves a volume of bools).
        bad = ~np.isfinite(volume.data) if volume.float_storage else None
        n_bad = int(bad.sum()) if bad is not None else 0
        if n_bad:
            volume.data[bad] = np.nan
            qc.append(
                QCFinding(
                    "warning",
                    schema.NONFINITE_VOXELS,
                    f"{n_bad} NaN or infinite voxels excluded",
                    str(image_path),
                )
            )
        if role == "ff":
            scale = metadata.get("fat_fraction_scale") or sidecar_units(image_path)
            volume.data = _fat_fraction_map(volume, scale, settings, qc)
        images[role] = volume.data
        hashes[role] = volume.sha256

    table_path = find_label_table(label_path, roles, qc)
    table = read_any_table(table_path) if table_path and labels in ("auto", "tsv") else None
    counted = label_profiles(label_array)  # one walk: the values present and where they lie
    values = {int(v) for v in counted.values}
    if table_path and labels not in ("auto", "tsv"):  # an explicit scheme sets the table aside
        qc.append(ignored_table_finding(table_path, labels, values, read_any_table))
    label_info, identified = resolve_labels(values, table, labels, label_path, qc, settings)
    label_array, label_info, profiles = resolve_geometry(
        label_array, counted, label_volume.affine, label_info, identified, label_path, qc, settings
    )
    _check_role_content(
        images,
        image_paths,
        hashes,
        label_array,
        label_info,
        label_volume.affine,
        qc,
        settings,
        label_path,
    )
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
        profiles=profiles,
    )
    if not any(info.kind in ("muscle", "group") for info in label_info.values()):
        qc.append(
            QCFinding(
                "warning",
                schema.NO_KNOWN_MUSCLE,
                "no label is a known thigh muscle or compartment",
                str(label_path),
            )
        )
    return study
