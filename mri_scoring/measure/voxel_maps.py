"""The per-voxel masks and values behind a muscle table, for figures and NIfTI maps.

:func:`~.quantify.quantify` returns them on request (``voxel_maps=True``) from the very arrays
it measured with, so a figure or a map file shows exactly the voxels the table counted: the
report and the map writer never recompute a measure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "VoxelMaps",
]


@dataclass(kw_only=True, frozen=True, eq=False)
class VoxelMaps:
    """Per-voxel results of one study on its label grid (RAS+, the arrays of ``Study``).

    Labelled voxels and shell voxels are listed by flat C-order index into the grid
    (``np.ravel_multi_index((x, y, z), shape)``), in increasing order.

    Attributes
    ----------
    shape : tuple of int
        The label grid (X, Y, Z).
    index : ndarray of int
        Flat indices of the labelled voxels.
    label : ndarray of int
        Label value (as in the label map) of each labelled voxel.
    ff : ndarray of float32 or None
        Fat fraction (0-1) of each labelled voxel as measured (NaN: not measurable); None
        without a fat-fraction source.
    core : ndarray of bool
        Labelled voxel inside the measured core (eroded mask, or the whole mask of a label whose
        core is too small).
    edema_counted : ndarray of bool or None
        Labelled voxel in the denominator of ``edema_fraction`` (a muscle's core voxel, not
        fatty, with a usable STIR or T2 value); None when edema was not measured.
    edema : ndarray of bool or None
        Counted voxel read as edema (``edema_fraction`` = edema / counted per label).
    shell_index : ndarray of int
        Flat indices of the peri-muscular shell voxels (fascial edema).
    shell_label : ndarray of int
        Label value of the muscle owning each shell voxel.
    shell_edema : ndarray of bool or None
        Shell voxel read as edema-like (``fascial_edema_fraction`` = hits / shell voxels).
    z, shell_z : ndarray of int16 or None
        Slice index of each labelled / shell voxel (so one plane is found without dividing
        every index); computed from the indices when not given.
    """

    shape: tuple[int, int, int]
    index: np.ndarray
    label: np.ndarray
    ff: np.ndarray | None
    core: np.ndarray
    edema_counted: np.ndarray | None
    edema: np.ndarray | None
    shell_index: np.ndarray
    shell_label: np.ndarray
    shell_edema: np.ndarray | None
    z: np.ndarray | None = None
    shell_z: np.ndarray | None = None

    def volume(
        self,
        values: np.ndarray,
        *,
        shell: bool = False,
        fill: float = 0,
        dtype: np.dtype | type | None = None,
    ) -> np.ndarray:
        """Scatter per-voxel values (of the labelled voxels, or of the shell) onto the grid.

        Parameters
        ----------
        values : ndarray
            One value per labelled voxel (per shell voxel with ``shell``).
        shell : bool
            ``values`` belong to the shell voxels.
        fill : scalar
            Value of every other voxel.
        dtype : dtype, optional
            Default: that of ``values``.

        Returns
        -------
        ndarray, shape ``shape``
        """
        out = np.full(int(np.prod(self.shape)), fill, dtype or values.dtype)
        out[self.shell_index if shell else self.index] = values
        return out.reshape(self.shape)

    def plane(
        self, values: np.ndarray, k: int, *, shell: bool = False, fill: float = 0
    ) -> np.ndarray:
        """Axial plane ``z = k`` of :meth:`volume` (only that plane is built).

        Returns
        -------
        ndarray, shape (X, Y)
        """
        index = self.shell_index if shell else self.index
        z = self.shell_z if shell else self.z
        here = np.flatnonzero((index % self.shape[2] if z is None else z) == k)
        out = np.full(self.shape[0] * self.shape[1], fill, values.dtype)
        out[index[here] // self.shape[2]] = values[here]
        return out.reshape(self.shape[:2])

    def label_count(self, where: np.ndarray, *, shell: bool = False) -> dict[int, int]:
        """Voxels per label value where ``where`` holds (labelled or shell voxels).

        Returns
        -------
        dict of int to int
            Only labels with at least one voxel.
        """
        labels = self.shell_label if shell else self.label
        values, counts = np.unique(labels[where], return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}
