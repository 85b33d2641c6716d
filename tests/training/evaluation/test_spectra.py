"""Isotropic spectra: plane waves, Parseval, detrending, masks and small-scale ratios."""
from __future__ import annotations

import numpy as np
import pytest

from training.evaluation.spectra import isotropic_spectrum, small_scale_power_ratio, velocity_spectrum

DX = 16_000.0  # m
N = 32


def plane_wave(kx_cycles: int, ky_cycles: int, amplitude: float = 2.0, n: int = N, phase: float = 0.3):
    """A cos(2π(kx·i + ky·j)/n + φ) with kx, ky whole cycles across the domain."""
    j, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return amplitude * np.cos(2 * np.pi * (kx_cycles * i + ky_cycles * j) / n + phase)


def test_plane_wave_peaks_at_its_wavelength_with_power_a2_over_2():
    spec = isotropic_spectrum(plane_wave(4, 0), DX)
    peak = int(np.argmax(spec.power))
    assert spec.wavelength_km[peak] == pytest.approx(N * 16 / 4)  # 128 km
    assert spec.power[peak] == pytest.approx(2.0**2 / 2)
    assert spec.power.sum() == pytest.approx(2.0)
    # oblique wave (3, 4): |k| = 5 cycles per domain, wavelength 512/5 km
    oblique = isotropic_spectrum(plane_wave(3, 4), DX)
    assert oblique.wavelength_km[np.argmax(oblique.power)] == pytest.approx(512 / 5)
    assert oblique.power.max() == pytest.approx(2.0)
    assert oblique.psd.max() == pytest.approx(2.0 / oblique.bin_width)


def test_parseval_for_random_field():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(3, N, N))
    spec = isotropic_spectrum(f, DX, detrend="none")
    mean_sq = np.mean(f**2)
    dc = np.mean(np.mean(f, axis=(-2, -1)) ** 2)
    assert spec.power.sum() + spec.beyond_nyquist + dc == pytest.approx(mean_sq, rel=1e-12)
    assert spec.samples == 3
    assert spec.wavenumber.size == N // 2
    assert spec.wavelength_km[-1] == pytest.approx(2 * 16.0)  # Nyquist: two cells


def test_linear_detrend_removes_a_ramp_and_hann_keeps_the_peak():
    j, i = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    ramp = 0.05 * i - 0.02 * j + 1.0
    wave = plane_wave(8, 0, amplitude=1.0)
    lin = isotropic_spectrum(ramp + wave, DX, detrend="linear")
    assert lin.wavelength_km[np.argmax(lin.power)] == pytest.approx(64.0)
    assert lin.power.sum() == pytest.approx(0.5, rel=0.05)
    mean_only = isotropic_spectrum(ramp + wave, DX, detrend="mean")
    assert mean_only.power[:3].sum() > 10 * lin.power[:3].sum()  # the ramp leaks into the large scales
    hann = isotropic_spectrum(wave, DX, window="hann")
    assert hann.wavelength_km[np.argmax(hann.power)] == pytest.approx(64.0)
    assert hann.power.sum() == pytest.approx(0.5, rel=0.05)


def test_missing_cells_and_fully_missing_samples():
    f = np.stack([plane_wave(2, 0), np.full((N, N), np.nan)])
    spec = isotropic_spectrum(f, DX)
    assert spec.samples == 1
    assert spec.power.sum() == pytest.approx(2.0)
    mask = np.ones((N, N), bool)
    mask[:, : N // 4] = False
    masked = isotropic_spectrum(plane_wave(2, 0), DX, mask=mask)
    assert 0.5 * 2.0 < masked.power.sum() < 2.0
    with pytest.raises(ValueError, match="entirely missing"):
        isotropic_spectrum(np.full((N, N), np.nan), DX)


def test_small_scale_ratio_of_smoothed_field_is_below_one():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(4, N, N))
    smooth = 0.25 * (truth + np.roll(truth, 1, -1) + np.roll(truth, 1, -2) + np.roll(np.roll(truth, 1, -1), 1, -2))
    st, ss = isotropic_spectrum(truth, DX), isotropic_spectrum(smooth, DX)
    assert small_scale_power_ratio(st, st) == pytest.approx(1.0)
    assert small_scale_power_ratio(ss, st) < 0.3
    assert small_scale_power_ratio(isotropic_spectrum(2 * truth, DX), st) == pytest.approx(4.0)


def test_velocity_spectrum_sums_components():
    u, v = plane_wave(4, 0, 1.0), plane_wave(0, 4, 3.0)
    spec = velocity_spectrum(u, v, DX)
    assert spec.power.max() == pytest.approx(0.5 + 4.5)
