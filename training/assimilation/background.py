"""The background and its error covariance B = Σ C Σ: the square root L of a separable Gaussian correlation C, and
the perturbed background of twin experiments (truth + noise drawn from B).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from training.assimilation.config import BOUNDS, BackgroundConfig


def gaussian_sqrt(n: int, dx_m: float, length_m: float) -> np.ndarray:
    """(n, n) square root L of a 1-D Gaussian correlation of length ℓ on n cells (closed ends): Gaussian rows of
    std ℓ/√2 (two such kernels convolve to std ℓ), each row scaled so that L Lᵀ has a unit diagonal."""
    r = (np.arange(n)[:, None] - np.arange(n)[None, :]) * dx_m
    s = length_m / np.sqrt(2.0)
    m = np.exp(-0.5 * (r / s) ** 2)
    return m / np.sqrt((m ** 2).sum(axis=1, keepdims=True))


class Correlation:
    """The separable square root L = L_y ⊗ L_x acting on (C, ny, nx) fields; identity when length is 0/None."""

    def __init__(self, ny: int, nx: int, dx_m: float, length_m: float | None):
        self.identity = not length_m
        if not self.identity:
            self.ly, self.lx = gaussian_sqrt(ny, dx_m, length_m), gaussian_sqrt(nx, dx_m, length_m)

    def apply(self, z: np.ndarray) -> np.ndarray:
        """L z for fields z (C, ny, nx)."""
        return z if self.identity else np.einsum("ij,cjk,lk->cil", self.ly, z, self.lx)

    def transpose(self, g: np.ndarray) -> np.ndarray:
        """Lᵀ g for fields g (C, ny, nx): the adjoint of `apply`."""
        return g if self.identity else np.einsum("ji,cjk,kl->cil", self.ly, g, self.lx)



def perturbed(truth0: np.ndarray, variables: Sequence[str], cfg: BackgroundConfig, ocean: np.ndarray,
              dx: float) -> np.ndarray:
    """Twin background: truth + σ L ξ for the perturbed variables (ξ standard normal, seeded), clipped to bounds."""
    pert = cfg.perturbation
    ny, nx = ocean.shape
    corr = Correlation(ny, nx, dx, (pert.length_scale_km or 0.0) * 1e3)
    rng = np.random.default_rng([cfg.seed, 4242])
    xb = truth0.copy()
    for v, s in pert.sigma.items():
        if v not in variables:
            continue
        c = list(variables).index(v)
        noise = corr.apply(rng.standard_normal((1, ny, nx)))[0]
        a = xb[c] + s * noise * ocean
        lo, hi = BOUNDS.get(v, (None, None))
        xb[c] = np.clip(a, lo, hi)
    return xb
