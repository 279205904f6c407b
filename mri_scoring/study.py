"""Studies: finding role files in a folder (simple layout, BIDS), loading NIfTI, spatial checks.

Everything a later stage needs is on the :class:`Study`: arrays on one RAS+ grid, the resolved
label table, metadata and QC findings. Later stages never open files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .anatomy import LabelInfo
from .errors import QCFinding

IMAGE_ROLES = ("fat", "water", "ff", "stir", "t2map", "t1w")


@dataclass
class Study:
    """One study on the label map's grid, reoriented to RAS+.

    Attributes
    ----------
    study_id : str
        Sanitised identifier (safe as a folder name).
    labels : ndarray of int32, shape (X, Y, Z)
        Label map, 0 = background.
    affine : ndarray, shape (4, 4)
        Voxel -> world (RAS+, mm) transform of every array.
    images : dict of str -> ndarray of float32
        Images by role: ``fat``, ``water`` (Dixon magnitudes), ``ff`` (fat fraction 0-1),
        ``stir`` (arbitrary units), ``t2map`` (ms), ``t1w`` (arbitrary units).
    label_info : dict of int -> LabelInfo
        Meaning of every label value present in the map.
    metadata : dict
        Contents of ``study.json`` (or BIDS sidecars), possibly empty.
    qc : list of QCFinding
        Findings raised while loading.
    files : dict of str -> Path
        Source file of each role (for input hashes).
    path : Path or None
        The study folder, if loaded from disk.
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
