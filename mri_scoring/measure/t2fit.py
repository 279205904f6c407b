"""Water T2 (ms) from multi-echo spin-echo (MESE) echo trains, voxel by voxel.

Two fits, chosen by ``t2fit.method`` in ``configs/settings.yaml``:

``mono``
    Mono-exponential, log-linear weighted least squares (weights S², i.e. the exact fit for
    noiseless data and the usual approximation for Rician data at good SNR) on the echoes after
    the first: with imperfect refocusing the first echo lacks the stimulated-echo contribution
    the later ones carry, so it is dropped as the baseline. Fast; biased upward by fat (T2 of fat
    is several times that of water) and by stimulated echoes when B1 is far from nominal.

``epg``
    Bi-component water/fat fit with stimulated-echo compensation after Marty et al. 2016
    (Marty B, Baudin P-Y, Reyngoudt H, et al. *Simultaneous muscle water T2 and fat fraction
    mapping using transverse relaxometry with stimulated echo compensation.* NMR Biomed
    29:431-443, doi:10.1002/nbm.3459): the echo train is modelled as water (free T2) plus fat
    (fixed T2) under one refocusing-angle scale B1, each curve simulated with the extended phase
    graph (EPG) formalism of Weigel 2015 (Weigel M. *Extended phase graphs: dephasing, RF pulses,
    and echoes - pure and simple.* J Magn Reson Imaging 41:266-295, doi:10.1002/jmri.24619).
    The fit is a dictionary search over (water T2, B1) with the two amplitudes solved linearly
    (projection on the two curves), refined by a parabola through the neighbouring grid points.
    The slice profile of 2-D acquisitions is not modelled (B1 absorbs part of it).

Before either fit the Rician noise floor is removed in the power domain, with the noise sigma
measured in the air of the series (or given). Both are vectorised over voxels, in bounded
chunks. Voxels whose first echo is below ``signal_floor_fraction`` of the robust maximum, or
below ``min_first_echo_snr`` noise sigmas, are not fitted (T2 reported as 0 = not measured, the
convention of T2-map files here).

Examples
--------
>>> import numpy as np
>>> te = 10.0 * np.arange(1, 17)
>>> echoes = 1000.0 * np.exp(-te / 35.0)[None, :]
>>> fit = fit_t2(echoes, te, method="mono")
>>> round(float(fit.t2_water_ms[0]), 3)
35.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import load_settings

__all__ = [
    "METHODS",
    "EpgParameters",
    "T2Fit",
    "background_sigma",
    "epg_cpmg",
    "fit_epg",
    "fit_mono",
    "fit_t2",
    "floor_corrected",
]

METHODS = ("mono", "epg")
_CHUNK_VOXELS = 2048


@dataclass(kw_only=True)
class T2Fit:
    """Result of a MESE fit; arrays have the spatial shape of the input.

    Attributes
    ----------
    t2_water_ms : ndarray of float32
        Water T2 in ms; 0 where not fitted (signal below the floor, or no water).
    fat_fraction : ndarray of float32 or None
        Fat share of the proton signal implied by the fit (``epg`` only), NaN where not fitted.
    b1 : ndarray of float32 or None
        Refocusing-angle scale (1 = nominal), ``epg`` only, NaN where not fitted.
    fitted : ndarray of bool
        Voxels the fit was run on.
    method : str
        ``"mono"`` or ``"epg"``.
    noise_sigma : float
        Gaussian noise sigma of the magnitude images used for the noise-floor correction
        (0: no correction).
    """

    t2_water_ms: np.ndarray
    fat_fraction: np.ndarray | None
    b1: np.ndarray | None
    fitted: np.ndarray
    method: str
    noise_sigma: float = 0.0


@dataclass(kw_only=True, frozen=True)
class EpgParameters:
    """Sequence and tissue constants of the EPG model (times in ms, angles in degrees)."""

    echo_spacing_ms: float
    n_echoes: int
    refocusing_deg: float = 180.0
    excitation_deg: float = 90.0
    water_t1_ms: float = 1400.0
    fat_t1_ms: float = 365.0
    fat_t2_ms: float = 150.0
    repetition_time_ms: float | None = None


def epg_cpmg(t2_ms: np.ndarray, t1_ms: float, b1: np.ndarray, params: EpgParameters) -> np.ndarray:
    """Echo amplitudes of a CPMG echo train by the extended phase graph (Weigel 2015).

    Excitation about y (phase 90°), refocusing about x (phase 0°): the CPMG condition. Both
    flip angles are scaled by ``b1``; relaxation and longitudinal recovery act between pulses.

    Parameters
    ----------
    t2_ms : array
        Transverse relaxation times (ms), broadcast against ``b1``.
    t1_ms : float
        Longitudinal relaxation time (ms).
    b1 : array
        Flip-angle scale (1 = nominal).
    params : EpgParameters
        Echo spacing, echo count and nominal angles.

    Returns
    -------
    ndarray
        Shape ``broadcast(t2_ms, b1).shape + (n_echoes,)``, signal per unit proton density.
    """
    t2, scale = np.broadcast_arrays(np.asarray(t2_ms, float), np.asarray(b1, float))
    shape = t2.shape
    t2, scale = t2.ravel(), scale.ravel()
    n_states = 2 * params.n_echoes + 2
    tau = params.echo_spacing_ms / 2.0
    e2 = np.exp(-tau / t2)[:, None]
    e1 = np.exp(-tau / t1_ms)
    excite = np.deg2rad(params.excitation_deg) * scale
    alpha = np.deg2rad(params.refocusing_deg) * scale
    fp = np.zeros((t2.size, n_states), complex)
    fm = np.zeros_like(fp)
    z = np.zeros_like(fp)
    # Excitation of equilibrium magnetisation (Z0 = 1) with phase 90°: F0 = sin a, Z0 = cos a.
    fp[:, 0] = np.sin(excite)
    fm[:, 0] = np.sin(excite)
    z[:, 0] = np.cos(excite)
    c2 = (np.cos(alpha / 2.0) ** 2)[:, None]
    s2 = (np.sin(alpha / 2.0) ** 2)[:, None]
    sa = np.sin(alpha)[:, None]
    ca = np.cos(alpha)[:, None]
    out = np.empty((t2.size, params.n_echoes))

    def relax_and_shift() -> None:
        nonlocal fp, fm, z
        fp *= e2
        fm *= e2
        z *= e1
        z[:, 0] += 1.0 - e1
        fp = np.roll(fp, 1, axis=1)
        fm = np.roll(fm, -1, axis=1)
        fm[:, -1] = 0.0
        fp[:, 0] = np.conj(fm[:, 0])

    for echo in range(params.n_echoes):
        relax_and_shift()
        fp, fm, z = (
            c2 * fp + s2 * fm - 1j * sa * z,
            s2 * fp + c2 * fm + 1j * sa * z,
            -0.5j * sa * fp + 0.5j * sa * fm + ca * z,
        )
        relax_and_shift()
        out[:, echo] = np.abs(fp[:, 0])
    return out.reshape((*shape, params.n_echoes))


def _signal_mask(first_echo: np.ndarray, floor_fraction: float) -> np.ndarray:
    finite = np.isfinite(first_echo)
    if not finite.any():
        return finite
    reference = float(np.percentile(first_echo[finite], 99))
    return finite & (first_echo > floor_fraction * reference) & (first_echo > 0)


def background_sigma(echoes: np.ndarray, fitted: np.ndarray) -> float:
    """Noise sigma from the voxels below the signal floor (Rayleigh: median / sqrt(2 ln 2)).

    Parameters
    ----------
    echoes : ndarray
        Echo amplitudes, one row per voxel.
    fitted : ndarray of bool
        Voxels with signal; the others are taken as air.

    Returns
    -------
    float
        Sigma in image units, 0 when fewer than 100 air voxels are available.
    """
    air = echoes[~fitted]
    air = air[np.isfinite(air)]
    if air.size < 100:
        return 0.0
    return float(np.median(air)) / float(np.sqrt(2.0 * np.log(2.0)))


def floor_corrected(echoes: np.ndarray, sigma: float) -> np.ndarray:
    """Remove the Rician noise floor in the power domain: sqrt(max(M² - 2 sigma², 0)).

    The mean of a squared magnitude is A² + 2 sigma² (Gudbjartsson & Patz 1995, Magn Reson Med
    34:910, doi:10.1002/mrm.1910340618); without this late echoes of a short T2 sit on the noise
    floor and lengthen the apparent decay.
    """
    if sigma <= 0:
        return echoes
    power = echoes.astype(np.float32) ** 2 - np.float32(2.0 * sigma * sigma)
    return np.sqrt(np.maximum(power, 0.0))


def fit_mono(
    echoes: np.ndarray,
    echo_times_ms: np.ndarray,
    t2_range_ms: tuple[float, float],
    min_amplitude: float = 0.0,
) -> np.ndarray:
    """Mono-exponential water T2 (ms) per row of ``echoes`` (voxels, echoes), first echo dropped.

    Parameters
    ----------
    echoes : ndarray
        Positive echo amplitudes, one row per voxel.
    echo_times_ms : ndarray
        Echo times (ms), one per column.
    t2_range_ms : tuple of float
        Fits outside this range are reported as 0 (not measured).
    min_amplitude : float
        The echo train is cut at the first echo below this amplitude (noise-dominated echoes
        only bias the slope); at least 3 echoes are kept.

    Returns
    -------
    ndarray of float32
        T2 in ms, 0 where the fit failed or left the range.
    """
    te = np.asarray(echo_times_ms, np.float64)[1:]
    raw = np.asarray(echoes, np.float64)[:, 1:]
    s = np.maximum(raw, 1e-12)
    keep = np.cumprod(raw > min_amplitude, axis=1).astype(bool)
    keep[:, :3] = True
    w = np.where(keep & (raw > 0), s * s, 0.0)  # echoes at the noise floor carry no weight
    logs = np.log(s)
    sw = w.sum(1)
    sx = (w * te).sum(1)
    sy = (w * logs).sum(1)
    sxx = (w * te * te).sum(1)
    sxy = (w * te * logs).sum(1)
    denominator = sw * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (sw * sxy - sx * sy) / denominator
        t2 = -1.0 / slope
    ok = np.isfinite(t2) & (t2 >= t2_range_ms[0]) & (t2 <= t2_range_ms[1])
    return np.where(ok, t2, 0.0).astype(np.float32)


class _Dictionary:
    """EPG curves over a (water T2, B1) grid, with the orthonormal basis of each atom."""

    def __init__(self, params: EpgParameters, t2_grid: np.ndarray, b1_grid: np.ndarray) -> None:
        self.t2_grid, self.b1_grid = t2_grid, b1_grid
        t2, b1 = np.meshgrid(t2_grid, b1_grid, indexing="ij")
        water = epg_cpmg(t2, params.water_t1_ms, b1, params).reshape(-1, params.n_echoes)
        fat = epg_cpmg(np.full(b1.shape, params.fat_t2_ms), params.fat_t1_ms, b1, params).reshape(
            -1, params.n_echoes
        )
        if params.repetition_time_ms:
            water *= 1.0 - np.exp(-params.repetition_time_ms / params.water_t1_ms)
            fat *= 1.0 - np.exp(-params.repetition_time_ms / params.fat_t1_ms)
        self.water_norm = np.linalg.norm(water, axis=1)
        q1 = water / self.water_norm[:, None]
        self.fat_on_q1 = (fat * q1).sum(1)
        rest = fat - self.fat_on_q1[:, None] * q1
        self.rest_norm = np.maximum(np.linalg.norm(rest, axis=1), 1e-12)
        q2 = rest / self.rest_norm[:, None]
        self.q1 = q1.T.astype(np.float32)  # (n_echoes, n_atoms)
        self.q2 = q2.T.astype(np.float32)


def _parabolic(energy: np.ndarray, index: np.ndarray, axis_size: int) -> np.ndarray:
    """Sub-grid offset (in grid steps) of the maximum along one axis from three samples."""
    rows = np.arange(energy.shape[0])
    inner = (index > 0) & (index < axis_size - 1)
    lo = np.clip(index - 1, 0, axis_size - 1)
    hi = np.clip(index + 1, 0, axis_size - 1)
    e_m, e_0, e_p = energy[rows, lo], energy[rows, index], energy[rows, hi]
    curvature = e_m - 2.0 * e_0 + e_p
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(inner & (curvature < 0), 0.5 * (e_m - e_p) / curvature, 0.0)
    return np.clip(np.nan_to_num(offset), -0.5, 0.5)


def _best(energy: np.ndarray, n_t2: int, n_b1: int) -> tuple[np.ndarray, ...]:
    """Grid indices of the best atom and the parabolic T2/B1 refinements."""
    best = np.argmax(energy, axis=1)
    i_t2, i_b1 = np.divmod(best, n_b1)
    grid = energy.reshape(-1, n_t2, n_b1)
    rows = np.arange(energy.shape[0])
    along_t2 = grid[rows, :, i_b1]
    along_b1 = grid[rows, i_t2, :]
    return best, i_t2, i_b1, _parabolic(along_t2, i_t2, n_t2), _parabolic(along_b1, i_b1, n_b1)


def fit_epg(
    echoes: np.ndarray, dictionary: _Dictionary, min_water_fraction: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Water T2 (ms), fat fraction and B1 per row of ``echoes`` (n_voxels, n_echoes).

    Parameters
    ----------
    echoes : ndarray
        Echo amplitudes, one row per voxel (all echoes: the model includes the first).
    dictionary : _Dictionary
        Curves of the (water T2, B1) grid.
    min_water_fraction : float
        Below this water share of the signal the water T2 is not reported (nearly pure fat).

    Returns
    -------
    tuple of ndarray
        Water T2 (ms; 0 where water is absent or below ``min_water_fraction``), fat fraction,
        B1.
    """
    y = np.asarray(echoes, np.float32)
    n_t2, n_b1 = dictionary.t2_grid.size, dictionary.b1_grid.size
    t2_step = float(dictionary.t2_grid[1] - dictionary.t2_grid[0]) if n_t2 > 1 else 0.0
    b1_step = float(dictionary.b1_grid[1] - dictionary.b1_grid[0]) if n_b1 > 1 else 0.0
    t2_out = np.zeros(len(y), np.float32)
    ff_out = np.full(len(y), np.nan, np.float32)
    b1_out = np.full(len(y), np.nan, np.float32)
    for start in range(0, len(y), _CHUNK_VOXELS):
        part = slice(start, start + _CHUNK_VOXELS)
        p1 = y[part] @ dictionary.q1
        p2 = y[part] @ dictionary.q2
        energy = p1 * p1 + p2 * p2
        best, i_t2, i_b1, d_t2, d_b1 = _best(energy, n_t2, n_b1)
        del energy
        rows = np.arange(len(best))
        c1, c2 = p1[rows, best], p2[rows, best]
        fat = c2 / dictionary.rest_norm[best]
        water = (c1 - fat * dictionary.fat_on_q1[best]) / dictionary.water_norm[best]
        water_only = fat < 0
        if water_only.any():
            # Fat cannot be negative: refit those voxels with the water curves alone.
            e1 = p1[water_only] ** 2
            b, t, bb, dt, db = _best(e1, n_t2, n_b1)
            best[water_only], i_t2[water_only], i_b1[water_only] = b, t, bb
            d_t2[water_only], d_b1[water_only] = dt, db
            fat[water_only] = 0.0
            water[water_only] = p1[water_only, b] / dictionary.water_norm[b]
        total = np.maximum(water, 0.0) + fat
        with np.errstate(divide="ignore", invalid="ignore"):
            fat_share = np.where(total > 0, fat / total, np.nan)
        has_water = (water > 0) & (fat_share <= 1.0 - min_water_fraction)
        t2 = dictionary.t2_grid[i_t2] + d_t2 * t2_step
        t2_out[part] = np.where(has_water, t2, 0.0)
        ff_out[part] = fat_share
        b1_out[part] = dictionary.b1_grid[i_b1] + d_b1 * b1_step
    return t2_out, ff_out, b1_out


def _grid(spec: list[float]) -> np.ndarray:
    low, high, step = (float(v) for v in spec)
    return np.arange(low, high + step / 2.0, step)


def fit_t2(
    echoes: np.ndarray,
    echo_times_ms: np.ndarray,
    *,
    method: str | None = None,
    settings: dict[str, Any] | None = None,
    repetition_time_ms: float | None = None,
    noise_sigma: float | None = None,
) -> T2Fit:
    """Fit water T2 voxel-wise from a MESE echo train.

    Parameters
    ----------
    echoes : ndarray
        Echo amplitudes with the echoes on the last axis, e.g. (x, y, z, n_echoes).
    echo_times_ms : array
        Echo times (ms), equally spaced (CPMG); the spacing is the first echo time's.
    method : {"mono", "epg"}, optional
        Default ``settings["method"]``.
    settings : dict, optional
        The ``t2fit`` section of the settings (default: the shipped settings).
    repetition_time_ms : float, optional
        TR (ms): weights water and fat by their T1 saturation in the fat fraction (``epg``).
    noise_sigma : float, optional
        Noise sigma of the magnitude images, for the noise-floor correction; default: estimated
        from the voxels below the signal floor (air), no correction when there are too few.

    Returns
    -------
    T2Fit
        Water T2 (ms), and for ``epg`` fat fraction and B1, on the spatial grid of ``echoes``.

    Raises
    ------
    ValueError
        Unknown method, fewer than 4 echoes, or echo times not matching the echo axis.
    """
    cfg = settings if settings is not None else load_settings()["t2fit"]
    method = method or cfg["method"]
    if method not in METHODS:
        raise ValueError(f"t2fit method must be one of {', '.join(METHODS)}, got {method!r}")
    echoes = np.asarray(echoes)
    te = np.asarray(echo_times_ms, np.float64).ravel()
    if echoes.shape[-1] != te.size:
        raise ValueError(f"{echoes.shape[-1]} echoes but {te.size} echo times")
    if te.size < 4:
        raise ValueError(f"a MESE fit needs at least 4 echoes, got {te.size}")
    if method == "epg" and not np.allclose(np.diff(te), te[0], rtol=0.02):
        raise ValueError(
            f"the EPG fit needs equally spaced echoes starting at one spacing (CPMG), got "
            f"{', '.join(f'{t:g}' for t in te)} ms; use the mono-exponential fit"
        )
    spatial = echoes.shape[:-1]
    flat = echoes.reshape(-1, te.size)
    fitted = _signal_mask(flat[:, 0].astype(np.float64), cfg["signal_floor_fraction"])
    sigma = background_sigma(flat, fitted) if noise_sigma is None else float(noise_sigma)
    fitted &= flat[:, 0] > cfg["min_first_echo_snr"] * sigma
    rows = floor_corrected(flat[fitted].astype(np.float32), sigma)
    t2 = np.zeros(flat.shape[0], np.float32)
    ff = b1 = None
    if method == "mono":
        t2[fitted] = fit_mono(rows, te, tuple(cfg["mono_t2_range_ms"]), cfg["mono_min_snr"] * sigma)
    else:
        params = EpgParameters(
            echo_spacing_ms=float(te[0]),
            n_echoes=te.size,
            refocusing_deg=cfg["refocusing_deg"],
            excitation_deg=cfg["excitation_deg"],
            water_t1_ms=cfg["water_t1_ms"],
            fat_t1_ms=cfg["fat_t1_ms"],
            fat_t2_ms=cfg["fat_t2_ms"],
            repetition_time_ms=repetition_time_ms,
        )
        dictionary = _Dictionary(params, _grid(cfg["t2_grid_ms"]), _grid(cfg["b1_grid"]))
        ff = np.full(flat.shape[0], np.nan, np.float32)
        b1 = np.full(flat.shape[0], np.nan, np.float32)
        t2[fitted], ff[fitted], b1[fitted] = fit_epg(rows, dictionary, cfg["min_water_fraction"])
        ff, b1 = ff.reshape(spatial), b1.reshape(spatial)
    return T2Fit(
        t2_water_ms=t2.reshape(spatial),
        fat_fraction=ff,
        b1=b1,
        fitted=fitted.reshape(spatial),
        method=method,
        noise_sigma=sigma,
    )
