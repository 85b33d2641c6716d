"""Files of a 4D-Var analysis: the window read from the observation file (forcing, mask, observations and their
errors), the truth and a background file; the analysis NetCDF and the cost history CSV written.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from icecorr.base.errors import InputError
from icecorr.base.files import atomic_path, open_netcdf
from icecorr.base.variables import STEP_HOURS
from training.assimilation.config import AssimilateConfig
from training.data.io import write_netcdf_atomic


@dataclass
class Window:
    """Everything read for one assimilation window (arrays in the emulator's variable order)."""

    start_index: int
    times: np.ndarray  # (n + 1,) datetime64 state times
    inputs: list[dict[str, np.ndarray]]
    mask: np.ndarray
    obs: np.ndarray
    obs_std: np.ndarray
    initial: np.ndarray  # the file's initial_* at the start
    dx: float


def start_index(ds: xr.Dataset, path: Path, start: str) -> int:
    """Index of the window starting at `start` (ISO date-time or integer index)."""
    n = ds.sizes["time"]
    if start.strip().lstrip("-").isdigit():
        i = int(start)
        if not 0 <= i < n:
            raise InputError(str(path), "time", f"window index {i} outside 0..{n - 1}")
        return i
    try:
        t = np.datetime64(datetime.fromisoformat(start), "ns")
    except ValueError:
        raise InputError(str(path), "assimilate.start", f"not an ISO date-time or an index: {start!r}") from None
    hits = np.flatnonzero(ds["time"].values.astype("datetime64[ns]") == t)
    if hits.size == 0:
        tv = ds["time"].values
        raise InputError(str(path), "time", f"no window starts at {start} (windows "
                         f"{np.datetime_as_string(tv[0], unit='m')} .. {np.datetime_as_string(tv[-1], unit='m')})")
    return int(hits[0])


def _contiguous(ds: xr.Dataset, path: Path, first: int, last: int) -> bool:
    """Windows first..last (inclusive) are consecutive 12 h windows of one run."""
    if first < 0 or last >= ds.sizes["time"]:
        return False
    t = ds["time"].values[first:last + 1].astype("datetime64[ns]")
    ok = np.all(np.diff(t) == np.timedelta64(STEP_HOURS, "h"))
    if "run" in ds.variables:
        ok &= len(np.unique(ds["run"].values[first:last + 1])) == 1
    return bool(ok)


def read_window(cfg: AssimilateConfig, variables: Sequence[str], fixed_names: Sequence[str]) -> Window:
    """Forcing, mask and observations of the window from the observation file."""
    path = cfg.observations
    with open_netcdf(path, "observation file") as ds:
        i0 = start_index(ds, path, cfg.start)
        n = cfg.n_steps
        if not _contiguous(ds, path, i0, i0 + n - 1):
            raise InputError(str(path), "time", f"the {cfg.window_days:g}-day window from "
                             f"{np.datetime_as_string(ds['time'].values[i0], unit='m')} needs {n} consecutive 12 h "
                             "windows of one run in the file")
        sl = slice(i0, i0 + n)
        mask = (np.nan_to_num(np.asarray(ds["mask"].values, np.float64)) > 0.5) if "mask" in ds.variables else \
            np.ones((ds.sizes["y"], ds.sizes["x"]), bool)
        inputs = []
        data = {}
        for name in fixed_names:
            if name not in ds.variables:
                raise InputError(str(path), name, "missing (a conditioning field of the emulator)")
            data[name] = np.asarray(ds[name].isel(time=sl).values, np.float64)
        for k in range(n):
            inputs.append({name: np.where(mask, a[k], 0.0) for name, a in data.items()})
        shape = (n + 1, len(variables), ds.sizes["y"], ds.sizes["x"])
        obs, std = np.full(shape, np.nan), np.full(shape, np.nan)
        use = cfg.obs_variables if cfg.obs_variables is not None else list(variables)
        found = []
        with_initial = cfg.use_initial_time_obs and _contiguous(ds, path, i0 - 1, i0)
        first = i0 - 1 if with_initial else i0
        rows = np.arange(first, i0 + n)
        for c, v in enumerate(variables):
            if v not in use or f"reference_{v}" not in ds.variables:
                continue
            y = np.asarray(ds[f"reference_{v}"].isel(time=rows).values, np.float64)
            if f"obs_error_{v}" not in ds.variables:
                if cfg.obs_variables is not None:
                    raise InputError(str(path), f"obs_error_{v}", "missing: observation-error std is needed for "
                                     "every observed variable (write observation files with training.data.observations)")
                continue
            r = np.asarray(ds[f"obs_error_{v}"].isel(time=rows).values, np.float64) * cfg.obs_error_inflation
            if f"observed_{v}" in ds.variables:
                y = np.where(np.asarray(ds[f"observed_{v}"].isel(time=rows).values) > 0, y, np.nan)
            bad = np.isfinite(y) & ~(np.isfinite(r) & (r > 0))
            if bad.any():
                raise InputError(str(path), f"obs_error_{v}", f"{int(bad.sum())} observation(s) without a positive "
                                 "error std")
            y = np.where(mask, y, np.nan)
            k0 = 0 if with_initial else 1
            obs[k0:, c], std[k0:, c] = y, r
            found.append(v)
        if not found:
            raise InputError(str(path), "reference_*", f"no usable observations of {use} (needs reference_{{v}} and "
                             "obs_error_{v})")
        initial = np.stack([np.asarray(ds[f"initial_{v}"].isel(time=i0).values, np.float64) for v in variables])
        times = ds["time"].values[i0] + np.arange(n + 1) * np.timedelta64(STEP_HOURS, "h")
        dx = float(ds.attrs.get("grid_dx", np.nan))
        if not np.isfinite(dx):
            dx = float(np.diff(ds["x"].values[:2])[0]) if "x" in ds.coords and ds.sizes["x"] > 1 else np.nan
        if not np.isfinite(dx) or dx <= 0:
            raise InputError(str(path), "grid_dx", "grid spacing unknown (no grid_dx attribute or x coordinate)")
    return Window(i0, times, inputs, mask, obs, std, initial, dx)


def read_truth(path: Path, times: np.ndarray, variables: Sequence[str]) -> np.ndarray:
    """(n + 1, V, ny, nx) truth at the window's state times: `initial_*` of the windows starting then, the last one
    from `reference_*` of the last window."""
    with open_netcdf(path, "truth file") as ds:
        tv = ds["time"].values.astype("datetime64[ns]")
        pos = {t: i for i, t in enumerate(tv)}
        out = []
        for t in times[:-1]:
            if t not in pos:
                raise InputError(str(path), "time", f"no truth window at {np.datetime_as_string(t, unit='m')}")
            out.append([ds[f"initial_{v}"].values[pos[t]] for v in variables])
        last = times[-1] - np.timedelta64(STEP_HOURS, "h")
        if last not in pos:
            raise InputError(str(path), "time", f"no truth window at {np.datetime_as_string(last, unit='m')}")
        out.append([ds[f"reference_{v}"].values[pos[last]] for v in variables])
    truth = np.asarray(out, np.float64)
    if not np.all(np.isfinite(truth)):
        raise InputError(str(path), "reference_*", "the truth file has gaps (use the complete twin pair file)")
    return truth


def read_background_file(path: Path, variables: Sequence[str], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """{variable: (y, x) field} for the variables the file holds, as `background_{v}` or `{v}`; checked for shape
    and finiteness."""
    with open_netcdf(path, "background file") as ds:
        out = {}
        for v in variables:
            name = f"background_{v}" if f"background_{v}" in ds.variables else v
            if name not in ds.variables:
                continue
            a = np.asarray(ds[name].values, np.float64)
            if a.shape != shape:
                raise InputError(str(path), name, f"shape {a.shape}, expected (y, x) = {shape}")
            if not np.all(np.isfinite(a)):
                raise InputError(str(path), name, "contains NaN/inf")
            out[v] = a
    return out



def write_analysis(path: Path, window: Window, variables: Sequence[str], analysis_traj: np.ndarray,
                   background_traj: np.ndarray, truth: np.ndarray | None, attrs: Mapping) -> Path:
    """`analysis.nc`: analysis and background at the window start, the emulator forecasts from both (lead, y, x),
    the truth if given and the mask; `attrs` become global attributes (non-scalars as JSON)."""
    lead = np.arange(len(window.times)) * STEP_HOURS
    ny, nx = window.mask.shape
    coords = {"lead": ("lead", lead, {"units": "hours", "long_name": "time since the window start"}),
              "time": ("lead", window.times, {"standard_name": "time"}),
              "y": ("y", (np.arange(ny) + 0.5) * window.dx, {"units": "m", "standard_name": "projection_y_coordinate"}),
              "x": ("x", (np.arange(nx) + 0.5) * window.dx, {"units": "m", "standard_name": "projection_x_coordinate"})}
    ds = xr.Dataset(coords=coords)
    for c, v in enumerate(variables):
        ds[f"analysis_{v}"] = (("y", "x"), analysis_traj[0, c], {"long_name": f"4D-Var analysis of {v} at the "
                                                                             "window start"})
        ds[f"background_{v}"] = (("y", "x"), background_traj[0, c], {"long_name": f"background {v}"})
        ds[f"forecast_analysis_{v}"] = (("lead", "y", "x"), analysis_traj[:, c],
                                        {"long_name": f"emulator forecast of {v} from the analysis"})
        ds[f"forecast_background_{v}"] = (("lead", "y", "x"), background_traj[:, c],
                                          {"long_name": f"emulator forecast of {v} from the background"})
        if truth is not None:
            ds[f"truth_{v}"] = (("lead", "y", "x"), truth[:, c], {"long_name": f"truth {v}"})
    ds["mask"] = (("y", "x"), window.mask.astype(np.int8), {"long_name": "ocean mask",
                                                            "flag_values": np.array([0, 1], dtype=np.int8),
                                                            "flag_meanings": "land ocean"})
    ds.attrs.update({"Conventions": "CF-1.10", "title": "icecorr assimilate: 4D-Var analysis",
                     "history": f"{datetime.now():%Y-%m-%dT%H:%M:%S} written by icecorr assimilate"})
    ds.attrs.update({k: (json.dumps(v) if not isinstance(v, (str, int, float)) else v) for k, v in attrs.items()})
    return write_netcdf_atomic(ds, path)


def write_history(path: Path, history: list[dict]) -> Path:
    """`cost.csv`: one row per iteration (J, J_b, J_o, ‖∇J‖, evaluations so far), written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["iteration", "J", "J_b", "J_o", "grad_norm", "evaluations"])
        w.writeheader()
        for row in history:
            w.writerow({k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in row.items()})
    return path
