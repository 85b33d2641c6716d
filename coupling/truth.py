"""`TruthModel`: the BBM "truth" of the twin experiment behind the bridge API of docs/design.md.

The model runs on the grid it is given (the fine grid, e.g. `GridConfig().refined(2)` = 64² at 8 km) and takes
forcing on that grid. Python owns every state array in Fortran order (nx, ny); the Fortran kernel
(`fortran_stub/src/seaice_truth.f90`) updates them in place, and `state_views()` hands out their `.T` views
(ny, nx) without copies. Beyond the coarse model's state it carries the damage, the three vertically integrated
stresses and the static random cohesion field (c_lab (l_lab/dx)^½ × U(1, 2) per cell, drawn from `seed`).
The grid's land mask and Coriolis field (GridConfig.mask, .latitude) go to every step (`truth_step` arguments
`ocean`, `fcor`): land holds no ice, stress or velocity (docs/physics-land.md).
"""
from __future__ import annotations

import time
from typing import Mapping

import numpy as np
import xarray as xr

from fortran_stub.config import GridConfig
from fortran_stub.truth_config import TruthPhysicsConfig

from icecorr.base.errors import InputError
from icecorr.base.variables import FORCING_VARIABLES, STEP_SECONDS, attrs
from .bridge import ModelError
from .fortran_arrays import (apply_land, checked_state, fortran_extension, grid_arrays, pack_forcing, set_components,
                             write_state)

#: Fortran error codes of seaice_truth::truth_step
TRUTH_ERRORS = {
    2: "invalid grid or time step (check GridConfig / TruthPhysicsConfig.dt_adv)",
    4: "thermodynamics produced a non-finite value (check the thermodynamic forcing)",
    6: "transport failed: non-finite velocity or more than 100000 CFL substeps",
    7: "BBM dynamics produced a non-finite value (elastic substep too long? lower cfl_elastic)",
}


class TruthModelError(ModelError):
    """The Fortran truth returned an error code; the state is undefined afterwards."""

    def __init__(self, code: int, where: str):
        super().__init__(code, where, TRUTH_ERRORS)

#: state name -> internal Fortran array name
_VIEWS = {"sic": "a", "sivol": "vol", "snvol": "vsn", "tsi": "tsurf", "tos": "tos", "siu": "u", "siv": "v",
          "sig11": "s11", "sig22": "s22", "damage": "dmg", "cohesion": "coh"}
_SETTABLE = set(_VIEWS) | {"sit", "snt", "sig12"}
#: the shear stress at the corners on the west and south walls, which no (ny, nx) north-east-corner field holds
WALL_CORNERS = "sig12_walls"


class TruthModel:
    """BBM truth with the bridge API: get_state/set_state/step/state_views/time_seconds/last_step_info.

    grid: the truth grid (cells of the twin experiment's fine resolution); physics: TruthPhysicsConfig;
    seed: seeds the static random cohesion field.
    """

    def __init__(self, grid: GridConfig, physics: TruthPhysicsConfig | None = None, seed: int = 0):
        self.grid = grid
        self.physics = physics if physics is not None else TruthPhysicsConfig()
        self.seed = int(seed)
        seaice = fortran_extension()
        self._step = seaice.seaice_truth.truth_step
        self._p = seaice.seaice_truth_params.truth_params()
        set_components(self._p, self.physics.fortran_values(grid.dx), "truth_params")
        self._tp = seaice.seaice_params.thermo_params()
        set_components(self._tp, self.physics.thermo.model_dump(), "thermo_params")
        nx, ny = grid.nx, grid.ny
        f = lambda value=0.0: np.full((nx, ny), value, dtype=np.float64, order="F")  # noqa: E731
        self._arr = {"a": f(), "vol": f(), "vsn": f(), "tsurf": f(self._tp.t_freeze), "tos": f(self._tp.t_freeze),
                     "u": f(), "v": f(), "s11": f(), "s22": f(), "dmg": f(1.0)}
        self._s12 = np.zeros((nx + 1, ny + 1), dtype=np.float64, order="F")  # includes the W and S wall corners
        rng = np.random.default_rng(self.seed)
        factor = rng.uniform(self.physics.cohesion_factor_min, self.physics.cohesion_factor_max, (ny, nx))
        self._arr["coh"] = np.asfortranarray(
            (self.physics.cohesion_lab * self.physics.cohesion_scale(grid.dx) * factor).T)
        self._f0 = np.zeros((nx, ny, len(FORCING_VARIABLES)), dtype=np.float64, order="F")
        self._f1 = np.zeros_like(self._f0)
        self._ocean, self._fcor = grid_arrays(grid, self.physics.coriolis)
        self._ubar, self._vbar = f(), f()
        self._info = np.zeros(6, dtype=np.float64)
        self.time_seconds = 0.0
        self.last_step_info: dict = {}

    # ------------------------------------------------------------------------------------------------ state
    def state_views(self) -> dict[str, np.ndarray]:
        """Zero-copy (ny, nx) views of the prognostic arrays (writing to them changes the model state)."""
        views = {name: self._arr[key].T for name, key in _VIEWS.items()}
        views["sig12"] = self._s12[1:, 1:].T
        return views

    def wall_corner_stress(self) -> np.ndarray:
        """Copy of the shear stress (N m-1) at the wall corners outside `sig12`: the south wall's nx + 1 corners
        (west to east), then the west wall's ny corners above it. With no-slip walls the strain rate there is not
        zero, so these stresses are state: without them a get_state/set_state round trip changes the next step."""
        return np.concatenate([self._s12[:, 0], self._s12[0, 1:]])

    def mean_velocity(self) -> tuple[np.ndarray, np.ndarray]:
        """Face velocities (m s-1) averaged over the last 12 h step (what transport used), copies (ny, nx)."""
        return self._ubar.T.copy(), self._vbar.T.copy()

    def get_state(self) -> xr.Dataset:
        """Copy of the state as a CF Dataset with dims (y, x) and cell-centre coordinates (m)."""
        v = self.state_views()
        a = v["sic"]
        with np.errstate(divide="ignore", invalid="ignore"):
            sit = np.where(a > 0, v["sivol"] / np.where(a > 0, a, 1.0), 0.0)
            snt = np.where(a > 0, v["snvol"] / np.where(a > 0, a, 1.0), 0.0)
        data = {"sic": a, "sit": sit, "snt": snt, "siu": v["siu"], "siv": v["siv"], "damage": v["damage"],
                "sivol": v["sivol"], "snvol": v["snvol"], "tsi": v["tsi"], "tos": v["tos"],
                "sig11": v["sig11"], "sig22": v["sig22"], "sig12": v["sig12"], "cohesion": v["cohesion"]}
        g = self.grid
        ds = xr.Dataset({k: (("y", "x"), np.array(val, dtype=np.float64), attrs(k)) for k, val in data.items()},
                        coords={"x": ("x", (np.arange(g.nx) + 0.5) * g.dx, {"units": "m"}),
                                "y": ("y", (np.arange(g.ny) + 0.5) * g.dx, {"units": "m"})})
        ds[WALL_CORNERS] = ("wall_corner", self.wall_corner_stress(),
                            {"units": "N m-1", "long_name": "vertically integrated shear stress sigma12 at the "
                             "south-wall corners (west to east), then the west-wall corners (south to north)"})
        ds.attrs.update({"model": "BBM truth", "grid_dx": g.dx, "time_seconds": self.time_seconds,
                         "cohesion_seed": self.seed})
        return ds

    def set_state(self, state) -> None:
        """Set some or all state variables from a mapping of (ny, nx) arrays or a Dataset.

        If `sit`/`snt` are given, sivol = sit·sic and snvol = snt·sic (with the new sic if given). Wall faces of
        siu/siv are forced to 0, and so are ice, stresses and velocities on land. `sig12_walls` (nx + ny + 1 values, as `wall_corner_stress` returns) sets the
        wall-corner shear stress, so that `set_state(get_state())` restores the model exactly. Shape, dtype, NaN or an unknown name raise a ValueError naming the field.
        """
        items = {k: state[k] for k in state.data_vars} if isinstance(state, xr.Dataset) else dict(state)
        walls = items.pop(WALL_CORNERS, None)
        checked = checked_state(items, _SETTABLE, (self.grid.ny, self.grid.nx),
                                f"not a state variable of the truth (expected some of "
                                f"{sorted(_SETTABLE | {WALL_CORNERS})})")
        if walls is not None:
            nx, ny = self.grid.nx, self.grid.ny
            walls = np.asarray(walls.values if isinstance(walls, xr.DataArray) else walls)
            if walls.shape != (nx + ny + 1,) or not np.all(np.isfinite(walls)):
                raise InputError(None, WALL_CORNERS, f"set_state: expected {nx + ny + 1} finite values "
                                                     f"(nx + ny + 1), got shape {walls.shape}")
        views = self.state_views()
        write_state(views, checked)
        apply_land(views, self._ocean.T)
        if walls is not None:
            self._s12[:, 0] = walls[: nx + 1]
            self._s12[0, 1:] = walls[nx + 1:]

    # ------------------------------------------------------------------------------------------------- step
    def step(self, forcing_t0: Mapping, forcing_t1: Mapping, dt: float = STEP_SECONDS) -> None:
        """Advance by dt (default exactly 12 h) with forcing given at both window ends (linear in time)."""
        shape = (self.grid.ny, self.grid.nx)
        pack_forcing(forcing_t0, self._f0, shape, "t0")
        pack_forcing(forcing_t1, self._f1, shape, "t1")
        r = self._arr
        t0 = time.perf_counter()
        ierr = self._step(self._p, self._tp, self.grid.nx, self.grid.ny, self.grid.dx, float(dt),
                          r["a"], r["vol"], r["vsn"], r["tsurf"], r["tos"], r["u"], r["v"], r["s11"], r["s22"],
                          self._s12, r["dmg"], r["coh"], self._f0, self._f1, self._ocean, self._fcor, self._ubar,
                          self._vbar, self._info)
        wall = time.perf_counter() - t0
        if ierr != 0:
            raise TruthModelError(int(ierr), f"TruthModel.step at t = {self.time_seconds:.0f} s")
        self.time_seconds += float(dt)
        i = self._info
        self.last_step_info = {"advective_steps": int(i[0]), "elastic_substeps": int(i[1]),
                               "transport_substeps": int(i[2]), "max_speed": float(i[3]),
                               "min_damage": float(i[4]), "new_ice_volume": float(i[5]), "wall_time": wall}
