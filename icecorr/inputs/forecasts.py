"""The user's own model forecasts as training windows (`icecorr prepare` with `prepare.forecasts`).

A forecast file holds `init_time × lead_time × y × x` (WeatherBench/anemoi layout), or one forecast along
`lead_time` (timedelta leads, with a scalar `init_time` coordinate, or datetime valid times whose first is the
initialisation). Every pair of leads 12 h apart of one forecast is a window: `initial` = the forecast at the earlier
lead, `forecast` = at the later one, so a window after lead 0 holds the drifted states a coupled run meets.
6-hourly leads simply give windows at both phases. Values go through the same mapping, unit conversion, checks and
C-grid placement as the reference state (`icecorr.inputs.reference.model_state`), with the reference's ocean mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from icecorr.base.errors import InputError
from icecorr.base.variables import STEP_SECONDS
from icecorr.inputs.mapping import ForecastFilesConfig
from icecorr.inputs.model_units import MODEL_UNITS, check_units_attribute, model_unit_conversion
from icecorr.inputs.reference import checked_field, model_state, open_input, resolve_input

STEP = np.timedelta64(int(STEP_SECONDS), "s")


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
    """Checked, unit-converted access to the forecast files of `cfg` on the model grid `grid` (ocean = `mask`)."""

    def __init__(self, cfg: ForecastFilesConfig, grid, mask: np.ndarray, base: Path):
        self.cfg, self.ocean = cfg, mask.astype(bool)
        self.files = [resolve_input(base, f, "prepare.forecasts.files") for f in cfg.files]
        self.datasets = [open_input(p) for p in self.files]
        self.shape = (grid.ny, grid.nx)
        self.windows: list[ForecastWindow] = []
        self.n_forecasts = 0
        self.conversions = {v: self._conversion(v) for v in cfg.variables}
        for n, (path, ds) in enumerate(zip(self.files, self.datasets)):
            for v, src in cfg.variables.items():
                self._check_variable(path, ds, src.name, src.units, v)
            self._add_windows(n, path, ds)
        if not self.windows:
            raise InputError(str(self.files[0]), self._dim("lead_time"), "no two leads 12 h apart in any forecast")

    def _dim(self, model_dim: str) -> str:
        return self.cfg.dims.get(model_dim, model_dim)

    def _conversion(self, v: str) -> tuple[float, float]:
        src = self.cfg.variables[v]
        conv = model_unit_conversion(src.units, MODEL_UNITS[v])
        if conv is None:
            raise InputError(None, f"prepare.forecasts.variables.{v}.units", f"cannot convert '{src.units}' to "
                             f"'{MODEL_UNITS[v]}'")
        return conv

    def _check_variable(self, path: Path, ds: xr.Dataset, name: str, units: str, model_name: str) -> None:
        if name not in ds.variables:
            raise InputError(str(path), name, f"missing (mapped to '{model_name}'); variables in the file: "
                             f"{sorted(ds.data_vars)}")
        init, lead, y, x = (self._dim(d) for d in ("init_time", "lead_time", "y", "x"))
        var = ds[name]
        expected = (init, lead, y, x) if init in var.dims else (lead, y, x)
        if var.dims != expected:
            raise InputError(str(path), name, f"dimensions {var.dims}, expected {expected} (set "
                             "prepare.forecasts.dims or reorder the file)")
        got = (var.sizes[y], var.sizes[x])
        if got != self.shape:
            raise InputError(str(path), name, f"grid (y, x) = {got} does not match the model grid (ny, nx) = "
                             f"{self.shape}")
        check_units_attribute(path, var.attrs.get("units"), name, units, model_name)

    def _inits_and_leads(self, path: Path, ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, bool]:
        """(init times, leads as timedelta64, has an init dimension) of one file."""
        init, lead = self._dim("init_time"), self._dim("lead_time")
        if lead not in ds.coords:
            raise InputError(str(path), lead, f"no lead-time coordinate '{lead}' (dims: {list(ds.dims)}); set "
                             "prepare.forecasts.dims.lead_time")
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
        if not np.issubdtype(leads.dtype, np.timedelta64):
            raise InputError(str(path), lead, "lead times must decode to time differences (CF units 'hours' …)")
        return inits, leads.astype("timedelta64[ns]"), init in ds.dims

    def _add_windows(self, n: int, path: Path, ds: xr.Dataset) -> None:
        inits, leads, has_init = self._inits_and_leads(path, ds)
        where = {lt: k for k, lt in enumerate(leads)}
        for i, t0 in enumerate(inits):
            number, self.n_forecasts = self.n_forecasts, self.n_forecasts + 1
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

    def state(self, window: ForecastWindow, which: int) -> dict[str, np.ndarray]:
        """Model state (ny, nx) of `window` at its earlier (`which` = 0) or later (1) lead; 0 on land."""
        ds, path = self.datasets[window.file], self.files[window.file]
        index = {self._dim("lead_time"): window.lead1 if which else window.lead0}
        if window.init is not None:
            index[self._dim("init_time")] = window.init
        when = np.datetime_as_string(window.start + (STEP if which else np.timedelta64(0, "s")), unit="m")
        raw = {}
        for v, src in self.cfg.variables.items():
            scale, offset = self.conversions[v]
            a = np.asarray(ds[src.name].isel(index).values, np.float64) * scale + offset
            raw[v] = np.where(self.ocean, checked_field(a, self.ocean, v, path, src.name, src.units,
                                                        f"valid time {when}"), 0.0)
        return model_state(raw, self.ocean, self.cfg.thickness_is_mean, self.cfg.velocity_points)
