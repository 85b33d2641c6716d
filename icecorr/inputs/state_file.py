"""The initial state of `icecorr couple` / `emulate` from a plain state file: an analysis, a restart or another
model's output, read through a mapping (`StateFileConfig`, the `initial_state:` section of a couple config).

The file holds the state variables on the run's grid as (time, y, x), or (y, x) without a time dimension, under any
names, dimension names and units (converted by UDUNITS: %, cm, cm s-1, …), velocities at cell centres (A-grid),
north-east corners (B-grid) or C-grid faces, land as fill values. It goes through the input layer of `icecorr
prepare` (icecorr.inputs.reference: the same unit conversion, checks and C-grid placement), and must fit the run's
grid: shape, x/y spacing (any UDUNITS length) and land mask. Every problem is one InputError naming the file and the
variable, or the mapping key (`initial_state.…`) that fixes it.

Which record starts a window: `time` (an ISO date or a record index) for every window; without it, the only record
of the file, or else the record at the window's start date.
"""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import xarray as xr
from pydantic import Field, field_validator

from icecorr.base.config import StrictConfig
from icecorr.base.errors import InputError
from icecorr.base.units import is_length, unit_conversion
from icecorr.inputs.mapping import VariableSource, only_forcing_accumulates
from icecorr.inputs.model_units import MODEL_UNITS, check_units_attribute, model_unit_conversion
from icecorr.inputs.land import ocean_from_mask_variable
from icecorr.inputs.reference import checked_field, decoded_times, decreasing_axis, model_state, open_input, resolve_input

SECTION = "initial_state"
#: relative tolerance of the file's x/y spacing against the run's dx
SPACING_TOLERANCE = 1e-3


class StateFileConfig(StrictConfig):
    """A plain state file the runs start from, and how its variables map onto the model's."""

    file: str = Field(description="NetCDF state file (time, y, x) or (y, x), on the run's grid")
    time: str | int | None = Field(None, description="the record every window starts from: an ISO date or a record "
                                   "index; none = the only record, else the record at each window's start date")
    variables: dict[str, VariableSource] = Field(description="model name (sic, sit, snt, siu, siv, damage) -> source; "
                                                 "snt missing = no snow")
    dims: dict[str, str] = Field(default_factory=lambda: {"time": "time", "y": "y", "x": "x"},
                                 description="model dim -> file dim name")
    velocity_points: Literal["centre", "face", "corner"] = Field(
        "centre", description="where siu/siv live: cell centres (A-grid), east/north faces (C-grid) or north-east "
        "corners (B-grid, CICE)")
    thickness_is_mean: bool = Field(False, description="true if `sit` is the cell mean (V = A h)")
    mask_variable: str | None = Field(None, description="ocean mask variable of the file (non-zero = ocean); it "
                                      "must equal the run's grid mask. None: land is where the grid says")

    @field_validator("time", mode="before")
    @classmethod
    def _yaml_date(cls, v):
        # YAML reads `time: 2000-10-01` as a date: the record at that date
        if isinstance(v, (date, datetime)):
            return v.isoformat()
        if isinstance(v, str):
            try:
                datetime.fromisoformat(v)
            except ValueError:
                raise ValueError(f"'{v}' is neither an ISO date (2000-10-01T12:00) nor a record index") from None
        return v

    @field_validator("variables")
    @classmethod
    def _state_names(cls, v: dict[str, VariableSource]) -> dict[str, VariableSource]:
        allowed, needed = {"sic", "sit", "snt", "siu", "siv", "damage"}, {"sic", "sit", "siu", "siv"}
        if set(v) - allowed:
            raise ValueError(f"unknown state variable(s) {sorted(set(v) - allowed)}; allowed: {sorted(allowed)}")
        if needed - set(v):
            raise ValueError(f"state mapping lacks {sorted(needed - set(v))}")
        return only_forcing_accumulates(v, "state")


class StateFile:
    """A checked state file on the run's `grid` (ny, nx, dx, ocean_mask()): `window_states(start_times)` gives the
    model state (sic, sit, snt, siu, siv on C-grid faces, [damage]; model units, 0 on land) of each window."""

    def __init__(self, cfg: StateFileConfig, grid, base: Path | None = None):
        self.cfg, self.grid = cfg, grid
        self.path = resolve_input(base or Path.cwd(), cfg.file, f"{SECTION}.file")
        ds = open_input(self.path)
        self.ocean = np.asarray(grid.ocean_mask()) > 0.5
        y, x, t = (cfg.dims.get(d, d) for d in ("y", "x", "time"))
        self.has_time = t in ds.dims
        self.times = decoded_times(self.path, ds, t, SECTION) if self.has_time else None
        self.conversions = {}
        for v, src in cfg.variables.items():
            self._check_variable(ds, v, src, (t, y, x) if self.has_time else (y, x))
            self.conversions[v] = model_unit_conversion(src.units, MODEL_UNITS[v])
        ds = self._increasing(ds, y, "y")
        self.ds = self._increasing(ds, x, "x").rename({y: "y", x: "x", **({t: "time"} if self.has_time else {})})
        self._check_mask()

    # -- checks of the file as a whole
    def _check_variable(self, ds: xr.Dataset, v: str, src: VariableSource, dims: tuple[str, ...]) -> None:
        key = f"{SECTION}.variables.{v}"
        if src.name not in ds.variables:
            raise InputError(str(self.path), key, f"variable '{src.name}' missing; variables in the file: "
                             f"{sorted(ds.data_vars)}")
        var = ds[src.name]
        if var.dims != dims:
            raise InputError(str(self.path), src.name, f"dimensions {var.dims}, expected {dims} (set "
                             f"{SECTION}.dims or reorder the file)")
        shape = tuple(var.shape[-2:])
        if shape != (self.grid.ny, self.grid.nx):
            raise InputError(str(self.path), src.name, f"grid (y, x) = {shape} does not match the run's grid "
                             f"(ny, nx) = ({self.grid.ny}, {self.grid.nx})")
        if model_unit_conversion(src.units, MODEL_UNITS[v]) is None:
            raise InputError(str(self.path), f"{key}.units", f"cannot convert '{src.units}' (for '{src.name}') "
                             f"to '{MODEL_UNITS[v]}'")
        check_units_attribute(self.path, var.attrs.get("units"), src.name, src.units, v)

    def _increasing(self, ds: xr.Dataset, name: str, axis: str) -> xr.Dataset:
        """`ds` with the coordinate `name` (if any) increasing, its spacing checked against the grid's dx."""
        if name not in ds.coords or ds[name].ndim != 1 or ds.sizes[name] < 2 \
                or not np.issubdtype(ds[name].dtype, np.number):
            return ds
        if decreasing_axis(self.path, ds, name):
            if self.cfg.velocity_points != "centre":
                raise InputError(str(self.path), name, f"{axis} decreases: reversing it moves {self.cfg.velocity_points}"
                                 " velocities onto other faces; reverse the file first (velocity_points centre is "
                                 "reversed here)")
            ds = ds.isel({name: slice(None, None, -1)})
        step = np.diff(np.asarray(ds[name].values, dtype=np.float64))
        units = ds[name].attrs.get("units", "m")
        if is_length(units):
            spacing = step * unit_conversion(units, "m")[0]
            if not np.allclose(spacing, self.grid.dx, rtol=SPACING_TOLERANCE):
                raise InputError(str(self.path), name, f"grid spacing {spacing.min():g}..{spacing.max():g} m does "
                                 f"not match the run's grid dx = {self.grid.dx:g} m")
        return ds

    def _check_mask(self) -> None:
        name = self.cfg.mask_variable
        if name is None:
            return
        if name not in self.ds.variables:
            raise InputError(str(self.path), f"{SECTION}.mask_variable", f"variable '{name}' missing; variables in "
                             f"the file: {sorted(self.ds.data_vars)}")
        m = self.ds[name]
        m = m.isel(time=0) if "time" in m.dims else m
        if m.shape != self.ocean.shape:
            raise InputError(str(self.path), name, f"mask shape {m.shape}, expected (ny, nx) = {self.ocean.shape}")
        differ = ocean_from_mask_variable(self.path, m, f"{SECTION}.mask_variable") != self.ocean
        if differ.any():
            j, i = np.argwhere(differ)[0]
            raise InputError(str(self.path), name, f"ocean mask differs from the run's grid mask (grid.mask) at "
                             f"{int(differ.sum())} cell(s), first (y={j}, x={i})")

    # -- records
    def record(self, start: datetime | np.datetime64 | None) -> int | None:
        """The record index that starts a window beginning at `start` (None: a file without a time dimension)."""
        want = self.cfg.time
        if not self.has_time:
            if want is not None:
                raise InputError(str(self.path), f"{SECTION}.time", "given, but the file has no time dimension "
                                 f"'{self.cfg.dims.get('time', 'time')}'")
            return None
        n = len(self.times)
        if isinstance(want, int):
            if not 0 <= want < n:
                raise InputError(str(self.path), f"{SECTION}.time", f"record {want} outside 0…{n - 1}")
            return want
        if want is None and n == 1:
            return 0
        when = np.datetime64(datetime.fromisoformat(want) if want is not None else start, "ns")
        hits = np.flatnonzero(self.times == when)
        if hits.size == 0:
            first, last = (np.datetime_as_string(t, unit="m") for t in (self.times[0], self.times[-1]))
            raise InputError(str(self.path), f"{SECTION}.time", f"no record at {np.datetime_as_string(when, unit='m')}"
                             f"{' (a window start)' if want is None else ''}; the file has {n} records, {first} … "
                             f"{last}")
        return int(hits[0])

    def state(self, k: int | None) -> dict[str, np.ndarray]:
        """Model state (ny, nx) at record `k` (None: no time dimension): model units, C-grid faces, 0 on land."""
        when = "the only record" if k is None else f"record {k} ({np.datetime_as_string(self.times[k], unit='m')})"
        raw = {}
        for v, src in self.cfg.variables.items():
            var = self.ds[src.name]
            scale, offset = self.conversions[v]
            raw[v] = np.asarray((var if k is None else var.isel(time=k)).values, dtype=np.float64) * scale + offset
            checked_field(raw[v], self.ocean, v, self.path, src.name, src.units, when)
        ice_on_land = (np.nan_to_num(raw["sic"]) > 0) & ~self.ocean
        if self.cfg.mask_variable is None and ice_on_land.any():
            j, i = np.argwhere(ice_on_land)[0]
            raise InputError(str(self.path), self.cfg.variables["sic"].name, f"ice on {int(ice_on_land.sum())} land "
                             f"cell(s) of the run's grid mask (grid.mask) at {when}, first (y={j}, x={i}): another "
                             f"land mask than the run's? (or name the file's mask in {SECTION}.mask_variable)")
        raw = {v: np.where(self.ocean, a, 0.0) for v, a in raw.items()}
        return model_state(raw, self.ocean, self.cfg.thickness_is_mean, self.cfg.velocity_points)

    def window_states(self, start_times: Sequence[datetime | np.datetime64]) -> list[dict[str, np.ndarray]]:
        """The model state each window starts from (one per start date; a record read once)."""
        records = [self.record(t) for t in start_times]
        read = {k: self.state(k) for k in dict.fromkeys(records)}
        return [read[k] for k in records]
