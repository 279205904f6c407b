"""Water-T2 fits from multi-echo spin echo, against an independent Bloch simulation.

The truth signal comes from an isochromat (Bloch) simulation of a CPMG train written here, not
from the EPG code under test: the two agree only if the EPG is right.
"""

from __future__ import annotations

import numpy as np
import pytest

from mri_scoring.measure.t2fit import EpgParameters, epg_cpmg, fit_t2

TE_MS = 10.0 * np.arange(1, 17)  # 16 echoes, 10 ms spacing
FAT_T2_MS = 150.0  # the shipped settings' fixed fat T2


def bloch_cpmg(t2_ms, t1_ms, b1, n_echoes=16, spacing_ms=10.0, n_iso=400):
    """Echo amplitudes of a CPMG train from 400 isochromats dephased over one cycle."""
    theta = 2 * np.pi * np.arange(n_iso) / n_iso
    ct, st = np.cos(theta), np.sin(theta)

    def rot_x(a):
        c, s = np.cos(a), np.sin(a)
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])

    def rot_y(a):
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])

    m = np.tile([0.0, 0.0, 1.0], (n_iso, 1)) @ rot_x(np.pi / 2 * b1).T
    e2, e1 = np.exp(-spacing_ms / 2 / t2_ms), np.exp(-spacing_ms / 2 / t1_ms)

    def free(m):
        x, y = m[:, 0] * ct - m[:, 1] * st, m[:, 0] * st + m[:, 1] * ct
        return np.stack([x * e2, y * e2, 1 + (m[:, 2] - 1) * e1], 1)

    refocus = rot_y(np.pi * b1)
    out = []
    for _ in range(n_echoes):
        m = free(free(m) @ refocus.T)
        out.append(abs(complex(m[:, 0].mean(), m[:, 1].mean())))
    return np.array(out)


def train(t2_water_ms, b1=1.0, fat=0.0):
    return (1 - fat) * bloch_cpmg(t2_water_ms, 1400.0, b1) + fat * bloch_cpmg(FAT_T2_MS, 365.0, b1)


def rician(signal, sigma, n, seed):
    rng = np.random.default_rng(seed)
    shape = (n, signal.size)
    return np.hypot(signal + rng.normal(0, sigma, shape), rng.normal(0, sigma, shape))


@pytest.mark.parametrize("b1", [1.0, 0.8, 0.6])
def test_epg_matches_bloch_simulation(b1):
    """Guards a wrong EPG (phase convention, shift, relaxation order): stimulated echoes at low
    B1 would differ from the isochromat simulation."""
    epg = epg_cpmg(
        np.array([35.0]), 1400.0, np.array([b1]), EpgParameters(echo_spacing_ms=10.0, n_echoes=16)
    )[0]
    assert np.allclose(epg, bloch_cpmg(35.0, 1400.0, b1), atol=1e-9)


@pytest.mark.parametrize("t2_ms", [30.0, 45.0, 60.0])
@pytest.mark.parametrize("method", ["mono", "epg"])
def test_noiseless_t2_within_1ms(t2_ms, method):
    """Guards a biased fit (first echo kept in the mono fit, grid without refinement)."""
    fit = fit_t2(1000.0 * train(t2_ms)[None], TE_MS, method=method, noise_sigma=0.0)
    assert abs(fit.t2_water_ms[0] - t2_ms) < 1.0, f"{method}: {fit.t2_water_ms[0]} vs {t2_ms}"


@pytest.mark.parametrize("t2_ms", [30.0, 45.0, 60.0])
def test_epg_noiseless_t2_within_1ms_off_resonance_b1(t2_ms):
    """At B1 = 0.83 (off the dictionary grid) stimulated echoes bias the mono fit; EPG recovers
    T2 and B1."""
    fit = fit_t2(1000.0 * train(t2_ms, b1=0.83)[None], TE_MS, method="epg", noise_sigma=0.0)
    assert abs(fit.t2_water_ms[0] - t2_ms) < 1.0
    assert abs(fit.b1[0] - 0.83) < 0.01


@pytest.mark.parametrize("t2_ms", [30.0, 45.0, 60.0])
@pytest.mark.parametrize("method", ["mono", "epg"])
def test_snr50_t2_within_3ms(t2_ms, method):
    """SNR 50 (sigma = 2 % of the proton density), Rician: the median over 1000 voxels within
    3 ms. Guards the noise-floor bias (late echoes on the Rician floor lengthen T2 by ~5 ms at
    30 ms without the power-domain correction)."""
    noisy = rician(1000.0 * train(t2_ms), 20.0, 1000, seed=int(t2_ms))
    t2 = fit_t2(noisy, TE_MS, method=method, noise_sigma=20.0).t2_water_ms
    assert (t2 > 0).mean() > 0.99, "nearly every voxel is fitted at SNR 50"
    assert abs(np.median(t2) - t2_ms) < 3.0, f"{method} median {np.median(t2):.2f} vs {t2_ms}"


def test_noise_sigma_estimated_from_air():
    """With air voxels beside the tissue the noise sigma is measured, not assumed."""
    tissue = rician(1000.0 * train(30.0), 20.0, 500, seed=1)
    air = rician(np.zeros(16), 20.0, 2000, seed=2)
    fit = fit_t2(np.vstack([tissue, air]), TE_MS, method="mono")
    assert 17.0 < fit.noise_sigma < 23.0
    assert not fit.fitted[500:].any(), "air is not fitted"
    assert (fit.t2_water_ms[500:] == 0).all(), "air reads 0 (= not measured), not a T2"
    assert abs(np.median(fit.t2_water_ms[:500]) - 30.0) < 3.0


@pytest.mark.parametrize("b1", [1.0, 0.85])
def test_fat_aware_fit_keeps_water_t2_at_30pct_fat(b1):
    """At 30 % fat the mono-exponential water T2 is far too long (fat T2 ~150 ms); the
    bi-component EPG fit keeps it within 3 ms and reads the fat fraction."""
    signal = 1000.0 * train(35.0, b1=b1, fat=0.3)[None]
    mono = fit_t2(signal, TE_MS, method="mono", noise_sigma=0.0)
    epg = fit_t2(signal, TE_MS, method="epg", noise_sigma=0.0)
    assert mono.t2_water_ms[0] - 35.0 > 10.0, "the mono fit is expected to be fat-biased"
    assert abs(epg.t2_water_ms[0] - 35.0) < 3.0
    assert abs(epg.fat_fraction[0] - 0.3) < 0.02


def test_fat_aware_fit_at_snr50():
    """30 % fat at SNR 50: median water T2 within 3 ms, median fat fraction within 0.03."""
    noisy = rician(1000.0 * train(35.0, b1=0.9, fat=0.3), 20.0, 1000, seed=7)
    fit = fit_t2(noisy, TE_MS, method="epg", noise_sigma=20.0)
    assert abs(np.median(fit.t2_water_ms) - 35.0) < 3.0
    assert abs(np.median(fit.fat_fraction) - 0.3) < 0.03


def test_pure_fat_has_no_water_t2():
    """A fat-only voxel has no water T2 to report: 0 (not measured), never a number."""
    fit = fit_t2(1000.0 * train(35.0, fat=1.0)[None], TE_MS, method="epg", noise_sigma=0.0)
    assert fit.t2_water_ms[0] == 0.0
    assert fit.fat_fraction[0] > 0.95


def test_shape_is_kept_and_bad_input_is_refused():
    echoes = np.broadcast_to(1000.0 * train(40.0), (3, 4, 2, 16))
    fit = fit_t2(echoes, TE_MS, method="mono", noise_sigma=0.0)
    assert fit.t2_water_ms.shape == (3, 4, 2)
    with pytest.raises(ValueError, match="echo times"):
        fit_t2(echoes, TE_MS[:10])
    with pytest.raises(ValueError, match="equally spaced"):
        fit_t2(echoes, TE_MS**1.1, method="epg")
    with pytest.raises(ValueError, match="method"):
        fit_t2(echoes, TE_MS, method="nnls")
