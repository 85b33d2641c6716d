"""Files: NetCDF opening with one clear error, and atomic writes (a temporary name beside the target, renamed only
once the content is complete), so that no reader ever sees a half-written output and a failed write leaves nothing.
"""
from __future__ import annotations

import errno
import json
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import xarray as xr

from icecorr.base.errors import InputError


def temp_path(path: str | Path) -> Path:
    """`<name>.tmp-<pid>` beside `path` (same file system, so the final rename is atomic)."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; rename it onto `path` when the block ends without an
    exception, remove it otherwise. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


#: zlib level of every final product: 4 gives nearly all of level 9's gain at a fraction of its time
COMPRESSION = {"zlib": True, "complevel": 4, "shuffle": True}


def compressed_encoding(ds: xr.Dataset, encoding: dict | None = None) -> dict[str, dict]:
    """`encoding` (xarray `to_netcdf`) with zlib (`COMPRESSION`) added to every numeric variable of more than one
    value; what the caller set wins."""
    out = {name: dict(e) for name, e in (encoding or {}).items()}
    for name, var in ds.variables.items():
        if var.ndim and var.size > 1 and var.dtype.kind in "fiub":
            out[name] = {**COMPRESSION, **out.get(name, {})}
    return out


def write_dataset_atomic(ds: xr.Dataset, path: str | Path, **to_netcdf_kwargs) -> Path:
    """Write `ds` as NetCDF4 with zlib to a temporary name, then rename it to `path`: readers never see a
    half-written file."""
    to_netcdf_kwargs.setdefault("format", "NETCDF4")
    if to_netcdf_kwargs["format"] == "NETCDF4":
        to_netcdf_kwargs["encoding"] = compressed_encoding(ds, to_netcdf_kwargs.get("encoding"))
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, **to_netcdf_kwargs)
    return Path(path)


def compressed_copy(src: str | Path, dst: str | Path, record_dim: str | None = None) -> Path:
    """Copy the NetCDF file `src` to a new NetCDF4 file `dst`, every numeric array compressed (`COMPRESSION`) and
    chunked one `record_dim` record at a time; stored values, fill values, attributes and dimensions (`record_dim`
    unlimited) are copied as they are, so nothing is re-encoded or rounded."""
    import netCDF4

    with netCDF4.Dataset(src) as old, netCDF4.Dataset(dst, "w", format="NETCDF4") as new:
        for name, dim in old.dimensions.items():
            new.createDimension(name, None if dim.isunlimited() or name == record_dim else len(dim))
        for name, var in old.variables.items():
            attrs = {k: var.getncattr(k) for k in var.ncattrs()}
            fill = attrs.pop("_FillValue", None)
            packed = var.ndim > 0 and var.size > 1 and var.dtype.kind in "fiub"
            chunks = tuple(1 if d == record_dim else len(old.dimensions[d]) for d in var.dimensions)
            out = new.createVariable(name, var.datatype, var.dimensions, fill_value=fill,
                                     **({**COMPRESSION, "chunksizes": chunks} if packed and chunks else {}))
            out.setncatts(attrs)
            var.set_auto_maskandscale(False)
            out.set_auto_maskandscale(False)
            if var.size:
                out[...] = var[...]
        new.setncatts({k: old.getncattr(k) for k in old.ncattrs()})
    return Path(dst)


def write_text_atomic(text: str, path: str | Path) -> Path:
    """`text` at `path`, written to a temporary name and renamed (never half-written)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(obj, path: str | Path) -> Path:
    """`obj` as indented JSON at `path`, written to a temporary name and renamed (never half-written)."""
    return write_text_atomic(json.dumps(obj, indent=2), path)


def describe_open_error(exc: BaseException) -> str:
    """One short line for an exception raised while opening a NetCDF file."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if "did not find a match in any of xarray's currently installed IO backends" in text:
        return "not a NetCDF file (no format recognised: empty, truncated, corrupt or another file type)"
    if "HDF error" in text or "NetCDF: " in text:
        return f"cannot be read as NetCDF (truncated or corrupt?): {text[:200]}"
    return f"cannot be read as NetCDF ({type(exc).__name__}: {text[:200]})"


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def file_kind(mode: int) -> str | None:
    """What a stat mode is in words ('a folder', 'a character device', …), or None for a regular file."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def describe_unreadable(path: str | Path) -> str | None:
    """Why `path` cannot be read as an input file (missing, a folder, a symbolic link loop or to nothing, a device,
    …), or None for a regular file (or a link to one)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop (too many levels of symbolic links), not a file"
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return f"is a symbolic link to {os.readlink(path)!r}, which does not exist"
        if exc.errno == errno.ENOENT:
            return "does not exist"
        if exc.errno == errno.ENOTDIR:
            return "does not exist (a parent in its path is a file, not a folder)"
        return f"cannot be reached: {exc.strerror}"
    kind = file_kind(st.st_mode)
    return None if kind is None else f"is {kind}, not a file"


def open_netcdf(path: str | Path, what: str = "file", **open_kwargs) -> xr.Dataset:
    """`xr.open_dataset(path)` (lazy), or an InputError naming the file for a missing, truncated or corrupt file."""
    path = Path(path)
    why = describe_unreadable(path)
    if why:
        raise InputError(str(path), None, f"{what} {why}")
    try:
        return xr.open_dataset(path, **open_kwargs)
    except Exception as exc:  # noqa: BLE001 - netCDF4/HDF5/xarray raise OSError, ValueError, KeyError, …
        raise InputError(str(path), None, describe_open_error(exc)) from None
