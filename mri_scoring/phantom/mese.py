"""Multi-echo spin-echo (MESE) echoes of a phantom: an isochromat (Bloch) simulation of CPMG.

Independent of the EPG fit in :mod:`mri_scoring.measure.t2fit` (which is what the simulated echoes
test); used by :mod:`.dicom_export` to write MESE series. Imports no measurement code.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cpmg_isochromats", "mese_echoes"]


def cpmg_isochromats(t2_ms: np.ndarray, t1_ms: float, b1: float, spacing_ms: float,
                     n_echoes: int, n_iso: int = 256) -> np.ndarray:  # fmt: skip
    """CPMG echo amplitudes by an isochromat (Bloch) simulation, vectorised over ``t2_ms``.

    Excitation about x, refocusing about y (CPMG), both flip angles scaled by ``b1``; each
    half echo spacing dephases the isochromats over one full cycle and relaxes them.

    Parameters
    ----------
    t2_ms : array
        Transverse relaxation times (ms).
    t1_ms : float
        Longitudinal relaxation time (ms).
    b1 : float
        Flip-angle scale.
    spacing_ms : float
        Echo spacing (ms).
    n_echoes : int
        Echoes to simulate.
    n_iso : int
        Isochromats (more than twice the echo count).

    Returns
    -------
    ndarray
        Shape ``t2_ms.shape + (n_echoes,)``.
    """
    t2 = np.asarray(t2_ms, float).ravel()[:, None]
    theta = 2.0 * np.pi * np.arange(n_iso) / n_iso
    ct, st = np.cos(theta), np.sin(theta)
    a = np.pi / 2.0 * b1
    mx = np.zeros((t2.shape[0], n_iso))
    my = np.full_like(mx, -np.sin(a))
    mz = np.full_like(mx, np.cos(a))
    e2, e1 = np.exp(-spacing_ms / 2.0 / t2), np.exp(-spacing_ms / 2.0 / t1_ms)
    r = np.pi * b1
    cr, sr = np.cos(r), np.sin(r)
    out = np.empty((t2.shape[0], n_echoes))

    def free(mx: np.ndarray, my: np.ndarray,
             mz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        x, y = mx * ct - my * st, mx * st + my * ct
        return x * e2, y * e2, 1.0 + (mz - 1.0) * e1

    for echo in range(n_echoes):
        mx, my, mz = free(mx, my, mz)
        mx, mz = cr * mx + sr * mz, -sr * mx + cr * mz  # rotation about y
        mx, my, mz = free(mx, my, mz)
        out[:, echo] = np.hypot(mx.mean(1), my.mean(1))
    return out.reshape((*np.shape(t2_ms), n_echoes))


def mese_echoes(water: np.ndarray, fat: np.ndarray, t2_water_ms: np.ndarray, *,
                spacing_ms: float = 10.0, n_echoes: int = 16, b1: float = 1.0,
                fat_t2_ms: float = 150.0, water_t1_ms: float = 1400.0, fat_t1_ms: float = 365.0,
                noise: float = 0.0, seed: int = 0) -> np.ndarray:  # fmt: skip
    """Magnitude MESE echoes (x, y, z, echoes) of water + fat with a water-T2 map.

    The water curves are simulated on a 0.25 ms T2 grid and interpolated per voxel; voxels with
    T2 0 (no water T2, e.g. air) get no water signal. Rician noise of sigma ``noise``.

    Returns
    -------
    ndarray of float32
    """
    t2 = np.asarray(t2_water_ms, float)
    grid = np.arange(5.0, 200.25, 0.25)
    curves = cpmg_isochromats(grid, water_t1_ms, b1, spacing_ms, n_echoes)
    idx = np.clip((t2 - grid[0]) / 0.25, 0, grid.size - 1.001)
    lo = idx.astype(int)
    frac = (idx - lo)[..., None]
    water_curve = curves[lo] * (1 - frac) + curves[lo + 1] * frac
    water_curve[t2 <= 0] = 0.0
    fat_curve = cpmg_isochromats(np.array([fat_t2_ms]), fat_t1_ms, b1, spacing_ms, n_echoes)[0]
    signal = water[..., None] * water_curve + fat[..., None] * fat_curve
    if noise > 0:
        rng = np.random.default_rng(seed)
        signal = np.hypot(
            signal + rng.normal(0, noise, signal.shape), rng.normal(0, noise, signal.shape)
        )
    return signal.astype(np.float32)
