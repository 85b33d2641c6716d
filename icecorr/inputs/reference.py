"""Checked, unit-converted access to the user's reference state and forcing files (`icecorr prepare`).

The files are read through the YAML mapping of a `PrepareConfig` (model name -> file variable and its units, or a
flux accumulated over each output interval) and checked before any model run: variables present, units attribute,
dimension names and order, grid shape and spacing, a regular time step of 12 h or a divisor of it (resampled to 12 h:
icecorr.inputs.time_axis), NaN only outside the ocean mask, plausible ranges. Every problem is one `InputError`
naming the file and the field. Decreasing y/x axes are reversed on reading. Land: state fields are 0 outside the
mask (no ice, no motion), faces touching land have zero velocity, and forcing NaN on land is replaced by that time's
ocean mean. The forcing half (`ForcingFiles`) also serves `icecorr correct` on the user's forecast files
(icecorr.inputs.user_forecasts), with its own dimension names and the forecasts' grid.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from icecorr.base.errors import InputError
from icecorr.base.files import open_netcdf
from icecorr.base.units import is_length, unit_conversion
from icecorr.base.variables import FORCING_VARIABLES
from icecorr.inputs.model_units import (MODEL_UNITS, PLAUSIBLE, accumulation_hint, check_units_attribute,
                                       model_unit_conversion)
from icecorr.inputs.land import check_not_inverted, ocean_from_mask_variable
from icecorr.inputs.time_axis import Records, output_intervals, resampled_times


def resolve_input(base: Path, name: str, field: str) -> Path:
    """`name` relative to `base` (unless absolute); InputError naming the config `field` if it is not a file."""
    p = Path(name)
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise InputError(str(p), field, "file not found")
    return p


def open_input(path: Path) -> xr.Dataset:
    """An input NetCDF file (lazy, masked and time-decoded); InputError naming the file if it cannot be read."""
    return open_netcdf(path, mask_and_scale=True, decode_times=True)


class MappedSource:
    """One mapped variable across its (time-concatenated) files, read lazily, converted to model units, rows/columns
    reversed where the file's y/x axis decreases (`flip`: (y, x)), so that row j lies south of row j + 1.
    `intervals` (s per file record): an accumulated field, divided by its output interval into a rate. `records`
    (icecorr.inputs.time_axis): index k is the weighted sum of these file records (12 h resampling)."""

    def __init__(self, model_name: str, file_name: str, file_units: str, files: list[Path],
                 datasets: list[xr.Dataset], scale: float, offset: float, flip: tuple[bool, bool] = (False, False),
                 intervals: np.ndarray | None = None, records: Records | None = None):
        self.model_name, self.file_name, self.file_units = model_name, file_name, file_units
        self.files, self.datasets = files, datasets
        self.scale, self.offset, self.flip = scale, offset, flip
        self.intervals, self.records = intervals, records
        self.counts = [ds.sizes["time"] for ds in datasets]

    def at(self, k: int) -> np.ndarray:
        """Field (ny, nx) float64 at time index k, in model units (NaN where the file has fill values)."""
        if self.records is None:
            return self._record(k)
        return sum(w * self._record(i) for i, w in self.records[k])

    def _record(self, k: int) -> np.ndarray:
        """Field at file record k (global index over the concatenated files), in model units."""
        g = k
        for ds, n in zip(self.datasets, self.counts):
            if k < n:
                raw = oriented(np.asarray(ds[self.file_name].isel(time=k).values, dtype=np.float64), self.flip)
                if self.intervals is not None:
                    raw = raw / self.intervals[g]
                return raw * self.scale + self.offset
            k -= n
        raise IndexError(k)

    def file_of(self, k: int) -> Path:
        """The file that holds time index k (its first record, when resampled)."""
        k = k if self.records is None else self.records[k][0][0]
        for f, n in zip(self.files, self.counts):
            if k < n:
                return f
            k -= n
        return self.files[-1]


def oriented(a: np.ndarray, flip: tuple[bool, bool]) -> np.ndarray:
    """`a` (…, y, x) with its last two axes reversed where `flip` (y, x) says."""
    return a[(..., slice(None, None, -1 if flip[0] else 1), slice(None, None, -1 if flip[1] else 1))]


def decreasing_axis(path: Path, ds: xr.Dataset, dim: str, default: bool | None = False) -> bool | None:
    """True if the file's 1-D numeric coordinate `dim` decreases (reversed on reading), False if it increases,
    `default` without one; InputError if it is neither increasing nor decreasing."""
    if dim not in ds.coords or ds[dim].ndim != 1 or ds[dim].size < 2 or not np.issubdtype(ds[dim].dtype, np.number):
        return default
    step = np.diff(np.asarray(ds[dim].values, np.float64))
    if (step > 0).all() or (step < 0).all():
        return bool(step[0] < 0)
    raise InputError(str(path), dim, "coordinate neither increases nor decreases monotonically")


def decoded_times(path: Path, ds: xr.Dataset, tdim: str, section: str, dims_key: str | None = None) -> np.ndarray:
    """The time coordinate `tdim` of a user file as datetime64[ns], or an InputError naming the file and the config
    key (`dims_key`.time, by default `<section>.dims.time`) that fixes a missing dimension."""
    if tdim not in ds.dims:
        raise InputError(str(path), tdim, f"no time dimension '{tdim}' (dims: {list(ds.dims)}); "
                         f"set {dims_key or section + '.dims'}.time")
    if tdim not in ds.coords:
        raise InputError(str(path), tdim, "time dimension has no coordinate variable")
    t = ds[tdim].values
    if not np.issubdtype(t.dtype, np.datetime64):
        try:
            t = np.asarray([np.datetime64(x.isoformat()) for x in t], dtype="datetime64[ns]")
        except Exception as exc:
            raise InputError(str(path), tdim, "time cannot be decoded to dates (CF units/calendar?)") from exc
    return t.astype("datetime64[ns]")


def concatenated_times(files: list[Path], datasets: list[xr.Dataset], tdim: str, dims_key: str) -> np.ndarray:
    """Decoded times of the concatenated files, which must increase (regular 12 h steps of state files are checked
    by icecorr.inputs.time_axis); renames the time dimension of `datasets` (in place) to `time`. `dims_key`: the
    config key of the files' dims."""
    chunks = []
    for n, (path, ds) in enumerate(zip(files, datasets)):
        chunks.append((path, decoded_times(path, ds, tdim, "", dims_key)))
        if tdim != "time":
            datasets[n] = ds.rename({tdim: "time"})
    times = np.concatenate([t for _, t in chunks])
    owner = np.concatenate([np.full(len(t), n) for n, (_, t) in enumerate(chunks)])
    bad = np.nonzero(np.diff(times) <= np.timedelta64(0, "s"))[0]
    if bad.size:
        i = int(bad[0])
        raise InputError(str(files[owner[i + 1]]), tdim, f"times must increase: "
                         f"{np.datetime_as_string(times[i], unit='m')} -> "
                         f"{np.datetime_as_string(times[i + 1], unit='m')} (record {i} -> {i + 1}); files must "
                         "be given in time order, without gaps or overlaps")
    return times


def mapped_source(model_name: str, src, files: list[Path], datasets: list[xr.Dataset], dims: dict[str, str],
                  shape: tuple[int, int], dims_key: str, flip: tuple[bool, bool] = (False, False),
                  times: np.ndarray | None = None, key: str = "the mapping") -> MappedSource:
    """The `MappedSource` of `src` (a VariableSource) in time-renamed `datasets`, after checking its unit
    conversion, presence, dimensions (time, dims y, dims x), grid `shape` and units attribute; InputError naming
    the file and the variable (and the config key `dims_key` of the dims for wrong dimensions). `times`: of the
    concatenated records (needed by an accumulated source); `key`: the mapping's config key (for hints)."""
    expected_dims = ("time", dims.get("y", "y"), dims.get("x", "x"))
    accumulated = bool(getattr(src, "accumulated", False))
    conv = model_unit_conversion(src.units, MODEL_UNITS[model_name], accumulated)
    if conv is None:
        per = " per second (accumulated)" if accumulated else ""
        raise InputError(str(files[0]), src.name, f"cannot convert units '{src.units}'{per} (mapping for "
                         f"'{model_name}', {key}.{model_name}.units) to '{MODEL_UNITS[model_name]}'"
                         + ("" if accumulated else accumulation_hint(src.units, MODEL_UNITS[model_name],
                                                                     f"{key}.{model_name}")))
    for path, ds in zip(files, datasets):
        if src.name not in ds.variables:
            raise InputError(str(path), src.name, f"missing (mapped to '{model_name}'); variables in the file: "
                             f"{sorted(ds.data_vars)}")
        var = ds[src.name]
        if var.dims != expected_dims:
            raise InputError(str(path), src.name, f"dimensions {var.dims}, expected {expected_dims} "
                             f"(set {dims_key} or reorder the file)")
        got = (var.sizes[expected_dims[1]], var.sizes[expected_dims[2]])
        if got != tuple(shape):
            raise InputError(str(path), src.name, f"grid (y, x) = {got} does not match the model grid "
                             f"(ny, nx) = {tuple(shape)}")
        check_units_attribute(path, var.attrs.get("units"), src.name, src.units, model_name)
    renamed = [ds.rename({expected_dims[1]: "y", expected_dims[2]: "x"}) if expected_dims[1:] != ("y", "x")
               else ds for ds in datasets]
    intervals = None
    if accumulated:
        if times is None or times.size < 2:
            raise InputError(str(files[0]), src.name, f"accumulated ({key}.{model_name}.accumulated) needs at least "
                             "two records: the output interval comes from the time axis")
        intervals = output_intervals(times)
    return MappedSource(model_name, src.name, src.units, files, renamed, *conv, flip=flip, intervals=intervals)


class ForcingFiles:
    """The forcing files of a mapping (`forcing`: model forcing name -> VariableSource, every one of
    FORCING_VARIABLES), concatenated along time (increasing, any spacing), on a grid of `shape`; `flip` (y, x)
    reverses decreasing axes. `key`, `dims_key`: the config keys of the mapping and of `dims` (for errors)."""

    def __init__(self, files: list[Path], forcing: dict, dims: dict[str, str], shape: tuple[int, int], key: str,
                 dims_key: str, flip: tuple[bool, bool] = (False, False)):
        missing = [f for f in FORCING_VARIABLES if f not in forcing]
        if missing:
            raise InputError(None, key, f"mapping lacks forcing variable(s) {missing}")
        extra = sorted(set(forcing) - set(FORCING_VARIABLES))
        if extra:
            raise InputError(None, key, f"unknown forcing variable(s) {extra}; allowed {FORCING_VARIABLES}")
        self.files = list(files)
        self.datasets = [open_input(p) for p in self.files]
        self.times = concatenated_times(self.files, self.datasets, dims.get("time", "time"), dims_key)
        self.sources = {f: mapped_source(f, forcing[f], self.files, self.datasets, dims, shape, dims_key, flip,
                                         self.times, key) for f in FORCING_VARIABLES}
        self._position = {t: i for i, t in enumerate(self.times)}

    def index_of(self, when: np.datetime64, what: str) -> int:
        """The time index of `when`; InputError naming the files when they have no record at that time."""
        k = self._position.get(np.datetime64(when, "ns"))
        if k is None:
            raise InputError(str(self.files[0]), "time", f"no forcing at {np.datetime_as_string(when, unit='m')} "
                             f"({what}); the forcing files cover {np.datetime_as_string(self.times[0], unit='m')} "
                             f".. {np.datetime_as_string(self.times[-1], unit='m')}")
        return k

    def at(self, k: int, ocean: np.ndarray) -> dict[str, np.ndarray]:
        """Forcing (ny, nx) at time index k, checked (`checked_field`) inside the `ocean` mask; NaN on land replaced
        by the ocean mean of that field."""
        out = {}
        for f, src in self.sources.items():
            a = checked_field(src.at(k), ocean, f, src.file_of(k), src.file_name, src.file_units,
                              np.datetime_as_string(self.times[k]))
            if not np.isfinite(a).all():
                a = np.where(np.isfinite(a), a, np.nanmean(a[ocean]) if ocean.any() else 0.0)
            out[f] = a
        return out


class ReferenceData:
    """Checked, unit-converted access to the state and forcing files of a prepare config (training.data.config.
    PrepareConfig: files, mapping, dims, forcing_dims, mask, velocity points, time_resample) on a model grid.

    State records more often than 12-hourly are resampled to 12 h (icecorr.inputs.time_axis). A decreasing y (x)
    axis is reversed on reading (state and forcing, each by its own coordinates; forcing without them like the
    state), so that row j lies south of row j + 1; siu/siv stay components along increasing x/y (their sign is
    kept), as for the user's forecasts (icecorr.inputs.forecasts)."""

    def __init__(self, cfg, grid, base_dir: Path | None = None):
        self.cfg, self.grid = cfg, grid
        base = base_dir or Path.cwd()
        self.state_files = [resolve_input(base, f, "state_files") for f in cfg.state_files]
        self.forcing_files = [resolve_input(base, f, "forcing_files") for f in cfg.forcing_files]
        shape = (grid.ny, grid.nx)
        fdims = cfg.forcing_dims or cfg.dims
        self._state_ds = [open_input(p) for p in self.state_files]
        flip = tuple(decreasing_axis(self.state_files[0], self._state_ds[0], self._dim(d)) for d in ("y", "x"))
        if any(flip) and cfg.velocity_points != "centre":
            raise InputError(str(self.state_files[0]), self._dim("y" if flip[0] else "x"), "decreases: reversing "
                             f"it moves {cfg.velocity_points} velocities onto other faces; reverse the file first "
                             "(prepare.velocity_points centre is reversed here)")
        with open_input(self.forcing_files[0]) as first:
            own = [decreasing_axis(self.forcing_files[0], first, fdims.get(d, d), None) for d in ("y", "x")]
        fflip = tuple(f if o is None else o for f, o in zip(flip, own))
        self.forcing = ForcingFiles(self.forcing_files, cfg.forcing, fdims, shape, "prepare.forcing",
                                    "prepare.forcing_dims", fflip)
        raw_times = concatenated_times(self.state_files, self._state_ds, self._dim("time"), "prepare.dims")
        self.times, records = resampled_times(raw_times, self.state_files, [ds.sizes["time"] for ds in
                                              self._state_ds], self._dim("time"), cfg.time_resample)
        self.state = {v: mapped_source(v, src, self.state_files, self._state_ds, cfg.dims, shape, "prepare.dims",
                                       flip, raw_times, "prepare.state") for v, src in cfg.state.items()}
        for src in self.state.values():
            src.records = records
        self._check_coordinates(self.state_files[0], self._state_ds[0], cfg.dims)
        self._check_coordinates(self.forcing_files[0], self.forcing.datasets[0], fdims)
        # forcing index of every state time
        pos = {t: i for i, t in enumerate(self.forcing.times)}
        missing = [t for t in self.times if t not in pos]
        if missing:
            raise InputError(str(self.forcing_files[0]), "time",
                             f"no forcing at {len(missing)} state time(s), first {np.datetime_as_string(missing[0])}")
        self.forcing_index = np.array([pos[t] for t in self.times])
        self.flip = flip
        self.mask = self._mask()

    # -- files
    def _dim(self, model_dim: str) -> str:
        return self.cfg.dims.get(model_dim, model_dim)

    def _check_coordinates(self, path: Path, ds: xr.Dataset, dims: dict[str, str]) -> None:
        """If the file has x/y coordinates, their spacing must be the model dx (any UDUNITS length)."""
        for model_dim in ("x", "y"):
            name = dims.get(model_dim, model_dim)
            if name not in ds.coords or ds.sizes.get(name, 0) < 2:
                continue
            c = np.asarray(ds[name].values, dtype=np.float64)
            units = ds[name].attrs.get("units", "m")
            if not is_length(units):
                continue  # e.g. grid indices or degrees: nothing to compare
            scale = unit_conversion(units, "m")[0]  # any UDUNITS length: m, km, meters, metre, …
            spacing = np.abs(np.diff(c)) * scale   # a decreasing axis is reversed on reading
            if not np.allclose(spacing, self.grid.dx, rtol=self.cfg.coordinate_tolerance):
                lo, hi = spacing.min(), spacing.max()
                got = f"{lo:g}" if np.isclose(lo, hi) else f"{lo:g}..{hi:g}"
                raise InputError(str(path), name, f"grid spacing {got} m does not match the model dx = "
                                 f"{self.grid.dx:g} m (grid.dx; {name} in '{units}')")

    def _mask(self) -> np.ndarray:
        valid = np.isfinite(self.state["sic"].at(0))
        if self.cfg.mask_variable:
            name, key = self.cfg.mask_variable, "prepare.mask_variable"
            ds, path = self._state_ds[0], self.state_files[0]
            if name not in ds.variables:
                raise InputError(str(path), name, f"mask variable missing ({key}); variables: "
                                 f"{sorted(ds.data_vars)}")
            var = ds[name]
            if var.ndim == 3:
                var = var.isel({var.dims[0]: 0})
            if var.shape != (self.grid.ny, self.grid.nx):
                raise InputError(str(path), name, f"mask shape {var.shape}, expected ({self.grid.ny}, "
                                 f"{self.grid.nx})")
            ocean = oriented(ocean_from_mask_variable(path, var, key), self.flip)
            check_not_inverted(path, name, ocean, valid, key, what="reference state")
            return ocean.astype(np.int8)
        return valid.astype(np.int8)

    # -- per-time access with checks
    def state_at(self, k: int) -> dict[str, np.ndarray]:
        """Model state (ny, nx) at time index k: sic, sit, snt, siu, siv on C-grid faces, [damage]; 0 on land."""
        ocean = self.mask.astype(bool)
        raw = {v: np.where(ocean, checked_field(src.at(k), ocean, v, src.file_of(k), src.file_name, src.file_units,
                                                np.datetime_as_string(self.times[k])), 0.0)
               for v, src in self.state.items()}
        return model_state(raw, ocean, self.cfg.thickness_is_mean, self.cfg.velocity_points)

    def forcing_at(self, k: int) -> dict[str, np.ndarray]:
        """Forcing at the time of state index k; NaN on land replaced by the ocean mean of that field."""
        return self.forcing.at(int(self.forcing_index[k]), self.mask.astype(bool))


def checked_field(a: np.ndarray, ocean: np.ndarray, model_name: str, path, file_name: str, file_units: str,
                  when: str, key: str | None = None) -> np.ndarray:
    """`a` (model units) if it has no NaN/fill value inside the ocean and plausible values there, else an InputError
    naming the file, the variable, the time `when` and (if given) the mapping `key` that maps the variable."""
    mapped = f" (mapping key {key})" if key else ""
    bad = ~np.isfinite(a) & ocean
    if bad.any():
        j, i = np.argwhere(bad)[0]
        raise InputError(str(path), file_name, f"{int(bad.sum())} NaN/fill value(s) inside the ocean mask at {when}, "
                         f"first at (y={j}, x={i}){mapped}")
    lo, hi = PLAUSIBLE[model_name]
    vals = a[ocean]
    if vals.size and (vals.min() < lo or vals.max() > hi):
        raise InputError(str(path), file_name, f"values {vals.min():.4g}..{vals.max():.4g} {MODEL_UNITS[model_name]} "
                         f"outside the plausible range [{lo}, {hi}] after conversion from '{file_units}' (wrong units?)"
                         + mapped)
    return a


def model_state(raw: dict[str, np.ndarray], ocean: np.ndarray, thickness_is_mean: bool,
                velocity_points: str) -> dict[str, np.ndarray]:
    """The model's ML state from mapped fields in model units (0 on land): sic in [0, 1], thickness of the
    ice-covered part (from the cell mean if `thickness_is_mean`), no thickness without ice, velocities on C-grid
    faces (averaged from cell centres if `velocity_points` is 'centre'), faces touching land 0; [damage]."""
    sic = np.clip(raw["sic"], 0.0, 1.0)
    sit = np.maximum(raw["sit"], 0.0)
    if thickness_is_mean:
        sit = np.where(sic > 1e-12, sit / np.where(sic > 1e-12, sic, 1.0), 0.0)
    snt = np.maximum(raw.get("snt", np.zeros_like(sic)), 0.0)
    sit = np.where(sic > 0, sit, 0.0)
    snt = np.where(sic > 0, snt, 0.0)
    siu, siv = raw["siu"], raw["siv"]
    if velocity_points == "centre":
        siu, siv = centre_to_faces(siu, siv, ocean)
    elif velocity_points == "corner":
        siu, siv = corner_to_faces(siu, siv, ocean)
    else:
        siu, siv = _zero_closed_faces(siu, siv, ocean)
    out = {"sic": sic, "sit": sit, "snt": snt, "siu": siu, "siv": siv}
    if "damage" in raw:
        out["damage"] = np.clip(np.where(ocean, raw["damage"], 1.0), 0.0, 1.0)
    return out


def _zero_closed_faces(u: np.ndarray, v: np.ndarray, ocean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero velocity on faces that touch land and on the closed east/north walls."""
    east = np.zeros_like(ocean)
    east[:, :-1] = ocean[:, :-1] & ocean[:, 1:]
    north = np.zeros_like(ocean)
    north[:-1, :] = ocean[:-1, :] & ocean[1:, :]
    return np.where(east, u, 0.0), np.where(north, v, 0.0)


def corner_to_faces(u: np.ndarray, v: np.ndarray, ocean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """B-grid velocities at north-east cell corners (CICE's U points) -> C-grid east/north face values: the east
    face of cell (j, i) lies between corners (j, i) and (j-1, i), the north face between (j, i) and (j, i-1); the
    corners on the south and west walls are 0 (no slip). Faces on walls or touching land are 0."""
    uf = u.copy()
    uf[1:, :] = 0.5 * (u[1:, :] + u[:-1, :])
    uf[0, :] = 0.5 * u[0, :]
    vf = v.copy()
    vf[:, 1:] = 0.5 * (v[:, 1:] + v[:, :-1])
    vf[:, 0] = 0.5 * v[:, 0]
    return _zero_closed_faces(uf, vf, ocean)


def centre_to_faces(u: np.ndarray, v: np.ndarray, ocean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre velocities -> C-grid east/north face values (mean of the two neighbours); faces on walls or
    touching land are 0."""
    uf = np.zeros_like(u)
    uf[:, :-1] = 0.5 * (u[:, :-1] + u[:, 1:])
    vf = np.zeros_like(v)
    vf[:-1, :] = 0.5 * (v[:-1, :] + v[1:, :])
    return _zero_closed_faces(uf, vf, ocean)
