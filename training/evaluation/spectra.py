"""Isotropic (radially binned) power spectra of 2-D fields on a regular grid, and small-scale power ratios.

Normalisation (Parseval): with F = FFT2(f)/(ny·nx), Σ_k |F_k|² = mean(f²). `power` is the variance in each radial
wavenumber bin, so Σ power + beyond_nyquist + |F_0|² = mean(f²) for an unwindowed field; a plane wave of amplitude
A puts A²/2 into the bin of its wavenumber. `psd` = power / bin width (units² km), the quantity usually plotted.
Bins are centred on multiples of Δk = 1/(max(nx, ny)·dx) and reach the Nyquist wavenumber of the shorter side;
modes outside (the corners of the 2-D spectrum) are summed in `beyond_nyquist`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Detrend = Literal["none", "mean", "linear"]
Window = Literal["none", "hann"]


@dataclass(frozen=True)
class IsotropicSpectrum:
    """Radially binned spectrum averaged over all leading (sample) axes."""

    wavenumber: np.ndarray  # bin centres (cycles km⁻¹)
    power: np.ndarray  # variance per bin (units²)
    bin_width: float  # cycles km⁻¹
    dx_km: float
    beyond_nyquist: float  # variance in modes beyond the last bin (units²)
    samples: int

    @property
    def wavelength_km(self) -> np.ndarray:
        return 1.0 / self.wavenumber

    @property
    def psd(self) -> np.ndarray:
        """Power spectral density (units² km)."""
        return self.power / self.bin_width

    def __add__(self, other: "IsotropicSpectrum") -> "IsotropicSpectrum":
        if not np.array_equal(self.wavenumber, other.wavenumber):
            raise ValueError("cannot add spectra on different wavenumber bins")
        return IsotropicSpectrum(self.wavenumber, self.power + other.power, self.bin_width, self.dx_km,
                                 self.beyond_nyquist + other.beyond_nyquist, min(self.samples, other.samples))


def _detrend(f: np.ndarray, valid: np.ndarray, how: Detrend) -> np.ndarray:
    """Anomaly of each (y, x) sample about its mean or least-squares plane; invalid cells become 0."""
    out = np.where(valid, f, 0.0)
    if how == "none":
        return out
    ny, nx = f.shape[-2:]
    yy, xx = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
    basis = [np.ones((ny, nx))] if how == "mean" else [np.ones((ny, nx)), xx, yy]
    if how not in ("mean", "linear"):
        raise ValueError(f"detrend must be 'none', 'mean' or 'linear', got {how!r}")
    flat_f = out.reshape(-1, ny * nx)
    flat_v = valid.reshape(-1, ny * nx)
    a = np.stack([b.ravel() for b in basis], axis=1)
    for s in range(flat_f.shape[0]):
        w = flat_v[s]
        if not w.any():
            continue
        coef, *_ = np.linalg.lstsq(a[w], flat_f[s, w], rcond=None)
        flat_f[s] = np.where(w, flat_f[s] - a @ coef, 0.0)
    return flat_f.reshape(out.shape)


def _window(ny: int, nx: int, how: Window) -> np.ndarray | None:
    if how == "none":
        return None
    if how != "hann":
        raise ValueError(f"window must be 'none' or 'hann', got {how!r}")
    # periodic Hann (sym=False) so that it tiles; power is rescaled by 1/mean(w²) below
    hy = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(ny) / ny)
    hx = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(nx) / nx)
    return hy[:, None] * hx[None, :]


def isotropic_spectrum(field: np.ndarray, dx: float, *, mask: np.ndarray | None = None,
                       detrend: Detrend = "mean", window: Window = "none") -> IsotropicSpectrum:
    """Isotropic power spectrum of `field` (..., y, x) with cell size `dx` (m), averaged over leading axes.

    NaN and cells where `mask` is False are treated as missing: they are set to the (detrended) zero anomaly, which
    lowers the total power by roughly the missing fraction. Samples that are entirely missing are skipped.
    """
    f = np.asarray(field, dtype=np.float64)
    if f.ndim < 2:
        raise ValueError(f"field must be (..., y, x), got shape {f.shape}")
    ny, nx = f.shape[-2:]
    valid = np.isfinite(f)
    if mask is not None:
        valid &= np.broadcast_to(np.asarray(mask, dtype=bool), f.shape)
    f, valid = f.reshape((-1, ny, nx)), valid.reshape((-1, ny, nx))
    keep = valid.any(axis=(-2, -1))
    if not keep.any():
        raise ValueError("isotropic_spectrum: every sample is entirely missing")
    f, valid = f[keep], valid[keep]
    anomaly = _detrend(f, valid, detrend)
    w = _window(ny, nx, window)
    if w is not None:
        anomaly = anomaly * w / np.sqrt(np.mean(w**2))
    power2d = np.abs(np.fft.fft2(anomaly) / (ny * nx)) ** 2
    power2d = power2d.mean(axis=0)

    dx_km = dx / 1000.0
    ky = np.fft.fftfreq(ny, d=dx_km)
    kx = np.fft.fftfreq(nx, d=dx_km)
    k = np.hypot(ky[:, None], kx[None, :])
    dk = 1.0 / (max(nx, ny) * dx_km)
    nbins = min(nx, ny) // 2
    index = np.rint(k / dk).astype(np.int64)  # bin b holds b−½ ≤ |k|/Δk < b+½
    power = np.bincount(index.ravel(), weights=power2d.ravel(), minlength=nbins + 1)
    return IsotropicSpectrum(wavenumber=np.arange(1, nbins + 1) * dk, power=power[1 : nbins + 1], bin_width=dk,
                             dx_km=dx_km, beyond_nyquist=float(power[nbins + 1 :].sum()), samples=int(keep.sum()))


def velocity_spectrum(u: np.ndarray, v: np.ndarray, dx: float, **kwargs) -> IsotropicSpectrum:
    """Spectrum of u plus that of v (twice the kinetic-energy spectrum per unit mass, m² s⁻²).

    The C-grid staggering only shifts phases, so face values can be used directly.
    """
    return isotropic_spectrum(u, dx, **kwargs) + isotropic_spectrum(v, dx, **kwargs)


def small_scale_power_ratio(model: IsotropicSpectrum, truth: IsotropicSpectrum,
                            max_wavelength_cells: float = 4.0) -> float:
    """Model power / truth power summed over the smallest resolved scales (wavelength ≤ 4 cells by default,
    i.e. the last octave before the 2-cell Nyquist wavelength). < 1 means the model is too smooth."""
    if not np.array_equal(model.wavenumber, truth.wavenumber):
        raise ValueError("spectra on different wavenumber bins cannot be compared")
    band = model.wavelength_km <= max_wavelength_cells * model.dx_km * (1 + 1e-9)
    if not band.any():
        raise ValueError(f"no bin with wavelength ≤ {max_wavelength_cells} cells")
    truth_power = truth.power[band].sum()
    return float(model.power[band].sum() / truth_power) if truth_power > 0 else float("nan")
