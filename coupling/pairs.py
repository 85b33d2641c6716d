"""Readers of training-pair (and forecast) files for the run drivers: the initial state of each window, the
corrector's conditioning fields, and the pre-flight checks that make bad input fail before any output file exists.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from icecorr.base.errors import InputError
from icecorr.base.files import open_netcdf
from icecorr.base.variables import ML_VARIABLES
from .checks import (check_axes, check_corrector_units, check_has_records, check_mask, check_pair_times, check_state,
                     check_file_values, check_variable)
from .config import CoupleConfig
from .forcing import FileForcing, ForcingSource


def initial_states_from_pairs(path: str | Path, start_indices: Sequence[int],
                              variables: Sequence[str] = ML_VARIABLES,
                              shape: tuple[int, int] | None = None) -> list[dict[str, np.ndarray]]:
    """The coarse-grained truth `initial_{v}` at each start index of a training-pair file: one state per window.
    Missing variables, wrong dims/units, a (y, x) shape other than `shape` (if given), no records, a reversed axis,
    or values that break `coupling.checks.state_value_problem` (NaN/inf, fill values, sic ∉ [0, 1], sit < 0):
    InputError naming the file, the field and the cell."""
    path = Path(path)
    with open_netcdf(path, "pair file") as ds:
        check_has_records(ds, path)
        check_axes(ds, path)
        for v in variables:
            check_variable(ds, path, f"initial_{v}", shape=shape, what="missing initial state variable")
        out = []
        for t in start_indices:
            if not 0 <= t < ds.sizes.get("time", 0):
                raise InputError(str(path), "time", f"start index {t} outside 0…{ds.sizes.get('time', 0) - 1}")
            state = {v: ds[f"initial_{v}"].isel(time=t).values.astype(np.float64) for v in variables}
            check_state(path, state, f"time index {t}", prefix="initial_")
            out.append(state)
    return out


def window_states(initial_state, start_indices: Sequence[int], variables: Sequence[str] = ML_VARIABLES,
                  shape: tuple[int, int] | None = None) -> list[Mapping[str, np.ndarray]]:
    """One initial state per window from a pair-file path, one mapping/Dataset (all windows) or a sequence; each
    keeps the rules of `coupling.checks.state_value_problem` (InputError naming the variable and the cell)."""
    if isinstance(initial_state, (str, Path)):
        return initial_states_from_pairs(initial_state, start_indices, variables, shape)
    if isinstance(initial_state, (Mapping, xr.Dataset)):
        states = [initial_state] * len(start_indices)
    else:
        states = list(initial_state)
    if len(states) != len(start_indices):
        raise ValueError(f"{len(states)} initial states for {len(start_indices)} windows (start_indices)")
    for w, state in enumerate(states):
        check_state(None, state_arrays(state), f"the initial state of window {w}")
    return states


def preflight_inputs(forcing: ForcingSource, cfg: CoupleConfig, shape: tuple[int, int] | None, initial_state,
                     variables: Sequence[str] = ML_VARIABLES, what: str = "the model grid") -> None:
    """Before any model, corrector or output file: the forcing (and a pair-file initial state) fit the grid `shape`
    and every forcing value the windows use is finite. Bad input then fails without leaving an output file."""
    if isinstance(forcing, FileForcing):
        if shape is not None:
            forcing.check_grid(shape, what)
        for s in cfg.start_indices:
            forcing.check_finite_window(s, cfg.steps)  # also fill values: coupling.checks.state_value_problem
    if isinstance(initial_state, (str, Path)):
        initial_states_from_pairs(initial_state, cfg.start_indices, variables, shape)


def state_arrays(state) -> dict[str, np.ndarray]:
    """A state mapping or Dataset as {name: float64 array}."""
    if isinstance(state, xr.Dataset):
        return {k: np.asarray(v.values, dtype=np.float64) for k, v in state.data_vars.items()}
    return {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}


# --------------------------------------------------------------------------------------------- conditioning
def pair_conditioning(corrector, ds: xr.Dataset, path: Path, idx, mask: np.ndarray | None = None
                      ) -> dict[str, np.ndarray]:
    """The corrector's conditioning fields {name: (T, ny, nx); mask (ny, nx)} at time indices `idx` (a slice or
    an index array) of a pair/forecast file. `mask`: the file's `mask`, else `mask` (default all ocean);
    `drift_steps`: the file's counts, else 0 (forecasts started from the reference or an analysis). A missing
    field or NaN/inf: InputError naming the file and the field."""
    from corrector.fields import pair_file_field  # loads torch: the ML side only (physics ranks start without it)

    part = ds.isel(time=idx)
    shape = (part.sizes["y"], part.sizes["x"])
    cond = {}
    for name in corrector.conditioning_names:
        cond[name] = pair_file_field(name, part, part.sizes["time"], shape, mask)
        if cond[name] is None:
            raise InputError(str(path), name, "missing: the checkpoint conditions on it")
        finite = np.isfinite(cond[name])
        if not finite.all():
            where = ("" if finite.ndim < 3 else
                     f" at time index {np.arange(ds.sizes['time'])[idx][~finite.all(axis=(1, 2))][0]}")
            raise InputError(str(path), name, f"NaN/inf{where}")
    return cond


def preflight_pairs(ds: xr.Dataset, path: Path, corrector, variables: Sequence[str],
                    check_values: bool = True) -> np.ndarray | None:
    """Everything `icecorr correct` reads from a pair file, checked before the output file is created: the
    checkpoint's units (the table's), at least one record, increasing axes, variables present with dims
    (time, y, x), the checkpoint's grid and units, 12 h windows, a mask of shape (y, x) with an ocean cell and the
    checkpoint's land mask, and (if `check_values`) the values (`coupling.checks.state_value_problem`: finite, no
    fill values, states in their physical range). Returns the mask (or None)."""
    from corrector.fields import MASK  # loads torch: the ML side only (physics ranks start without it)

    check_corrector_units(corrector)
    check_has_records(ds, path)
    check_axes(ds, path)
    cgrid = getattr(corrector, "grid", {}) or {}
    shape = (int(cgrid["ny"]), int(cgrid["nx"])) if "ny" in cgrid and "nx" in cgrid else None
    src = getattr(corrector, "source", None) or "the checkpoint"
    names = [f"forecast_{v}" for v in variables]
    names += [n for n in corrector.conditioning_names if n != MASK and n not in names]
    for name in names:
        what = "missing: nothing to correct" if name.startswith("forecast_") else \
            "missing: the checkpoint conditions on it"
        var = check_variable(ds, path, name, what=what)
        if shape is not None and tuple(var.shape[-2:]) != shape:
            raise InputError(str(path), name, f"grid (y, x) = {tuple(var.shape[-2:])} does not match the grid "
                                              f"{shape} the checkpoint {src} was trained on")
    check_pair_times(ds, path)
    mask = None
    if MASK in ds.variables:
        check_variable(ds, path, MASK, dims=("y", "x"))
        mask = ds[MASK].values.astype(np.float64)
        check_mask(path, mask, corrector)
    dx_file = ds.attrs.get("grid_dx")
    if dx_file is not None and cgrid.get("dx") and not np.isclose(float(dx_file), float(cgrid["dx"]), rtol=1e-6):
        raise InputError(str(path), "grid_dx", f"grid spacing {float(dx_file):g} m differs from the checkpoint's "
                                               f"{float(cgrid['dx']):g} m ({src})")
    if check_values:
        check_file_values(ds, path, names)
    return mask
