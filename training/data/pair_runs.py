"""Running the built-in coarse model along a pair file's windows (what drift and nudged pairs share): the inputs of
such a run read once, one 12 h window step, and the command line around a pair file → pair file transform."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from fortran_stub.config import CoarsePhysicsConfig, GridConfig
from icecorr.base.errors import InputError
from icecorr.base.variables import ML_VARIABLES
from training.data.io import write_netcdf_atomic


def forcing_names(pairs: xr.Dataset) -> list[str]:
    """The forcing variables of a pair file: the names f with both `f_t0` and `f_t1`, sorted."""
    return sorted(n[:-3] for n in pairs.data_vars if n.endswith("_t0") and n[:-3] + "_t1" in pairs.data_vars)


@dataclass
class RunInputs:
    """A pair Dataset's fields for a model run along its windows (float64): the coarse grid, the run index per
    window, the state variables, the reference at each window's start (`initial_*`) and end (`reference_*`), and
    the forcing at t0 and t1 ({name: (time, y, x)})."""

    grid: GridConfig
    runs: np.ndarray
    state_vars: list[str]
    reference_start: dict[str, np.ndarray]
    reference_next: dict[str, np.ndarray]
    f0: dict[str, np.ndarray]
    f1: dict[str, np.ndarray]


def run_inputs(pairs: xr.Dataset, what: str) -> RunInputs:
    """The `RunInputs` of `pairs`; ValueError naming the first missing field (`what`: the windows being made)."""
    n = pairs.sizes["time"]
    state_vars = [v for v in ML_VARIABLES if f"initial_{v}" in pairs]
    missing = [f"{p}{v}" for v in state_vars for p in ("forecast_", "reference_") if f"{p}{v}" not in pairs]
    if not state_vars or missing:
        raise ValueError(f"field {(missing or ['initial_sic'])[0]!r}: missing ({what} need initial_, forecast_ and "
                         "reference_ fields of the state variables)")
    load = lambda names, fmt: {v: np.asarray(pairs[fmt.format(v)].values, dtype=np.float64) for v in names}  # noqa: E731
    forcing = forcing_names(pairs)
    return RunInputs(grid=GridConfig(nx=pairs.sizes["x"], ny=pairs.sizes["y"],
                                     dx=float(pairs.attrs.get("grid_dx", 16_000.0))),
                     runs=np.asarray(pairs["run"].values) if "run" in pairs.variables else np.zeros(n, dtype=np.int64),
                     state_vars=state_vars, reference_start=load(state_vars, "initial_{}"),
                     reference_next=load(state_vars, "reference_{}"), f0=load(forcing, "{}_t0"),
                     f1=load(forcing, "{}_t1"))


def window_step(model, t: int, inputs: RunInputs, initial: dict, forecast: dict) -> None:
    """One window of a model run: the model's state into `initial[v][t]`, a 12 h step with the window's forcing,
    its new state into `forecast[v][t]`."""
    state = model.get_state()
    for v in inputs.state_vars:
        initial[v][t] = state[v].values
    model.step({f: a[t] for f, a in inputs.f0.items()}, {f: a[t] for f, a in inputs.f1.items()})
    state = model.get_state()
    for v in inputs.state_vars:
        forecast[v][t] = state[v].values


def with_run_fields(pairs: xr.Dataset, state_vars: list[str], initial: dict, forecast: dict,
                    reference: dict) -> xr.Dataset:
    """A copy of `pairs` whose `initial_`, `forecast_` and `reference_` fields of `state_vars` are a run's arrays
    ({v: (time, y, x)}, each stored in its field's dtype) and whose `residual_` fields are reference − forecast
    (computed before the cast)."""
    out = pairs.copy()
    for v in state_vars:
        for prefix, fields in (("initial_", initial), ("forecast_", forecast), ("reference_", reference)):
            out[prefix + v] = pairs[prefix + v].copy(data=fields[v].astype(pairs[prefix + v].dtype))
        if f"residual_{v}" in pairs:
            out[f"residual_{v}"] = pairs[f"residual_{v}"].copy(
                data=(reference[v] - forecast[v]).astype(pairs[f"residual_{v}"].dtype))
    return out


def transform_pair_file(prog: str, pairs: Path, out: Path,
                        make: Callable[[xr.Dataset, CoarsePhysicsConfig], xr.Dataset]) -> xr.Dataset | None:
    """`make(pairs Dataset, the physics its forecasts ran)` written atomically to `out`; on bad input one line
    `<prog>: error: …` naming the file (and field) on stderr, nothing written, and None."""
    from icecorr.base.files import open_netcdf
    from training.data.provenance import physics_of

    try:
        with open_netcdf(pairs, "pair file") as ds:
            result = make(ds.load(), physics_of(ds.attrs, pairs))
    except InputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return None
    except (ValueError, OSError) as exc:
        print(f"{prog}: error: file {pairs}: {exc}", file=sys.stderr)
        return None
    write_netcdf_atomic(result, out)
    return result
