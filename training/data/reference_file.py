"""`<out>/reference.nc` of `icecorr prepare`: the reference state mapped onto the model grid in model conventions,
usable directly as `icecorr evaluate --reference`.

Dims (time, y, x), 12-hourly records (every reference time a window of any split starts or ends at); variables sic
(1), sit (m, per ice area), snt (m), siu/siv (m s-1 on the C-grid east/north faces, 0 on faces touching land) —
exactly what the pair files hold in `reference_*`, so a forecast in model conventions (`icecorr correct`'s output) is
compared like with like. Land cells are `_FillValue` and the integer `mask` says 1 = ocean (flag_values). The
state file's x/y (in m), 2-D latitude/longitude and CF grid-mapping variable are copied when it has them (rows/columns
in the model's south-to-north, west-to-east order; x/y are projection coordinates, as in the pair files);
otherwise x/y are the model's (i + ½) dx.
NETCDF4, float32 with zlib, written under a temporary name and renamed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import xarray as xr

from icecorr.base.files import write_dataset_atomic
from icecorr.base.variables import ML_VARIABLES, attrs
from icecorr.inputs.reference import ReferenceData, open_input
from icecorr.inputs.regrid import grid_mapping_name, projection_coordinate, two_d_coordinate

FILL = np.float32(1.0e20)
_FACES = {"siu": "east", "siv": "north"}


def geography(data: ReferenceData) -> tuple[dict, dict]:
    """(coords, grid-mapping variables) of the first state file, renamed to the model dims y, x and oriented
    south-to-north / west-to-east; x/y are the model's (i + ½) dx where the file has no x/y in a length unit."""
    grid, dims = data.grid, data.cfg.dims
    with open_input(data.state_files[0]) as raw:
        ydim, xdim = dims.get("y", "y"), dims.get("x", "x")
        ds = raw.rename({d: m for d, m in ((ydim, "y"), (xdim, "x")) if d != m and d in raw.dims})
        coords: dict = {}
        flip = [False, False]
        for axis, name in enumerate(("y", "x")):
            values = projection_coordinate(ds, name, "m")
            if values is not None and values.size > 1 and values[1] < values[0]:
                flip[axis], values = True, values[::-1]
            if values is None:
                values = (np.arange(grid.ny if name == "y" else grid.nx) + 0.5) * grid.dx
            # projection coordinates (with a grid mapping of the input, or the model's plane: CF 1.10 §5.6)
            coords[name] = (name, values, {"units": "m", "long_name": f"{name} of cell centre", "axis": name.upper(),
                                           "standard_name": f"projection_{name}_coordinate"})
        mapping = {}
        for std, short, units in (("latitude", "lat", "degrees_north"), ("longitude", "lon", "degrees_east")):
            values = two_d_coordinate(ds, std, ("y", "x"))
            if values is not None:
                values = values[::-1 if flip[0] else 1, ::-1 if flip[1] else 1]
                coords[short] = (("y", "x"), values, {"standard_name": std, "units": units,
                                                      "long_name": f"{std} of cell centre"})
        name = grid_mapping_name(ds)
        if name is not None:
            mapping[name] = ((), np.int32(0), {k: v for k, v in ds[name].attrs.items() if not k.startswith("_")})
    return coords, mapping


def with_geography(ds: xr.Dataset, data: ReferenceData) -> xr.Dataset:
    """`ds` (dims y, x on the model grid) with the reference files' geography (`geography`): x/y, lat/lon and the
    grid-mapping variable, named by `grid_mapping` on every (…, y, x) variable. Shared by reference.nc and the pair
    files of `icecorr prepare`."""
    coords, mapping = geography(data)
    ds = ds.assign_coords(coords)
    for name, var in mapping.items():
        ds[name] = var
        for v in ds.data_vars.values():
            if v.dims[-2:] == ("y", "x"):
                v.attrs["grid_mapping"] = name
    return ds


def reference_dataset(data: ReferenceData, records: Iterable[int]) -> xr.Dataset:
    """The mapped reference at the time indices `records` of `data` as a CF Dataset (see the module docstring)."""
    records = sorted({int(k) for k in records})
    ocean = data.mask.astype(bool)
    fields = {v: np.empty((len(records), *ocean.shape), np.float32) for v in ML_VARIABLES}
    for n, k in enumerate(records):
        state = data.state_at(k)
        for v in ML_VARIABLES:
            fields[v][n] = np.where(ocean, state[v], np.nan)
    ds = xr.Dataset(coords={"time": ("time", data.times[records], {"standard_name": "time", "long_name": "valid time"})})
    for v in ML_VARIABLES:
        meta = attrs(v)
        if v in _FACES:
            meta["comment"] = f"on the C-grid {_FACES[v]} face of each cell (model convention); 0 on faces that " \
                              "touch land or a closed wall"
        ds[v] = (("time", "y", "x"), fields[v], meta)
    ds["mask"] = (("y", "x"), ocean.astype(np.int8), {"long_name": "ocean mask", "flag_values": np.array([0, 1],
                  dtype=np.int8), "flag_meanings": "land ocean"})
    ds = with_geography(ds, data)
    if "lat" in ds.coords and "lon" in ds.coords:
        for v in ML_VARIABLES:
            ds[v].attrs["coordinates"] = "lat lon"
    ds.attrs.update({"Conventions": "CF-1.10", "title": "reference state on the model grid in model conventions",
                     "grid_dx": float(data.grid.dx),
                     "source_files": " ".join(str(p) for p in data.state_files)})
    return ds


def write_reference(data: ReferenceData, records: Iterable[int], path: str | Path) -> Path:
    """Write `reference_dataset(data, records)` to `path` (NETCDF4, float32, zlib, land as _FillValue), atomically."""
    ds = reference_dataset(data, records)
    enc: dict = {v: {"dtype": "float32", "zlib": True, "complevel": 4, "_FillValue": FILL} for v in ML_VARIABLES}
    enc["time"] = {"units": "hours since 2000-01-01 00:00:00", "calendar": "standard", "dtype": "float64",
                   "_FillValue": None}
    enc.update({c: {"_FillValue": None} for c in ("x", "y", "lat", "lon") if c in ds.variables})
    return write_dataset_atomic(ds, path, format="NETCDF4", engine="netcdf4", encoding=enc)
