"""Stand-ins obeying the bridge API (docs/design.md), used only until the Fortran CoarseModel exists."""
from __future__ import annotations

import numpy as np
import xarray as xr

UNITS = {"sic": "1", "sit": "m", "snt": "m", "siu": "m s-1", "siv": "m s-1", "sivol": "m", "snvol": "m",
         "tsi": "degC"}


class FakeModel:
    """A deterministic nonlinear toy: enough to tell members, steps and restarts apart bit for bit."""

    def __init__(self, ny=16, nx=16):
        self.f = {k: np.zeros((ny, nx)) for k in ("sic", "sivol", "snvol", "siu", "siv", "tsi")}
        self.time_seconds = 0.0

    def state_views(self):
        return dict(self.f)

    def get_state(self):
        sic = self.f["sic"]
        with np.errstate(divide="ignore", invalid="ignore"):
            sit = np.where(sic > 0, self.f["sivol"] / sic, 0.0)
            snt = np.where(sic > 0, self.f["snvol"] / sic, 0.0)
        data = {"sic": sic, "sit": sit, "snt": snt, **{k: v for k, v in self.f.items() if k != "sic"}}
        return xr.Dataset({k: (("y", "x"), np.array(v), {"units": UNITS[k]}) for k, v in data.items()})

    def set_state(self, state):
        state = {k: np.asarray(v.values if hasattr(v, "values") else v) for k, v in dict(state).items()}
        for k, v in state.items():
            if not np.isfinite(v).all():
                raise ValueError(f"field '{k}': NaN")
        for k in ("sic", "sivol", "snvol", "siu", "siv", "tsi"):
            if k in state:
                self.f[k][...] = state[k]
        if "sit" in state:
            self.f["sivol"][...] = state["sit"] * self.f["sic"]
        if "snt" in state:
            self.f["snvol"][...] = state["snt"] * self.f["sic"]

    def step(self, f0, f1):
        u = 0.5 * (f0["uas"] + f1["uas"])
        f = self.f
        f["siu"][...] = 0.9 * f["siu"] + 0.02 * u
        f["siu"][:, -1] = 0
        f["siv"][...] = 0.9 * f["siv"] + 0.01 * np.roll(u, 1, axis=0)
        f["siv"][-1, :] = 0
        f["sic"][...] = np.clip(f["sic"] + 0.01 * np.sin(f["sivol"] + f["siu"]), 0, 1)
        f["sivol"][...] = np.where(f["sic"] > 0, f["sivol"] * 1.001 + 1e-3 * f["tsi"] ** 2, 0.0)
        f["snvol"][...] = np.where(f["sic"] > 0, f["snvol"] * 0.999, 0.0)
        f["tsi"][...] = 0.95 * f["tsi"] - 0.1
        self.time_seconds += 43200.0


def initial_state(ny=16, nx=16):
    y, x = np.mgrid[0:ny, 0:nx]
    sic = np.clip(0.5 + 0.5 * np.sin(x / 3.0) * np.cos(y / 4.0), 0, 1)
    return {"sic": sic, "sit": 1.0 + 0.5 * np.cos(x / 5.0) * (sic > 0), "snt": 0.1 * (sic > 0),
            "siu": np.zeros((ny, nx)), "siv": np.zeros((ny, nx))}


def forcing_snapshot(index, ny=16, nx=16):
    y, x = np.mgrid[0:ny, 0:nx]
    ph = 0.3 * index
    out = {"uas": 5 * np.sin(x / 4.0 + ph), "vas": 5 * np.cos(y / 4.0 + ph), "tas": 260 + 0 * x,
           "huss": 1e-3 + 0 * x, "rsds": 100 + 0 * x, "rlds": 250 + 0 * x, "prsn": 0 * x + 1e-6,
           "uo": 0.1 * np.cos(y / 3.0), "vo": 0.1 * np.sin(x / 3.0)}
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
