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


def encoding_for(ds: xr.Dataset, chunk_time: int = 64, dtype: str | None = None) -> dict[str, dict]:
    """NetCDF encoding: floats stored as `dtype` (or as they are), chunked (chunk_time, y, x) along time and
    compressed (zlib, `COMPRESSION`), no fill value on coordinates, and the fixed CF time units/calendar."""
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
            if "time" in var.dims and var.size > 0:
                e["chunksizes"] = tuple(max(1, min(chunk_time, n)) if d == "time" else n
                                        for d, n in zip(var.dims, var.shape))
        elif "time" in var.dims and var.size > 0:
            e["chunksizes"] = tuple(max(1, min(chunk_time, n)) if d == "time" else n
                                    for d, n in zip(var.dims, var.shape))
        if var.ndim and var.size > 1 and var.dtype.kind in "fiub" and name != "time":
            e.update(COMPRESSION)
        if e:
            enc[name] = e
    return enc


def write_netcdf_atomic(ds: xr.Dataset, path: str | Path, chunk_time: int = 64, dtype: str | None = None) -> Path:
    """Write `ds` as NetCDF4 (time unlimited, chunked by time) to a temporary name, then rename onto `path`."""
    path = Path(path)
    unlimited = ("time",) if "time" in ds.dims else ()
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, format="NETCDF4", engine="netcdf4", encoding=encoding_for(ds, chunk_time, dtype),
                     unlimited_dims=unlimited)
    return path


def concat_netcdf_along_time(parts: Iterable[str | Path], path: str | Path,
                             global_attrs: Mapping[str, object] | None = None) -> Path:
    """Concatenate NetCDF files with identical variables along their (unlimited) `time` dimension, one part at a
    time, into `path` (atomically). Variables without `time` come from the first part, which defines the schema
    (dtypes, chunking, compression, attributes); raw stored values are copied, so nothing is re-encoded or
    rounded."""
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
