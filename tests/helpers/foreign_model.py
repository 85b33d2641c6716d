"""Files in a FOREIGN model's conventions for the end-to-end "bring your own model" test (issue 16).

The built-in coarse model plays both sides on a small non-square polar-stereographic grid with land (an island and
an eastern coast):

* the **reference** (a neXtSIM-like moorings file): one continuous run with the default physics, written with
  neXtSIM-like names and units — `sic` in %, `sit` (m, per ice area), `sisnthick` (m), `siu`/`siv` (m s-1) at the
  cell centres (A-grid) —, 2-D lat/lon, projection x/y (m) with an EPSG:3413 `grid_mapping`, land as `_FillValue`;
* the **forcing** (6-hourly) with its own names and units (`t2m` in degC, `q2m` in g kg-1, currents in cm s-1);
* the **user's model** forecasts (a CICE-like history file, `init_time × lead_time × nj × ni`, 6-hourly leads
  0..48 h): the built-in model with OTHER physics — other air/ocean drag, a weaker ice (P*), a warmer mixed layer
  and more snowfall on the ice —, started from the reference state at every init time; `aice` (1), `hi` cell mean
  (m), `hs` (cm, per ice area), `uvel`/`vvel` (cm s-1) at cell centres, 2-D `TLAT`/`TLON`, land as fill.

The physics difference gives systematic, learnable errors in every variable. Velocities at the cell centres are the
mean of the model's two C-grid faces (a closed wall counts as 0). The moorings file is 6-hourly by default
(`reference_hours`), as neXtSIM moorings often are: `icecorr prepare` resamples it to 12 h (`prepare.time_resample`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fortran_stub.config import CoarsePhysicsConfig, GridConfig, ThermoConfig
from training.data.config import ForcingConfig
from training.data.forcing import SyntheticForcing
from training.data.geography import GRID_MAPPING_NAME, grid_mapping_attrs, transformer

FILL = 1.0e20
HOUR = 3600.0
#: lower-left cell centre of the grid in EPSG:3413 (m): the Beaufort Sea
ORIGIN = (-2_200_000.0, 400_000.0)


@dataclass(frozen=True)
class ForeignSetup:
    """Sizes and dates of the foreign files (defaults: 14 × 18 cells of 25 km, October, inits every
    12 h)."""

    def init_index(self, i: int) -> int:
        """6-hourly time index of init i (after the spin-up)."""
        return self.spinup_days * 4 + i * (self.init_every_hours // 6)

    ny: int = 14
    nx: int = 18
    dx: float = 25_000.0
    start: str = "2000-10-01T00:00"
    spinup_days: int = 4
    n_inits: int = 48
    init_every_hours: int = 12
    lead_hours: int = 48
    reference_hours: int = 6            # neXtSIM moorings are often 6-hourly; prepare resamples to 12 h
    seed: int = 7
    snowfall_factor: float = 2.5       # the user's model puts this multiple of the snowfall on its ice

    def user_physics(self) -> CoarsePhysicsConfig:
        """The user's model: stronger wind drag, weaker ocean drag, weaker ice (P*), a mixed layer restored
        within 2 days to -1 degC (too warm: ice melts)."""
        return CoarsePhysicsConfig(c_air=1.5e-3, c_water=4.5e-3, p_star=24.0e3,
                                   thermo=ThermoConfig(sst_restore_target=-1.0, sst_restore_time=2 * 86400.0))


def land_mask(ny: int, nx: int) -> np.ndarray:
    """(ny, nx) 1 = ocean: a coast of 3 columns on the east side of the southern half, and a 2 × 3 island."""
    ocean = np.ones((ny, nx))
    ocean[: ny // 2, nx - 3:] = 0.0
    ocean[ny // 2 + 1: ny // 2 + 3, nx // 3: nx // 3 + 3] = 0.0
    return ocean


def projection_grid(s: ForeignSetup) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x (nx,), y (ny,) cell centres in EPSG:3413 (m) and the 2-D lat, lon (degrees) of the centres."""
    x = ORIGIN[0] + np.arange(s.nx) * s.dx
    y = ORIGIN[1] + np.arange(s.ny) * s.dx
    xx, yy = np.meshgrid(x, y)
    lon, lat = transformer(inverse=True).transform(xx, yy)
    return x, y, lat, lon


def centre_velocity(u_face: np.ndarray, v_face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """C-grid east/north face velocities -> cell centres (mean of the two faces of a cell; walls are 0)."""
    u = 0.5 * (u_face + np.pad(u_face, ((0, 0), (1, 0)))[:, :-1])
    v = 0.5 * (v_face + np.pad(v_face, ((1, 0), (0, 0)))[:-1, :])
    return u, v


def _initial_state(grid: GridConfig, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:grid.ny, 0:grid.nx]
    wave = np.cos(2 * np.pi * xx / grid.nx + rng.uniform(0, 6.3)) * np.cos(2 * np.pi * yy / grid.ny)
    return {"sic": np.clip(0.93 + 0.05 * wave, 0, 1), "sit": 1.2 + 0.4 * wave, "snt": np.full(wave.shape, 0.08),
            "siu": np.zeros(wave.shape), "siv": np.zeros(wave.shape), "tsi": np.full(wave.shape, -10.0),
            "tos": np.full(wave.shape, -1.8)}


class SixHourlyForcing:
    """The synthetic forcing at 6-hourly times: 12-hourly snapshots and their linear means in between (what the
    models see anyway: they interpolate linearly within a step)."""

    def __init__(self, grid: GridConfig, start: str, n_hours: int, seed: int):
        self.forcing = SyntheticForcing(ForcingConfig(), grid, start, n_hours // 12 + 2, seed)
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    def at(self, k6: int) -> dict[str, np.ndarray]:
        """Forcing at 6-hourly index k6 (model names and units)."""
        if k6 not in self._cache:
            if k6 % 2 == 0:
                self._cache[k6] = self.forcing.truth_at(k6 // 2)
            else:
                a, b = self.at(k6 - 1), self.at(k6 + 1)
                self._cache[k6] = {n: 0.5 * (a[n] + b[n]) for n in a}
        return self._cache[k6]


def _user_forcing(f: dict[str, np.ndarray], factor: float) -> dict[str, np.ndarray]:
    return {**f, "prsn": f["prsn"] * factor}


def run_models(s: ForeignSetup):
    """(times (6-hourly datetime64), reference states per 6-hourly index, forecasts [init][lead] states, forcing,
    grid). States are dicts of (ny, nx) arrays in model conventions (C-grid faces, thickness per ice area)."""
    from coupling.bridge import CoarseModel

    x, y, lat, lon = projection_grid(s)
    grid = GridConfig(nx=s.nx, ny=s.ny, dx=s.dx, mask=land_mask(s.ny, s.nx), latitude=lat)
    n_leads = s.lead_hours // 6 + 1
    n6 = s.init_index(s.n_inits - 1) + n_leads
    forcing = SixHourlyForcing(grid, s.start, 6 * n6, s.seed)
    keep = ("sic", "sit", "snt", "siu", "siv", "tsi", "tos")
    model = CoarseModel(grid, CoarsePhysicsConfig())
    model.set_state(_initial_state(grid, s.seed))
    states = []
    for k in range(n6):
        st = model.get_state()
        states.append({v: st[v].values.copy() for v in keep})
        if k + 1 < n6:
            model.step(forcing.at(k), forcing.at(k + 1), 6 * HOUR)
    physics = s.user_physics()
    forecasts = []
    for i in range(s.n_inits):
        k0 = s.init_index(i)
        user = CoarseModel(grid, physics)
        user.set_state(states[k0])
        run = []
        for lead in range(n_leads):
            st = user.get_state()
            run.append({v: st[v].values.copy() for v in keep})
            if lead + 1 < n_leads:
                user.step(_user_forcing(forcing.at(k0 + lead), s.snowfall_factor),
                          _user_forcing(forcing.at(k0 + lead + 1), s.snowfall_factor), 6 * HOUR)
        forecasts.append(run)
    times = pd.date_range(s.start, periods=n6, freq="6h").values
    return times, states, forecasts, forcing, grid


def _geo(ds: xr.Dataset, s: ForeignSetup, ydim: str, xdim: str, latlon: tuple[str, str]) -> xr.Dataset:
    x, y, lat, lon = projection_grid(s)
    ds = ds.assign_coords({
        xdim: (xdim, x, {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}),
        ydim: (ydim, y, {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}),
        latlon[0]: ((ydim, xdim), lat, {"standard_name": "latitude", "units": "degrees_north"}),
        latlon[1]: ((ydim, xdim), lon, {"standard_name": "longitude", "units": "degrees_east"})})
    ds[GRID_MAPPING_NAME] = ((), np.int32(0), grid_mapping_attrs())
    for name in ds.data_vars:
        if ds[name].dims[-2:] == (ydim, xdim):
            ds[name].attrs["grid_mapping"] = GRID_MAPPING_NAME
    ds.attrs["Conventions"] = "CF-1.10"
    return ds


def _write(ds: xr.Dataset, path: Path) -> Path:
    enc = {v: {"_FillValue": FILL, "dtype": "float32"} for v in ds.data_vars
           if np.issubdtype(ds[v].dtype, np.floating)}
    enc.update({c: {"_FillValue": None} for c in ds.coords if np.issubdtype(ds[c].dtype, np.floating)})
    ds.to_netcdf(path, format="NETCDF4", encoding=enc)
    return path


def nextsim_moorings(s: ForeignSetup, times, states, ocean) -> xr.Dataset:
    """The reference as a neXtSIM-like moorings Dataset (every `reference_hours`)."""
    every = s.reference_hours // 6
    idx = range(0, len(states), every)
    land = ~ocean.astype(bool)

    def stack(fn):
        return np.where(land, np.nan, np.stack([fn(states[k]) for k in idx]))

    u = stack(lambda st: centre_velocity(st["siu"], st["siv"])[0])
    v = stack(lambda st: centre_velocity(st["siu"], st["siv"])[1])
    ds = xr.Dataset({
        "sic": (("time", "y", "x"), stack(lambda st: 100.0 * st["sic"]),
                {"units": "%", "standard_name": "sea_ice_area_fraction"}),
        "sit": (("time", "y", "x"), stack(lambda st: st["sit"]), {"units": "m", "long_name": "ice thickness"}),
        "sisnthick": (("time", "y", "x"), stack(lambda st: st["snt"]),
                      {"units": "m", "long_name": "snow thickness on ice"}),
        "siu": (("time", "y", "x"), u, {"units": "m s-1", "long_name": "ice velocity x (cell centre)"}),
        "siv": (("time", "y", "x"), v, {"units": "m s-1", "long_name": "ice velocity y (cell centre)"}),
    }, coords={"time": ("time", times[::every], {"standard_name": "time"})})
    ds.attrs["source"] = "neXtSIM-like moorings (icecorr built-in model, default physics)"
    return _geo(ds, s, "y", "x", ("latitude", "longitude"))


def forcing_file(times, forcing: SixHourlyForcing, ocean) -> xr.Dataset:
    """6-hourly forcing with its own names and units (degC, g kg-1, cm s-1; currents fill on land)."""
    land = ~ocean.astype(bool)
    fields = [forcing.at(k) for k in range(len(times))]
    table = {"u10": ("uas", "m s-1", 1.0, 0.0), "v10": ("vas", "m s-1", 1.0, 0.0),
             "t2m": ("tas", "degC", 1.0, -273.15), "q2m": ("huss", "g kg-1", 1000.0, 0.0),
             "sw_in": ("rsds", "W m-2", 1.0, 0.0), "lw_in": ("rlds", "W m-2", 1.0, 0.0),
             "snowfall": ("prsn", "kg m-2 s-1", 1.0, 0.0), "uo": ("uo", "cm s-1", 100.0, 0.0),
             "vo": ("vo", "cm s-1", 100.0, 0.0)}
    ds = xr.Dataset(coords={"time": ("time", times, {"standard_name": "time"})})
    for name, (model, units, scale, offset) in table.items():
        a = np.stack([f[model] for f in fields]) * scale + offset
        if model in ("uo", "vo"):
            a = np.where(land, np.nan, a)
        ds[name] = (("time", "y", "x"), a, {"units": units})
    return ds


def cice_history(s: ForeignSetup, times, forecasts, ocean) -> xr.Dataset:
    """The user's forecasts as a CICE-like `init_time × lead_time × nj × ni` Dataset."""
    land = ~ocean.astype(bool)
    inits = times[[s.init_index(i) for i in range(s.n_inits)]]

    def stack(fn):
        return np.where(land, np.nan, np.stack([np.stack([fn(st) for st in run]) for run in forecasts]))

    dims = ("init_time", "lead_time", "nj", "ni")
    ds = xr.Dataset({
        "aice": (dims, stack(lambda st: st["sic"]), {"units": "1", "long_name": "ice area (aggregate)"}),
        "hi": (dims, stack(lambda st: st["sic"] * st["sit"]), {"units": "m", "long_name": "grid cell mean ice "
                                                                 "thickness"}),
        "hs": (dims, stack(lambda st: 100.0 * st["snt"]), {"units": "cm", "long_name": "snow thickness on ice"}),
        "uvel": (dims, stack(lambda st: 100.0 * centre_velocity(st["siu"], st["siv"])[0]),
                 {"units": "cm s-1", "long_name": "ice velocity (x), cell centre"}),
        "vvel": (dims, stack(lambda st: 100.0 * centre_velocity(st["siu"], st["siv"])[1]),
                 {"units": "cm s-1", "long_name": "ice velocity (y), cell centre"}),
    }, coords={"init_time": ("init_time", inits, {"standard_name": "forecast_reference_time"}),
               "lead_time": ("lead_time", pd.to_timedelta(np.arange(0, s.lead_hours + 1, 6), unit="h").values,
                             {"standard_name": "forecast_period"})})
    ds.attrs["source"] = "CICE-like history (icecorr built-in model with other drag, P* and snowfall)"
    return _geo(ds, s, "nj", "ni", ("TLAT", "TLON"))


#: the mapping of these files for `icecorr prepare` / `correct.inputs`: forcing, reference state, forecasts
FORCING_MAPPING = {"uas": {"name": "u10", "units": "m s-1"}, "vas": {"name": "v10", "units": "m s-1"},
                   "tas": {"name": "t2m", "units": "degC"}, "huss": {"name": "q2m", "units": "g kg-1"},
                   "rsds": {"name": "sw_in", "units": "W m-2"}, "rlds": {"name": "lw_in", "units": "W m-2"},
                   "prsn": {"name": "snowfall", "units": "kg m-2 s-1"}, "uo": {"name": "uo", "units": "cm s-1"},
                   "vo": {"name": "vo", "units": "cm s-1"}}
STATE_MAPPING = {"sic": {"name": "sic", "units": "%"}, "sit": {"name": "sit", "units": "m"},
                 "snt": {"name": "sisnthick", "units": "m"}, "siu": {"name": "siu", "units": "m s-1"},
                 "siv": {"name": "siv", "units": "m s-1"}}


def forecast_mapping(files: list[str]) -> dict:
    """The CICE-like files' mapping (prepare.forecasts, correct.inputs.forecasts)."""
    return {"files": files, "dims": {"init_time": "init_time", "lead_time": "lead_time", "y": "nj", "x": "ni"},
            "velocity_points": "centre", "thickness_is_mean": True,
            "variables": {"sic": {"name": "aice", "units": "1"}, "sit": {"name": "hi", "units": "m"},
                          "snt": {"name": "hs", "units": "cm"}, "siu": {"name": "uvel", "units": "cm s-1"},
                          "siv": {"name": "vvel", "units": "cm s-1"}}}


def write_foreign_files(folder: Path, s: ForeignSetup = ForeignSetup(),
                        split_init: int | None = None) -> dict[str, object]:
    """Write `nextsim_moorings.nc`, `forcing.nc` and the CICE-like forecasts into `folder`: one file
    `cice_history.nc`, or with `split_init` two files `cice_history_a.nc` (inits [0, split_init)) and
    `cice_history_b.nc` (the rest). Returns the paths ('reference', 'forcing', 'forecasts' (list)), the init times
    and the ocean mask."""
    folder = Path(folder)
    times, states, forecasts, forcing, grid = run_models(s)
    ocean = grid.ocean_mask()
    out = {"reference": _write(nextsim_moorings(s, times, states, ocean), folder / "nextsim_moorings.nc"),
           "forcing": _write(forcing_file(times, forcing, ocean), folder / "forcing.nc"), "ocean": ocean}
    cice = cice_history(s, times, forecasts, ocean)
    if split_init is None:
        out["forecasts"] = [_write(cice, folder / "cice_history.nc")]
    else:
        out["forecasts"] = [_write(cice.isel(init_time=slice(0, split_init)), folder / "cice_history_a.nc"),
                            _write(cice.isel(init_time=slice(split_init, None)), folder / "cice_history_b.nc")]
    out["inits"] = cice["init_time"].values
    return out
