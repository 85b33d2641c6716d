"""Checks shared by every reader of user files (pair files, forcing files, trajectories): one `InputError` naming the
file and the field for a file that cannot be opened, a variable with the wrong dimensions, shape or units, NaN/inf,
fill or out-of-range values (`state_value_problem`: the one set of rules of `correct`, `couple` and `emulate`), no
records, a reversed axis, an all-land mask, and time records that are not 12 h apart; and a checkpoint trained in
other units than the variable table's, or on the residual of the built-in coarse model with other physics.

Units are compared by UDUNITS (icecorr.base.units.same_units), never as strings: 'm/s' == 'm s-1', '1' == 'kg kg-1'.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import xarray as xr

from icecorr.base.errors import InputError
from icecorr.base.units import same_units
from icecorr.base.variables import RANGES, STEP_SECONDS, VARIABLES

PAIR_PREFIXES = ("initial_", "forecast_", "reference_", "residual_", "correction_")
TIME_SUFFIXES = ("_t0", "_t1")


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
    if not same_units(str(have), want):
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


#: a magnitude no field of a pair, forcing or initial file reaches (sit of 10⁶ m in the thinnest coarse-model cells is
#: the largest seen): an unmasked fill value (netCDF's default 9.97e36, CF's 1e20) or garbage
IMPLAUSIBLE = 1e15
#: prefixes of the names whose values are states (the physical ranges of `icecorr.base.variables.RANGES` hold for them);
#: residuals, corrections and forcing may be negative
STATE_PREFIXES = ("initial_", "forecast_", "reference_")


def state_value_problem(name: str, values: np.ndarray) -> tuple[np.ndarray, str, str] | None:
    """The first rule `values` of the file variable `name` break, as (bool array of the offending values, what is
    wrong, a hint or ''), or None. The rules of every reader of user files (`correct`'s pair files, the initial states and forcing
    of `couple`/`emulate`): finite; below IMPLAUSIBLE in magnitude; and for a state (`sic`, `initial_sit`, …;
    not residuals) inside the physical range of `icecorr.base.variables.RANGES` (sic ∈ [0, 1], sit, snt ≥ 0)."""
    a = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        return bad, "NaN/inf", ""
    bad = np.abs(a) >= IMPLAUSIBLE
    if bad.any():
        return bad, f"implausible value {a[bad].flat[0]:.3g}", ("an unmasked fill value? Mark missing values as "
                                                                "NaN, land cells as 0 with mask = 0")
    var = base_name(name)
    if var == name or name.startswith(STATE_PREFIXES):
        lo, hi = RANGES.get(var, (None, None))
        if lo is not None and (a < lo).any():
            bad = a < lo
            return bad, f"value {a[bad].flat[0]:.3g} below {lo:g}", ""
        if hi is not None and (a > hi).any():
            bad = a > hi
            return bad, f"value {a[bad].flat[0]:.3g} outside [{lo:g}, {hi:g}]", ""
    return None


def where_in_field(bad: np.ndarray, dims: Sequence[str], offset: int = 0) -> str:
    """'time index 3, cell (y=5, x=7)': the first True of `bad` with dims `dims` (`offset` added to the time)."""
    idx = np.argwhere(bad)[0]
    parts = {d: int(i) for d, i in zip(dims, idx)}
    text = [f"time index {offset + parts['time']}"] if "time" in parts else []
    if "y" in parts and "x" in parts:
        text.append(f"cell (y={parts['y']}, x={parts['x']})")
    return ", ".join(text) or "a value"


def check_file_values(ds: xr.Dataset, path, names: Iterable[str], chunk: int = 64, mask: np.ndarray | None = None,
                 offset: int = 0) -> None:
    """Every value of the `(time, y, x)` variables `names` (ocean cells only, if `mask`) keeps the rules of
    `state_value_problem`, else an InputError naming the file, the field, the time index and the cell; reads
    `chunk` records at a time. `offset`: file time index of the first record of `ds` (for the message)."""
    for name in names:
        var = ds[name]
        n = var.sizes.get("time", 1)
        for lo in range(0, n, chunk):
            arr = np.asarray((var.isel(time=slice(lo, lo + chunk)) if "time" in var.dims else var).values)
            if mask is not None:
                arr = np.where(np.asarray(mask) > 0.5, arr, 0.0)
            problem = state_value_problem(name, arr)
            if problem is not None:
                bad, what, hint = problem
                where = where_in_field(bad, var.dims, offset + lo)
                raise InputError(str(path), name, f"{what} at {where} ({int(bad.sum())} value(s) in records "
                                                  f"{offset + lo}…{offset + min(lo + chunk, n) - 1})"
                                                  + (f": {hint}" if hint else ""))


def check_state(path, state, label: str, prefix: str = "") -> None:
    """A state {variable: (ny, nx)} (one window's initial state, `label` e.g. 'time index 3') keeps the rules of
    `state_value_problem`, else an InputError naming the file (if any), the field (`prefix` + variable: the name in
    the file) and the cell."""
    for name, values in state.items():
        problem = state_value_problem(name, values)
        if problem is not None:
            bad, what, hint = problem
            raise InputError(None if path is None else str(path), f"{prefix}{name}",
                             f"{what} at {label}, {where_in_field(bad, ('y', 'x'))}" + (f": {hint}" if hint else ""))


def check_has_records(ds: xr.Dataset, path) -> None:
    """A pair, forecast, forcing or initial file holds at least one time record (an empty file is refused, not
    turned into an empty output)."""
    if "time" in ds.dims and ds.sizes["time"] == 0:
        raise InputError(str(path), "time", "no records (time has length 0): nothing to run or correct")


def check_axes(ds: xr.Dataset, path) -> None:
    """The `y` and `x` coordinates (if present) increase: row j of a field is y = (j + ½) dx and siv (siu) sits on
    the north (east) face of a cell, so a reversed axis would be written with wrong labels and faces."""
    for axis, velocity, face in (("y", "siv", "north"), ("x", "siu", "east")):
        if axis not in ds.coords or ds[axis].ndim != 1 or ds[axis].size < 2 \
                or not np.issubdtype(ds[axis].dtype, np.number):
            continue
        step = np.diff(np.asarray(ds[axis].values, dtype=np.float64))
        if (step <= 0).any():
            i = int(np.flatnonzero(step <= 0)[0])
            raise InputError(str(path), axis, f"coordinate decreases (or repeats) at index {i + 1}: icecorr needs "
                                              f"{axis} increasing (index k at {axis} = (k + 1/2) dx, {velocity} on "
                                              f"the {face} face of a cell), else the output carries wrong {axis} "
                                              f"labels; reverse the file first (xarray: ds.sortby('{axis}')) and "
                                              f"put {velocity} on the {face} faces")


def check_mask(path, mask: np.ndarray | None, corrector=None) -> None:
    """A land/ocean mask (ny, nx; ocean where > 0.5, NaN = land) has an ocean cell and, if `corrector` conditions
    on the mask and its checkpoint records one for this grid, is the mask it was trained on. InputError naming the
    file and 'mask'."""
    if mask is None:
        return
    m = np.nan_to_num(np.asarray(mask, dtype=np.float64))  # NaN = land
    if not (m > 0.5).any():
        raise InputError(None if path is None else str(path), "mask", "no ocean cell (every cell is land, mask ≤ 0.5): nothing to run or "
                                            "correct (ocean is mask = 1)")
    cgrid = getattr(corrector, "grid", None) or {}
    if "ny" in cgrid and "nx" in cgrid and m.shape != (int(cgrid["ny"]), int(cgrid["nx"])):
        return  # another grid than the checkpoint's: the grid checks name it
    want = cgrid.get("mask_hash")
    # the corrector's modules load torch: only where a corrector is checked (physics ranks start without it)
    from corrector.checkpoint import mask_hash
    from corrector.fields import MASK

    if want and MASK in getattr(corrector, "conditioning_names", ()) and mask_hash(m) != want:
        src = getattr(corrector, "source", None) or "the checkpoint"
        raise InputError(None if path is None else str(path), "mask", f"land mask differs from the one the checkpoint {src} was trained on")


def check_corrector_units(corrector) -> None:
    """The units the checkpoint's corrector was trained in (its `variables_units`) are those of icecorr's runs and
    pair files (the variable table); else an InputError naming the checkpoint and the variable (the correction of
    a model in other units would be applied as if it were in these)."""
    units = getattr(corrector, "variables_units", None) or {}
    for v in getattr(corrector, "variables", ()):
        have, want = units.get(v), expected_units(v)
        if have is not None and want is not None and not same_units(have, want):
            raise InputError(getattr(corrector, "source", None) or "the checkpoint", v,
                             f"the checkpoint was trained with {v} in '{have}', but icecorr runs and pair files use "
                             f"'{want}': its corrections would be applied in the wrong units")


def _flat(section: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in section.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, Mapping) else {f"{prefix}{k}": v})
    return out


def check_coarse_physics(corrector, physics: Mapping | None) -> None:
    """A residual corrector runs on the model whose residual it learned: the built-in coarse model's `physics`
    (its config fields; None for a model of your own, which is not checked) agrees with the physics the checkpoint's
    training pairs recorded (`corrector.coarse_physics`; not checked when unknown). Else an InputError naming the
    checkpoint and the first differing `physics.<field>` (e.g. a corrector of the tuned P* on Hibler's: its
    corrections would push the wrong model)."""
    learned = getattr(corrector, "coarse_physics", None)
    if not learned or physics is None:
        return
    have = _flat(physics)
    for key, want in _flat(learned).items():
        run = have.get(key)
        same = (math.isclose(float(want), float(run), rel_tol=1e-9, abs_tol=1e-12)
                if isinstance(want, (int, float)) and isinstance(run, (int, float)) else want == run)
        if key in have and not same:
            raise InputError(getattr(corrector, "source", None) or "the checkpoint", f"physics.{key}",
                             f"the corrector learned the residual of the coarse model with {key} = {want}, but this "
                             f"run's physics has {run}: set physics.{key} in the run config (the training pairs' "
                             f"`config` attribute records the physics they were generated with)")


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
