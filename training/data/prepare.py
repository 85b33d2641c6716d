"""Ingestion of reference data (e.g. neXtSIM output) into training pairs (`icecorr prepare`).

Reads the user's state and forcing NetCDF files through a YAML mapping (model name -> file variable and the units
it is stored in), converts units (cm -> m, % -> 1, degC -> K, …), checks everything before any model run (variables
present, units attribute, dimension names and order, grid shape and spacing, 12 h time spacing, NaN only outside
the ocean mask, plausible ranges) and fails with one `InputError` naming the file and the field. Then every window
(t, t+12h) inside a split's date range becomes a training pair exactly as in `training.data.generate`: the coarse model
runs 12 h from the reference state at t (zero stresses, surface temperature from the air temperature capped at
0 degC, mixed layer at freezing — reference data carry no model-internal state) with the forcing at t and t+12h.

Every window gets a fresh coarse model, so a pair depends only on its own inputs.
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

from icecorr.base.files import describe_open_error
from coupling.checks import normalize_units
from icecorr.base.errors import InputError
from training.data.config import PrepareConfig
from training.data.forcing import FORCING_METADATA, FORCING_NAMES
from icecorr.base.variables import STEP_SECONDS
from icecorr.base.variables import ML_VARIABLES
from training.data.generate import (SPLITS, PairBuffer, _default_models, _global_attrs, _state_arrays, _version,
    finish, format_summary, pair_dataset, residual_summary)
from training.data.io import concat_netcdf_along_time, write_netcdf_atomic
from icecorr.base.files import write_json_atomic

PRODUCER = "icecorr prepare"
T_FREEZE_C = -1.8

#: model units of every variable prepare reads
MODEL_UNITS: dict[str, str] = {"sic": "1", "sit": "m", "snt": "m", "siu": "m s-1", "siv": "m s-1", "damage": "1",
                               **{f: FORCING_METADATA[f][0] for f in FORCING_NAMES}}

#: plausible physical ranges in model units; a value outside means wrong units or a corrupt file
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "sic": (-0.01, 1.01), "sit": (-0.01, 30.0), "snt": (-0.01, 5.0), "siu": (-3.0, 3.0), "siv": (-3.0, 3.0),
    "damage": (-0.01, 1.01), "uas": (-80, 80), "vas": (-80, 80), "tas": (180.0, 330.0), "huss": (0.0, 0.05),
    "rsds": (-1.0, 1500.0), "rlds": (0.0, 800.0), "prsn": (0.0, 0.05), "uo": (-5.0, 5.0), "vo": (-5.0, 5.0),
}

#: (from, to) -> (scale, offset): to = from * scale + offset
_CONVERSIONS: dict[tuple[str, str], tuple[float, float]] = {
    ("percent", "1"): (0.01, 0.0),
    ("cm", "m"): (0.01, 0.0), ("mm", "m"): (1e-3, 0.0), ("km", "m"): (1e3, 0.0),
    ("cm s-1", "m s-1"): (0.01, 0.0), ("km day-1", "m s-1"): (1e3 / 86400, 0.0), ("m day-1", "m s-1"): (1 / 86400, 0.0),
    ("km h-1", "m s-1"): (1e3 / 3600, 0.0), ("cm day-1", "m s-1"): (0.01 / 86400, 0.0),
    ("degC", "K"): (1.0, 273.15),
    ("g kg-1", "kg kg-1"): (1e-3, 0.0),
    ("mm s-1", "kg m-2 s-1"): (1.0, 0.0), ("mm day-1", "kg m-2 s-1"): (1 / 86400, 0.0),
    ("kg m-2 day-1", "kg m-2 s-1"): (1 / 86400, 0.0), ("m s-1", "kg m-2 s-1"): (1000.0, 0.0),  # water equivalent
}


def unit_conversion(file_units: str, model_units: str) -> tuple[float, float] | None:
    """(scale, offset) converting `file_units` into `model_units`, or None if unknown."""
    a, b = normalize_units(file_units), normalize_units(model_units)
    if a == b:
        return 1.0, 0.0
    return _CONVERSIONS.get((a, b))


# ---------------------------------------------------------------------------------------------- reading + checks
class _Source:
    """One mapped variable across its (time-concatenated) files, read lazily, converted to model units."""

    def __init__(self, model_name: str, file_name: str, file_units: str, files: list[Path],
                 datasets: list[xr.Dataset], scale: float, offset: float):
        self.model_name, self.file_name, self.file_units = model_name, file_name, file_units
        self.files, self.datasets = files, datasets
        self.scale, self.offset = scale, offset
        self.counts = [ds.sizes["time"] for ds in datasets]

    def at(self, k: int) -> np.ndarray:
        """Field (ny, nx) float64 at global time index k, in model units (NaN where the file has fill values)."""
        for ds, n in zip(self.datasets, self.counts):
            if k < n:
                raw = np.asarray(ds[self.file_name].isel(time=k).values, dtype=np.float64)
                return raw * self.scale + self.offset
            k -= n
        raise IndexError(k)

    def file_of(self, k: int) -> Path:
        for f, n in zip(self.files, self.counts):
            if k < n:
                return f
            k -= n
        return self.files[-1]


class ReferenceData:
    """Checked, unit-converted access to the state and forcing files of a PrepareConfig on a model grid."""

    def __init__(self, cfg: PrepareConfig, grid, base_dir: Path | None = None):
        self.cfg, self.grid = cfg, grid
        base = base_dir or Path.cwd()
        self.state_files = [self._resolve(base, f, "state_files") for f in cfg.state_files]
        self.forcing_files = [self._resolve(base, f, "forcing_files") for f in cfg.forcing_files]
        missing_forcing = [f for f in FORCING_NAMES if f not in cfg.forcing]
        if missing_forcing:
            raise InputError(None, "prepare.forcing", f"mapping lacks forcing variable(s) {missing_forcing}")
        extra = sorted(set(cfg.forcing) - set(FORCING_NAMES))
        if extra:
            raise InputError(None, "prepare.forcing", f"unknown forcing variable(s) {extra}; allowed {FORCING_NAMES}")
        self._state_ds = [self._open(p) for p in self.state_files]
        self._forcing_ds = [self._open(p) for p in self.forcing_files]
        self.times = self._check_times(self.state_files, self._state_ds)
        forcing_times = self._check_times(self.forcing_files, self._forcing_ds, every_12h=False)
        self.state = {v: self._source(v, src, self.state_files, self._state_ds) for v, src in cfg.state.items()}
        self.forcing_sources = {f: self._source(f, cfg.forcing[f], self.forcing_files, self._forcing_ds)
                                for f in FORCING_NAMES}
        self._check_coordinates(self.state_files[0], self._state_ds[0])
        self._check_coordinates(self.forcing_files[0], self._forcing_ds[0])
        # forcing index of every state time
        pos = {t: i for i, t in enumerate(forcing_times)}
        missing = [t for t in self.times if t not in pos]
        if missing:
            raise InputError(str(self.forcing_files[0]), "time",
                             f"no forcing at {len(missing)} state time(s), first {np.datetime_as_string(missing[0])}")
        self.forcing_index = np.array([pos[t] for t in self.times])
        self.mask = self._mask()

    # -- files
    @staticmethod
    def _resolve(base: Path, name: str, field: str) -> Path:
        p = Path(name)
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            raise InputError(str(p), field, "file not found")
        return p

    @staticmethod
    def _open(path: Path) -> xr.Dataset:
        try:
            return xr.open_dataset(path, mask_and_scale=True, decode_times=True)
        except Exception as exc:
            raise InputError(str(path), None, describe_open_error(exc)) from None

    def _dim(self, model_dim: str) -> str:
        return self.cfg.dims.get(model_dim, model_dim)

    def _check_times(self, files: list[Path], datasets: list[xr.Dataset], every_12h: bool = True) -> np.ndarray:
        """Decoded times of the concatenated files; 12 h apart (state) or just increasing (forcing)."""
        tdim = self._dim("time")
        chunks = []
        for n, (path, ds) in enumerate(zip(files, datasets)):
            if tdim not in ds.dims:
                raise InputError(str(path), tdim, f"no time dimension '{tdim}' (dims: {list(ds.dims)}); "
                                 "set prepare.dims.time")
            if tdim not in ds.coords:
                raise InputError(str(path), tdim, "time dimension has no coordinate variable")
            t = ds[tdim].values
            if not np.issubdtype(t.dtype, np.datetime64):
                try:
                    t = np.asarray([np.datetime64(x.isoformat()) for x in t], dtype="datetime64[ns]")
                except Exception as exc:
                    raise InputError(str(path), tdim, "time cannot be decoded to dates (CF units/calendar?)") from exc
            chunks.append((path, t.astype("datetime64[ns]")))
            if tdim != "time":
                datasets[n] = ds.rename({tdim: "time"})
        times = np.concatenate([t for _, t in chunks])
        owner = np.concatenate([np.full(len(t), n) for n, (_, t) in enumerate(chunks)])
        step = np.diff(times)
        bad = np.nonzero(step != np.timedelta64(int(STEP_SECONDS), "s") if every_12h
                         else step <= np.timedelta64(0, "s"))[0]
        if bad.size:
            i = int(bad[0])
            raise InputError(str(files[owner[i + 1]]), tdim,
                             ("time spacing must be 12 h: " if every_12h else "times must increase: ")
                             + f"{np.datetime_as_string(times[i], unit='m')} -> "
                             f"{np.datetime_as_string(times[i + 1], unit='m')} (record {i} -> {i + 1}); files must "
                             "be given in time order, without gaps or overlaps")
        return times

    def _source(self, model_name: str, src, files: list[Path], datasets: list[xr.Dataset]) -> _Source:
        expected_dims = ("time", self._dim("y"), self._dim("x"))
        conv = unit_conversion(src.units, MODEL_UNITS[model_name])
        if conv is None:
            raise InputError(str(files[0]), src.name, f"cannot convert units '{src.units}' (mapping for "
                             f"'{model_name}') to '{MODEL_UNITS[model_name]}'")
        for path, ds in zip(files, datasets):
            if src.name not in ds.variables:
                raise InputError(str(path), src.name, f"missing (mapped to '{model_name}'); variables in the file: "
                                 f"{sorted(ds.data_vars)}")
            var = ds[src.name]
            if var.dims != expected_dims:
                raise InputError(str(path), src.name, f"dimensions {var.dims}, expected {expected_dims} "
                                 "(set prepare.dims or reorder the file)")
            shape = (var.sizes[expected_dims[1]], var.sizes[expected_dims[2]])
            if shape != (self.grid.ny, self.grid.nx):
                raise InputError(str(path), src.name, f"grid (y, x) = {shape} does not match the model grid "
                                 f"(ny, nx) = ({self.grid.ny}, {self.grid.nx})")
            file_units = var.attrs.get("units")
            if file_units is not None and normalize_units(file_units) != normalize_units(src.units):
                raise InputError(str(path), src.name, f"units attribute '{file_units}' differs from the mapping's "
                                 f"'{src.units}' for '{model_name}'")
        renamed = [ds.rename({self._dim("y"): "y", self._dim("x"): "x"}) if self._dim("y") != "y" or
                   self._dim("x") != "x" else ds for ds in datasets]
        return _Source(model_name, src.name, src.units, files, renamed, *conv)

    def _check_coordinates(self, path: Path, ds: xr.Dataset) -> None:
        """If the file has x/y coordinates, their spacing must be the model dx (m, or km with units km)."""
        for model_dim in ("x", "y"):
            name = self._dim(model_dim)
            if name not in ds.coords or ds.sizes.get(name, 0) < 2:
                continue
            c = np.asarray(ds[name].values, dtype=np.float64)
            units = normalize_units(ds[name].attrs.get("units", "m"))
            scale = {"m": 1.0, "km": 1e3}.get(units)
            if scale is None:
                continue  # e.g. grid indices or degrees: nothing to compare
            spacing = np.diff(c) * scale
            if not np.allclose(spacing, self.grid.dx, rtol=self.cfg.coordinate_tolerance):
                lo, hi = spacing.min(), spacing.max()
                got = f"{lo:g}" if np.isclose(lo, hi) else f"{lo:g}..{hi:g}"
                raise InputError(str(path), name, f"grid spacing {got} m does not match the model dx = "
                                 f"{self.grid.dx:g} m")

    def _mask(self) -> np.ndarray:
        if self.cfg.mask_variable:
            name = self.cfg.mask_variable
            ds, path = self._state_ds[0], self.state_files[0]
            if name not in ds.variables:
                raise InputError(str(path), name, f"mask variable missing; variables: {sorted(ds.data_vars)}")
            m = np.asarray(ds[name].values)
            if m.ndim == 3:
                m = m[0]
            if m.shape != (self.grid.ny, self.grid.nx):
                raise InputError(str(path), name, f"mask shape {m.shape}, expected ({self.grid.ny}, {self.grid.nx})")
            return (np.nan_to_num(m) != 0).astype(np.int8)
        return np.isfinite(self.state["sic"].at(0)).astype(np.int8)

    # -- per-time access with checks
    def _checked(self, src: _Source, k: int) -> np.ndarray:
        a = src.at(k)
        ocean = self.mask.astype(bool)
        bad = ~np.isfinite(a) & ocean
        if bad.any():
            j, i = np.argwhere(bad)[0]
            raise InputError(str(src.file_of(k)), src.file_name,
                             f"{int(bad.sum())} NaN/fill value(s) inside the ocean mask at "
                             f"{np.datetime_as_string(self.times[k])}, first at (y={j}, x={i})")
        lo, hi = PLAUSIBLE[src.model_name]
        vals = a[ocean]
        if vals.size and (vals.min() < lo or vals.max() > hi):
            raise InputError(str(src.file_of(k)), src.file_name,
                             f"values {vals.min():.4g}..{vals.max():.4g} {MODEL_UNITS[src.model_name]} outside the "
                             f"plausible range [{lo}, {hi}] after conversion from '{src.file_units}' (wrong units?)")
        return a

    def state_at(self, k: int) -> dict[str, np.ndarray]:
        """Model state (ny, nx) at time index k: sic, sit, snt, siu, siv on C-grid faces, [damage]; 0 on land."""
        ocean = self.mask.astype(bool)
        raw = {v: np.where(ocean, self._checked(src, k), 0.0) for v, src in self.state.items()}
        sic = np.clip(raw["sic"], 0.0, 1.0)
        sit = np.maximum(raw["sit"], 0.0)
        if self.cfg.thickness_is_mean:
            sit = np.where(sic > 1e-12, sit / np.where(sic > 1e-12, sic, 1.0), 0.0)
        snt = np.maximum(raw.get("snt", np.zeros_like(sic)), 0.0)
        sit = np.where(sic > 0, sit, 0.0)
        snt = np.where(sic > 0, snt, 0.0)
        siu, siv = raw["siu"], raw["siv"]
        if self.cfg.velocity_points == "centre":
            siu, siv = centre_to_faces(siu, siv, ocean)
        else:
            siu, siv = _zero_closed_faces(siu, siv, ocean)
        out = {"sic": sic, "sit": sit, "snt": snt, "siu": siu, "siv": siv}
        if "damage" in raw:
            out["damage"] = np.clip(np.where(ocean, raw["damage"], 1.0), 0.0, 1.0)
        return out

    def forcing_at(self, k: int) -> dict[str, np.ndarray]:
        """Forcing at the time of state index k; NaN on land replaced by the ocean mean of that field."""
        ocean = self.mask.astype(bool)
        out = {}
        for f, src in self.forcing_sources.items():
            a = self._checked(src, int(self.forcing_index[k]))
            if not np.isfinite(a).all():
                a = np.where(np.isfinite(a), a, np.nanmean(a[ocean]) if ocean.any() else 0.0)
            out[f] = a
        return out


def _zero_closed_faces(u: np.ndarray, v: np.ndarray, ocean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero velocity on faces that touch land and on the closed east/north walls."""
    east = np.zeros_like(ocean)
    east[:, :-1] = ocean[:, :-1] & ocean[:, 1:]
    north = np.zeros_like(ocean)
    north[:-1, :] = ocean[:-1, :] & ocean[1:, :]
    return np.where(east, u, 0.0), np.where(north, v, 0.0)


def centre_to_faces(u: np.ndarray, v: np.ndarray, ocean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre velocities -> C-grid east/north face values (mean of the two neighbours); faces on walls or
    touching land are 0."""
    uf = np.zeros_like(u)
    uf[:, :-1] = 0.5 * (u[:, :-1] + u[:, 1:])
    vf = np.zeros_like(v)
    vf[:-1, :] = 0.5 * (v[:-1, :] + v[1:, :])
    return _zero_closed_faces(uf, vf, ocean)


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
    coarse_cls = model_cls or _default_models()[0]
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
        forecast = _state_arrays(model.get_state())
        forecast = {v: np.where(ocean, forecast[v], 0.0) for v in ML_VARIABLES}
        buf.put(w, initial, forecast, reference, f0, f1)
    return pair_dataset(buf, data.times[windows], data.grid.dx, data.mask)


def _contiguous_block(n: int, rank: int, size: int) -> slice:
    lo = n * rank // size
    return slice(lo, n * (rank + 1) // size)


def run_prepare(cfg, out_dir: str | Path, comm=None, base_dir: str | Path | None = None,
                model_cls=None) -> list[Path]:
    """Check the reference data of `cfg.prepare` against `cfg.grid` and write `train.nc` / `val.nc` / `test.nc`
    plus `manifest.json` to `out_dir`; returns the split files (same list on every rank).

    `cfg` needs `.grid`, `.physics` (coarse) and `.prepare`. Relative file names are taken from `base_dir` (default:
    the working directory). Any bad input raises `InputError` on every rank before a model is run.
    """
    out_dir = Path(out_dir)
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    pcfg: PrepareConfig = cfg.prepare
    t_start = time.perf_counter()
    data = ReferenceData(pcfg, cfg.grid, Path(base_dir) if base_dir else None)
    windows = split_windows(pcfg, data.times)
    # check every record once before running anything (a bad value late in the file fails fast, on every rank)
    needed = sorted({int(i) for idx in windows.values() for i in idx} | {int(i) + 1 for idx in windows.values()
                                                                        for i in idx})
    mine = needed[_contiguous_block(len(needed), rank, size)]
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
        for si, (split, idx) in enumerate(windows.items()):
            block = idx[_contiguous_block(len(idx), rank, size)]
            if block.size == 0:
                continue
            ds = prepare_block(data, cfg.physics, block, pcfg.dtype, model_cls)
            ds["run"] = ("time", np.full(block.size, si, dtype=np.int32),
                         {"long_name": "run (contiguous segment) index; windows never cross runs"})
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
                attrs = _global_attrs(cfg, split, PRODUCER, ("grid", "physics", "prepare"))
                attrs.update(title=f"icecorr training pairs from reference data ({split})",
                             source_files=" ".join(str(p) for p in data.state_files + data.forcing_files))
                concat_netcdf_along_time(parts, path, attrs)
            shutil.rmtree(parts_dir, ignore_errors=True)
            elapsed = time.perf_counter() - t_start
            summary = residual_summary({p.stem: p for p in paths})
            _write_manifest(cfg, data, windows, out_dir, summary, elapsed, size)
            print(format_summary(summary, elapsed, size).replace("generate:", "prepare:"), flush=True)
        except Exception as exc:
            failure = f"rank 0 (gathering): {type(exc).__name__}: {exc}"
            if comm is None:
                raise
    finish(comm, failure, "prepare")
    return paths


def _write_manifest(cfg, data: ReferenceData, windows: Mapping[str, np.ndarray], out_dir: Path,
                    summary: Mapping[str, Any], elapsed: float, n_ranks: int) -> Path:
    pcfg: PrepareConfig = cfg.prepare
    manifest = {
        "producer": PRODUCER,
        "icecorr_version": _version(),
        "grid": cfg.grid.model_dump(mode="json"),
        "time_step_seconds": STEP_SECONDS,
        "ml_variables": list(ML_VARIABLES),
        "forcing_variables": list(FORCING_NAMES),
        "variables": {v: {"units": MODEL_UNITS[v], "source": src.model_dump()} for v, src in
                      {**pcfg.state, **pcfg.forcing}.items()},
        "ocean_cells": int(data.mask.sum()),
        "splits": {s: {"file": f"{s}.nc", "windows": int(len(idx)),
                       "first": np.datetime_as_string(data.times[idx[0]]),
                       "last": np.datetime_as_string(data.times[idx[-1]])} for s, idx in windows.items()},
        "config": {k: getattr(cfg, k).model_dump(mode="json") for k in ("grid", "physics", "prepare")
                   if hasattr(getattr(cfg, k, None), "model_dump")},
        "statistics": summary,
        "generation": {"seconds": round(elapsed, 2), "ranks": n_ranks},
    }
    return write_json_atomic(manifest, out_dir / "manifest.json")
