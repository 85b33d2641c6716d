"""CF NetCDF output helpers: atomic writes (temporary name + rename), time chunking, zlib, fixed time encoding, and
a streaming concatenation of files along time (for gathering per-run parts written by several MPI ranks).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import netCDF4
import numpy as np
import xarray as xr

from icecorr.base.files import COMPRESSION, atomic_path

#: one fixed time encoding for every file, so that parts can be concatenated without re-encoding
TIME_UNITS = "hours since 2000-01-01 00:00:00"
CALENDAR = "standard"
#: at most this many values in one chunk: training reads single random windows and a compressed chunk is always
#: decompressed whole, so 64 windows of a 25 km Arctic grid (6 MB per variable) made a batch cost 7 s of zlib
MAX_CHUNK_VALUES = 2 ** 16


def time_chunk(chunk_time: int, values_per_time: int) -> int:
    """Chunk length along time: at most `chunk_time` steps and, beyond one step, at most `MAX_CHUNK_VALUES`."""
    return max(1, min(chunk_time, MAX_CHUNK_VALUES // max(1, values_per_time)))


def encoding_for(ds: xr.Dataset, chunk_time: int = 64, dtype: str | None = None) -> dict[str, dict]:
    """NetCDF encoding: floats stored as `dtype` (or as they are), chunked (up to chunk_time, y, x) along time
    (`time_chunk`) and compressed (zlib, `COMPRESSION`), no fill value on coordinates, and the fixed CF time
    units/calendar."""
    enc: dict[str, dict] = {}
    for name, var in ds.variables.items():
        e: dict = {}
        if name == "time":
            e.update(units=TIME_UNITS, calendar=CALENDAR, dtype="float64", _FillValue=None)
            if var.ndim == 1:
                e["chunksizes"] = (max(1, min(chunk_time, var.size)),)
        elif np.issubdtype(var.dtype, np.floating):
            if dtype is not None and name not in ds.coords:
                e["dtype"] = dtype
            e["_FillValue"] = None
        if name != "time" and "time" in var.dims and var.size > 0:
            e["chunksizes"] = _time_chunks(var.dims, var.shape, chunk_time)
        if var.ndim and var.size > 1 and var.dtype.kind in "fiub" and name != "time":
            e.update(COMPRESSION)
        if e:
            enc[name] = e
    return enc


def _time_chunks(dims: tuple, shape: tuple, chunk_time: int) -> tuple[int, ...]:
    per_time = int(np.prod([n for d, n in zip(dims, shape) if d != "time"]))
    along_time = min(time_chunk(chunk_time, per_time), shape[dims.index("time")])
    return tuple(max(1, along_time) if d == "time" else n for d, n in zip(dims, shape))


def write_netcdf_atomic(ds: xr.Dataset, path: str | Path, chunk_time: int = 64, dtype: str | None = None) -> Path:
    """Write `ds` as NetCDF4 (time unlimited, chunked by time) to a temporary name, then rename onto `path`."""
    path = Path(path)
    unlimited = ("time",) if "time" in ds.dims else ()
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, format="NETCDF4", engine="netcdf4", encoding=encoding_for(ds, chunk_time, dtype),
                     unlimited_dims=unlimited)
    return path


def concat_netcdf_along_time(parts: Iterable[str | Path], path: str | Path,
                             global_attrs: Mapping[str, object] | None = None, chunk_time: int | None = None) -> Path:
    """Concatenate NetCDF files with identical variables along their (unlimited) `time` dimension, one part at a
    time, into `path` (atomically). Variables without `time` come from the first part, which defines the schema
    (dtypes, chunking, compression, attributes); raw stored values are copied, so nothing is re-encoded or
    rounded. `chunk_time` re-chunks along time (`time_chunk`); one part alone is then a re-chunked copy."""
    parts = [Path(p) for p in parts]
    if not parts:
        raise ValueError("concat_netcdf_along_time: no input files")
    path = Path(path)
    with atomic_path(path) as tmp:
        with netCDF4.Dataset(parts[0]) as first, netCDF4.Dataset(tmp, "w", format="NETCDF4") as out:
            for name, dim in first.dimensions.items():
                out.createDimension(name, None if name == "time" else len(dim))
            for name, var in first.variables.items():
                fill = var.getncattr("_FillValue") if "_FillValue" in var.ncattrs() else None
                chunks = var.chunking()
                if chunk_time is not None and "time" in var.dimensions and chunks != "contiguous":
                    chunks = list(_time_chunks(var.dimensions, var.shape, chunk_time))
                packed = var.filters() or {}  # the parts' compression (training.data.io.encoding_for)
                new = out.createVariable(name, var.datatype, var.dimensions, fill_value=fill,
                                         chunksizes=None if chunks == "contiguous" else chunks,
                                         zlib=bool(packed.get("zlib")), complevel=packed.get("complevel", 4),
                                         shuffle=bool(packed.get("shuffle")))
                new.setncatts({k: var.getncattr(k) for k in var.ncattrs() if k != "_FillValue"})
                if "time" not in var.dimensions:
                    var.set_auto_maskandscale(False)
                    new.set_auto_maskandscale(False)
                    new[...] = var[...]
            out.setncatts({k: first.getncattr(k) for k in first.ncattrs()})
            if global_attrs:
                out.setncatts({k: v for k, v in global_attrs.items()})
            if "history" not in out.ncattrs() and "producer" in out.ncattrs():  # CF §2.6.2; no clock: reproducible
                out.setncattr("history", f"created by {out.getncattr('producer')}")
            offset = 0
            for part in parts:
                with netCDF4.Dataset(part) as src:
                    n = len(src.dimensions["time"])
                    units = getattr(src.variables.get("time"), "units", None)
                    if units != getattr(first.variables.get("time"), "units", None):
                        raise ValueError(f"{part}: time units {units!r} differ from the first part's; raw values "
                                         "cannot be concatenated")
                    for name, var in src.variables.items():
                        if "time" not in var.dimensions:
                            continue
                        if name not in out.variables:
                            raise ValueError(f"{part}: variable '{name}' is not in the first part {parts[0]}")
                        var.set_auto_maskandscale(False)
                        dst = out.variables[name]
                        dst.set_auto_maskandscale(False)
                        axis = var.dimensions.index("time")
                        index = [slice(None)] * var.ndim
                        index[axis] = slice(offset, offset + n)
                        dst[tuple(index)] = var[...]
                    offset += n
    return path
