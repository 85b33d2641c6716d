"""Coarse forcing of a run by 12 h step index: from a NetCDF file (forcing snapshots or a training-pair file) or
from a `snapshot(index)` callable, with the window checks a run does before it starts.

    open_forcing(source) -> ForcingSource          pair(i) = snapshots at i and i+1, time(i), check_window(start, n)
    window_starts(forcing, n_steps, n_windows)     windows of consecutive 12 h records inside one run
    check_window_starts(start_indices)             no window given twice
"""
from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from icecorr.base.errors import InputError
from icecorr.base.files import open_netcdf
from icecorr.base.variables import FORCING_VARIABLES, STEP_SECONDS
from .checks import check_axes, check_file_values, check_has_records, check_mask, check_variable
from .grid_metadata import grid_metadata
from .output import to_datetime

STEP = timedelta(seconds=STEP_SECONDS)


class ForcingSource:
    """Coarse forcing by 12 h step index: `pair(i)` = snapshots at index i and i+1 ({variable: (ny, nx)})."""

    mask: np.ndarray | None = None

    def pair(self, index: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The forcing snapshots at both ends of step `index`: ({variable: (ny, nx)} at index, same at index + 1)."""
        raise NotImplementedError

    def time(self, index: int) -> datetime:
        """The date of forcing index `index` (the start of step `index`)."""
        raise NotImplementedError

    def check_window(self, start: int, n_steps: int) -> None:
        """Raise InputError if steps start … start+n_steps−1 are not all available."""


class CallableForcing(ForcingSource):
    """Forcing from `snapshot(index) -> {variable: (ny, nx)}`; index 0 is at `start`."""

    def __init__(self, snapshot: Callable[[int], Mapping[str, np.ndarray]], start: datetime = datetime(2000, 10, 1),
                 mask: np.ndarray | None = None):
        self._snapshot, self.start, self.mask = snapshot, to_datetime(start), mask
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    def _snap(self, index: int) -> dict[str, np.ndarray]:
        if index not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[index] = {k: np.asarray(v, dtype=np.float64) for k, v in self._snapshot(index).items()}
        return self._cache[index]

    def pair(self, index: int):
        """Snapshots at both ends of step `index` (see ForcingSource.pair)."""
        return self._snap(index), self._snap(index + 1)

    def time(self, index: int) -> datetime:
        """`start` + index × 12 h."""
        return self.start + index * STEP


class FileForcing(ForcingSource):
    """Forcing from a NetCDF: a training-pair file (`{f}_t0`, `{f}_t1` at window starts, `run` labels) or a forcing
    file of 12-hourly snapshots `{f}(time, y, x)`. Only the records a step needs are read."""

    def __init__(self, path: str | Path, variables: Sequence[str] | None = None):
        self.path = Path(path)
        self.ds = open_netcdf(self.path, "forcing file")
        check_has_records(self.ds, self.path)
        check_axes(self.ds, self.path)
        names = list(self.ds.data_vars)
        self.is_pair_file = any(n.endswith(("_t0", "_t1")) and n[:-3] in FORCING_VARIABLES for n in names)
        if variables is None:
            # every forcing variable: the coarse model needs all of them (a missing one is named here)
            variables = list(FORCING_VARIABLES)
        self.variables = list(variables)
        if not self.is_pair_file and not any(f in names for f in self.variables):
            raise InputError(str(self.path), None, "no forcing variables found (expected `{f}_t0`/`{f}_t1` pairs "
                                                   "or snapshots such as `uas(time, y, x)`)")
        for f in self.variables:
            for name in ([f"{f}_t0", f"{f}_t1"] if self.is_pair_file else [f]):
                check_variable(self.ds, self.path, name, what="missing forcing variable")
        if "time" not in self.ds.coords:
            raise InputError(str(self.path), "time", "missing time coordinate")
        self.times = self.ds["time"].values
        if not np.issubdtype(self.times.dtype, np.datetime64) or np.isnat(self.times).any():
            raise InputError(str(self.path), "time", "cannot be decoded to dates (CF units/calendar attributes?)")
        self.runs = self.ds["run"].values if "run" in self.ds and self.ds["run"].dims == ("time",) else None
        self.mask = self.ds["mask"].values.astype(np.float64) if "mask" in self.ds else None
        self.grid_metadata = grid_metadata(self.ds)  # carried into the run's outputs
        check_mask(self.path, self.mask)
        self.n = self.ds.sizes["time"]
        # two snapshots of every variable per step, plus the next step's (prefetched): no thrashing
        self._read = lru_cache(maxsize=4 * len(self.variables) + 4)(self._read_uncached)

    def _read_uncached(self, name: str, index: int) -> np.ndarray:
        arr = self.ds[name].isel(time=index).values.astype(np.float64)
        if not np.isfinite(arr).all():
            raise InputError(str(self.path), name, f"NaN/inf at time index {index}")
        return arr

    def pair(self, index: int):
        """Snapshots at both ends of step `index` (see ForcingSource.pair); InputError outside the file or on
        NaN/inf."""
        last = self.n - 1 if self.is_pair_file else self.n - 2
        if not 0 <= index <= last:
            raise InputError(str(self.path), "time", f"no forcing for step index {index} (available 0…{last})")
        if self.is_pair_file:
            return ({f: self._read(f"{f}_t0", index) for f in self.variables},
                    {f: self._read(f"{f}_t1", index) for f in self.variables})
        return ({f: self._read(f, index) for f in self.variables},
                {f: self._read(f, index + 1) for f in self.variables})

    def time(self, index: int) -> datetime:
        """The file's time of record `index`; beyond the file, extrapolated in 12 h steps from its first record."""
        if 0 <= index < self.n:
            return to_datetime(self.times[index])
        return to_datetime(self.times[0]) + index * STEP

    def check_grid(self, shape: tuple[int, int], what: str = "the model grid") -> None:
        """InputError naming the first forcing variable whose (y, x) shape is not `shape`."""
        for name in self._names():
            if tuple(self.ds[name].shape[-2:]) != tuple(shape):
                raise InputError(str(self.path), name, f"grid (y, x) = {tuple(self.ds[name].shape[-2:])} does not "
                                                       f"match {what} (ny, nx) = {tuple(shape)}")

    def _names(self) -> list[str]:
        return [n for f in self.variables for n in ([f"{f}_t0", f"{f}_t1"] if self.is_pair_file else [f])]

    def check_finite_window(self, start: int, n_steps: int) -> None:
        """Pre-flight: every forcing value a window of `n_steps` from `start` uses is finite and no fill value
        (`coupling.checks.state_value_problem`; InputError naming the file, the variable, the time index and the
        cell otherwise), so bad forcing fails before any output is written."""
        last = start + n_steps - 1 if self.is_pair_file else start + n_steps
        first = max(start, 0)
        check_file_values(self.ds.isel(time=slice(first, last + 1)), self.path, self._names(), offset=first)

    def check_window(self, start: int, n_steps: int) -> None:
        """InputError unless steps start … start+n_steps−1 are in the file, 12 h apart and inside one run."""
        last = start + n_steps - 1
        avail = self.n - 1 if self.is_pair_file else self.n - 2
        if start < 0 or last > avail:
            raise InputError(str(self.path), "time", f"a window of {n_steps} steps from index {start} needs forcing "
                                                     f"up to index {last}, available 0…{avail}")
        idx = np.arange(start, last + 1)
        steps = np.diff(self.times[idx]).astype("timedelta64[s]").astype(np.int64)
        if np.any(steps != STEP_SECONDS):
            raise InputError(str(self.path), "time", f"records {start}…{last} are not consecutive 12 h steps")
        if self.runs is not None and len(set(self.runs[idx].tolist())) > 1:
            raise InputError(str(self.path), "run", f"window {start}…{last} crosses runs {sorted(set(self.runs[idx]))}")


def check_window_starts(start_indices: Sequence[int]) -> None:
    """Each window of a run starts at its own forcing index: a repeated start would write two windows into one file
    (and give them the same seeds). InputError naming `couple.start_indices` and the repeated starts."""
    starts = [int(s) for s in start_indices]
    repeated = sorted({s for s in starts if starts.count(s) > 1})
    if repeated:
        s = repeated[0]
        raise InputError(None, "couple.start_indices", f"window start {s} is given {starts.count(s)} times in "
                                                       f"{starts} (repeated: {repeated}); each window needs its own "
                                                       "start index")


def window_starts(forcing: FileForcing, n_steps: int, n_windows: int | None = None) -> list[int]:
    """Start indices of windows of `n_steps` that stay inside one run of consecutive 12 h records, spread evenly
    over the file (all non-overlapping ones if `n_windows` is None): e.g. held-out 15-day windows of a test file."""
    valid = []
    for s in range(forcing.n):
        try:
            forcing.check_window(s, n_steps)
        except InputError:
            continue
        if not valid or s >= valid[-1] + n_steps:
            valid.append(s)
    if not valid:
        raise InputError(str(forcing.path), "time", f"no run of {n_steps} consecutive 12 h steps")
    if n_windows is None or n_windows >= len(valid):
        return valid
    pick = np.linspace(0, len(valid) - 1, n_windows).round().astype(int)
    return [valid[i] for i in sorted(set(pick.tolist()))]


def open_forcing(source) -> ForcingSource:
    """A ForcingSource from a ForcingSource, a NetCDF path or a `snapshot(index)` callable."""
    if isinstance(source, ForcingSource):
        return source
    if isinstance(source, (str, Path)):
        return FileForcing(source)
    if callable(source):
        return CallableForcing(source)
    raise TypeError(f"forcing source must be a ForcingSource, a NetCDF path or a callable, got {type(source)}")
