"""Observations on their own grid, brought onto the model grid.

Where the source points are: projection x/y coordinates (any UDUNITS length) in the model grid's plane, or 2-D
latitude/longitude transformed into the model's projection (its CF `grid_mapping`, through pyproj). Two methods:

* `mean` (conservative): the mean of the valid source cells whose centres fall inside a model cell; a model cell is
  observed when at least `min_valid_fraction` of its source cells are valid. For source cells nested in the model
  cells (12.5 km in 25 km on one projection) this is the exact area average, so a field's integral is kept. The
  uncertainty of the mean of n independent errors e_k is sqrt(Σ e_k²) / n.
* `nearest`: the value, validity and uncertainty of the nearest source cell centre within 0.75 of the larger grid
  spacing (flags, categorical fields, or a source coarser than the model).

Why not pyresample: its averaging resampler (`bucket`) needs dask; binning in the model's projection plane with
pyproj and a scipy k-d tree (both already dependencies) is exact for these regular grids and needs nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from icecorr.base.errors import InputError
from icecorr.base.units import is_length, unit_conversion


@dataclass(frozen=True)
class ModelPlane:
    """The model grid's cell centres x (nx,), y (ny,) in m, its spacing dx (m) and projection (pyproj CRS or None
    when the grid is a plain Cartesian box)."""

    x: np.ndarray
    y: np.ndarray
    dx: float
    crs: object | None


def grid_mapping_name(ds: xr.Dataset) -> str | None:
    """The name of the CF grid-mapping variable that a data variable of `ds` names and `ds` holds, or None."""
    return next((str(v.attrs["grid_mapping"]) for v in ds.data_vars.values()
                 if str(v.attrs.get("grid_mapping")) in ds.variables), None)


def _crs_of(ds: xr.Dataset, var_name: str | None = None):
    """The pyproj CRS of the CF grid_mapping that `var_name` (or any variable) names, or None."""
    names = [ds[var_name].attrs.get("grid_mapping")] if var_name else []
    names += [v.attrs.get("grid_mapping") for v in ds.data_vars.values()]
    for name in names:
        if name and name in ds.variables:
            from pyproj import CRS

            return CRS.from_cf(dict(ds[name].attrs))
    return None


def model_plane(path, ds: xr.Dataset) -> ModelPlane:
    """The model grid of a pair file `ds` (x/y coordinates in a length unit; `grid_dx` or their spacing)."""
    coords = []
    for dim in ("y", "x"):
        if dim not in ds.coords:
            raise InputError(str(path), dim, "no coordinate: regridding needs the model grid's x/y cell centres")
        units = ds[dim].attrs.get("units", "m")
        if not is_length(units):
            raise InputError(str(path), dim, f"units '{units}' are not a length: x/y must be projection coordinates")
        coords.append(np.asarray(ds[dim].values, np.float64) * unit_conversion(units, "m")[0])
    y, x = coords
    dx = float(ds.attrs.get("grid_dx", np.diff(x[:2])[0] if x.size > 1 else np.nan))
    return ModelPlane(x, y, dx, _crs_of(ds))


def projection_coordinate(ds: xr.Dataset, name: str, default_units: str | None = None) -> np.ndarray | None:
    """The 1-D coordinate `name` of `ds` in m when its units (or `default_units` if it has none) are a length in
    any UDUNITS spelling, else None (grid indices, degrees, absent)."""
    if name not in ds.coords or ds[name].ndim != 1:
        return None
    units = ds[name].attrs.get("units", default_units)
    if not is_length(units):
        return None
    return np.asarray(ds[name].values, np.float64) * unit_conversion(units, "m")[0]


def two_d_coordinate(ds: xr.Dataset, standard_name: str, dims: tuple[str, str] | None = None) -> np.ndarray | None:
    """The 2-D variable of `ds` whose standard_name (or name) is `standard_name` ('latitude', 'longitude'), with
    dimensions `dims` if given, as float64; None if there is none."""
    for name, var in ds.variables.items():
        if var.attrs.get("standard_name", name) == standard_name and var.ndim == 2 and \
                (dims is None or var.dims == dims):
            return np.asarray(var.values, np.float64)
    return None


def _projection_coords(ds: xr.Dataset, dims: tuple[str, str]):
    y, x = (projection_coordinate(ds, dim) for dim in dims)
    if y is None or x is None:
        return None
    yy, xx = np.meshgrid(y, x, indexing="ij")
    return xx, yy


def _latlon(ds: xr.Dataset):
    lon, lat = two_d_coordinate(ds, "longitude"), two_d_coordinate(ds, "latitude")
    return (lon, lat) if lon is not None and lat is not None else None


def source_points(path, ds: xr.Dataset, dims: tuple[str, str], value_name: str, plane: ModelPlane):
    """(x, y) in the model plane (m) of every cell of the file's (y, x) grid `dims`, each of shape (sy, sx).

    Projection x/y coordinates are used when the file's grid mapping is the model's (or neither has one); else 2-D
    latitude/longitude are projected with the model's CRS. InputError naming the file when neither works."""
    src_crs = _crs_of(ds, value_name)
    xy = _projection_coords(ds, dims)
    if xy is not None and (src_crs is None and plane.crs is None or
                           src_crs is not None and plane.crs is not None and src_crs.equals(plane.crs)):
        return xy
    lonlat = _latlon(ds)
    if lonlat is not None and plane.crs is not None:
        from pyproj import Transformer

        to_model = Transformer.from_crs("EPSG:4326", plane.crs, always_xy=True)
        return to_model.transform(*lonlat)
    if xy is not None and plane.crs is None and src_crs is not None:
        raise InputError(str(path), value_name, "the file is on a projection (grid_mapping) but the pair file has "
                         "none: give the pair file a grid_mapping, or the file the model's plane coordinates")
    raise InputError(str(path), value_name, "cannot place the file's cells on the model grid: it needs x/y "
                     f"coordinates {dims} in a length unit on the model's projection, or 2-D latitude/longitude "
                     "with a pair file that has a grid_mapping")


class Regridder:
    """Source cells (x, y) (sy, sx) in the model plane → the model grid of `plane`; see the module docstring."""

    def __init__(self, src_x: np.ndarray, src_y: np.ndarray, plane: ModelPlane, min_valid_fraction: float = 0.5):
        from scipy.spatial import cKDTree

        self.shape = (plane.y.size, plane.x.size)
        self.min_valid_fraction = float(min_valid_fraction)
        sx, sy = np.asarray(src_x, np.float64).ravel(), np.asarray(src_y, np.float64).ravel()
        dx = plane.dx
        i = np.floor((sx - (plane.x[0] - dx / 2)) / dx).astype(np.int64)
        j = np.floor((sy - (plane.y[0] - dx / 2)) / dx).astype(np.int64)
        inside = (i >= 0) & (i < self.shape[1]) & (j >= 0) & (j < self.shape[0])
        self.cell = np.where(inside, j * self.shape[1] + i, -1)   # target cell of every source point (-1: outside)
        self.count = np.bincount(self.cell[inside], minlength=self.shape[0] * self.shape[1])
        # nearest source point of every model cell centre, within 0.75 of the coarser spacing
        points = np.column_stack([sx, sy])
        tree = cKDTree(points)
        mx, my = np.meshgrid(plane.x, plane.y)
        spacing = float(np.median(tree.query(points[:2000], k=2)[0][:, 1])) if sx.size > 1 else dx
        dist, self.nearest_index = tree.query(np.column_stack([mx.ravel(), my.ravel()]))
        self.nearest_ok = dist <= 0.75 * max(dx, float(spacing))

    def mean(self, values: np.ndarray, valid: np.ndarray, error: np.ndarray | None = None):
        """Conservative means: (values, observed, error) on the model grid for each record of `values`
        (t, sy, sx); `valid` marks usable source values; `error` (same shape) their uncertainty std."""
        t = values.shape[0]
        n_cells = self.shape[0] * self.shape[1]
        out_v = np.full((t, n_cells), np.nan)
        out_e = np.full((t, n_cells), np.nan)
        seen = np.zeros((t, n_cells), bool)
        ok_cell = self.cell >= 0
        for k in range(t):
            use = valid[k].ravel() & ok_cell
            c = self.cell[use]
            n = np.bincount(c, minlength=n_cells)
            total = np.bincount(c, weights=values[k].ravel()[use], minlength=n_cells)
            seen[k] = (n > 0) & (n >= self.min_valid_fraction * np.maximum(self.count, 1))
            out_v[k, seen[k]] = total[seen[k]] / n[seen[k]]
            if error is not None:
                sq = np.bincount(c, weights=error[k].ravel()[use] ** 2, minlength=n_cells)
                out_e[k, seen[k]] = np.sqrt(sq[seen[k]]) / n[seen[k]]
        shape = (t, *self.shape)
        return out_v.reshape(shape), seen.reshape(shape), out_e.reshape(shape)

    def nearest(self, values: np.ndarray, valid: np.ndarray, error: np.ndarray | None = None):
        """Nearest-neighbour (values, observed, error) on the model grid; arguments as `mean`."""
        t = values.shape[0]
        flat = lambda a: a.reshape(t, -1)[:, self.nearest_index]  # noqa: E731 - one indexing rule for all three
        seen = flat(valid) & self.nearest_ok
        out_v = np.where(seen, flat(values), np.nan)
        out_e = np.where(seen, flat(error), np.nan) if error is not None else np.full(seen.shape, np.nan)
        shape = (t, *self.shape)
        return out_v.reshape(shape), seen.reshape(shape), out_e.reshape(shape)
