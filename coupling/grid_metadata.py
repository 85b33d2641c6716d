"""The grid's geography carried from a run's input into its outputs: projection x/y coordinates, 2-D latitude and
longitude, the CF grid-mapping variable and the ocean mask. Read from a forcing or pair file (`grid_metadata`),
written into every trajectory of a run on that grid (`write_grid_metadata`), so that a file of a real region says
where it is (CF 1.10 §5.6) instead of claiming projection coordinates (i + ½)·dx with no projection."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from icecorr.inputs.regrid import grid_mapping_name, projection_coordinate, two_d_coordinate


@dataclass(frozen=True)
class GridMetadata:
    """Geography of a (y, x) grid; every part optional. x/y in m; lat/lon in degrees (2-D)."""

    x: np.ndarray | None = None
    y: np.ndarray | None = None
    lat: np.ndarray | None = None
    lon: np.ndarray | None = None
    mapping_name: str | None = None
    mapping_attrs: dict = field(default_factory=dict)
    mask: np.ndarray | None = None


def grid_metadata(ds: xr.Dataset) -> GridMetadata | None:
    """The geography `ds` carries, or None when it has nothing beyond plain x/y (the built-in box)."""
    mapping = grid_mapping_name(ds)
    lat, lon = two_d_coordinate(ds, "latitude", ("y", "x")), two_d_coordinate(ds, "longitude", ("y", "x"))
    if mapping is None and lat is None:
        return None
    mask = np.asarray(ds["mask"].values, np.float64) if "mask" in ds and ds["mask"].dims == ("y", "x") else None
    return GridMetadata(x=projection_coordinate(ds, "x", "m"), y=projection_coordinate(ds, "y", "m"), lat=lat, lon=lon,
                        mapping_name=mapping, mapping_attrs=dict(ds[mapping].attrs) if mapping else {}, mask=mask)


def write_grid_metadata(nc, meta: GridMetadata, data_variables) -> None:
    """Into an open netCDF4 Dataset with dims y, x and coordinate variables x, y: the projection coordinates'
    values, lat/lon, the grid-mapping variable, the mask, and `grid_mapping`/`coordinates` on the (…, y, x)
    `data_variables`."""
    for name, values in (("x", meta.x), ("y", meta.y)):
        if values is not None and values.shape == (len(nc.dimensions[name]),):
            nc[name][:] = values
    coords = []
    for name, values, std, units in (("lat", meta.lat, "latitude", "degrees_north"),
                                     ("lon", meta.lon, "longitude", "degrees_east")):
        if values is not None:
            # compressed in NetCDF4 files (netCDF-3 trajectory parts take no filters; compressed at close)
            v = nc.createVariable(name, "f8", ("y", "x"), zlib=nc.data_model == "NETCDF4")
            v.setncatts({"standard_name": std, "long_name": f"{std} of cell centre", "units": units})
            v[:] = values
            coords.append(name)
    if meta.mapping_name:
        g = nc.createVariable(meta.mapping_name, "i4", ())
        g.setncatts({k: v for k, v in meta.mapping_attrs.items() if not k.startswith("_")})
    if meta.mask is not None:
        m = nc.createVariable("mask", "i1", ("y", "x"))
        m.setncatts({"long_name": "ocean mask", "flag_values": np.array([0, 1], dtype="i1"),
                     "flag_meanings": "land ocean"})
        m[:] = (np.nan_to_num(meta.mask) > 0.5).astype("i1")
    for name in data_variables:
        var = nc[name]
        if var.dimensions[-2:] == ("y", "x"):
            if meta.mapping_name:
                var.setncattr("grid_mapping", meta.mapping_name)
            if coords:
                var.setncattr("coordinates", " ".join(coords))
