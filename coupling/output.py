"""CF NetCDF writers: atomic whole-file writes, and an appending trajectory writer that survives SIGKILL.

The trajectory writer builds its file under `<name>.partial` (defined under a temporary name, then renamed, so the
partial file is never half-defined), appends one time record per step and calls `sync()` after every record, so a
run killed at any moment leaves a readable `<name>.partial` holding every completed step (tests/coupling/
test_output.py). Only `close("complete")` makes the output: it copies the finished partial file, compressed, into
a NetCDF4 file (`FINAL_FORMAT`, zlib, one chunk per record) under a temporary name, renames that onto the output
path and then removes the partial file; an existing output is untouched until the new one is complete, and a
failed or interrupted run (even one killed while copying) never destroys it. The global attribute `status` reads
"running" until `close()` sets "complete" or "failed". Every record is written with a single call per variable and
the `time` coordinate last, so the number of valid `time` values is the number of complete records (the partial
file's `time` has a NaN `_FillValue` for this; the complete output has none, as CF requires of a coordinate).
A restart (`continue_from`) reads the interrupted run's `<name>.partial` (or, if absent, the complete output).
"""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Mapping

import netCDF4
import numpy as np
import xarray as xr

from icecorr.base.files import atomic_path, compressed_copy, temp_path
from icecorr.base.outputs import OutputError, check_replaceable, partial_path
from .grid_metadata import GridMetadata, write_grid_metadata

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
#: the complete output: compressed NetCDF4 (icecorr.base.files.COMPRESSION)
FINAL_FORMAT = "NETCDF4"


class TrajectoryWriter:
    """Append-per-step writer of a `(time, member, y, x)` ensemble trajectory in CF-1.10 NetCDF.

    The file is netCDF-3 (64-bit offset), not NetCDF4/HDF5: a netCDF-3 append writes the record and then the record
    count in the header, so a process killed mid-append leaves a readable file with every completed record, while
    an HDF5 file killed mid-write can be left unreadable (seen with SIGKILLed ranks).

    `variables` maps each variable name to its attributes (must include `units`; `_member: False` declares a
    `(time, y, x)` variable). Arrays given to `append` are `(member, y, x)` (or `(y, x)`); members and grid are
    fixed at creation. `grid`: the geography of the run's input (projection x/y, lat/lon, grid mapping, mask),
    written into the file; without it x/y are (i + ½)·dx.
    """

    def __init__(self, path: str | Path, variables: Mapping[str, Mapping[str, str]], members: int, ny: int, nx: int,
                 dx: float, start: datetime, global_attrs: Mapping[str, object] | None = None,
                 precision: str = "float64", kept: Mapping[str, np.ndarray] | None = None,
                 grid: GridMetadata | None = None):
        self.path = Path(path)
        self.grid = grid
        self.partial = partial_path(self.path)
        self.variables = {k: dict(v) for k, v in variables.items()}
        self.members, self.ny, self.nx = members, ny, nx
        self.start = to_datetime(start)
        self.units = time_units(self.start)
        self.n_records = 0
        self._closed = False
        self._write_failed = False  # a write failed: the partial file is removed at close
        check_replaceable(self.path)  # a folder or device at the output fails now, not after the run
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(self.path, f"cannot create its folder: {_reason(exc)}") from None
        tmp = temp_path(self.partial)
        try:
            self._nc = netCDF4.Dataset(tmp, "w", format=TRAJECTORY_FORMAT)
        except OSError as exc:
            raise OutputError(self.path, f"cannot create the output: {_reason(exc)}") from None
        try:
            self._define(self._nc, dx, np.dtype(precision), global_attrs or {})
            for i in range(len(kept["time"]) if kept is not None else 0):
                self._write_record(kept["step"][i], {k: kept[k][i] for k in self.variables if k in kept},
                                   hours=float(kept["time"][i]))
            self._nc.sync()
            _close_quietly(self._nc)
            os.replace(tmp, self.partial)  # the partial file appears defined (and holding the kept records)
            self._nc = netCDF4.Dataset(self.partial, "a")
        except BaseException as exc:
            _close_quietly(self._nc)
            tmp.unlink(missing_ok=True)
            if isinstance(exc, (OSError, RuntimeError)):
                raise OutputError(self.path, f"cannot create the output: {_reason(exc)}") from None
            raise

    def _dims(self, name: str) -> tuple[str, ...]:
        """(time, member, y, x), or (time, y, x) for a variable declared with `_member: False`."""
        return ("time", "member", "y", "x") if self.variables[name].get("_member", True) else ("time", "y", "x")

    def _define(self, nc: netCDF4.Dataset, dx: float, dtype: np.dtype, attrs: Mapping[str, object]) -> None:
        nc.createDimension("time", None)
        nc.createDimension("member", self.members)
        nc.createDimension("y", self.ny)
        nc.createDimension("x", self.nx)
        # NaN decodes to NaT: an incomplete record of a running or killed run; removed at close("complete"),
        # since CF allows no _FillValue on a coordinate variable
        t = nc.createVariable("time", "f8", ("time",), fill_value=np.nan)
        t.setncatts({"standard_name": "time", "units": self.units, "calendar": CALENDAR, "axis": "T"})
        step = nc.createVariable("step", "i4", ("time",), fill_value=-1)
        step.setncatts({"long_name": "number of completed 12 h steps since the window start", "units": "1"})
        m = nc.createVariable("member", "i4", ("member",))
        m.setncatts({"standard_name": "realization", "long_name": "ensemble member (0-based)", "units": "1"})
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
        if self.grid is not None:
            write_grid_metadata(nc, self.grid, self.variables)
        nc.setncatts({"Conventions": "CF-1.10", "status": "running", "grid_dx": float(dx),
                      **{k: _attr(v) for k, v in attrs.items()}})

    @classmethod
    def continue_from(cls, old_path: str | Path | None, n_keep: int, path: str | Path, **kwargs) -> "TrajectoryWriter":
        """A writer at `path` holding the first `n_keep` records of the interrupted run's output, then open for
        appending: how a restarted run continues the output of the interrupted one bit for bit. The records are
        read from `<old_path>.partial` (what an interrupted run leaves) or else `old_path` (a completed run), the
        first of them that holds `n_keep` records; with neither, the writer starts empty."""
        kept = None
        candidates = [partial_path(old_path), Path(old_path)] if old_path is not None else []
        for old_file in candidates:
            if not old_file.is_file():
                continue
            with netCDF4.Dataset(old_file) as old:
                if int(np.ma.count(old["time"][:])) >= n_keep:
                    kept = {name: np.asarray(old[name][:n_keep]) for name in
                            ["time", "step", *kwargs["variables"]] if name in old.variables}
                    break
        return cls(path, kept=kept, **kwargs)

    def append(self, time, step: int, fields: Mapping[str, np.ndarray]) -> None:
        """Append one time record (`fields[name]` is `(member, y, x)`; absent variables stay NaN) and sync.
        A failed write (disk full, I/O error) is an OutputError naming the file."""
        hours = (to_datetime(time) - self.start).total_seconds() / 3600.0
        try:
            self._write_record(step, fields, hours)
            self._nc.sync()  # data, then the record count: the record is in the file even if SIGKILLed next
        except (OSError, RuntimeError) as exc:
            self._write_failed = True
            raise OutputError(self.partial, f"cannot write record {self.n_records}: {_reason(exc)}") from None

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
        """Mark the file `status` and close it; "complete" then renames `<name>.partial` onto the output.

        Any other status (the run failed) never raises, so the run's own error is the one reported: the partial file
        stays for `--restart` and inspection, unless it holds no record or a write failed (disk full: it is removed).
        A failure to finish a complete run is an OutputError naming the partial file, which then stays.
        """
        if self._closed:
            return
        self._closed = True
        if status != "complete":
            try:
                self._nc.setncattr("status", status)
            except Exception:  # noqa: BLE001 - the run's own error is already on its way
                pass
            _close_quietly(self._nc)
            if self.n_records == 0 or self._write_failed:
                self.partial.unlink(missing_ok=True)
            return
        try:
            self._nc.setncattr("status", status)
            self._nc["time"].delncattr("_FillValue")  # every record is complete: a CF coordinate has none
            self._nc.sync()  # a failure shows here, while the file is still open
        except (OSError, RuntimeError) as exc:
            _close_quietly(self._nc)
            raise OutputError(self.partial, f"cannot finish the output: {_reason(exc)}") from None
        _close_quietly(self._nc)
        self._check_finished()
        check_replaceable(self.path)
        try:
            with atomic_path(self.path) as tmp:
                compressed_copy(self.partial, tmp, record_dim="time")
        except (OSError, RuntimeError) as exc:
            raise OutputError(self.partial, f"cannot write the compressed output: {_reason(exc)}") from None
        self.partial.unlink()

    def _check_finished(self) -> None:
        """The closed partial file reads back complete with every record (the close itself reports no error)."""
        try:
            with netCDF4.Dataset(self.partial) as nc:
                ok = nc.getncattr("status") == "complete" and int(np.ma.count(nc["time"][:])) == self.n_records
        except (OSError, RuntimeError, KeyError, AttributeError):
            ok = False
        if not ok:
            raise OutputError(self.partial, f"cannot finish the output: it does not read back complete with "
                                            f"{self.n_records} records (disk full?)")

    def __enter__(self) -> "TrajectoryWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("complete" if exc_type is None else "failed")


def _reason(exc: BaseException) -> str:
    """One short line for an I/O failure ("No space left on device", "NetCDF: HDF error", …)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _close_quietly(nc: netCDF4.Dataset) -> None:
    """Close once, ignoring errors. Not `close()`: after a failed write its error leaves netCDF4 counting the file
    open, and the second close at garbage collection crashes the C library (exit 139 after a full disk)."""
    if nc.isopen():
        nc._close(False)  # what netCDF4 itself does when it closes at garbage collection


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
