"""A free-drift sea-ice model in 70 lines: a worked example of a Python model coupled by `icecorr couple`.

The ice moves with a fixed fraction of the 10 m wind plus the ocean current (no internal stress), and concentration,
ice volume and snow volume are carried along by first-order upwind transport on the C grid (closed boundaries).
It implements coupling.model_protocol.CoupledModel; the config names it as

    couple: {model: "free_drift:FreeDrift", model_options: {wind_factor: 0.02}}

and `icecorr couple` builds one per member as FreeDrift(grid, wind_factor=0.02) (PYTHONPATH=examples/python_model).
"""
from __future__ import annotations

import numpy as np
import xarray as xr

STEP_SECONDS = 43_200.0
UNITS = {"sic": "1", "sit": "m", "snt": "m", "siu": "m s-1", "siv": "m s-1"}


class FreeDrift:
    """Free drift on a `grid` (nx, ny, dx in m); `wind_factor` (1) of the wind, `substeps` per 12 h step."""

    def __init__(self, grid, wind_factor: float = 0.02, substeps: int = 4):
        self.grid, self.wind_factor, self.substeps = grid, float(wind_factor), int(substeps)
        self.f = {v: np.zeros((grid.ny, grid.nx)) for v in UNITS}
        self.time_seconds = 0.0

    def state_views(self):
        """The state arrays themselves (no copies)."""
        return self.f

    def get_state(self) -> xr.Dataset:
        """sic, sit, snt, siu, siv with their units."""
        return xr.Dataset({v: (("y", "x"), self.f[v].copy(), {"units": u}) for v, u in UNITS.items()})

    def set_state(self, state) -> None:
        """Set any of the state variables."""
        for k, v in state.items():
            self.f[k][...] = v

    def restart_extras(self) -> np.ndarray:
        """The clock: the only state get_state does not show."""
        return np.array([self.time_seconds])

    def set_restart_extras(self, extras) -> None:
        """Inverse of restart_extras."""
        self.time_seconds = float(extras[0])

    def step(self, forcing_t0, forcing_t1) -> None:
        """12 h of free drift with the forcing averaged over the step."""
        mean = {k: 0.5 * (forcing_t0[k] + forcing_t1[k]) for k in ("uas", "vas", "uo", "vo")}
        u = self.wind_factor * mean["uas"] + mean["uo"]   # cell centres
        v = self.wind_factor * mean["vas"] + mean["vo"]
        f = self.f
        f["siu"][:, :-1], f["siu"][:, -1] = 0.5 * (u[:, :-1] + u[:, 1:]), 0.0   # east faces, closed east wall
        f["siv"][:-1, :], f["siv"][-1, :] = 0.5 * (v[:-1, :] + v[1:, :]), 0.0   # north faces, closed north wall
        a, vol, snow = f["sic"], f["sic"] * f["sit"], f["sic"] * f["snt"]
        dt = STEP_SECONDS / self.substeps
        for _ in range(self.substeps):
            a, vol, snow = (self._advect(q, dt) for q in (a, vol, snow))
        f["sic"][...] = np.clip(a, 0.0, 1.0)
        ice = a > 1e-12
        f["sit"][...] = np.where(ice, vol / np.where(ice, a, 1.0), 0.0)
        f["snt"][...] = np.where(ice, snow / np.where(ice, a, 1.0), 0.0)
        self.time_seconds += STEP_SECONDS

    def _advect(self, q: np.ndarray, dt: float) -> np.ndarray:
        u, v, dx = self.f["siu"], self.f["siv"], self.grid.dx
        fx = np.where(u > 0, u * q, u * np.roll(q, -1, axis=1))   # flux through each east face
        fy = np.where(v > 0, v * q, v * np.roll(q, -1, axis=0))   # flux through each north face
        fx[:, -1], fy[-1, :] = 0.0, 0.0
        div = fx - np.pad(fx, ((0, 0), (1, 0)))[:, :-1] + fy - np.pad(fy, ((1, 0), (0, 0)))[:-1, :]
        return q - dt / dx * div
