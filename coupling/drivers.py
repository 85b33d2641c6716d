"""Drivers of `icecorr couple | emulate | correct`: set up forcing, models, corrector and files, then run.

    run_couple(cfg, initial_state, forcing_source, out_path, restart=None, comm=WORLD) -> list[Path]
    run_emulate(cfg, initial_state, forcing_source, out_path, restart=None, comm=WORLD) -> list[Path]
    run_correct(cfg, forecasts_path, out_path, comm=WORLD) -> Path

`comm` is an mpi4py communicator, `WORLD` (MPI.COMM_WORLD, imported only then) or None (one process, no MPI).
A run covers one or more windows (`cfg.start_indices`: forcing indices where windows start) of `cfg.members` members;
members × windows are batched on the ML rank(s). One window writes `out_path`; several write
`<stem>_w<start index><suffix>` each (see `output_paths`).
"""
from __future__ import annotations

import hashlib
import time
import json
import re
import shlex
import sys
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import xarray as xr
import yaml

from icecorr.base.mpi import resolve_comm
from icecorr.base.variables import ML_VARIABLES, STEP_SECONDS
from .config import CorrectConfig, CoupleConfig
from .coupler import (TAG_FIELDS, TAG_HELLO, TAG_OUTPUT, TAG_REPLY, HandshakeError, Layout, _split,
                      abort_on_error, check_description, model_description, recv_object, restore_state,
                      send_object, wait_all, CoupledRun, check_finite, hidden_state, set_hidden_state)
from .checks import check_finite as check_finite_values, check_pair_times, check_variable
from icecorr.base.files import open_netcdf
from icecorr.base.errors import InputError
from .output import TrajectoryWriter, to_datetime
from .restart import (SEEDING, RestartState, check_continuation, read_restart, restart_path, write_restart)

WORLD = "world"
STEP = timedelta(seconds=STEP_SECONDS)
PERTURB_STREAM = 0x5EED  # extra SeedSequence word: initial perturbations never share a stream with the sampler

# CF metadata of the ML variables, used when no model describes them (emulate, correct)
VARIABLE_ATTRS = {
    "sic": {"units": "1", "standard_name": "sea_ice_area_fraction", "long_name": "sea-ice concentration"},
    "sit": {"units": "m", "standard_name": "sea_ice_thickness",
            "long_name": "thickness of the ice-covered part (volume per ice area)"},
    "snt": {"units": "m", "standard_name": "surface_snow_thickness", "long_name": "snow thickness on ice"},
    "siu": {"units": "m s-1", "standard_name": "sea_ice_x_velocity",
            "long_name": "sea-ice x-velocity on the east cell face (C-grid)"},
    "siv": {"units": "m s-1", "standard_name": "sea_ice_y_velocity",
            "long_name": "sea-ice y-velocity on the north cell face (C-grid)"},
}


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("icecorr")
    except Exception:  # noqa: BLE001 - metadata is optional in a source checkout
        return "unknown"


# ------------------------------------------------------------------------------------------------------- forcing
class ForcingSource:
    """Coarse forcing by 12 h step index: `pair(i)` = snapshots at index i and i+1 ({variable: (ny, nx)})."""

    mask: np.ndarray | None = None

    def pair(self, index: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        raise NotImplementedError

    def time(self, index: int) -> datetime:
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
        return self._snap(index), self._snap(index + 1)

    def time(self, index: int) -> datetime:
        return self.start + index * STEP


class FileForcing(ForcingSource):
    """Forcing from a NetCDF: a training-pair file (`{f}_t0`, `{f}_t1` at window starts, `run` labels) or a forcing
    file of 12-hourly snapshots `{f}(time, y, x)`. Only the records a step needs are read."""

    def __init__(self, path: str | Path, variables: Sequence[str] | None = None):
        from icecorr.base.variables import FORCING_VARIABLES

        self.path = Path(path)
        self.ds = open_netcdf(self.path, "forcing file")
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
        self.n = self.ds.sizes["time"]
        self._read = lru_cache(maxsize=16)(self._read_uncached)

    def _read_uncached(self, name: str, index: int) -> np.ndarray:
        arr = self.ds[name].isel(time=index).values.astype(np.float64)
        if not np.isfinite(arr).all():
            raise InputError(str(self.path), name, f"NaN/inf at time index {index}")
        return arr

    def pair(self, index: int):
        last = self.n - 1 if self.is_pair_file else self.n - 2
        if not 0 <= index <= last:
            raise InputError(str(self.path), "time", f"no forcing for step index {index} (available 0…{last})")
        if self.is_pair_file:
            return ({f: self._read(f"{f}_t0", index) for f in self.variables},
                    {f: self._read(f"{f}_t1", index) for f in self.variables})
        return ({f: self._read(f, index) for f in self.variables},
                {f: self._read(f, index + 1) for f in self.variables})

    def time(self, index: int) -> datetime:
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
        """Pre-flight: every forcing value a window of `n_steps` from `start` uses is finite (InputError naming the
        file, the variable and the time index otherwise), so bad forcing fails before any output is written."""
        last = start + n_steps - 1 if self.is_pair_file else start + n_steps
        first = max(start, 0)
        check_finite_values(self.ds.isel(time=slice(first, last + 1)), self.path, self._names(), offset=first)

    def check_window(self, start: int, n_steps: int) -> None:
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


# ------------------------------------------------------------------------------------------------------- windows
def initial_states_from_pairs(path: str | Path, start_indices: Sequence[int],
                              variables: Sequence[str] = ML_VARIABLES,
                              shape: tuple[int, int] | None = None) -> list[dict[str, np.ndarray]]:
    """The coarse-grained truth `initial_{v}` at each start index of a training-pair file: one state per window.
    Missing variables, wrong dims/units, a (y, x) shape other than `shape` (if given) or NaN/inf: InputError."""
    path = Path(path)
    with open_netcdf(path, "pair file") as ds:
        for v in variables:
            check_variable(ds, path, f"initial_{v}", shape=shape, what="missing initial state variable")
        out = []
        for t in start_indices:
            if not 0 <= t < ds.sizes.get("time", 0):
                raise InputError(str(path), "time", f"start index {t} outside 0…{ds.sizes.get('time', 0) - 1}")
            state = {}
            for v in variables:
                name = f"initial_{v}"
                state[v] = ds[name].isel(time=t).values.astype(np.float64)
                if not np.isfinite(state[v]).all():
                    raise InputError(str(path), name, f"NaN/inf at time index {t}")
            out.append(state)
    return out


def _window_states(initial_state, start_indices: Sequence[int], variables: Sequence[str] = ML_VARIABLES,
                   shape: tuple[int, int] | None = None) -> list[Mapping[str, np.ndarray]]:
    """One initial state per window from a pair-file path, one mapping/Dataset (all windows) or a sequence."""
    if isinstance(initial_state, (str, Path)):
        return initial_states_from_pairs(initial_state, start_indices, variables, shape)
    if isinstance(initial_state, (Mapping, xr.Dataset)):
        return [initial_state] * len(start_indices)
    states = list(initial_state)
    if len(states) != len(start_indices):
        raise ValueError(f"{len(states)} initial states for {len(start_indices)} windows (start_indices)")
    return states


def _preflight_inputs(forcing: ForcingSource, cfg: CoupleConfig, shape: tuple[int, int] | None, initial_state,
                      variables: Sequence[str] = ML_VARIABLES, what: str = "the model grid") -> None:
    """Before any model, corrector or output file: the forcing (and a pair-file initial state) fit the grid `shape`
    and every forcing value the windows use is finite. Bad input then fails without leaving an output file."""
    if isinstance(forcing, FileForcing):
        if shape is not None:
            forcing.check_grid(shape, what)
        for s in cfg.start_indices:
            forcing.check_finite_window(s, cfg.steps)
    if isinstance(initial_state, (str, Path)):
        initial_states_from_pairs(initial_state, cfg.start_indices, variables, shape)


def output_paths(out_path: str | Path, start_indices: Sequence[int]) -> list[Path]:
    """The trajectory file of each window: `out_path` itself for one window, else `<stem>_w<start:05d><suffix>`."""
    out_path = Path(out_path)
    if len(start_indices) == 1:
        return [out_path]
    return [out_path.with_name(f"{out_path.stem}_w{s:05d}{out_path.suffix}") for s in start_indices]


def _as_arrays(state) -> dict[str, np.ndarray]:
    if isinstance(state, xr.Dataset):
        return {k: np.asarray(v.values, dtype=np.float64) for k, v in state.data_vars.items()}
    return {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}


# ---------------------------------------------------------------------------------------------------- correction
def checkpoint_id(corrector) -> str:
    """sha256 (first 16 hex) of the checkpoint file, or 'zero' for the identity corrector."""
    if getattr(corrector, "is_zero", False):
        return "zero"
    src = getattr(corrector, "source", None)
    if src and Path(src).exists():
        h = hashlib.sha256()
        with open(src, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return f"sha256:{h.hexdigest()[:16]} ({src})"
    return "in-memory"


def load_corrector(checkpoint: str | None, mode: str, grid_shape: tuple[int, int] | None = None):
    """The corrector of a run: the checkpoint, or the zero (identity) corrector when none is given."""
    from corrector.inference import Corrector

    if checkpoint is None:
        grid = {"ny": grid_shape[0], "nx": grid_shape[1]} if grid_shape else None
        return Corrector.zero(grid=grid, mode=mode)
    return Corrector.load(checkpoint)


def _check_mode(corrector, mode: str, what: str) -> None:
    if corrector.mode != mode:
        hint = "icecorr emulate" if corrector.mode == "emulator" else "icecorr couple/correct"
        raise InputError(getattr(corrector, "source", None), "mode",
                         f"the checkpoint is a {corrector.mode!r} corrector; {what} needs {mode!r} (use {hint})")


def build_conditioning(names: Sequence[str], variables: Sequence[str], initial: np.ndarray,
                       forecast: np.ndarray | None, forcing_t0: Mapping[str, np.ndarray],
                       forcing_t1: Mapping[str, np.ndarray], mask: np.ndarray | None,
                       drift_steps=0) -> dict[str, np.ndarray]:
    """Conditioning fields by name from (B, n_vars, ny, nx) states and (B, ny, nx) forcing; `drift_steps`
    (scalar or (B,)): 12 h steps since the states were last the reference (the corrector clamps them)."""
    from corrector.fields import DRIFT_STEPS, drift_steps_field

    ny, nx = initial.shape[-2:]
    out = {}
    for name in names:
        if name == DRIFT_STEPS:
            out[name] = drift_steps_field(drift_steps, (ny, nx), batch=initial.shape[0])
            continue
        if name.startswith("initial_") and name[8:] in variables:
            out[name] = initial[:, variables.index(name[8:])]
        elif name.startswith("forecast_") and name[9:] in variables and forecast is not None:
            out[name] = forecast[:, variables.index(name[9:])]
        elif name.endswith("_t0") and name[:-3] in forcing_t0:
            out[name] = forcing_t0[name[:-3]]
        elif name.endswith("_t1") and name[:-3] in forcing_t1:
            out[name] = forcing_t1[name[:-3]]
        elif name == "mask":
            out[name] = np.ones((ny, nx)) if mask is None else mask
        else:
            raise InputError(None, name, "the checkpoint conditions on this field but the run does not provide it "
                                         f"(forcing has {sorted(forcing_t0)})")
    return out


class EnsembleCorrection:
    """ML-side correction of ensemble slots (slot = window × members + member) at a step: one batched sample.

    Residual mode corrects the physics forecast; emulator mode advances the initial state by the sampled 12 h
    tendency, or replaces it by the sampled next state for the corrector's `state_variables` (`Corrector.apply`).
    Member k of window w at step n uses seed member_seeds(seed, start_w, n, members)[k].
    """

    def __init__(self, corrector, forcing: ForcingSource, start_indices: Sequence[int], members: int, seed: int,
                 sampler_steps: int | None, mask: np.ndarray | None = None):
        self.c, self.forcing = corrector, forcing
        self.starts, self.members, self.seed, self.steps = list(start_indices), members, seed, sampler_steps
        self.mask = mask if mask is not None else forcing.mask
        self.variables = list(corrector.variables)
        self.bounds_counts: dict[str, int] = {}

    def seeds(self, slots: range, step: int) -> np.ndarray:
        from corrector.seeding import member_seeds

        per_window = {w: member_seeds(self.seed, self.starts[w], step, self.members)
                      for w in sorted({s // self.members for s in slots})}
        return np.array([[per_window[s // self.members][s % self.members]] for s in slots], dtype=np.int64)

    def _forcing(self, slots: range, step: int):
        pairs = {w: self.forcing.pair(self.starts[w] + step) for w in sorted({s // self.members for s in slots})}
        names = pairs[next(iter(pairs))][0].keys()
        f0 = {f: np.stack([pairs[s // self.members][0][f] for s in slots]) for f in names}
        f1 = {f: np.stack([pairs[s // self.members][1][f] for s in slots]) for f in names}
        return f0, f1

    def __call__(self, step: int, slots: range, initial: np.ndarray, forecast: np.ndarray | None) -> np.ndarray:
        f0, f1 = self._forcing(slots, step)
        cond = build_conditioning(self.c.conditioning_names, self.variables, initial, forecast, f0, f1, self.mask,
                                  drift_steps=step)  # the run started from the reference (or an analysis)
        sample = self.c.sample(cond, members=1, steps=self.steps, seeds=self.seeds(slots, step))
        base_arr = forecast if self.c.mode == "residual" else initial
        base = {v: base_arr[:, i] for i, v in enumerate(self.variables)}
        new = self.c.apply(base, sample, mask=self.mask)
        for k, n in getattr(self.c, "last_bounds_counts", {}).items():
            self.bounds_counts[k] = self.bounds_counts.get(k, 0) + int(n)
        return np.stack([new[v][:, 0] for v in self.variables], axis=1)


def make_perturbation(amplitude: float, seed: int, start_indices: Sequence[int], members: int,
                      variables: Sequence[str], mask: np.ndarray | None = None):
    """Initial perturbation of each member (None if amplitude is 0): white Gaussian noise, std `amplitude` for
    sic where there is ice and relative for sit/snt; then physical bounds. Seeded by (seed, start, member)."""
    if amplitude <= 0:
        return None
    from corrector.bounds import apply_bounds

    def perturb(slots: range, initial: np.ndarray) -> np.ndarray:
        out = np.array(initial, dtype=np.float64)
        for b, slot in enumerate(slots):
            w, m = divmod(slot, members)
            rng = np.random.default_rng([seed, start_indices[w], m, PERTURB_STREAM])
            for i, v in enumerate(variables):
                noise = rng.standard_normal(out.shape[-2:])
                if v == "sic":
                    out[b, i] += amplitude * noise * (out[b, i] > 0)
                elif v in ("sit", "snt"):
                    out[b, i] *= 1.0 + amplitude * noise
            if mask is not None:
                out[b] *= (mask > 0.5)
        bounded, _ = apply_bounds({v: out[:, i] for i, v in enumerate(variables)})
        return np.stack([bounded[v] for v in variables], axis=1)

    return perturb


# --------------------------------------------------------------------------------------------------- output files
class EnsembleOutput:
    """Writer-rank side of a run: one trajectory file per window, restart files, CF attributes."""

    def __init__(self, cfg: CoupleConfig, paths: Sequence[Path], variables: Sequence[str],
                 attrs: Mapping[str, Mapping[str, str]], grid_shape: tuple[int, int], dx: float,
                 forcing: ForcingSource, global_attrs: Mapping[str, object], mode: str,
                 restart: RestartState | None, state_names: Sequence[str], state_units: Mapping[str, str]):
        self.cfg, self.paths, self.variables = cfg, list(paths), list(variables)
        self.forcing, self.mode, self.dx = forcing, mode, dx
        self.state_names, self.state_units = list(state_names), dict(state_units)
        self.global_attrs = dict(global_attrs)
        opts = cfg.output_options
        declared = {v: dict(attrs[v]) for v in self.variables}
        if opts.write_forecast and mode == "couple":
            declared.update({f"forecast_{v}": {**attrs[v], "long_name": f"uncorrected 12 h forecast of {v}"}
                             for v in self.variables})
        if opts.write_correction and mode == "couple":
            declared.update({f"correction_{v}": {"units": attrs[v].get("units", ""),
                                                 "long_name": f"applied correction of {v} (after bounds)"}
                             for v in self.variables})
        self.writers = []
        ny, nx = grid_shape
        for w, (path, start) in enumerate(zip(self.paths, cfg.start_indices)):
            kw = dict(variables=declared, members=cfg.members, ny=ny, nx=nx, dx=dx, start=forcing.time(start),
                      precision=opts.precision,
                      global_attrs={**self.global_attrs, "window_start_index": int(start),
                                    "window_start_time": f"{forcing.time(start):%Y-%m-%dT%H:%M:%S}"})
            if restart is not None:
                old = Path(restart.outputs[w]) if w < len(restart.outputs) else path
                writer = TrajectoryWriter.continue_from(old, restart.step + 1, path, **kw)
                if writer.n_records == 0:
                    # the old output is gone or short: the new file starts at the restart state (times say so)
                    writer.append(forcing.time(start + restart.step), restart.step,
                                  {v: restart.states[v][w] for v in self.variables if v in restart.states})
            else:
                writer = TrajectoryWriter(path, **kw)
            self.writers.append(writer)
        self.restart_dir = Path(cfg.restart_dir) if cfg.restart_dir else self.paths[0].parent
        self.last_restart: Path | None = None

    def record(self, step: int, initial: np.ndarray, forecast: np.ndarray | None, corrected: np.ndarray) -> None:
        """Append the record after `step` completed steps; arrays (n_slots, n_vars, ny, nx)."""
        m = self.cfg.members
        for w, (writer, start) in enumerate(zip(self.writers, self.cfg.start_indices)):
            sl = slice(w * m, (w + 1) * m)
            fields = {v: corrected[sl, i] for i, v in enumerate(self.variables)}
            if step > 0 and forecast is not None:
                if f"forecast_{self.variables[0]}" in writer.variables:
                    fields.update({f"forecast_{v}": forecast[sl, i] for i, v in enumerate(self.variables)})
                if f"correction_{self.variables[0]}" in writer.variables:
                    fields.update({f"correction_{v}": corrected[sl, i] - forecast[sl, i]
                                   for i, v in enumerate(self.variables)})
            writer.append(self.forcing.time(start + step), step, fields)

    def restart(self, step: int, states: np.ndarray, extras: np.ndarray | None = None) -> None:
        """Write the restart file after `step` completed steps; states (n_slots, n_state, ny, nx), extras
        (n_slots, n) hidden model state (see coupler.hidden_state)."""
        n_win, m = len(self.cfg.start_indices), self.cfg.members
        ny, nx = states.shape[-2:]
        r = RestartState(mode=self.mode, step=step, start_indices=list(self.cfg.start_indices), members=m,
                         seed=self.cfg.seed,
                         states={n: states[:, j].reshape(n_win, m, ny, nx) for j, n in enumerate(self.state_names)},
                         extras=None if extras is None else extras.reshape(n_win, m, -1),
                         units=self.state_units, outputs=[str(p) for p in self.paths],
                         checkpoint_id=str(self.global_attrs.get("checkpoint_id", "")), dx=self.dx,
                         config=str(self.global_attrs.get("config", "")))
        stem = re.sub(r"_w\d{5}$", "", self.paths[0].stem) if len(self.paths) > 1 else self.paths[0].stem
        self.last_restart = write_restart(restart_path(self.restart_dir, stem, step), r)

    def close(self, status: str = "complete") -> None:
        for w in self.writers:
            w.close(status)


def _global_attrs(verb: str, cfg, corrector, command: str | None, config_text: str | None) -> dict:
    sampler = getattr(getattr(corrector, "config", None), "sampler", None)
    return {
        "title": f"icecorr {verb} output",
        "producer": f"icecorr {verb}",
        "icecorr_version": _package_version(),
        "command": command if command is not None else shlex.join(sys.argv),
        "config": config_text if config_text is not None else yaml.safe_dump(cfg.model_dump(mode="json"),
                                                                             sort_keys=False),
        "checkpoint_id": checkpoint_id(corrector),
        "corrector_kind": f"{getattr(corrector, 'kind', '?')}/{getattr(corrector, 'mode', '?')}",
        "sampler": json.dumps({**(sampler.model_dump(mode="json") if sampler is not None else {}),
                               "steps_override": getattr(cfg, "sampler_steps", None)}),
        "seeding": f"seed={cfg.seed}; {SEEDING}",
        "history": f"{datetime.now():%Y-%m-%dT%H:%M:%S} created by icecorr {verb}",
    }


# ------------------------------------------------------------------------------------------------------- couple
def _grid_of(state: Mapping[str, np.ndarray], grid, model) -> tuple[tuple[int, int], float]:
    shape = next(iter(state.values())).shape
    if grid is not None:
        return (grid.ny, grid.nx), float(grid.dx)
    g = getattr(model, "grid", None)
    if g is not None and hasattr(g, "dx"):
        return shape, float(g.dx)
    return shape, 1.0


def run_couple(cfg: CoupleConfig, initial_state, forcing_source, out_path: str | Path | None = None,
               restart: str | Path | None = None, comm=WORLD, *, grid=None, physics=None,
               model_factory: Callable[[], object] | None = None, corrector=None, role: str | None = None,
               command: str | None = None, config_text: str | None = None, stats: dict | None = None) -> list[Path]:
    """Coupled ensemble run (physics ranks ⇄ ML ranks, or one process); returns the trajectory file of each window.

    initial_state: a pair-file path (`initial_{v}` at each start index), one state mapping/Dataset for all windows,
    or one per window. Models come from `model_factory()` (default `CoarseModel(grid, physics)`); the corrector from
    `corrector` (already loaded), else `cfg.checkpoint`, else the zero corrector. `restart`: a restart file to
    continue from (bit-identical to an uninterrupted run). `stats`, if given, receives timings and bound counts.
    """
    world = resolve_comm(comm)
    out_path = Path(out_path if out_path is not None else cfg.output)
    paths = output_paths(out_path, cfg.start_indices)
    rank = world.Get_rank() if world is not None else 0
    with abort_on_error("couple", rank, "?", world):
        lay = Layout.build(world, len(cfg.start_indices) * cfg.members, cfg.ml_ranks, role)
    with abort_on_error("couple", rank, lay.role, world):
        try:
            _couple(cfg, lay, world, initial_state, forcing_source, paths, restart, grid, physics, model_factory,
                    corrector, command, config_text, stats)
        finally:
            lay.free()
    return paths


def _couple(cfg, lay: Layout, world, initial_state, forcing_source, paths, restart, grid, physics, model_factory,
            corrector, command, config_text, stats) -> None:
    forcing = open_forcing(forcing_source)
    for s in cfg.start_indices:
        forcing.check_window(s, cfg.steps)
    grid_shape = (grid.ny, grid.nx) if grid is not None else None
    _preflight_inputs(forcing, cfg, grid_shape, initial_state if restart is None else None)
    rstate = None
    if restart is not None:
        rstate = read_restart(restart)
        check_continuation(restart, rstate, "couple", cfg.start_indices, cfg.members, cfg.seed)
        if rstate.step > cfg.steps:
            raise InputError(str(restart), "step", f"restart is at step {rstate.step}, beyond n_steps={cfg.steps}")
    m = cfg.members
    role = lay.role
    timeout = cfg.timeouts

    # ---- physics side: one model per slot, started from the window state or the restart
    models, desc = [], None
    if role in ("physics", "both"):
        if model_factory is None:
            from .bridge import CoarseModel

            def model_factory():
                return CoarseModel(grid, physics)
        states = None if rstate is not None else _window_states(initial_state, cfg.start_indices, shape=grid_shape)
        for slot in lay.my_slots:
            model = model_factory()
            w, k = divmod(slot, m)
            if rstate is not None:
                restore_state(model, rstate.member_state(w, k))
                if rstate.extras is not None:
                    set_hidden_state(model, rstate.extras[w, k])
            else:
                model.set_state(_as_arrays(states[w]))
            models.append(model)
        probe = models[0] if models else model_factory()
        st = probe.get_state()
        shape, dx = _grid_of({k: st[k].values for k in st.data_vars}, grid, probe)
        desc = model_description(shape, dx, {k: st[k].attrs.get("units", "") for k in st.data_vars},
                                 list(st.data_vars))
        desc["attrs"] = {k: dict(st[k].attrs) for k in st.data_vars}
        desc["n_extras"] = int(hidden_state(probe).size)
        desc["rank"] = lay.rank

    # ---- ML side: corrector; handshake with every physics rank
    descs: dict[int, dict] = {}
    if role in ("ml", "both"):
        if corrector is None:
            corrector = load_corrector(cfg.checkpoint, "residual", tuple(desc["grid"]) if desc else None)
        _check_mode(corrector, "residual", "icecorr couple")
    if role == "physics":
        for ml in lay.ml_ranks:
            send_object(lay.comm, desc, ml, TAG_HELLO, timeout.handshake, "handshake")
        reply = recv_object(lay.comm, lay.ml_of[lay.rank], TAG_REPLY, timeout.handshake, "handshake reply")
        desc_ref, variables = reply["reference"], reply["variables"]
    else:
        if role == "ml":
            for p in lay.physics_ranks:
                descs[p] = recv_object(lay.comm, p, TAG_HELLO, timeout.handshake, "handshake")
        else:
            descs[0] = desc
        desc_ref = descs[min(descs)]
        cgrid = corrector.grid
        cshape = (int(cgrid["ny"]), int(cgrid["nx"])) if "ny" in cgrid and "nx" in cgrid else None
        for p, d in descs.items():
            try:
                check_description(d, desc_ref, corrector.variables, getattr(corrector, "variables_units", {}),
                                  cshape, f"physics rank {p}")
            except HandshakeError as exc:
                text = str(exc)
                if getattr(corrector, "source", None) is None or not ("checkpoint" in text or "corrector" in text):
                    raise
                # the checkpoint does not fit the model of this run: a user input error naming the checkpoint
                raise InputError(str(corrector.source), "grid" if "grid" in text else "variables",
                                 f"does not fit this run: {text}") from None
        if role == "ml":
            for p in lay.served_by(lay.rank) + [p for p in lay.physics_ranks if not len(lay.slots_of[p])
                                                 and lay.ml_of[p] == lay.rank]:
                send_object(lay.comm, {"reference": desc_ref, "variables": list(corrector.variables)}, p,
                            TAG_REPLY, timeout.handshake, "handshake reply")
        variables = list(corrector.variables)
    shape = tuple(desc_ref["grid"])

    # ---- writer: files; others: nothing to open
    output = None
    if lay.rank == lay.writer:
        attrs = {v: {**VARIABLE_ATTRS.get(v, {}), **{k: a for k, a in desc_ref["attrs"].get(v, {}).items()
                                                      if isinstance(a, (str, int, float))}} for v in variables}
        output = EnsembleOutput(cfg, paths, variables, attrs, shape, desc_ref["dx"], forcing,
                                _global_attrs("couple", cfg, corrector, command, config_text), "couple", rstate,
                                desc_ref["state_names"], desc_ref["units"])
    correct = perturb = None
    if role in ("ml", "both"):
        correct = EnsembleCorrection(corrector, forcing, cfg.start_indices, m, cfg.seed, cfg.sampler_steps)
        perturb = make_perturbation(cfg.initial_perturbation, cfg.seed, cfg.start_indices, m, variables,
                                    forcing.mask)
    elif cfg.initial_perturbation > 0:
        perturb = True  # physics ranks only need to know that the initial exchange changes their state
    engine = CoupledRun(
        lay, world, variables, desc_ref["state_names"], shape, m, models,
        forcing_pair=lambda slot, step: forcing.pair(cfg.start_indices[slot // m] + step),
        correct=lambda step, slots, ini, fc: correct(step, slots, ini, fc),
        perturb=perturb, on_record=output.record if output else None,
        on_restart=output.restart if output else None, restart_interval=cfg.restart_interval,
        step_timeout=timeout.step, n_extras=desc_ref["n_extras"])
    status = "failed"
    try:
        first = rstate.step if rstate is not None else 0
        timings = engine.run(first, cfg.steps, initial_exchange=rstate is None)
        status = "complete"
    finally:
        if output is not None:
            output.close(status)
    if stats is not None:
        stats["timings"] = timings
        stats["layout"] = lay
        if correct is not None:
            stats["bounds_counts"] = dict(correct.bounds_counts)
        if output is not None:
            stats["last_restart"] = output.last_restart


# ------------------------------------------------------------------------------------------------------ emulate
def run_emulate(cfg: CoupleConfig, initial_state, forcing_source, out_path: str | Path | None = None,
                restart: str | Path | None = None, comm=WORLD, *, corrector=None, command: str | None = None,
                config_text: str | None = None, stats: dict | None = None) -> list[Path]:
    """Emulator ensemble: an emulator-mode corrector advances the ML variables in autoregressive 12 h steps.

    Same windows, members, seeding, output and restart files as `run_couple`; under MPI every rank samples a
    contiguous block of slots (members × windows) and rank 0 writes.
    """
    world = resolve_comm(comm)
    out_path = Path(out_path if out_path is not None else cfg.output)
    paths = output_paths(out_path, cfg.start_indices)
    rank = world.Get_rank() if world is not None else 0
    size = world.Get_size() if world is not None else 1
    with abort_on_error("emulate", rank, "ml", world):
        run_comm = world.Dup() if size > 1 else None
        try:
            _emulate(cfg, run_comm, rank, size, initial_state, forcing_source, paths, restart, corrector, command,
                     config_text, stats)
        finally:
            if run_comm is not None:
                run_comm.Free()
    return paths


def _emulate(cfg, comm, rank, size, initial_state, forcing_source, paths, restart, corrector, command,
             config_text, stats) -> None:
    forcing = open_forcing(forcing_source)
    for s in cfg.start_indices:
        forcing.check_window(s, cfg.steps)
    m, n_slots = cfg.members, len(cfg.start_indices) * cfg.members
    blocks = _split(n_slots, size)
    mine = blocks[rank]
    if corrector is None:
        corrector = load_corrector(cfg.checkpoint, "emulator")
    _check_mode(corrector, "emulator", "icecorr emulate")
    variables = list(corrector.variables)
    cgrid = getattr(corrector, "grid", {}) or {}
    cshape = (int(cgrid["ny"]), int(cgrid["nx"])) if "ny" in cgrid and "nx" in cgrid else None
    _preflight_inputs(forcing, cfg, cshape, initial_state if restart is None else None, variables,
                      "the checkpoint's grid")
    rstate = None
    if restart is not None:
        rstate = read_restart(restart)
        check_continuation(restart, rstate, "emulate", cfg.start_indices, m, cfg.seed)
        missing = [v for v in variables if v not in rstate.states]
        if missing:
            raise InputError(str(restart), missing[0], "missing from the restart file")
        full = np.stack([rstate.states[v].reshape(n_slots, *rstate.states[v].shape[2:]) for v in variables], 1)
    else:
        states = [_as_arrays(s) for s in _window_states(initial_state, cfg.start_indices, variables)]
        for w, st in enumerate(states):
            missing = [v for v in variables if v not in st]
            if missing:
                raise InputError(None, missing[0], f"initial state of window {w} lacks it")
        full = np.stack([np.stack([states[s // m][v] for v in variables]) for s in range(n_slots)])
    shape = full.shape[-2:]
    if "ny" in cgrid and (int(cgrid["ny"]), int(cgrid["nx"])) != tuple(shape):
        raise InputError(None, "grid", f"initial state is {tuple(shape)} (ny, nx) but the checkpoint was trained on "
                                       f"({cgrid['ny']}, {cgrid['nx']})")
    state = np.ascontiguousarray(full[mine.start:mine.stop])
    correct = EnsembleCorrection(corrector, forcing, cfg.start_indices, m, cfg.seed, cfg.sampler_steps)
    perturb = make_perturbation(cfg.initial_perturbation, cfg.seed, cfg.start_indices, m, variables, forcing.mask)

    output = None
    if rank == 0:
        units = getattr(corrector, "variables_units", {}) or {}
        attrs = {v: {**VARIABLE_ATTRS.get(v, {"units": ""}), **({"units": units[v]} if v in units else {})}
                 for v in variables}
        dx = float(cgrid.get("dx", 1.0)) if cgrid else 1.0
        output = EnsembleOutput(cfg, paths, variables, attrs, tuple(shape), dx, forcing,
                                _global_attrs("emulate", cfg, corrector, command, config_text), "emulate", rstate,
                                variables, {v: attrs[v]["units"] for v in variables})
        everything = np.zeros((n_slots, len(variables), *shape))
    timeout = cfg.timeouts.step

    def emit(step: int, write_restart_now: bool) -> None:
        if comm is None or size == 1:
            gathered = state
        elif rank != 0:
            if len(mine):
                wait_all([comm.Isend(state, dest=0, tag=TAG_OUTPUT)], timeout, "output delivery to rank 0", rank)
            return
        else:
            everything[mine.start:mine.stop] = state
            reqs = [comm.Irecv(everything[b.start:b.stop], source=r, tag=TAG_OUTPUT)
                    for r, b in enumerate(blocks) if r != 0 and len(b)]
            wait_all(reqs, timeout, "emulated states from the other ranks", rank)
            gathered = everything
        output.record(step, None, None, gathered)
        if write_restart_now:
            output.restart(step, gathered)

    status = "failed"
    t_ml, t_cycle = [], []
    try:
        first = rstate.step if rstate is not None else 0
        if rstate is None:
            if perturb is not None and len(mine):
                state = np.ascontiguousarray(perturb(mine, state))
            emit(0, False)
        for step in range(first, cfg.steps):
            t0 = time.perf_counter()
            if len(mine):
                new = correct(step, mine, state, None)
                check_finite(f"emulated state at step {step}", new, variables, mine, m)
                state = np.ascontiguousarray(new)
            t_ml.append(time.perf_counter() - t0)
            done = step + 1
            emit(done, bool(cfg.restart_interval) and done % cfg.restart_interval == 0)
            t_cycle.append(time.perf_counter() - t0)
        status = "complete"
    finally:
        if output is not None:
            output.close(status)
    if stats is not None:
        stats.update(ml=t_ml, cycle=t_cycle, bounds_counts=dict(correct.bounds_counts),
                     last_restart=output.last_restart if output else None)


# ------------------------------------------------------------------------------------------------------ correct
def pair_conditioning(corrector, ds: xr.Dataset, path: Path, idx, mask: np.ndarray | None = None
                      ) -> dict[str, np.ndarray]:
    """The corrector's conditioning fields {name: (T, ny, nx); mask (ny, nx)} at time indices `idx` (a slice or
    an index array) of a pair/forecast file. `mask`: the file's `mask`, else `mask` (default all ocean);
    `drift_steps`: the file's counts, else 0 (forecasts started from the reference or an analysis). A missing
    field or NaN/inf: InputError naming the file and the field."""
    from corrector.fields import DRIFT_STEPS, MASK, drift_steps_field

    part = ds.isel(time=idx)
    shape = (part.sizes["y"], part.sizes["x"])
    cond = {}
    for name in corrector.conditioning_names:
        if name == MASK:
            cond[name] = (np.asarray(part[MASK].values, np.float64) if MASK in part else
                          np.ones(shape) if mask is None else mask)
        elif name == DRIFT_STEPS:
            steps = part[name].values if name in part else np.zeros(part.sizes["time"])
            cond[name] = drift_steps_field(steps, shape)  # the corrector clamps
        elif name not in part:
            raise InputError(str(path), name, "missing: the checkpoint conditions on it")
        else:
            cond[name] = np.asarray(part[name].values, np.float64)
        finite = np.isfinite(cond[name])
        if not finite.all():
            where = ("" if finite.ndim < 3 else
                     f" at time index {np.arange(ds.sizes['time'])[idx][~finite.all(axis=(1, 2))][0]}")
            raise InputError(str(path), name, f"NaN/inf{where}")
    return cond


def _correct_chunk(corrector, ds: xr.Dataset, path: Path, t0: int, t1: int, cfg: CorrectConfig,
                   mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(corrected (T, M, n_vars, ny, nx), forecast (T, n_vars, ny, nx)) for time records t0…t1−1."""
    from corrector.seeding import member_seeds

    variables = list(corrector.variables)
    chunk = ds.isel(time=slice(t0, t1))
    cond = pair_conditioning(corrector, ds, path, slice(t0, t1), mask)
    forecast = np.stack([chunk[f"forecast_{v}"].values.astype(np.float64) for v in variables], axis=1)
    seeds = member_seeds(cfg.seed, np.arange(t0, t1), 0, cfg.members)
    sample = corrector.sample(cond, members=cfg.members, steps=cfg.sampler_steps, seeds=seeds)
    new = corrector.apply({v: forecast[:, i] for i, v in enumerate(variables)}, sample, mask=mask)
    return np.stack([new[v] for v in variables], axis=2), forecast


def run_correct(cfg: CorrectConfig, forecasts_path: str | Path, out_path: str | Path, comm=WORLD, *,
                corrector=None, command: str | None = None, config_text: str | None = None) -> Path:
    """Offline correction of coarse forecasts (a training-pair file or any file with `forecast_{v}`, the initial
    state and forcing at both window ends): writes `cfg.members` corrected members per forecast, time = valid time.

    Streams in chunks of `cfg.chunk_size` records; under MPI chunk c is computed by rank c mod size and rank 0
    writes, in order.
    """
    world = resolve_comm(comm)
    rank = world.Get_rank() if world is not None else 0
    size = world.Get_size() if world is not None else 1
    out_path = Path(out_path)
    with abort_on_error("correct", rank, "ml", world):
        run_comm = world.Dup() if size > 1 else None
        try:
            _correct(cfg, run_comm, rank, size, Path(forecasts_path), out_path, corrector, command, config_text)
        finally:
            if run_comm is not None:
                run_comm.Free()
    return out_path


def _preflight_pairs(ds: xr.Dataset, path: Path, corrector, variables: Sequence[str],
                     check_values: bool = True) -> np.ndarray | None:
    """Everything `icecorr correct` reads from a pair file, checked before the output file is created: variables
    present with dims (time, y, x), the checkpoint's grid and units, 12 h windows, a mask of shape (y, x) and the
    checkpoint's land mask, and (if `check_values`) finite values. Returns the mask (or None)."""
    cgrid = getattr(corrector, "grid", {}) or {}
    shape = (int(cgrid["ny"]), int(cgrid["nx"])) if "ny" in cgrid and "nx" in cgrid else None
    src = getattr(corrector, "source", None) or "the checkpoint"
    names = [f"forecast_{v}" for v in variables]
    names += [n for n in corrector.conditioning_names if n != "mask" and n not in names]
    for name in names:
        what = "missing: nothing to correct" if name.startswith("forecast_") else \
            "missing: the checkpoint conditions on it"
        var = check_variable(ds, path, name, what=what)
        if shape is not None and tuple(var.shape[-2:]) != shape:
            raise InputError(str(path), name, f"grid (y, x) = {tuple(var.shape[-2:])} does not match the grid "
                                              f"{shape} the checkpoint {src} was trained on")
    check_pair_times(ds, path)
    mask = None
    if "mask" in ds.variables:
        check_variable(ds, path, "mask", dims=("y", "x"))
        mask = ds["mask"].values.astype(np.float64)
        want = cgrid.get("mask_hash")
        if want and "mask" in corrector.conditioning_names:
            from corrector.checkpoint import mask_hash

            if mask_hash(np.nan_to_num(mask)) != want:
                raise InputError(str(path), "mask", f"land mask differs from the one the checkpoint {src} was "
                                                    "trained on")
    dx_file = ds.attrs.get("grid_dx")
    if dx_file is not None and cgrid.get("dx") and not np.isclose(float(dx_file), float(cgrid["dx"]), rtol=1e-6):
        raise InputError(str(path), "grid_dx", f"grid spacing {float(dx_file):g} m differs from the checkpoint's "
                                               f"{float(cgrid['dx']):g} m ({src})")
    if check_values:
        check_finite_values(ds, path, names)
    return mask


def _correct(cfg, comm, rank, size, path: Path, out_path: Path, corrector, command, config_text) -> None:
    if not path.exists():
        raise InputError(str(path), None, "forecast file does not exist")
    if corrector is None:
        corrector = load_corrector(cfg.checkpoint, "residual")
    _check_mode(corrector, "residual", "icecorr correct")
    variables = list(corrector.variables)
    ds = open_netcdf(path, "forecast file")
    try:
        mask = _preflight_pairs(ds, path, corrector, variables, check_values=rank == 0)
        n_t, ny, nx = ds[f"forecast_{variables[0]}"].shape
        times = ds["time"].values
        chunks = [(lo, min(lo + cfg.chunk_size, n_t)) for lo in range(0, n_t, cfg.chunk_size)]
        m, nv = cfg.members, len(variables)
        pending: list = []
        writer = None
        if rank == 0:
            units = getattr(corrector, "variables_units", {}) or {}
            attrs = {v: {**VARIABLE_ATTRS.get(v, {"units": ""}), **({"units": units[v]} if v in units else {})}
                     for v in variables}
            declared = dict(attrs)
            if cfg.output_options.write_forecast:
                declared.update({f"forecast_{v}": {**attrs[v], "_member": False,
                                                   "long_name": f"uncorrected 12 h forecast of {v}"}
                                 for v in variables})
            if cfg.output_options.write_correction:
                declared.update({f"correction_{v}": {"units": attrs[v]["units"],
                                                     "long_name": f"applied correction of {v} (after bounds)"}
                                 for v in variables})
            gattrs = _global_attrs("correct", cfg, corrector, command, config_text)
            gattrs.update(source_file=str(path), time_meaning="valid time: input window start + 12 h",
                          seeding=f"seed={cfg.seed}; corrector.seeding.member_seeds(seed, input time index, 0, "
                                  f"members)[member]")
            dx = float(ds.attrs.get("grid_dx", float(ds["x"][1] - ds["x"][0]) if "x" in ds and ds.sizes["x"] > 1
                                    else 1.0))
            start = to_datetime(times[0]) if n_t else datetime(2000, 10, 1)
            writer = TrajectoryWriter(out_path, declared, m, ny, nx, dx, start, gattrs, cfg.output_options.precision)
        status = "failed"
        try:
            for c, (t0, t1) in enumerate(chunks):
                owner = c % size
                if owner == rank:
                    corrected, forecast = _correct_chunk(corrector, ds, path, t0, t1, cfg, mask)
                    check_finite(f"corrected chunk {t0}…{t1 - 1}", corrected.reshape(-1, nv, ny, nx), variables,
                                 range((t1 - t0) * m), m)
                    if rank != 0:
                        # keep at most two chunks in flight so a slow writer bounds the memory
                        while len(pending) >= 2:
                            wait_all([pending[0][0]], cfg.timeout, "chunk delivery to rank 0", rank)
                            pending.pop(0)
                        buf = np.ascontiguousarray(np.concatenate([corrected.reshape(-1), forecast.reshape(-1)]))
                        pending.append((comm.Isend(buf, dest=0, tag=TAG_FIELDS), buf))
                        continue
                elif rank == 0:
                    buf = np.empty((t1 - t0) * (m + 1) * nv * ny * nx)
                    wait_all([comm.Irecv(buf, source=owner, tag=TAG_FIELDS)], cfg.timeout,
                             f"corrected chunk {t0}…{t1 - 1} from rank {owner}", rank)
                    n_c = (t1 - t0) * m * nv * ny * nx
                    corrected = buf[:n_c].reshape(t1 - t0, m, nv, ny, nx)
                    forecast = buf[n_c:].reshape(t1 - t0, nv, ny, nx)
                else:
                    continue
                for i in range(t1 - t0):
                    fields = {v: corrected[i, :, k] for k, v in enumerate(variables)}
                    if cfg.output_options.write_forecast:
                        fields.update({f"forecast_{v}": forecast[i, k] for k, v in enumerate(variables)})
                    if cfg.output_options.write_correction:
                        fields.update({f"correction_{v}": corrected[i, :, k] - forecast[i, k][None]
                                       for k, v in enumerate(variables)})
                    writer.append(to_datetime(times[t0 + i]) + STEP, 1, fields)
            wait_all([p[0] for p in pending], cfg.timeout, "chunk delivery to rank 0", rank)
            status = "complete"
        finally:
            if writer is not None:
                writer.close(status)
    finally:
        ds.close()
