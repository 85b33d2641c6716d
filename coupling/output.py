"""CF NetCDF writers: atomic whole-file writes, and an appending trajectory writer that survives SIGKILL.

The trajectory writer creates its file atomically (temp name + rename), then appends one time record per step and
calls `sync()` after every record, so a run killed at any moment leaves a readable file holding every completed step
(verified by tests/test_output_kill.py). The global attribute `status` reads "running" until `close()` sets it to
"complete". Every record is written with a single call per variable and the `time` coordinate is written last,
so the number of valid `time` values is the number of complete records.
"""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Mapping

import netCDF4
import numpy as np
import xarray as xr

from icecorr.base.files import temp_path

CALENDAR = "standard"


def time_units(start: datetime) -> str:
    """CF time units anchored at the run start: whole hours keep 12-hourly times exact integers."""
    return f"hours since {start:%Y-%m-%d %H:%M:%S}"


def to_datetime(value) -> datetime:
    """A Python datetime from a datetime / numpy datetime64 / pandas Timestamp."""
    if isinstance(value, datetime):
        return value
    return np.datetime64(value, "s").astype(datetime)


#: crash-safe appends (see TrajectoryWriter)
TRAJECTORY_FORMAT = "NETCDF3_64BIT_OFFSET"


class TrajectoryWriter:
    """Append-per-step writer of a `(time, member, y, x)` ensemble trajectory in CF-1.10 NetCDF.

    The file is netCDF-3 (64-bit offset), not NetCDF4/HDF5: a netCDF-3 append writes the record and then the record
    count in the header, so a process killed mid-append leaves a readable file with every completed record, while
    an HDF5 file killed mid-write can be left unreadable (seen with SIGKILLed ranks).

    `variables` maps each variable name to its attributes (must include `units`; `_member: False` declares a
    `(time, y, x)` variable). Arrays given to `append` are `(member, y, x)` (or `(y, x)`); members and grid are
    fixed at creation.
    """

    def __init__(self, path: str | Path, variables: Mapping[str, Mapping[str, str]], members: int, ny: int, nx: int,
                 dx: float, start: datetime, global_attrs: Mapping[str, object] | None = None,
                 precision: str = "float64", _open_existing: bool = False):
        self.path = Path(path)
        self.variables = {k: dict(v) for k, v in variables.items()}
        self.members, self.ny, self.nx = members, ny, nx
        self.start = to_datetime(start)
        self.units = time_units(self.start)
        if _open_existing:
            self._nc = netCDF4.Dataset(self.path, "a")
            self.n_records = int(np.ma.count(self._nc["time"][:]))
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(self.path)
        nc = netCDF4.Dataset(tmp, "w", format=TRAJECTORY_FORMAT)
        try:
            self._define(nc, dx, np.dtype(precision), global_attrs or {})
            nc.close()
        except BaseException:
            nc.close()
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, self.path)  # the file appears complete-but-empty, never half-defined
        self._nc = netCDF4.Dataset(self.path, "a")
        self.n_records = 0

    def _dims(self, name: str) -> tuple[str, ...]:
        """(time, member, y, x), or (time, y, x) for a variable declared with `_member: False`."""
        return ("time", "member", "y", "x") if self.variables[name].get("_member", True) else ("time", "y", "x")

    def _define(self, nc: netCDF4.Dataset, dx: float, dtype: np.dtype, attrs: Mapping[str, object]) -> None:
        nc.createDimension("time", None)
        nc.createDimension("member", self.members)
        nc.createDimension("y", self.ny)
        nc.createDimension("x", self.nx)
        t = nc.createVariable("time", "f8", ("time",), fill_value=np.nan)  # NaN decodes to NaT: incomplete
        t.setncatts({"standard_name": "time", "units": self.units, "calendar": CALENDAR, "axis": "T"})
        step = nc.createVariable("step", "i4", ("time",), fill_value=-1)
        step.setncatts({"long_name": "number of completed 12 h steps since the window start", "units": "1"})
        m = nc.createVariable("member", "i4", ("member",))
        m.setncatts({"long_name": "ensemble member (0-based)", "units": "1"})
        m[:] = np.arange(self.members, dtype="i4")
        for name, n in (("y", self.ny), ("x", self.nx)):
            c = nc.createVariable(name, "f8", (name,))
            c.setncatts({"long_name": f"{name} coordinate of cell centres", "units": "m", "axis": name.upper(),
                         "standard_name": f"projection_{name}_coordinate"})
            c[:] = (np.arange(n) + 0.5) * dx
        for name, var_attrs in self.variables.items():
            dims = self._dims(name)
            v = nc.createVariable(name, dtype, dims, fill_value=np.nan)
            v.setncatts({k: val for k, val in var_attrs.items() if not k.startswith("_")})
        nc.setncatts({"Conventions": "CF-1.10", "status": "running", "grid_dx": float(dx),
                      **{k: _attr(v) for k, v in attrs.items()}})

    @classmethod
    def continue_from(cls, old_path: str | Path | None, n_keep: int, path: str | Path, **kwargs) -> "TrajectoryWriter":
        """A writer at `path` holding the first `n_keep` records of `old_path` (if that file has them), then open
        for appending: how a restarted run continues the output of the interrupted one bit for bit."""
        kept = None
        if old_path is not None and Path(old_path).exists():
            with netCDF4.Dataset(old_path) as old:
                n_old = int(np.ma.count(old["time"][:]))
                if n_old >= n_keep:
                    kept = {name: np.asarray(old[name][:n_keep]) for name in
                            ["time", "step", *kwargs["variables"]] if name in old.variables}
        writer = cls(path, **kwargs)
        if kept is not None:
            for i in range(n_keep):
                writer._write_record(kept["step"][i], {k: kept[k][i] for k in writer.variables if k in kept},
                                     hours=float(kept["time"][i]))
            writer._nc.sync()
        return writer

    def append(self, time, step: int, fields: Mapping[str, np.ndarray]) -> None:
        """Append one time record (`fields[name]` is `(member, y, x)`; absent variables stay NaN) and sync."""
        hours = (to_datetime(time) - self.start).total_seconds() / 3600.0
        self._write_record(step, fields, hours)
        self._nc.sync()  # data, then the record count: the record is in the file even if SIGKILLed next

    def _write_record(self, step: int, fields: Mapping[str, np.ndarray], hours: float) -> None:
        i = self.n_records
        for name, arr in fields.items():
            if name not in self.variables:
                raise KeyError(f"{self.path}: variable '{name}' was not declared at creation")
            arr = np.asarray(arr)
            want = (self.members, self.ny, self.nx) if len(self._dims(name)) == 4 else (self.ny, self.nx)
            if arr.shape != want:
                raise ValueError(f"{self.path}: variable '{name}' record has shape {arr.shape}, expected {want}")
            self._nc[name][i] = arr
        self._nc["step"][i] = int(step)
        self._nc["time"][i] = hours  # last: a valid time value marks a complete record
        self.n_records = i + 1

    def close(self, status: str = "complete") -> None:
        """Mark the file `status` ("complete", or e.g. "failed") and close it."""
        if self._nc.isopen():
            self._nc.setncattr("status", status)
            self._nc.close()

    def __enter__(self) -> "TrajectoryWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("complete" if exc_type is None else "failed")


def _attr(value: object) -> object:
    """NetCDF attributes hold strings and numbers only."""
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    if isinstance(value, (list, tuple, np.ndarray)) and all(isinstance(v, (int, float, np.integer, np.floating))
                                                            for v in value):
        return np.asarray(value)
    return str(value)


def open_trajectory(path: str | Path) -> xr.Dataset:
    """Open a trajectory file, keeping only complete records (those with a valid time)."""
    ds = xr.open_dataset(path)
    return ds.isel(time=np.flatnonzero(~np.isnat(ds["time"].values)))
