"""A residual corrector stub whose correction is a known function of the forecast it is given, so a test can
recompute what the written corrected and correction fields must be (instead of checking corrected = forecast +
correction, which holds by construction when correction is written as corrected − forecast)."""
from __future__ import annotations

import numpy as np

#: correction_v = FACTOR[v] · forecast_v: inside the bounds for any valid forecast (sic stays in [0, 1], sit and
#: snt stay ≥ 0, the velocities stay 0 on the walls), different per variable so a swapped channel shows.
FACTOR = {"sic": -0.02, "sit": 0.05, "snt": 0.1, "siu": 0.1, "siv": -0.2}


def known_correction(forecast: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{variable: correction} for forecasts {variable: array} (any shape)."""
    return {v: FACTOR[v] * np.asarray(forecast[v], np.float64) for v in FACTOR}


class KnownCorrection:
    """Wraps a residual `Corrector` (for its names, grid and `apply`); `sample` returns `known_correction` of the
    `forecast_*` conditioning for every member, ignoring the seeds."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def sample(self, conditioning, members, steps=None, seeds=None, sampler=None):
        """(B, members, n_vars, ny, nx) float64, as `Corrector.sample`."""
        corr = known_correction({v: conditioning[f"forecast_{v}"] for v in FACTOR})
        out = np.stack([corr[v] for v in self._inner.variables], axis=1)  # (B, n_vars, ny, nx)
        return np.repeat(out[:, None], members, axis=1)
