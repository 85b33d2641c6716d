"""The output of `icecorr correct` on the user's forecast files: corrected ensembles in the `init_time × lead_time ×
member` layout (WeatherBench/anemoi) on the user's grid, as one CF-1.10 NETCDF4 file (float32, zlib).

    sic, sit, snt, siu, siv (init_time, lead_time, member, y, x)   corrected members, model conventions
    forecast_{v} (init_time, lead_time, y, x)                       the uncorrected forecast, same conventions
    [correction_{v} (init_time, lead_time, member, y, x)]           corrected − forecast (output_options)

Land cells hold `_FillValue` (the integer `mask` says which, 1 = ocean); leads an initialisation lacks stay
`_FillValue` too. The file is built under a temporary name beside the output and renamed only when complete, so a
failed run leaves no file and an existing output is replaced only by a complete one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import netCDF4
import numpy as np

from icecorr.base.files import temp_path
from icecorr.base.outputs import OutputError, check_replaceable
from .grid_metadata import GridMetadata, write_grid_metadata
from .output import CALENDAR, to_datetime

FILL = np.float32(netCDF4.default_fillvals["f4"])
#: where each model variable lives on the C-grid (stated on the variable: siu/siv are face values)
LOCATION = {"siu": "east face of the cell (C-grid u point), between its centre and the next cell's in +x",
            "siv": "north face of the cell (C-grid v point), between its centre and the next cell's in +y"}


class ForecastEnsembleWriter:
    """Writes corrected forecasts one (initialisation, lead) at a time; `close("complete")` renames the file.

    `attrs`: CF attributes of each corrected variable; `inits` (datetime64), `leads` (timedelta64) the output axes;
    `grid`: the user's geography with `mask` (ny, nx; 1 = ocean) set; x/y without projection coordinates are cell
    indices.
    """

    def __init__(self, path: str | Path, attrs: Mapping[str, Mapping[str, str]], inits: np.ndarray,
                 leads: np.ndarray, members: int, grid: GridMetadata, global_attrs: Mapping[str, object],
                 write_correction: bool = False):
        self.path = Path(path)
        self.variables = list(attrs)
        self.ocean = np.asarray(grid.mask) > 0.5
        self.write_correction = write_correction
        self.lead_index = {np.timedelta64(lt, "ns"): k for k, lt in enumerate(leads)}
        check_replaceable(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = temp_path(self.path)
            self._nc = netCDF4.Dataset(self.tmp, "w", format="NETCDF4")
        except OSError as exc:
            raise OutputError(self.path, f"cannot create the output: {exc.strerror or exc}") from None
        try:
            self._define(attrs, inits, leads, members, grid, global_attrs)
        except BaseException:
            self.close("failed")
            raise

    def _define(self, attrs, inits, leads, members, grid: GridMetadata, global_attrs) -> None:
        nc = self._nc
        ny, nx = self.ocean.shape
        for name, size in (("init_time", len(inits)), ("lead_time", len(leads)), ("member", members), ("y", ny),
                           ("x", nx)):
            nc.createDimension(name, size)
        start = to_datetime(inits[0])
        t = nc.createVariable("init_time", "f8", ("init_time",))
        t.setncatts({"standard_name": "forecast_reference_time", "long_name": "initialisation time",
                     "units": f"hours since {start:%Y-%m-%d %H:%M:%S}", "calendar": CALENDAR})
        t[:] = (np.asarray(inits, "datetime64[ns]") - np.datetime64(start, "ns")) / np.timedelta64(1, "h")
        lead = nc.createVariable("lead_time", "f8", ("lead_time",))
        # `dtype` lets xarray decode the lead as a time difference (CF itself needs only the units)
        lead.setncatts({"standard_name": "forecast_period", "long_name": "lead time (valid time − initialisation)",
                        "units": "hours", "dtype": "timedelta64[ns]"})
        lead[:] = np.asarray(leads, "timedelta64[ns]") / np.timedelta64(1, "h")
        m = nc.createVariable("member", "i4", ("member",))
        m.setncatts({"standard_name": "realization", "long_name": "ensemble member (0-based)", "units": "1"})
        m[:] = np.arange(members, dtype="i4")
        for name, n in (("y", ny), ("x", nx)):
            c = nc.createVariable(name, "f8", (name,))
            values = getattr(grid, name)
            if values is not None:
                c.setncatts({"standard_name": f"projection_{name}_coordinate", "units": "m", "axis": name.upper(),
                             "long_name": f"{name} of cell centre (the forecast files' own, increasing)"})
            else:
                c.setncatts({"long_name": f"{name} index of the cell (the forecast files' grid)", "units": "1",
                             "axis": name.upper()})
                c[:] = np.arange(n, dtype="f8")
        declared = []
        for v in self.variables:
            base = {k: val for k, val in attrs[v].items() if not k.startswith("_")}
            if v in LOCATION:
                base["comment"] = f"on the {LOCATION[v]}"
            self._variable(v, ("init_time", "lead_time", "member", "y", "x"), base)
            self._variable(f"forecast_{v}", ("init_time", "lead_time", "y", "x"),
                           {**base, "long_name": f"uncorrected forecast: {base.get('long_name', v)}"})
            declared += [v, f"forecast_{v}"]
            if self.write_correction:
                self._variable(f"correction_{v}", ("init_time", "lead_time", "member", "y", "x"),
                               {"units": base.get("units", ""), "long_name": f"applied correction of {v} "
                                "(corrected − forecast, after bounds)"})
                declared.append(f"correction_{v}")
        write_grid_metadata(nc, grid, declared)
        nc.setncatts({"Conventions": "CF-1.10", **{k: _attr(a) for k, a in global_attrs.items()}})

    def _variable(self, name: str, dims: Sequence[str], attrs: Mapping[str, str]) -> None:
        ny, nx = self.ocean.shape
        chunks = [1] * (len(dims) - 2) + [ny, nx]
        var = self._nc.createVariable(name, "f4", dims, zlib=True, complevel=4, shuffle=True, chunksizes=chunks,
                                      fill_value=FILL)
        var.setncatts(dict(attrs))

    def put(self, init: int, lead: np.timedelta64, corrected: Mapping[str, np.ndarray],
            forecast: Mapping[str, np.ndarray]) -> None:
        """Write one (initialisation index, lead): `corrected[v]` (member, ny, nx), `forecast[v]` (ny, nx); land
        becomes `_FillValue`."""
        k = self.lead_index[np.timedelta64(lead, "ns")]
        try:
            for v in self.variables:
                c = np.where(self.ocean, corrected[v], FILL).astype(np.float32)
                f = np.where(self.ocean, forecast[v], FILL).astype(np.float32)
                self._nc[v][init, k] = c
                self._nc[f"forecast_{v}"][init, k] = f
                if self.write_correction:
                    diff = np.where(self.ocean, np.asarray(corrected[v], np.float64) - forecast[v][None], FILL)
                    self._nc[f"correction_{v}"][init, k] = diff.astype(np.float32)
        except (OSError, RuntimeError) as exc:
            raise OutputError(self.tmp, f"cannot write: {exc}") from None

    def close(self, status: str = "complete") -> None:
        """Finish: "complete" renames the temporary file onto the output; anything else removes it."""
        if self._nc is None:
            return
        nc, self._nc = self._nc, None
        try:
            if status == "complete":
                nc.setncattr("status", "complete")
            nc.close()
        except (OSError, RuntimeError) as exc:
            self.tmp.unlink(missing_ok=True)
            raise OutputError(self.tmp, f"cannot finish the output: {exc}") from None
        if status != "complete":
            self.tmp.unlink(missing_ok=True)
            return
        check_replaceable(self.path)
        os.replace(self.tmp, self.path)


def _attr(value: object) -> object:
    """NetCDF attributes hold strings and numbers only."""
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    return str(value)
