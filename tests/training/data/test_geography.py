"""Real geography (training.data.geography): the Hudson Bay grid against the coastline data, the mask rule, the
projection, Coriolis and the CF grid mapping."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from pyproj import CRS, Transformer
from scipy import ndimage

from icecorr.base.config import ConfigError, load_config
from tests.helpers.paths import CONFIGS
from training.data.geography import (EARTH_ROTATION, Geography, RegionGrid, attach_geography, check_landmarks,
                                     coriolis_parameter, fill_dead_ends, geography_dataset, grid_mapping_attrs,
                                     grid_north_angle, is_ocean, keep_water_body, transformer)

HUDSON_BAY = CONFIGS / "region" / "hudson_bay" / "grid.yaml"


@pytest.fixture(scope="module")
def geo() -> Geography:
    return Geography(load_config(RegionGrid, HUDSON_BAY))


def test_hudson_bay_grid_size_and_ocean_share(geo):
    assert geo.shape == (68, 52)
    assert geo.region.dx == 25e3
    assert 0.35 < geo.ocean_share() < 0.55
    # projected ocean area ~ 0.97 M km2 (Hudson + James Bay and the entrance of Hudson Strait)
    assert 0.85e6 < geo.mask.sum() * 625.0 < 1.1e6


def test_landmarks_agree_with_mask_and_coastline_data(geo):
    marks = check_landmarks(geo)
    assert len(marks) >= 10
    assert {m["expected"] for m in marks} == {"land", "ocean"}
    bad = [m for m in marks if not m["ok"]]
    assert not bad, bad


def test_mask_agrees_with_the_coastline_data_at_cell_centres(geo):
    centre_ocean = is_ocean(geo.lat, geo.lon)
    raw = geo.ocean_fraction >= 0.5
    assert (raw == centre_ocean).mean() > 0.93  # the fraction rule differs from centre samples only on coasts
    inner = np.s_[1:-1, 1:-1]
    assert ((geo.mask > 0.5) == centre_ocean)[inner].mean() > 0.9
    assert not ((geo.mask > 0.5) & ~raw).any()  # cleaning only turns ocean into land


def test_mask_rule_closed_frame_one_water_body_no_dead_ends(geo):
    m = geo.mask
    assert m.dtype == np.float64 and set(np.unique(m)) == {0.0, 1.0}
    assert not m[0].any() and not m[-1].any() and not m[:, 0].any() and not m[:, -1].any()
    _, n = ndimage.label(m > 0.5)
    assert n == 1
    ocean = m > 0.5
    p = np.pad(ocean, 1)
    neighbours = p[:-2, 1:-1].astype(int) + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]
    assert (neighbours[ocean] >= 2).all()


def test_fill_dead_ends_and_keep_water_body():
    ocean = np.zeros((9, 12), dtype=bool)
    ocean[1:4, 1:4] = True           # basin A
    ocean[1:4, 7:10] = True          # basin B
    ocean[2, 4:7] = True             # one-cell-wide channel A-B: kept
    ocean[5:8, 1:4] = True           # basin C, detached
    ocean[4:7, 5] = True             # a one-cell inlet hanging off... nothing: an isolated line, filled away
    ocean[3, 10] = True              # a one-cell dead end off basin B: filled
    ocean[7, 10] = True              # an isolated cell: filled
    out = fill_dead_ends(ocean)
    assert out[2, 4:7].all() and not out[4:7, 5].any() and not out[3, 10] and not out[7, 10]
    assert out[1:4, 1:4].all() and out[1:4, 7:10].all()
    kept = keep_water_body(out, 2, 2)
    assert kept[1:4, 7:10].all() and not kept[5:8, 1:4].any()
    with pytest.raises(ValueError, match="land"):
        keep_water_body(out, 0, 0)


def test_grid_spacing_orientation_and_pyproj_round_trip(geo):
    assert np.allclose(np.diff(geo.x), 25e3) and np.allclose(np.diff(geo.y), 25e3)  # y increases with row j
    # the grid is centred on the configured point
    xc, yc = transformer().transform(geo.region.centre_lon, geo.region.centre_lat)
    assert np.isclose(0.5 * (geo.x[0] + geo.x[-1]), xc) and np.isclose(0.5 * (geo.y[0] + geo.y[-1]), yc)
    # lon/lat of every centre back to x/y with pyproj (independent transformer)
    fwd = Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True)
    x, y = fwd.transform(geo.lon, geo.lat)
    xx, yy = np.meshgrid(geo.x, geo.y)
    assert np.abs(x - xx).max() < 1e-3 and np.abs(y - yy).max() < 1e-3
    assert 49 < geo.lat.min() < 50 and 66 < geo.lat.max() < 68 and -101 < geo.lon.min() and geo.lon.max() < -68
    # lat increases toward the pole: up the rows at the grid's centre column
    assert np.all(np.diff(geo.lat[:, geo.shape[1] // 2]) > 0)
    assert geo.cell_of(-86.0, 60.0) == (45, 26)
    with pytest.raises(ValueError, match="outside"):
        geo.cell_of(0.0, 60.0)


def test_grid_north_angle_is_the_meridian_convergence():
    fwd = transformer()
    for lon in (-45.0, -85.0, 30.0, 140.0):
        x0, y0 = fwd.transform(lon, 60.0)
        x1, y1 = fwd.transform(lon, 60.01)
        angle = np.degrees(np.arctan2(x1 - x0, y1 - y0))  # clockwise from grid +y
        assert np.isclose(angle, grid_north_angle(lon), atol=1e-6)
    assert grid_north_angle(-85.0) == pytest.approx(40.0)


def test_coriolis(geo):
    assert coriolis_parameter(60.0) == pytest.approx(2 * 7.2921e-5 * np.sin(np.pi / 3), rel=1e-5)
    assert coriolis_parameter(90.0) == pytest.approx(2 * EARTH_ROTATION)
    np.testing.assert_allclose(geo.coriolis, 2 * EARTH_ROTATION * np.sin(np.deg2rad(geo.lat)))
    assert geo.coriolis.shape == geo.shape and 1.1e-4 < geo.coriolis.min() < geo.coriolis.max() < 1.35e-4


def test_cf_attributes(geo):
    ds = xr.Dataset({"tas": (("time", "y", "x"), np.zeros((2, *geo.shape)))})
    out = attach_geography(ds, geo)
    gm = out["polar_stereographic"].attrs
    assert gm["grid_mapping_name"] == "polar_stereographic"
    assert gm["straight_vertical_longitude_from_pole"] == -45.0 and gm["standard_parallel"] == 70.0
    assert gm["latitude_of_projection_origin"] == 90.0 and gm["false_easting"] == gm["false_northing"] == 0.0
    assert gm["semi_major_axis"] == 6378137.0 and gm["inverse_flattening"] == 298.257223563
    assert CRS.from_wkt(gm["crs_wkt"]).to_epsg() == 3413
    # the CF parameters alone (without crs_wkt) give the same projection
    params = {k: v for k, v in grid_mapping_attrs().items() if k != "crs_wkt"}
    x, y = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_cf(params), always_xy=True).transform(-86.0, 60.0)
    assert np.allclose((x, y), transformer().transform(-86.0, 60.0), atol=1e-3)
    assert out["x"].attrs["standard_name"] == "projection_x_coordinate" and out["x"].attrs["units"] == "m"
    assert out["y"].attrs["standard_name"] == "projection_y_coordinate"
    assert out["lat"].attrs["standard_name"] == "latitude" and out["lon"].attrs["units"] == "degrees_east"
    for name in ("tas", "mask", "coriolis_parameter"):
        assert out[name].attrs["grid_mapping"] == "polar_stereographic"
    assert out["coriolis_parameter"].attrs["units"] == "s-1"
    with pytest.raises(ValueError, match="grid"):
        attach_geography(xr.Dataset({"a": (("y", "x"), np.zeros((3, 3)))}), geo)


def test_geography_dataset_round_trips_through_netcdf(geo, tmp_path):
    path = tmp_path / "grid.nc"
    geography_dataset(geo).to_netcdf(path)
    with xr.open_dataset(path) as ds:
        np.testing.assert_array_equal(ds["mask"].values, geo.mask)
        np.testing.assert_array_equal(ds["lat"].values, geo.lat)
        assert ds["mask"].dtype == np.float64 and ds.attrs["grid_dx"] == 25e3
        assert RegionGrid.model_validate_json(ds.attrs["region_grid"]) == geo.region


def test_region_grid_validation():
    r = RegionGrid(name="box", centre_lon=-86, centre_lat=60, size_km=(110.0, 90.0), resolution_km=20.0)
    assert r.shape == (4, 6) and r.dx == 20e3
    with pytest.raises(ValueError, match="at least 4"):
        RegionGrid(name="box", centre_lon=-86, centre_lat=60, size_km=(50.0, 200.0), resolution_km=20.0)
    with pytest.raises(ValueError):
        RegionGrid(name="Hudson Bay", centre_lon=-86, centre_lat=60, size_km=(100.0, 100.0), resolution_km=20.0)
    with pytest.raises(ConfigError, match="landmarks"):
        load_config(RegionGrid, HUDSON_BAY, ["landmarks=[{name: x, lon: 0, lat: 0, surface: ice}]"])
