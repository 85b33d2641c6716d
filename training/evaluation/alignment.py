"""Reading forecast runs and the reference, and aligning them record by record (see `training.evaluation.evaluate`
for the accepted file layouts).

A run's records are matched with the reference by position (a reference with a window dim, one reference file per
window, or a single window without CF times) or by valid time (a `(time, y, x)` trajectory with CF times). The lead
of every record comes from the run's `step` variable, a timedelta `time`, its valid times, or its record index
(12 h steps). Any mismatch of grids, units, variables or times is an `InputError` naming the file and the field.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import xarray as xr

from icecorr.base.errors import InputError
from icecorr.base.files import describe_open_error
from icecorr.base.variables import STEP_HOURS, STEP_SECONDS
from training.data.pairs import MEAN_VELOCITY_SUFFIX, VELOCITY_VARIABLES
from training.evaluation.config import EvaluateConfig

PathLike = str | os.PathLike


@dataclass
class Aligned:
    """One label's forecasts and the matching reference, both with dims (window, lead, [member,] y, x)."""

    label: str
    files: list[str]
    forecast: xr.Dataset
    reference: xr.Dataset
    valid_time: np.ndarray | None = None   # (window, lead) datetime64 of every record, when the run has CF times

    @property
    def members(self) -> int:
        """Ensemble size (1 for a deterministic run)."""
        return self.forecast.sizes.get("member", 1)


def _open(path: PathLike) -> xr.Dataset:
    try:
        ds = xr.open_dataset(path, decode_timedelta=True)
        ds.load()
        ds.close()
    except FileNotFoundError:
        raise InputError(str(path), None, "file not found") from None
    except Exception as exc:  # noqa: BLE001 - netCDF4/HDF5/xarray raise OSError, ValueError, KeyError, …
        raise InputError(str(path), None, describe_open_error(exc)) from None
    if "time" in ds.dims and np.issubdtype(ds["time"].dtype, np.datetime64) and ds["time"].ndim == 1:
        ds = ds.isel(time=np.flatnonzero(~np.isnat(ds["time"].values)))  # incomplete records of a killed run
    return ds


def _check_dims(ds: xr.Dataset, path: str, names: Sequence[str], allow_member: bool) -> None:
    for v in names:
        if v not in ds:
            raise InputError(path, v, f"missing (needed variables: {', '.join(names)})")
        dims = ds[v].dims
        core = [d for d in dims if d not in ("window", "member")]
        if core != ["time", "y", "x"] or (("member" in dims) and not allow_member) or dims[-2:] != ("y", "x"):
            want = "(time, [member,] y, x) or (window, time, [member,] y, x)" if allow_member else \
                "(time, y, x) or (window, time, y, x)"
            raise InputError(path, v, f"has dims {dims}, expected {want}")


def _as_windows(ds: xr.Dataset) -> xr.Dataset:
    """Forecast layouts with one window per initialisation, as (window, time, …) records with `valid_time` and
    `step`: an `init_time × lead_time` file (WeatherBench/anemoi), and a trajectory of independent 12 h forecasts
    (every record's `step` the same, as `icecorr correct` writes: each record is its own window)."""
    if "init_time" in ds.dims and "lead_time" in ds.dims:
        lead = ds["lead_time"]
        if not np.issubdtype(lead.dtype, np.timedelta64):
            lead = lead.astype("timedelta64[ns]") if np.issubdtype(lead.dtype, np.datetime64) else \
                xr.DataArray(np.asarray(lead.values, np.float64) * np.timedelta64(3600, "s"), dims="lead_time")
        valid = ds["init_time"] + lead
        out = ds.drop_vars(["init_time", "lead_time"]).rename(init_time="window", lead_time="time")
        out["valid_time"] = valid.rename(init_time="window", lead_time="time").drop_vars(
            [c for c in valid.coords], errors="ignore")
        out["step"] = ("time", np.asarray(lead.values / np.timedelta64(int(STEP_SECONDS), "s"), np.float64))
        return out
    step = ds.get("step")
    if ("window" not in ds.dims and step is not None and step.dims == ("time",) and ds.sizes["time"] > 1
            and np.issubdtype(ds["time"].dtype, np.datetime64) and float(step.min()) > 0
            and np.all(step.values == step.values[0])):
        out = ds.rename(time="window").expand_dims("time", axis=1)
        out["valid_time"] = xr.DataArray(ds["time"].values[:, None], dims=("window", "time"))
        out["step"] = ("time", np.asarray([float(step.values[0])]))
        return out.drop_vars("window")
    return ds


def _records(ds: xr.Dataset, path: str, names: Sequence[str], allow_member: bool) -> xr.Dataset:
    """Variables as (window, time, [member,] y, x) with `time` a plain record index; keeps `valid_time` and `step`."""
    if allow_member:
        ds = _as_windows(ds)
    _check_dims(ds, path, names, allow_member)
    out = xr.Dataset({v: ds[v] for v in names})
    has_window = "window" in ds.dims
    valid = None
    if "valid_time" in ds and np.issubdtype(ds["valid_time"].dtype, np.datetime64):
        valid = ds["valid_time"]
    elif not has_window and np.issubdtype(ds["time"].dtype, np.datetime64):
        valid = ds["time"]
    lead = None
    if "step" in ds:
        lead = ds["step"].astype(np.float64) * STEP_HOURS
    elif np.issubdtype(ds["time"].dtype, np.timedelta64):
        lead = ds["time"] / np.timedelta64(1, "h")
    out = out.drop_vars([c for c in out.coords if c not in ("member",)])
    if valid is not None:
        out["valid_time"] = valid.drop_vars([c for c in valid.coords], errors="ignore")
    if lead is not None:
        out["lead_hours"] = lead.drop_vars([c for c in lead.coords], errors="ignore")
    if not has_window:
        out = out.expand_dims("window")
    if "member" in out.dims and out.sizes["member"] == 1:
        out = out.isel(member=0, drop=True)
    out.attrs = dict(ds.attrs)
    return out.transpose("window", "time", *(["member"] if "member" in out.dims else []), "y", "x")


def _stack_windows(parts: list[xr.Dataset], paths: list[str]) -> xr.Dataset:
    n = parts[0].sizes["time"]
    for ds, p in zip(parts, paths):
        if ds.sizes["time"] != n:
            raise InputError(p, "time", f"has {ds.sizes['time']} records, {paths[0]} has {n}: "
                             "one-file-per-window runs must have equal lengths")
        if ds.sizes.get("member") != parts[0].sizes.get("member"):
            raise InputError(p, "member", "member count differs from the other windows of this run")
    return xr.concat(parts, dim="window", data_vars="all", coords="different", compat="equals", join="exact") \
        if len(parts) > 1 else parts[0]


def _as_list(paths: PathLike | Sequence[PathLike]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [str(paths)]
    out = [str(p) for p in paths]
    if not out:
        raise InputError(None, None, "empty list of files")
    return out


def read_run(paths: PathLike | Sequence[PathLike],
             names: Sequence[str]) -> tuple[xr.Dataset, list[str], xr.Dataset]:
    """A run's forecasts as (window, time, [member,] y, x) records (see the module docstring), its file names, and
    the first file as read (for grid and units checks)."""
    files = _as_list(paths)
    raws = [_open(p) for p in files]
    for raw, p in zip(raws, files):
        if raw.attrs.get("status") not in (None, "complete"):
            warnings.warn(f"{p}: status '{raw.attrs['status']}' — scoring its complete records only", stacklevel=2)
    parts = [_records(raw, p, names, allow_member=True) for raw, p in zip(raws, files)]
    for part, p in zip(parts, files):
        for v in names:
            bad = ~np.isfinite(np.asarray(part[v].values, dtype=np.float64))
            bad &= ~land_fill(part[v]).values    # land stored as _FillValue (NaN in every record) is no failure
            if bad.any():
                raise InputError(p, v, f"NaN/inf in {int(bad.sum())} value(s) of complete records (a corrupt or "
                                       "failed run?)")
    return _stack_windows(parts, files), files, raws[0]


def land_fill(da: xr.DataArray) -> xr.DataArray:
    """(y, x) True at the cells where `da` is NaN in every record and member: land stored as `_FillValue` (as
    `icecorr correct` writes the user's grid)."""
    return da.isnull().all([d for d in da.dims if d not in ("y", "x")])


def _check_land_fill(run: xr.Dataset, run_file: str, ref: xr.Dataset, ref_file: str, names: Sequence[str]) -> None:
    """A run's fill cells must be land in the reference (`mask` 0) or missing there: else the run lost ocean."""
    ocean = ref["mask"].fillna(0).values != 0 if "mask" in ref else np.ones((ref.sizes["y"], ref.sizes["x"]), bool)
    for v in names:
        fill = land_fill(run[v]).values
        if v in ref:
            fill &= ~ref[v].isnull().all([d for d in ref[v].dims if d not in ("y", "x")]).values
        wrong = fill & ocean
        if wrong.any():
            j, i = np.argwhere(wrong)[0]
            raise InputError(run_file, v, f"fill values at {int(wrong.sum())} cell(s) that are ocean in the "
                             f"reference {ref_file}, first at (y={j}, x={i})")


def _pairs_to_trajectory(ds: xr.Dataset, names: Sequence[str], mean_velocity: bool = False) -> xr.Dataset:
    """Training pairs → truth trajectory: reference_v at t + 12 h, plus initial_v at the starts t that are no
    window's end (the same state: a window starts from the previous one's reference). `mean_velocity`: siu/siv at
    t + 12 h are the window means `reference_{v}_mean12h` (a run's first start keeps its instantaneous velocity)."""
    def later_name(v: str) -> str:
        return f"reference_{v}{MEAN_VELOCITY_SUFFIX}" if mean_velocity and v in VELOCITY_VARIABLES else f"reference_{v}"

    later = xr.Dataset({v: ds[later_name(v)] for v in names})
    later = later.assign_coords(time=ds["time"].values + np.timedelta64(STEP_SECONDS, "s"))
    initial = xr.Dataset({v: ds[f"initial_{v}"] for v in names})
    initial = initial.sel(time=~np.isin(initial["time"].values, later["time"].values))
    traj = xr.concat([initial, later], dim="time").sortby("time")
    if "mask" in ds:
        traj["mask"] = ds["mask"]
    traj.attrs = dict(ds.attrs)
    return traj


def read_reference(paths: PathLike | Sequence[PathLike], names: Sequence[str],
                   mean_velocity: bool = False) -> tuple[xr.Dataset | list[xr.Dataset], list[str]]:
    """The reference as a raw Dataset (one file: a trajectory, a window dim, or the single window of a run) or a list
    of them (several files: one per window); training-pair files are converted to a trajectory (with
    `mean_velocity`, velocities averaged over each 12 h window: `EvaluateConfig.velocity_reference`)."""
    files = _as_list(paths)
    dsets = [_open(p) for p in files]
    for i, (ds, p) in enumerate(zip(dsets, files)):
        if names[0] not in ds and f"initial_{names[0]}" in ds:
            for v in names:
                for role in ("initial", "reference"):
                    if f"{role}_{v}" not in ds:
                        raise InputError(p, f"{role}_{v}", "missing in this training-pair reference file")
                mean = f"reference_{v}{MEAN_VELOCITY_SUFFIX}"
                if mean_velocity and v in VELOCITY_VARIABLES and mean not in ds:
                    raise InputError(p, mean, "missing: evaluate.velocity_reference=mean12h needs twin pair files "
                                     "written with the truth's window-mean velocity (regenerate them)")
            _check_dims(ds, p, [f"{role}_{v}" for role in ("initial", "reference") for v in names], False)
            if "time" not in ds.variables or not np.issubdtype(ds["time"].dtype, np.datetime64):
                raise InputError(p, "time", "a training-pair reference needs CF-encoded window start times")
            dsets[i] = _pairs_to_trajectory(ds, names, mean_velocity)
        _check_dims(dsets[i], p, names, allow_member=False)
    # several files: one per window; a list of one file is the common `--reference truth.nc` of the CLI
    return (dsets[0] if len(dsets) == 1 else dsets), files  # type: ignore[return-value]


def grid_spacing(ref: xr.Dataset, ref_file: str, cfg: EvaluateConfig) -> float:
    """Cell size (m): `cfg.dx_m`, else the spacing of the reference's x coordinate, else its `grid_dx`."""
    if cfg.dx_m is not None:
        return cfg.dx_m
    if "x" in ref.coords and ref.sizes.get("x", 0) > 1:
        return float(np.diff(ref["x"].values[:2])[0])
    if "grid_dx" in ref.attrs:
        return float(ref.attrs["grid_dx"])
    raise InputError(ref_file, "x", "no x coordinate or grid_dx attribute: set evaluate.dx_m")


def _check_grid(run_raw: xr.Dataset, run_file: str, ref: xr.Dataset, ref_file: str) -> None:
    for d in ("y", "x"):
        if run_raw.sizes.get(d) != ref.sizes.get(d):
            raise InputError(run_file, d, f"grid size {run_raw.sizes.get(d)} differs from the reference "
                             f"{ref_file} ({ref.sizes.get(d)})")
        if d in run_raw.coords and d in ref.coords and not same_cells(run_raw[d].values, ref[d].values):
            raise InputError(run_file, d, f"coordinates differ from those of the reference {ref_file}")


def same_cells(run: np.ndarray, ref: np.ndarray) -> bool:
    """True if 1-D cell-centre coordinates (m) name the same cells: equal, or the run's are the model's own
    ((i + ½) Δ from 0, as `icecorr couple` writes them) with the spacing Δ of the reference's projection
    coordinates (e.g. a region's EPSG:3413 x/y)."""
    run, ref = np.asarray(run, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if run.shape != ref.shape:
        return False
    if np.allclose(run, ref):
        return True
    if run.size < 2:
        return False
    step = np.diff(ref)
    return bool(np.allclose(np.diff(run), step) and np.isclose(run[0], 0.5 * step[0]))


def _check_units(run_raw: xr.Dataset, run_file: str, ref: xr.Dataset, names: Sequence[str]) -> None:
    for v in names:
        a, b = run_raw[v].attrs.get("units"), ref[v].attrs.get("units") if v in ref else None
        if a is not None and b is not None and str(a) != str(b):
            raise InputError(run_file, v, f"units '{a}' differ from the reference's '{b}'")


def _is_initial(forecast: xr.Dataset, reference: xr.Dataset, names: Sequence[str]) -> bool:
    """True if the first record of every window equals the reference (the run file starts with its initial state)."""
    for v in names:
        f = forecast[v].isel(time=0)
        if "member" in f.dims:
            f = f.mean("member")
        r = reference[v].isel(time=0)
        diff = np.abs(f.values - r.values)
        if np.nanmax(diff, initial=0.0) > 1e-6 * max(1.0, float(np.nanmax(np.abs(r.values), initial=0.0))):
            return False
    return True


def align(label: str, run_paths: PathLike | Sequence[PathLike], reference_raw: xr.Dataset | list[xr.Dataset],
          reference_files: list[str], cfg: EvaluateConfig) -> Aligned:
    """Read one label's run and put the matching reference records beside it, with a `lead` (hours) coordinate."""
    names = cfg.variables
    run, files, raw0 = read_run(run_paths, names)
    ref0 = reference_raw[0] if isinstance(reference_raw, list) else reference_raw
    _check_grid(raw0, files[0], ref0, reference_files[0])
    _check_units(raw0, files[0], ref0, names)
    if isinstance(reference_raw, list):  # one reference file per window
        if len(reference_raw) != run.sizes["window"]:
            raise InputError(reference_files[0], "window", f"{len(reference_raw)} reference files for "
                             f"{run.sizes['window']} windows of '{label}'")
        refs = [_records(r, p, names, allow_member=False) for r, p in zip(reference_raw, reference_files)]
        ref = _positional(run, _stack_windows(refs, reference_files), files[0], reference_files[0])
    elif "window" in ref0.dims:
        ref = _positional(run, _records(ref0, reference_files[0], names, False), files[0], reference_files[0])
    else:
        ref1 = _records(ref0, reference_files[0], names, False)
        if run.sizes["window"] == 1 and ("valid_time" not in run or "valid_time" not in ref1):
            ref = _positional(run, ref1, files[0], reference_files[0])  # one window without CF times
        else:
            run = _leads_in_reference(run, ref1, files[0], reference_files[0])
            ref = _by_valid_time(run, ref1, files, reference_files[0])
    _check_land_fill(run, files[0], ref0, reference_files[0], names)

    if "lead_hours" in run:
        lead = run["lead_hours"]
        if "window" in lead.dims:
            if not (lead == lead.isel(window=0)).all():
                raise InputError(files[0], "step", "windows have different lead times")
            lead = lead.isel(window=0)
        lead = lead.values.astype(np.float64)
    else:
        first = cfg.first_lead_hours
        if first == "auto":
            first = 0.0 if _is_initial(run, ref, names) else STEP_HOURS
        if "valid_time" in run:
            vt = run["valid_time"].isel(window=0) if "window" in run["valid_time"].dims else run["valid_time"]
            lead = (vt.values - vt.values[0]) / np.timedelta64(1, "h") + float(first)
        else:
            lead = np.arange(run.sizes["time"]) * STEP_HOURS + float(first)
    if np.unique(lead).size != lead.size:
        raise InputError(files[0], "time", "repeated lead times")
    valid = None
    if "valid_time" in run:
        vt = run["valid_time"]
        valid = (vt if "window" in vt.dims else vt.expand_dims(window=run.sizes["window"])).values
    drop = [c for c in ("valid_time", "lead_hours") if c in run]
    fc = run.drop_vars(drop).rename(time="lead").assign_coords(lead=lead)
    rf = ref.drop_vars([c for c in ("valid_time", "lead_hours") if c in ref]).rename(time="lead")
    rf = rf.assign_coords(lead=lead)
    for ds in (fc, rf):
        ds["lead"].attrs.update(units="hours", long_name="lead time since the window start")
    return Aligned(label=label, files=files, forecast=fc, reference=rf, valid_time=valid)


def _positional(run: xr.Dataset, ref: xr.Dataset, run_file: str, ref_file: str) -> xr.Dataset:
    if ref.sizes["window"] != run.sizes["window"]:
        raise InputError(ref_file, "window", f"{ref.sizes['window']} windows, the run {run_file} has "
                         f"{run.sizes['window']}")
    if ref.sizes["time"] < run.sizes["time"]:
        raise InputError(ref_file, "time", f"{ref.sizes['time']} records, the run {run_file} needs "
                         f"{run.sizes['time']}")
    return ref.isel(time=slice(0, run.sizes["time"]))


def _leads_in_reference(run: xr.Dataset, ref: xr.Dataset, run_file: str, ref_file: str) -> xr.Dataset:
    """`run` without the leads whose valid times the reference has for no window (e.g. the 06/18 h leads of a
    6-hourly forecast against a 12-hourly reference), with a warning naming them; other gaps stay errors."""
    if "valid_time" not in run or "valid_time" not in ref:
        return run
    vt = run["valid_time"]
    if "window" not in vt.dims:
        return run
    have = np.isin(vt.values, ref["valid_time"].isel(window=0).values)
    absent = ~have.any(axis=0)
    if not absent.any() or absent.all() or not have[:, ~absent].all():
        return run     # nothing to drop, or other gaps: _by_valid_time names the first missing record
    lead = run["lead_hours"] if "lead_hours" in run else None
    if lead is not None and "window" in lead.dims:
        lead = lead.isel(window=0)
    leads = lead.values[absent] if lead is not None else np.flatnonzero(absent)
    warnings.warn(f"{run_file}: the reference {ref_file} has no record at the valid times of lead(s) "
                  f"{', '.join(f'{x:g}' for x in leads)}: those leads are not scored", stacklevel=3)
    return run.isel(time=np.flatnonzero(~absent))


def _by_valid_time(run: xr.Dataset, ref: xr.Dataset, files: list[str], ref_file: str) -> xr.Dataset:
    if "valid_time" not in run:
        raise InputError(files[0], "time", "has no CF times to find the matching records in the reference "
                         f"trajectory {ref_file}: give a reference with a window dim or one file per window")
    if "valid_time" not in ref:
        raise InputError(ref_file, "time", "a (time, y, x) reference needs CF-encoded times")
    ref = ref.isel(window=0, drop=True).assign_coords(time=ref["valid_time"].isel(window=0).values)
    ref = ref.drop_vars([c for c in ("valid_time", "lead_hours") if c in ref])
    vt = run["valid_time"]
    if "window" not in vt.dims:
        vt = vt.expand_dims(window=run.sizes["window"])
    wanted = vt.values
    missing = ~np.isin(wanted, ref["time"].values)
    if missing.any():
        w, t = np.argwhere(missing)[0]
        raise InputError(ref_file, "time", f"no record at {np.datetime_as_string(wanted[w, t], unit='m')} "
                         f"needed by {files[min(w, len(files) - 1)]} ({int(missing.sum())} missing)")
    picked = ref.sel(time=xr.DataArray(wanted, dims=("window", "time")))
    return picked.drop_vars("time")
