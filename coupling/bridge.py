"""`CoarseModel`: the Fortran coarse mEVP-VP sea-ice model behind the bridge API of docs/design.md.

Python owns every prognostic array, Fortran-ordered float64 of shape (nx, ny); the Fortran step
(`seaice_api::coarse_step`) updates them in place, and `state_views()` hands out their `.T` (ny, nx) views, so
nothing on the hot path is copied. The shear stress lives on all (nx+1, ny+1) corners including the west and
south walls; its view `sig12` is the (ny, nx) block of north-east corners. Parameters come from a typed
`CoarsePhysicsConfig`, copied component by component into the Fortran derived types `coarse_params` and
`thermo_params`. Fortran never stops: it returns an error code that becomes a `ModelError`.

Land: the grid's ocean mask and Coriolis field (`GridConfig.mask`, `GridConfig.latitude`) are passed to every step
(`seaice_api::coarse_step` arguments `ocean`, `fcor`); land cells hold no ice, no stress and no velocity on their
faces (`set_state` puts any given there to 0), see docs/physics-land.md. A per-cell factor on the ice strength
(`set_strength_factor`, argument `strength`; 1 by default) makes P* a field, e.g. a member's stochastic strength.

What this model shares with `TruthModel` (the BBM truth, coupling/truth.py) lives in coupling/fortran_arrays.py.
"""
from __future__ import annotations

import time
from typing import Mapping

import numpy as np
import xarray as xr

from fortran_stub.config import CoarsePhysicsConfig, GridConfig

from icecorr.base.errors import InputError
from icecorr.base.variables import FORCING_VARIABLES, STEP_SECONDS, attrs
from .fortran_arrays import (apply_land, checked_state, fortran_extension, grid_arrays, pack_forcing, set_components,
                             write_state)


#: public state name -> key of the Fortran-ordered array holding it (sig12 is handled separately)
_PROGNOSTIC = {"sic": "a", "sivol": "vice", "snvol": "vsnow", "tsi": "tsurf", "tos": "tos",
               "siu": "u", "siv": "v", "sig1": "s1", "sig2": "s2"}
_SETTABLE = frozenset(_PROGNOSTIC) | {"sig12", "sit", "snt"}
_STATE_ORDER = ("sic", "sit", "snt", "siu", "siv", "sivol", "snvol", "tsi", "tos", "sig1", "sig2", "sig12")
_NINFO = 8  # seaice_coarse::ninfo

#: Fortran error codes (seaice_coarse) and what they mean
FORTRAN_ERRORS = {
    2: "invalid parameter or grid (check CoarsePhysicsConfig / GridConfig)",
    3: "mEVP produced a non-finite velocity (unstable: raise n_evp, use aevp, or shorten dt_dyn)",
    4: "thermodynamics produced a non-finite value (check the thermodynamic forcing)",
    5: "memory allocation failed",
    6: "transport failed: non-finite velocity or more than 100000 CFL substeps",
    7: "forcing contains non-finite values",
}


class ModelError(RuntimeError):
    """The Fortran model returned an error code; the state is undefined afterwards (restore it before reuse)."""

    def __init__(self, code: int, where: str, messages: dict[int, str] = FORTRAN_ERRORS):
        self.code = code
        super().__init__(f"{where}: Fortran error {code}: {messages.get(code, 'unknown error')}")


def fortran_params(physics: CoarsePhysicsConfig):
    """The Fortran (coarse_params, thermo_params) derived types filled from `physics`."""
    seaice = fortran_extension()
    pd = seaice.seaice_params.coarse_params()
    set_components(pd, physics.fortran_values(), "coarse_params")
    tp = seaice.seaice_params.thermo_params()
    set_components(tp, physics.thermo.model_dump(), "thermo_params")
    ierr = int(seaice.seaice_api.coarse_param_check(pd))
    if ierr:
        raise ModelError(ierr, "CoarseModel parameters")
    return pd, tp


class CoarseModel:
    """The coarse model with the bridge API (get_state/set_state/step/state_views/time_seconds/last_step_info).

    grid: GridConfig (nx, ny cells of dx m, closed walls, optional land mask and latitudes); physics:
    CoarsePhysicsConfig. The initial state is ice-free and at rest, with tsi and tos at the freezing point.
    """

    def __init__(self, grid: GridConfig, physics: CoarsePhysicsConfig | None = None):
        self.grid = grid
        self.physics = physics if physics is not None else CoarsePhysicsConfig()
        seaice = fortran_extension()
        self._step_fn = seaice.seaice_api.coarse_step
        self._deformation_fn = seaice.seaice_api.deformation_fields
        self._pd, self._tp = fortran_params(self.physics)
        nx, ny = grid.nx, grid.ny
        tf = self.physics.thermo.t_freeze

        def field(value: float = 0.0) -> np.ndarray:
            return np.full((nx, ny), value, dtype=np.float64, order="F")

        self._arr = {key: field() for key in _PROGNOSTIC.values()}
        self._arr["tsurf"][...] = tf
        self._arr["tos"][...] = tf
        self._s12 = np.zeros((nx + 1, ny + 1), dtype=np.float64, order="F")  # includes W and S wall corners
        self._f0 = np.zeros((nx, ny, len(FORCING_VARIABLES)), dtype=np.float64, order="F")
        self._f1 = np.zeros_like(self._f0)
        self._ocean, self._fcor = grid_arrays(grid, self.physics.coriolis)
        self._strength = field(1.0)
        self._resid = np.zeros(self.physics.n_evp, dtype=np.float64)
        self._info = np.zeros(_NINFO, dtype=np.float64)
        self._dyn_steps = 0  # global dynamics-substep counter: alternates the transport split order
        self.time_seconds = 0.0
        self.last_step_info: dict = {}

    # ------------------------------------------------------------------------------------------------ state
    def state_views(self) -> dict[str, np.ndarray]:
        """Zero-copy (ny, nx) views of the prognostic arrays; writing to them changes the model state.

        sic, sivol, snvol, tsi, tos, siu, siv, sig1, sig2 are C-contiguous; sig12 is a strided view of the
        north-east corners. sit and snt are diagnostic (V/A): use get_state or set_state for them.
        """
        views = {name: self._arr[key].T for name, key in _PROGNOSTIC.items()}
        views["sig12"] = self._s12[1:, 1:].T
        return views

    def get_state(self) -> xr.Dataset:
        """Copy of the state as a CF Dataset, dims (y, x), cell-centre coordinates x, y (m)."""
        v = self.state_views()
        a = v["sic"]
        safe = np.where(a > 0, a, 1.0)
        data = dict(v)
        data["sit"] = np.where(a > 0, v["sivol"] / safe, 0.0)
        data["snt"] = np.where(a > 0, v["snvol"] / safe, 0.0)
        g = self.grid
        ds = xr.Dataset({k: (("y", "x"), np.array(data[k], dtype=np.float64), attrs(k)) for k in _STATE_ORDER},
                        coords={"x": ("x", (np.arange(g.nx) + 0.5) * g.dx, {"units": "m", "long_name": "x"}),
                                "y": ("y", (np.arange(g.ny) + 0.5) * g.dx, {"units": "m", "long_name": "y"})})
        ds.attrs.update({"model": "icecorr coarse mEVP-VP", "grid_dx": g.dx, "time_seconds": self.time_seconds})
        return ds

    def set_state(self, state) -> None:
        """Set some or all state variables from a mapping of (ny, nx) arrays or a Dataset.

        If `sit`/`snt` are given, sivol = sit·sic and snvol = snt·sic (with the new sic if given). The wall faces
        of siu/siv are forced to 0; so are the ice, stresses and velocities on land (the grid's mask). Everything is validated before anything is written: a wrong shape, a
        non-float dtype, NaN, an unknown name, sic outside [0, 1] or a negative thickness/volume raise an
        InputError (a ValueError) naming the field.
        """
        unknown = f"not a coarse-model state variable (expected some of {', '.join(sorted(_SETTABLE))})"
        checked = checked_state(state, _SETTABLE, (self.grid.ny, self.grid.nx), unknown)
        if "sic" in checked and (checked["sic"].min() < 0.0 or checked["sic"].max() > 1.0):
            raise InputError(None, "sic", "set_state: concentration outside [0, 1]")
        for name in ("sit", "snt", "sivol", "snvol"):
            if name in checked and checked[name].min() < 0.0:
                raise InputError(None, name, "set_state: negative thickness/volume")
        views = self.state_views()
        write_state(views, checked)
        apply_land(views, self._ocean.T)

    def set_strength_factor(self, factor) -> None:
        """Multiply the ice strength P = P* h exp(−C*(1 − A)) of every cell by `factor` (ny, nx) (1), positive and
        finite; it stays until set again (1 everywhere = the parameters' P*)."""
        shape = (self.grid.ny, self.grid.nx)
        values = np.asarray(factor, dtype=np.float64)
        if values.shape != shape:
            raise InputError(None, "strength factor", f"shape {values.shape}, expected (ny, nx) = {shape}")
        if not (np.all(np.isfinite(values)) and values.min() > 0):
            raise InputError(None, "strength factor", "values must be finite and positive")
        self._strength[...] = values.T

    # ------------------------------------------------------------------------------------------------- step
    def step(self, forcing_t0: Mapping, forcing_t1: Mapping, duration_seconds: float = STEP_SECONDS) -> None:
        """Advance by `duration_seconds` (default exactly 12 h); forcing (cell centres, design.md names and units)
        is given at both ends of the window and interpolated linearly in time inside Fortran."""
        if not duration_seconds > 0:
            raise ValueError(f"step: duration_seconds must be > 0, got {duration_seconds}")
        shape = (self.grid.ny, self.grid.nx)
        pack_forcing(forcing_t0, self._f0, shape, "t0")
        pack_forcing(forcing_t1, self._f1, shape, "t1")
        r, g = self._arr, self.grid
        t0 = time.perf_counter()
        ierr = self._step_fn(self._pd, self._tp, g.nx, g.ny, len(FORCING_VARIABLES), g.dx, float(duration_seconds),
                             self._dyn_steps, r["a"], r["vice"], r["vsnow"], r["tsurf"], r["tos"], r["u"], r["v"],
                             r["s1"], r["s2"], self._s12, self._f0, self._f1, self._resid.size, self._resid,
                             _NINFO, self._info, self._ocean, self._fcor, self._strength)
        wall = time.perf_counter() - t0
        if ierr != 0:
            raise ModelError(int(ierr), f"CoarseModel.step at t = {self.time_seconds:.0f} s")
        i = self._info
        self._dyn_steps += int(i[3])
        self.time_seconds += float(duration_seconds)
        self.last_step_info = {
            "mevp_residual": float(i[0]),          # RMS velocity change (m s-1), last iteration, last substep
            "mevp_residual_first": float(i[1]),    # same, first iteration of the last substep
            "transport_substeps": int(i[2]),       # summed over the dynamics substeps
            "dynamics_steps": int(i[3]),
            "alpha_max": float(i[4]),              # largest mEVP alpha = beta used
            "new_ice_volume": float(i[5]),         # m, mean over the ocean cells, formed in open water
            "minima_removed_volume": float(i[6]),  # m, mean over the ocean cells, removed by the ice minima
            "max_courant": float(i[7]),
            "wall_time": wall,                     # s
        }

    def mevp_residuals(self) -> np.ndarray:
        """Copy of the RMS velocity change (m s-1) of every mEVP iteration of the last dynamics substep."""
        return self._resid.copy()

    def deformation(self) -> tuple[np.ndarray, np.ndarray]:
        """Divergence and shear rate (s-1) at cell centres from the current velocities, (ny, nx) copies (0 on land)."""
        nx, ny = self.grid.nx, self.grid.ny
        div = np.zeros((nx, ny), dtype=np.float64, order="F")
        shear = np.zeros_like(div)
        self._deformation_fn(nx, ny, self.grid.dx, self._arr["u"], self._arr["v"], self._ocean, div, shear)
        return div.T.copy(), shear.T.copy()

