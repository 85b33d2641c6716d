"""`metrics.nc`, the scores of `icecorr evaluate` as a CF-1.10 NetCDF4 file, and its reader.

CF coordinate variables are numeric, so a string-valued dimension (`model`, `variable`, `source`, …) is written as
a dimension without a coordinate variable plus a label variable `<dim>_label` (CF §6.1), named in the
`coordinates` attribute of the variables along it; `read_metrics_netcdf` turns the labels back into the index
coordinates `evaluate` made. A score along `variable` has the units of each variable, which one `units` attribute
cannot say: the file gives them in the label variable `variable_units` and the score carries no `units`. Units
UDUNITS does not parse (e.g. `day-q`, a power that changes along `q`) move into a `comment`, and attributes a score
inherited from a state variable (its `standard_name` and `long_name`) are replaced by the score's own name.
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import xarray as xr

from icecorr.base.files import write_dataset_atomic
from icecorr.base.units import UnitsError, parse_units
from icecorr.base.variables import VARIABLES

LABEL = "_label"


def _readable_units(text: str) -> bool:
    try:
        parse_units(text)
    except UnitsError:
        return False
    return True


def cf_metrics(metrics: xr.Dataset) -> xr.Dataset:
    """A copy of `metrics` laid out as CF wants it in a file (module docstring)."""
    ds = metrics.copy()
    for name, var in ds.data_vars.items():
        attrs = dict(var.attrs)
        inherited = attrs.pop("standard_name", None) is not None  # a score is not the quantity it scores
        if inherited or not attrs.get("long_name"):
            attrs["long_name"] = name.replace("_", " ")
        units = attrs.get("units")
        if "variable" in var.dims and units is not None:
            attrs.pop("units")
            attrs["comment"] = "in the units of each variable (variable_units)"
        elif units is not None and not _readable_units(str(units)):
            attrs.pop("units")
            attrs["comment"] = f"units: {units}"
        var.attrs = {re.sub(r"[^A-Za-z0-9_]", "_", k): v for k, v in attrs.items()}  # CF §2.3 names
    if "variable" in ds.dims and "variable" in ds.coords:
        names = [str(v) for v in ds["variable"].values]
        ds = ds.assign_coords(variable_units=("variable", [VARIABLES[v]["units"] if v in VARIABLES else ""
                                                           for v in names], {"long_name": "units of each variable"}))
    for dim in list(ds.dims):
        if dim in ds.coords and ds[dim].dtype.kind in "OUS":
            values, attrs = ds[dim].values, dict(ds[dim].attrs)
            ds = ds.drop_vars(dim).assign_coords({dim + LABEL: (dim, values.astype(str),
                                                                {"long_name": f"{dim} name", **attrs})})
    for name in ds.coords:
        if not ds[name].attrs.get("long_name") and not ds[name].attrs.get("standard_name"):
            ds[name].attrs["long_name"] = str(name).replace("_", " ")
    ds.attrs = {"Conventions": "CF-1.10", "title": "icecorr evaluate scores", **ds.attrs,
                "history": f"{datetime.now():%Y-%m-%dT%H:%M:%S} written by icecorr evaluate"}
    return ds


def write_metrics_netcdf(metrics: xr.Dataset, path: Path) -> Path:
    """The metrics dataset as CF NetCDF4 (`cf_metrics`; written to a temporary name, then renamed), with no
    _FillValue on its coordinate variables (CF forbids it; xarray would add NaN to float and time ones)."""
    ds = cf_metrics(metrics)
    return write_dataset_atomic(ds, path, encoding={name: {"_FillValue": None} for name in ds.dims
                                                    if name in ds.coords})


def read_metrics_netcdf(path: str | Path) -> xr.Dataset:
    """A `metrics.nc` as `evaluate` made it: label variables back as the index coordinates of their dimensions."""
    ds = xr.load_dataset(path)
    for name in [str(n) for n in ds.coords if str(n).endswith(LABEL)]:
        dim = name[: -len(LABEL)]
        if ds[name].dims == (dim,):
            attrs = {k: v for k, v in ds[name].attrs.items() if k != "long_name"}
            ds = ds.drop_vars(name).assign_coords({dim: (dim, ds[name].values.astype(object), attrs)})
    return ds.drop_vars("variable_units", errors="ignore")
