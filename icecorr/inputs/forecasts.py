"""The user's own model forecasts as training windows (`icecorr prepare` with `prepare.forecasts`).

A forecast file holds `init_time × lead_time × y × x` (WeatherBench/anemoi layout), or one forecast along
`lead_time` (timedelta leads, with a scalar `init_time` coordinate, or datetime valid times whose first is the
initialisation). Every pair of leads 12 h apart of one forecast is a window: `initial` = the forecast at the earlier
lead, `forecast` = at the later one, so a window after lead 0 holds the drifted states a coupled run meets.
6-hourly leads simply give windows at both phases. Values go through the same mapping, unit conversion, checks and
C-grid placement as the reference state (`icecorr.inputs.reference.model_state`), with the reference's ocean mask
(prepare), or, for `icecorr correct` on the user's forecasts, on the files' own grid with their own mask
(`icecorr.inputs.land`). A decreasing y (x) axis is reversed on reading, so that row j lies south of row j + 1;
siu/siv are read as components along increasing x/y (their sign is kept).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from icecorr.base.errors import InputError
from icecorr.base.units import UnitsError, unit_conversion
from icecorr.base.variables import STEP_SECONDS
from icecorr.inputs.land import check_not_inverted, ocean_from_mask_variable
from icecorr.inputs.mapping import ForecastFilesConfig
from icecorr.inputs.model_units import MODEL_UNITS, check_units_attribute, model_unit_conversion
from icecorr.inputs.reference import (checked_field, decreasing_axis, model_state, open_input, oriented,
                                     resolve_input)
from icecorr.inputs.regrid import projection_coordinate, two_d_coordinate

STEP = np.timedelta64(int(STEP_SECONDS), "s")


def is_time(units: str | None) -> bool:
    """True if `units` is a plain time unit in any UDUNITS spelling ('hours', 'h', 's'; not 'hours since …')."""
    if not units or "since" in str(units):
        return False
    try:
        unit_conversion(str(units), "s")
    except UnitsError:
        return False
    return True


@dataclass(frozen=True)
class ForecastWindow:
    """One 12 h window of one forecast: file, init index (None: one forecast per file), the two lead indices, the
    window start (valid time of the earlier lead) and the forecast's number (its `run` in the pair file)."""

    file: int
    init: int | None
    lead0: int
    lead1: int
    start: np.datetime64
    forecast: int


class ForecastData:
    """Checked, unit-converted access to the forecast files of `cfg` on the model grid `grid` (ocean = `mask`).

    Without `grid` (None) the grid is the files' own (y, x); without `mask` (None) the ocean comes from
    `mask_variable` in the first file, else from where sic is valid at least once. `section`: the config key of
    `cfg` (errors name the mapping key that fixes a problem, e.g. `<section>.variables.sic.name`).
    """

    def __init__(self, cfg: ForecastFilesConfig, grid, mask: np.ndarray | None, base: Path,
                 section: str = "prepare.forecasts", mask_variable: str | None = None):
        self.cfg, self.section = cfg, section
        self.mask_key = f"{section.rpartition('.')[0] or section}.mask_variable"
        self.files = [resolve_input(base, f, f"{section}.files") for f in cfg.files]
        self.datasets = [open_input(p) for p in self.files]
        self.conversions = {v: self._conversion(v) for v in cfg.variables}
        self.shape = (grid.ny, grid.nx) if grid is not None else self._file_shape()
        self.flips = [(decreasing_axis(p, ds, self._dim("y")), decreasing_axis(p, ds, self._dim("x")))
                      for p, ds in zip(self.files, self.datasets)]
        self.windows: list[ForecastWindow] = []
        self.init_times: list[np.datetime64] = []   # of each forecast (its number indexes this list)
        for n, (path, ds) in enumerate(zip(self.files, self.datasets)):
            for v, src in cfg.variables.items():
                self._check_variable(path, ds, src.name, src.units, v)
            self._add_windows(n, path, ds)
        if not self.windows:
            raise InputError(str(self.files[0]), self._dim("lead_time"), "no two leads 12 h apart in any forecast")
        self.ocean = (mask if mask is not None else self._own_mask(mask_variable)).astype(bool)

    @property
    def n_forecasts(self) -> int:
        """Number of forecasts (initialisations) in all files."""
        return len(self.init_times)

    def _dim(self, model_dim: str) -> str:
        return self.cfg.dims.get(model_dim, model_dim)

    def _key(self, v: str, part: str) -> str:
        return f"{self.section}.variables.{v}.{part}"

    def _conversion(self, v: str) -> tuple[float, float]:
        src = self.cfg.variables[v]
        conv = model_unit_conversion(src.units, MODEL_UNITS[v])
        if conv is None:
            raise InputError(None, self._key(v, "units"), f"cannot convert '{src.units}' to '{MODEL_UNITS[v]}'")
        return conv

    def _file_shape(self) -> tuple[int, int]:
        """(ny, nx) of the first file's mapped sic."""
        ds, name = self.datasets[0], self.cfg.variables["sic"].name
        if name not in ds.variables:
            self._check_variable(self.files[0], ds, name, self.cfg.variables["sic"].units, "sic")
        var = ds[name]
        y, x = self._dim("y"), self._dim("x")
        if y not in var.dims or x not in var.dims:
            raise InputError(str(self.files[0]), name, f"dimensions {var.dims} lack '{y}'/'{x}' (set "
                             f"{self.section}.dims.y/x)")
        return var.sizes[y], var.sizes[x]

    def _check_variable(self, path: Path, ds: xr.Dataset, name: str, units: str, model_name: str) -> None:
        if name not in ds.variables:
            raise InputError(str(path), name, f"missing (mapped to '{model_name}'); variables in the file: "
                             f"{sorted(ds.data_vars)} (mapping key {self._key(model_name, 'name')})")
        init, lead, y, x = (self._dim(d) for d in ("init_time", "lead_time", "y", "x"))
        var = ds[name]
        expected = (init, lead, y, x) if init in var.dims else (lead, y, x)
        if var.dims != expected:
            raise InputError(str(path), name, f"dimensions {var.dims}, expected {expected} (set "
                             f"{self.section}.dims or reorder the file)")
        got = (var.sizes[y], var.sizes[x])
        if got != self.shape:
            raise InputError(str(path), name, f"grid (y, x) = {got} does not match the model grid (ny, nx) = "
                             f"{self.shape}")
        try:
            check_units_attribute(path, var.attrs.get("units"), name, units, model_name)
        except InputError as exc:
            raise InputError(exc.file, exc.field, f"{exc.problem} (mapping key {self._key(model_name, 'units')})"
                             ) from None

    def _read(self, n: int, index: dict, name: str) -> np.ndarray:
        """Field `name` of file n at `index` (dims -> position), oriented south to north, west to east."""
        return oriented(np.asarray(self.datasets[n][name].isel(index).values, np.float64), self.flips[n])

    def _own_mask(self, mask_variable: str | None) -> np.ndarray:
        """Ocean (y, x) of the files themselves: `mask_variable` in the first file, or sic valid at least once."""
        path, ds = self.files[0], self.datasets[0]
        sic = self.cfg.variables["sic"].name
        init = self._dim("init_time")
        valid = np.zeros(self.shape, bool)
        for n, d in enumerate(self.datasets):
            inits = d.sizes[init] if init in d[sic].dims else 1
            for i in range(inits):
                index = {init: i} if init in d[sic].dims else {}
                valid |= np.isfinite(self._read(n, index, sic)).any(axis=0)
        if mask_variable is None:
            ocean = valid
        else:
            if mask_variable not in ds.variables:
                raise InputError(str(path), mask_variable, f"mask variable missing ({self.mask_key}); variables: "
                                 f"{sorted(ds.data_vars)}")
            var = ds[mask_variable]
            y, x = self._dim("y"), self._dim("x")
            if var.dims[-2:] != (y, x):
                raise InputError(str(path), mask_variable, f"dimensions {var.dims}, expected (…, {y}, {x})")
            var = var.isel({d: 0 for d in var.dims[:-2]})
            ocean = oriented(ocean_from_mask_variable(path, var, self.mask_key), self.flips[0])
            check_not_inverted(path, mask_variable, ocean, valid, self.mask_key)
        if not ocean.any():
            raise InputError(str(path), mask_variable or sic, "no ocean cell: every cell is land")
        return ocean

    def grid_pieces(self) -> dict:
        """The first file's geography, oriented like the fields: x, y (m, 1-D, if the file has projection
        coordinates in a length unit), lat, lon (2-D degrees, if it has them), mapping_name/mapping_attrs (the CF
        grid-mapping variable of the mapped sic, if any)."""
        ds, flip = self.datasets[0], self.flips[0]
        dims = (self._dim("y"), self._dim("x"))
        axes = {}
        for model_dim, dim, reverse in (("y", dims[0], flip[0]), ("x", dims[1], flip[1])):
            c = projection_coordinate(ds, dim)
            axes[model_dim] = None if c is None else (c[::-1] if reverse else c)
        lat, lon = (two_d_coordinate(ds, s, dims) for s in ("latitude", "longitude"))
        mapping = ds[self.cfg.variables["sic"].name].attrs.get("grid_mapping")
        mapping = mapping if mapping in ds.variables else None
        return {"x": axes["x"], "y": axes["y"], "lat": None if lat is None else oriented(lat, flip),
                "lon": None if lon is None else oriented(lon, flip), "mapping_name": mapping,
                "mapping_attrs": dict(ds[mapping].attrs) if mapping else {}}

    def _inits_and_leads(self, path: Path, ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, bool]:
        """(init times, leads as timedelta64, has an init dimension) of one file."""
        init, lead = self._dim("init_time"), self._dim("lead_time")
        if lead not in ds.coords:
            raise InputError(str(path), lead, f"no lead-time coordinate '{lead}' (dims: {list(ds.dims)}); set "
                             f"{self.section}.dims.lead_time")
        leads = np.asarray(ds[lead].values)
        if init in ds.dims:
            inits = np.asarray(ds[init].values).astype("datetime64[ns]")
        elif np.issubdtype(leads.dtype, np.datetime64):        # valid times of one forecast
            inits, leads = leads[:1].astype("datetime64[ns]"), leads - leads[0]
        elif init in ds.variables and ds[init].ndim == 0:
            inits = np.atleast_1d(np.asarray(ds[init].values)).astype("datetime64[ns]")
        else:
            raise InputError(str(path), init, "one forecast per file needs a scalar init-time coordinate or "
                             "datetime valid times along the lead dimension")
        if np.issubdtype(leads.dtype, np.number) and is_time(ds[lead].attrs.get("units")):
            # CF units "hours" etc. that xarray leaves undecoded: seconds via UDUNITS
            seconds = leads.astype(np.float64) * unit_conversion(ds[lead].attrs["units"], "s")[0]
            leads = np.round(seconds * 1e9).astype("timedelta64[ns]")
        if not np.issubdtype(leads.dtype, np.timedelta64):
            raise InputError(str(path), lead, "lead times must decode to time differences (CF units 'hours' …)")
        return inits, leads.astype("timedelta64[ns]"), init in ds.dims

    def _add_windows(self, n: int, path: Path, ds: xr.Dataset) -> None:
        inits, leads, has_init = self._inits_and_leads(path, ds)
        where = {lt: k for k, lt in enumerate(leads)}
        for i, t0 in enumerate(inits):
            number = self.n_forecasts
            self.init_times.append(t0)
            for k, lt in enumerate(leads):
                k1 = where.get(lt + STEP)
                if k1 is not None:
                    self.windows.append(ForecastWindow(n, i if has_init else None, k, k1, t0 + lt, number))

    def split_windows(self, splits: dict[str, list[str]], reference_times: np.ndarray) -> dict[str, np.ndarray]:
        """Window indices per split: the window [start, start + 12 h] inside the split's [first, last] and both
        times in the reference (windows the reference does not cover are left out). Split ranges must not overlap,
        so no reference state serves two splits."""
        from datetime import datetime

        ranges = {s: tuple(np.datetime64(datetime.fromisoformat(x), "ns") for x in r) for s, r in splits.items()}
        names = sorted(ranges, key=lambda s: ranges[s][0])
        for a, b in zip(names, names[1:]):
            if ranges[b][0] <= ranges[a][1]:
                raise InputError(None, f"prepare.splits.{b}", f"overlaps split '{a}' (forecast windows need "
                                 "separate date ranges)")
        known = set(reference_times.astype("datetime64[ns]"))
        starts = np.array([w.start for w in self.windows], dtype="datetime64[ns]")
        covered = np.array([t in known and t + STEP in known for t in starts])
        out = {}
        for split, (first, last) in ranges.items():
            idx = np.nonzero(covered & (starts >= first) & (starts + STEP <= last))[0]
            if idx.size == 0:
                raise InputError(None, f"prepare.splits.{split}", f"no forecast window with reference inside "
                                 f"{splits[split]}")
            out[split] = idx
        return out

    def lead(self, window: ForecastWindow) -> np.timedelta64:
        """The lead time (ns) of `window`'s later end: its valid time minus its forecast's initialisation."""
        return (window.start + STEP - self.init_times[window.forecast]).astype("timedelta64[ns]")

    def state(self, window: ForecastWindow, which: int) -> dict[str, np.ndarray]:
        """Model state (ny, nx) of `window` at its earlier (`which` = 0) or later (1) lead; 0 on land."""
        path = self.files[window.file]
        index = {self._dim("lead_time"): window.lead1 if which else window.lead0}
        if window.init is not None:
            index[self._dim("init_time")] = window.init
        when = np.datetime_as_string(window.start + (STEP if which else np.timedelta64(0, "s")), unit="m")
        raw = {}
        for v, src in self.cfg.variables.items():
            scale, offset = self.conversions[v]
            a = self._read(window.file, index, src.name) * scale + offset
            raw[v] = np.where(self.ocean, checked_field(a, self.ocean, v, path, src.name, src.units,
                                                        f"valid time {when}", self._key(v, "name")), 0.0)
        return model_state(raw, self.ocean, self.cfg.thickness_is_mean, self.cfg.velocity_points)
