"""Checks shared by every reader of user files (pair files, forcing files, trajectories): one `InputError` naming the
file and the field for a file that cannot be opened, a variable with the wrong dimensions, shape or units, NaN/inf
values, and time records that are not 12 h apart.

`normalize_units` (also used by `training.data.prepare`) compares unit spellings: 'm/s' == 'm s-1', '%' == 'percent'.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np
import xarray as xr

from icecorr.base.errors import InputError
from icecorr.base.variables import STEP_SECONDS, VARIABLES

PAIR_PREFIXES = ("initial_", "forecast_", "reference_", "residual_", "correction_")
TIME_SUFFIXES = ("_t0", "_t1")

# unit spellings -> canonical token (products of unit symbols with integer powers, space separated)
_ALIASES = {
    "%": "percent", "percent": "percent", "pct": "percent", "1": "1", "": "1", "-": "1", "fraction": "1",
    "dimensionless": "1", "unitless": "1", "0-1": "1",
    "degc": "degC", "°c": "degC", "deg_c": "degC", "celsius": "degC", "degrees_celsius": "degC", "c": "degC",
    "k": "K", "kelvin": "K", "degk": "K",
}

def normalize_units(units: str) -> str:
    """Canonical spelling: 'm/s' -> 'm s-1', 'W/m2' and 'W m**-2' -> 'W m-2', '%' -> 'percent', 'Celsius' -> 'degC'."""
    u = str(units).strip()
    low = u.lower()
    if low in _ALIASES:
        return _ALIASES[low]
    u = u.replace("**", "").replace("^", "").replace("·", " ").replace(".", " ")
    parts = re.split(r"\s+", u.replace("/", " / ").strip())
    tokens: list[str] = []
    invert = False
    for p in parts:
        if p == "/":
            invert = True
            continue
        m = re.fullmatch(r"([A-Za-z°]+)(-?\d+)?", p)
        if not m:
            tokens.append(p)
            continue
        sym, power = m.group(1), int(m.group(2) or 1)
        if sym in ("d", "day", "days"):
            sym = "day"
        elif sym in ("sec", "secs", "second", "seconds"):
            sym = "s"
        elif sym in ("hr", "hour", "hours"):
            sym = "h"
        if invert:
            power = -power
            invert = False
        tokens.append(sym if power == 1 else f"{sym}{power}")
    return " ".join(tokens)



def base_name(name: str) -> str:
    """'forecast_sit' -> 'sit', 'uas_t1' -> 'uas', 'sic' -> 'sic'."""
    for p in PAIR_PREFIXES:
        if name.startswith(p):
            name = name[len(p):]
            break
    for s in TIME_SUFFIXES:
        if name.endswith(s):
            return name[: -len(s)]
    return name


def expected_units(name: str) -> str | None:
    """The units a file variable must be in (from icecorr.base.variables), or None when the name is not a known one."""
    entry = VARIABLES.get(base_name(name))
    return None if entry is None else entry["units"]


def check_units(path, name: str, var: xr.DataArray) -> None:
    """If `var` has a units attribute, it must be the units of `name` (no conversion outside `icecorr prepare`)."""
    want = expected_units(name)
    have = var.attrs.get("units")
    if want is None or have is None:
        return
    if normalize_units(str(have)) != normalize_units(want):
        raise InputError(str(path), name, f"units '{have}', expected '{want}' (convert the file, or ingest it "
                                          "with `icecorr prepare`, which converts units)")


def check_variable(ds: xr.Dataset, path, name: str, dims: Sequence[str] = ("time", "y", "x"),
                   shape: tuple[int, int] | None = None, what: str = "missing variable") -> xr.DataArray:
    """`ds[name]` with dims `dims`, (y, x) shape `shape` (if given) and the right units, else an InputError."""
    if name not in ds.variables:
        raise InputError(str(path), name, what)
    var = ds[name]
    if tuple(var.dims) != tuple(dims):
        raise InputError(str(path), name, f"has dims {tuple(var.dims)}, expected ({', '.join(dims)})")
    if shape is not None and tuple(var.shape[-2:]) != tuple(shape):
        raise InputError(str(path), name, f"grid (y, x) = {tuple(var.shape[-2:])} does not match the expected "
                                          f"(ny, nx) = {tuple(shape)}")
    check_units(path, name, var)
    return var


def check_finite(ds: xr.Dataset, path, names: Iterable[str], chunk: int = 64, mask: np.ndarray | None = None,
                 offset: int = 0) -> None:
    """Every value of the `(time, y, x)` variables `names` (ocean cells only, if `mask`) is finite; reads `chunk`
    records at a time. `offset`: file time index of the first record of `ds` (for the message)."""
    for name in names:
        var = ds[name]
        n = var.sizes.get("time", 1)
        for lo in range(0, n, chunk):
            arr = np.asarray((var.isel(time=slice(lo, lo + chunk)) if "time" in var.dims else var).values)
            bad = ~np.isfinite(arr.astype(np.float64, copy=False))
            if mask is not None:
                bad &= np.asarray(mask) > 0.5
            if bad.any():
                idx = np.argwhere(bad)[0]
                where = f"time index {offset + lo + int(idx[0])}" if "time" in var.dims else "a cell"
                raise InputError(str(path), name, f"NaN/inf at {where} ({int(bad.sum())} value(s) in records "
                                                  f"{offset + lo}…{offset + min(lo + chunk, n) - 1})")


def check_pair_times(ds: xr.Dataset, path) -> None:
    """Window start times of a training-pair file: CF datetimes, and 12 h apart within a run (`run` variable; the
    whole file is one run without it). Windows of different runs may be any time apart."""
    if "time" not in ds.variables:
        raise InputError(str(path), "time", "missing time coordinate")
    t = ds["time"].values
    if t.ndim != 1:
        raise InputError(str(path), "time", f"has dims {ds['time'].dims}, expected (time,)")
    if not np.issubdtype(t.dtype, np.datetime64):
        raise InputError(str(path), "time", "cannot be decoded to dates (CF units/calendar attributes?)")
    if np.isnat(t).any():
        raise InputError(str(path), "time", f"missing (NaT) at index {int(np.flatnonzero(np.isnat(t))[0])}")
    if t.size < 2:
        return
    runs = np.asarray(ds["run"].values) if "run" in ds.variables and ds["run"].dims == ("time",) \
        else np.zeros(t.size)
    same = runs[1:] == runs[:-1]
    step = np.diff(t).astype("timedelta64[s]").astype(np.int64)
    bad = np.flatnonzero(same & (step != STEP_SECONDS))
    if bad.size:
        i = int(bad[0])
        raise InputError(str(path), "time", f"windows {i} and {i + 1} of one run are {step[i] / 3600:g} h apart, "
                                            "expected 12 h")
