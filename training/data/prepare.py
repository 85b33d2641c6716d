"""Ingestion of reference data (e.g. neXtSIM output) into training pairs (`icecorr prepare`).

Reads the user's state and forcing NetCDF files through a YAML mapping (model name -> file variable and the units
it is stored in), converts units (cm -> m, % -> 1, degC -> K, …), checks everything before any model run (variables
present, units attribute, dimension names and order, grid shape and spacing, 12 h time spacing (more frequent
state records resampled to 12 h), NaN only outside the ocean mask, plausible ranges) and fails with one
`InputError` naming the file and the field. Then every window (t, t+12h) inside a split's date range becomes a
training pair: with `prepare.forecasts`, from the user's own model forecasts (icecorr.inputs.forecasts: that
model's errors); otherwise as in `training.data.generate`: the coarse model
runs 12 h from the reference state at t (zero stresses, surface temperature from the air temperature capped at
0 degC, mixed layer at freezing — reference data carry no model-internal state) with the forcing at t and t+12h.

Every window gets a fresh coarse model, so a pair depends only on its own inputs. Beside the pair files,
`reference.nc` holds the mapped reference at every record a window uses (`training.data.reference_file`): the
reference in model conventions for `icecorr evaluate`. Both keep the reference files' projection x/y, 2-D lat/lon
and grid-mapping variable (`training.data.reference_file.with_geography`).
Land: state fields are set to 0 (no ice, no motion) outside the mask and faces touching land get zero velocity;
forcing NaN on land is replaced by that time's ocean mean. Windows are split in contiguous blocks over MPI ranks;
the result is identical for any number of ranks.
"""
from __future__ import annotations

import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr

from icecorr.base.version import package_version
from icecorr.base.errors import InputError
from icecorr.base.files import write_json_atomic
from icecorr.base.progress import progress
from icecorr.base.variables import ML_VARIABLES, STEP_SECONDS
from training.data.config import PrepareConfig
from training.data.forcing import FORCING_NAMES
from icecorr.inputs.forecasts import ForecastData
from training.data.generate import default_models
from training.data.io import concat_netcdf_along_time, write_netcdf_atomic
from training.data.pairs import SPLITS, PairBuffer, pair_dataset, state_arrays
from training.data.provenance import pair_file_attrs
from training.data.reference_file import with_geography, write_reference
from training.data.ranks import contiguous_block, finish
from icecorr.inputs.reference import ReferenceData
from training.data.residual_stats import format_summary, residual_summary
from icecorr.inputs.model_units import MODEL_UNITS

PRODUCER = "icecorr prepare"
#: the mapped reference beside the pair files (training.data.reference_file), for `icecorr evaluate --reference`
REFERENCE_FILE = "reference.nc"
T_FREEZE_C = -1.8

# ---------------------------------------------------------------------------------------------- windows and pairs
def split_windows(cfg: PrepareConfig, times: np.ndarray) -> dict[str, np.ndarray]:
    """Window start indices per split: t in [first, last] and t + 12 h <= last, so that no split's reference
    state is another split's initial state."""
    out = {}
    step = np.timedelta64(int(STEP_SECONDS), "s")
    taken: dict[int, str] = {}
    for split in SPLITS:
        if split not in cfg.splits:
            continue
        first, last = (np.datetime64(datetime.fromisoformat(s), "ns") for s in cfg.splits[split])
        idx = np.nonzero((times >= first) & (times + step <= last) & (times + step <= times[-1]))[0]
        if idx.size == 0:
            raise InputError(None, f"prepare.splits.{split}", f"no 12 h window inside {cfg.splits[split]} "
                             f"(data cover {np.datetime_as_string(times[0])} .. {np.datetime_as_string(times[-1])})")
        for i in idx:
            if i in taken or i + 1 in taken:
                raise InputError(None, f"prepare.splits.{split}", f"overlaps split '{taken.get(i, taken.get(i + 1))}'")
        for i in idx:
            taken[i] = taken[i + 1] = split
        out[split] = idx
    return out


def coarse_start(state: Mapping[str, np.ndarray], forcing: Mapping[str, np.ndarray],
                 coarse_vars: set[str]) -> dict[str, np.ndarray]:
    """Coarse-model state at a window start from reference data: the ML variables, zero stresses, surface
    temperature = air temperature capped at 0 degC, mixed layer at freezing, damage if both carry it."""
    out = {k: state[k] for k in ML_VARIABLES}
    shape = state["sic"].shape
    for k in ("sig1", "sig2", "sig12"):
        if k in coarse_vars:
            out[k] = np.zeros(shape)
    if "tsi" in coarse_vars:
        out["tsi"] = np.minimum(forcing["tas"] - 273.15, 0.0)
    if "tos" in coarse_vars:
        out["tos"] = np.full(shape, T_FREEZE_C)
    if "damage" in coarse_vars and "damage" in state:
        out["damage"] = state["damage"]
    return {k: v for k, v in out.items() if k in coarse_vars}


def prepare_block(data: ReferenceData, physics, windows: np.ndarray, dtype: str, model_cls=None) -> xr.Dataset:
    """Training pairs (time, y, x) for the window start indices `windows` (one coarse model, reset each window)."""
    coarse_cls = model_cls or default_models()[0]
    coarse_vars = set(coarse_cls(data.grid, physics).get_state().data_vars)
    with_damage = "damage" in data.state
    buf = PairBuffer(len(windows), data.grid.ny, data.grid.nx, FORCING_NAMES, dtype, with_damage=with_damage)
    ocean = data.mask.astype(bool)
    for w, k in enumerate(windows):
        initial, reference = data.state_at(k), data.state_at(k + 1)
        f0, f1 = data.forcing_at(k), data.forcing_at(k + 1)
        # a fresh model per window (< 1 ms): no hidden state (e.g. the alternating transport split order) carries
        # over, so a pair depends only on its inputs, whatever block of windows this rank runs
        model = coarse_cls(data.grid, physics)
        model.set_state(coarse_start(initial, f0, coarse_vars))
        model.step(f0, f1)
        forecast = state_arrays(model.get_state())
        forecast = {v: np.where(ocean, forecast[v], 0.0) for v in ML_VARIABLES}
        buf.put(w, initial, forecast, reference, f0, f1)
    return pair_dataset(buf, data.times[windows], data.grid.dx, data.mask)


def forecast_block(data: ReferenceData, forecasts: ForecastData, windows: np.ndarray, dtype: str) -> xr.Dataset:
    """Training pairs of the user's own forecasts (`windows`: indices into `forecasts.windows`): initial and forecast
    from the forecast files, reference, damage and forcing from the reference data at the window's times."""
    with_damage = "damage" in data.state
    buf = PairBuffer(len(windows), data.grid.ny, data.grid.nx, FORCING_NAMES, dtype, with_damage=with_damage)
    position = {t: i for i, t in enumerate(data.times.astype("datetime64[ns]"))}
    wins = [forecasts.windows[int(i)] for i in windows]
    for w, win in enumerate(wins):
        k = position[win.start]
        initial, forecast = forecasts.state(win, 0), forecasts.state(win, 1)
        if with_damage:
            initial["damage"] = data.state_at(k)["damage"]
        buf.put(w, initial, forecast, data.state_at(k + 1), data.forcing_at(k), data.forcing_at(k + 1))
    ds = pair_dataset(buf, np.array([win.start for win in wins], dtype="datetime64[ns]"), data.grid.dx, data.mask)
    ds["run"] = ("time", np.array([win.forecast for win in wins], dtype=np.int32),
                 {"long_name": "forecast index (one initialisation); windows never cross forecasts"})
    return ds


def run_prepare(cfg, out_dir: str | Path, comm=None, base_dir: str | Path | None = None,
                model_cls=None) -> list[Path]:
    """Check the reference data of `cfg.prepare` against `cfg.grid` and write `train.nc` / `val.nc` / `test.nc`
    plus `manifest.json` to `out_dir`; returns the split files (same list on every rank).

    `cfg` needs `.grid`, `.physics` (coarse) and `.prepare`. Relative file names are taken from `base_dir` (default:
    the working directory; the CLI passes the config file's folder). Any bad input raises `InputError` on every
    rank before a model is run.
    """
    out_dir = Path(out_dir)
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    pcfg: PrepareConfig = cfg.prepare
    t_start = time.perf_counter()
    data = ReferenceData(pcfg, cfg.grid, Path(base_dir) if base_dir else None)
    forecasts = None
    if pcfg.forecasts is not None:
        forecasts = ForecastData(pcfg.forecasts, cfg.grid, data.mask, Path(base_dir) if base_dir else Path.cwd())
        windows = forecasts.split_windows(pcfg.splits, data.times)
        position = {t: i for i, t in enumerate(data.times.astype("datetime64[ns]"))}
        starts = {s: np.array([position[forecasts.windows[int(i)].start] for i in idx]) for s, idx in windows.items()}
    else:
        windows = split_windows(pcfg, data.times)
        starts = windows
    # check every record once before running anything (a bad value late in the file fails fast, on every rank)
    needed = sorted({int(i) for idx in starts.values() for i in idx} | {int(i) + 1 for idx in starts.values()
                                                                       for i in idx})
    mine = needed[contiguous_block(len(needed), rank, size)]
    error = None
    try:
        for k in mine:
            data.state_at(k)
            data.forcing_at(k)
    except InputError as exc:
        if comm is None:
            raise
        error = (exc.file, exc.field, exc.problem)  # plain tuple: InputError itself does not unpickle
    errors = comm.allgather(error) if comm is not None else [error]
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise InputError(*first)

    parts_dir = out_dir / ".parts"
    if rank == 0:
        parts_dir.mkdir(parents=True, exist_ok=True)
    if comm is not None:
        comm.Barrier()
    failure = None
    try:
        splits = progress(windows.items(), desc="prepare", unit="split", enabled=None if rank == 0 else False)
        for si, (split, idx) in enumerate(splits):
            block = idx[contiguous_block(len(idx), rank, size)]
            if block.size == 0:
                continue
            if forecasts is not None:
                ds = forecast_block(data, forecasts, block, pcfg.dtype)
            else:
                ds = prepare_block(data, cfg.physics, block, pcfg.dtype, model_cls)
                ds["run"] = ("time", np.full(block.size, si, dtype=np.int32),
                             {"long_name": "run (contiguous segment) index; windows never cross runs"})
            ds = with_geography(ds, data)   # the reference files' x/y, lat/lon and grid mapping, as reference.nc
            write_netcdf_atomic(ds, parts_dir / f"{split}-{rank:04d}.nc", pcfg.chunk_time, pcfg.dtype)
    except Exception as exc:
        failure = f"rank {rank}: {type(exc).__name__}: {exc}"
        if comm is None:
            raise
    finish(comm, failure, "prepare", collective=True)

    paths = [out_dir / f"{split}.nc" for split in windows]
    failure = None
    if rank == 0:
        try:
            for split, path in zip(windows, paths):
                parts = sorted(parts_dir.glob(f"{split}-*.nc"))
                attrs = pair_file_attrs(cfg, split, PRODUCER, ("grid", "physics", "prepare"))
                attrs.update(title=f"icecorr training pairs from reference data ({split})",
                             source_files=" ".join(str(p) for p in data.state_files + data.forcing_files))
                if forecasts is not None:
                    attrs.update(forecast_model="the user's model (prepare.forecasts)",
                                 forecast_files=" ".join(str(p) for p in forecasts.files))
                concat_netcdf_along_time(parts, path, attrs)
            shutil.rmtree(parts_dir, ignore_errors=True)
            write_reference(data, needed, out_dir / REFERENCE_FILE)
            elapsed = time.perf_counter() - t_start
            summary = residual_summary({p.stem: p for p in paths})
            _write_manifest(cfg, data, starts, out_dir, summary, elapsed, size, len(needed))
            print(format_summary(summary, elapsed, size).replace("generate:", "prepare:"), flush=True)
        except Exception as exc:
            failure = f"rank 0 (gathering): {type(exc).__name__}: {exc}"
            if comm is None:
                raise
    finish(comm, failure, "prepare")
    return paths


def _write_manifest(cfg, data: ReferenceData, windows: Mapping[str, np.ndarray], out_dir: Path,
                    summary: Mapping[str, Any], elapsed: float, n_ranks: int, n_reference: int) -> Path:
    pcfg: PrepareConfig = cfg.prepare
    manifest = {
        "producer": PRODUCER,
        "icecorr_version": package_version(),
        "grid": cfg.grid.model_dump(mode="json"),
        "time_step_seconds": STEP_SECONDS,
        "ml_variables": list(ML_VARIABLES),
        "forcing_variables": list(FORCING_NAMES),
        "variables": {v: {"units": MODEL_UNITS[v], "source": src.model_dump(exclude_defaults=True)} for v, src in
                      {**pcfg.state, **pcfg.forcing}.items()},
        "ocean_cells": int(data.mask.sum()),
        "splits": {s: {"file": f"{s}.nc", "windows": int(len(idx)),
                       "first": np.datetime_as_string(data.times[int(np.min(idx))]),
                       "last": np.datetime_as_string(data.times[int(np.max(idx))])} for s, idx in windows.items()},
        "config": {k: getattr(cfg, k).model_dump(mode="json") for k in ("grid", "physics", "prepare")
                   if hasattr(getattr(cfg, k, None), "model_dump")},
        "reference": {"file": REFERENCE_FILE, "records": n_reference},
        "statistics": summary,
        "generation": {"seconds": round(elapsed, 2), "ranks": n_ranks},
    }
    return write_json_atomic(manifest, out_dir / "manifest.json")
