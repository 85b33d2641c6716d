"""Shared helpers of the tests/test_physics_*.py files: grids, forcing and states for the coarse model."""
from __future__ import annotations

import numpy as np

from icecorr.base.variables import FORCING_VARIABLES


def uniform_forcing(ny: int, nx: int, **values: float) -> dict[str, np.ndarray]:
    """Every forcing variable as a constant (ny, nx) field: zero unless given; tas defaults to 250 K."""
    base = {name: 0.0 for name in FORCING_VARIABLES}
    base["tas"] = 250.0
    base.update(values)
    return {name: np.full((ny, nx), float(v)) for name, v in base.items()}


def smooth_random(ny: int, nx: int, rng: np.random.Generator, n_modes: int = 4) -> np.ndarray:
    """A smooth random field of order 1 (sum of a few low Fourier modes)."""
    y, x = np.mgrid[0:ny, 0:nx]
    out = np.zeros((ny, nx))
    for _ in range(n_modes):
        kx, ky = rng.integers(1, 4, size=2)
        out += rng.normal() * np.cos(2 * np.pi * kx * x / nx + rng.uniform(0, 6.3)) * \
            np.cos(2 * np.pi * ky * y / ny + rng.uniform(0, 6.3))
    return out / n_modes
