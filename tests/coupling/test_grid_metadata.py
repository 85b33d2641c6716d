"""A run's outputs carry the geography of its input: projection x/y, lat/lon, the CF grid mapping and the mask
(a region's file says where it is); the built-in box keeps plain (i + ½)·dx coordinates."""
from datetime import datetime

import numpy as np
import xarray as xr

from coupling.grid_metadata import grid_metadata
from coupling.output import TrajectoryWriter


def _region_like(ny=3, nx=4) -> xr.Dataset:
    x, y = -2.0e6 + 25e3 * np.arange(nx), -1.0e6 + 25e3 * np.arange(ny)
    lat = 55 + 0.2 * np.arange(ny)[:, None] + 0 * np.arange(nx)
    lon = -80 + 0.3 * np.arange(nx)[None] + 0 * np.arange(ny)[:, None]
    mask = np.ones((ny, nx))
    mask[0, 0] = 0
    ds = xr.Dataset({"uas": (("time", "y", "x"), np.zeros((1, ny, nx)), {"grid_mapping": "polar_stereographic"}),
                     "mask": (("y", "x"), mask), "polar_stereographic": ((), 0,
                     {"grid_mapping_name": "polar_stereographic", "straight_vertical_longitude_from_pole": -45.0,
                      "standard_parallel": 70.0, "latitude_of_projection_origin": 90.0})},
                    coords={"x": ("x", x / 1e3, {"units": "km"}), "y": ("y", y, {"units": "m"}),
                            "lat": (("y", "x"), lat, {"standard_name": "latitude"}),
                            "lon": (("y", "x"), lon, {"standard_name": "longitude"})})
    return ds


def test_trajectory_carries_the_inputs_geography(tmp_path):
    src = _region_like()
    meta = grid_metadata(src)
    with TrajectoryWriter(tmp_path / "run.nc", {"sic": {"units": "1"}}, 2, 3, 4, 25e3, datetime(2001, 1, 1),
                          grid=meta) as w:
        w.append(datetime(2001, 1, 1, 12), 1, {"sic": np.zeros((2, 3, 4))})
    out = xr.open_dataset(tmp_path / "run.nc")
    np.testing.assert_array_equal(out["x"].values, src["x"].values * 1e3)   # km in the input, m in the output
    np.testing.assert_array_equal(out["lat"].values, src["lat"].values)
    assert out["sic"].attrs["grid_mapping"] == "polar_stereographic" and "lat" in out["sic"].encoding["coordinates"]
    assert out["polar_stereographic"].attrs["grid_mapping_name"] == "polar_stereographic"
    assert out["mask"].values[0, 0] == 0 and list(out["mask"].attrs["flag_values"]) == [0, 1]


def test_plain_box_has_no_geography(tmp_path):
    box = xr.Dataset({"uas": (("time", "y", "x"), np.zeros((1, 3, 4)))},
                     coords={"x": np.arange(4) * 1e4, "y": np.arange(3) * 1e4})
    assert grid_metadata(box) is None
    with TrajectoryWriter(tmp_path / "box.nc", {"sic": {"units": "1"}}, 1, 3, 4, 16e3, datetime(2001, 1, 1)) as w:
        w.append(datetime(2001, 1, 1, 12), 1, {"sic": np.zeros((1, 3, 4))})
    out = xr.open_dataset(tmp_path / "box.nc")
    np.testing.assert_array_equal(out["x"].values, (np.arange(4) + 0.5) * 16e3)
    assert "lat" not in out and "grid_mapping" not in out["sic"].attrs
