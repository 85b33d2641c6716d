"""Synthetic forcing on the Hudson Bay grid (training.data.region_forcing): the file the tools read, land-aware
currents, storm tracks, latitude-dependent climate."""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
import xarray as xr

from coupling.forcing import FileForcing
from icecorr.base.config import load_config
from icecorr.base.variables import FORCING_VARIABLES
from tests.helpers.paths import CONFIGS
from training.data.forcing import FORCING_NAMES, MU71_SW
from training.data.geography import Geography, RegionGrid, grid_north_angle
from training.data.config import RegionForcingConfig
from training.data.region_forcing import (RegionForcing, coastal_taper, generate_region_forcing,
                                          toa_daily_insolation, write_region_forcing)

REGION = CONFIGS / "region" / "hudson_bay"
START = "2000-10-01T00:00"


def changed(cfg: RegionForcingConfig, **update) -> RegionForcingConfig:
    """A validated copy of `cfg` with some keys changed."""
    return RegionForcingConfig.model_validate({**cfg.model_dump(), **update})


@pytest.fixture(scope="module")
def geo() -> Geography:
    return Geography(load_config(RegionGrid, REGION / "grid.yaml"))


@pytest.fixture(scope="module")
def cfg() -> RegionForcingConfig:
    return load_config(RegionForcingConfig, REGION / "forcing.yaml")


def test_forcing_file_is_read_by_the_coupling_tools(geo, cfg, tmp_path):
    path = write_region_forcing(tmp_path / "f.nc", cfg, geo, START, 4, seed=3)
    forcing = FileForcing(path)
    forcing.check_grid(geo.shape)
    forcing.check_finite_window(0, 3)
    now, nxt = forcing.pair(0)
    assert set(now) == set(FORCING_VARIABLES)
    np.testing.assert_array_equal(forcing.mask, geo.mask)
    assert forcing.time(1) == datetime(2000, 10, 1, 12)
    with xr.open_dataset(path) as ds:
        assert ds["lat"].dtype == np.float64 and ds["uas"].dims == ("time", "y", "x")
        assert ds["uas"].attrs["grid_mapping"] == "polar_stereographic" and "polar_stereographic" in ds
        assert {"uas_noise", "vas_noise", "mask", "coriolis_parameter"} <= set(ds.data_vars)


def test_all_fields_finite_currents_zero_on_land(geo, cfg):
    ds = generate_region_forcing(cfg, geo, START, 3, seed=1, noise=False)
    assert list(ds.data_vars)[:len(FORCING_NAMES)] == list(FORCING_NAMES)
    land = geo.mask < 0.5
    for name in FORCING_NAMES:
        assert np.isfinite(ds[name].values).all(), name
    assert not ds["uo"].values[:, land].any() and not ds["vo"].values[:, land].any()
    assert (ds["rsds"].values >= 0).all() and 230 < ds["tas"].values.min() < ds["tas"].values.max() < 300


def test_same_seed_same_forcing(geo, cfg):
    a = RegionForcing(cfg, geo, START, 30, seed=5)
    b = RegionForcing(cfg, geo, START, 30, seed=5)
    b.resolved_at(25)
    for name, arr in a.resolved_at(20).items():
        np.testing.assert_array_equal(arr, b.resolved_at(20)[name])


def test_currents_divergence_free_along_the_coast_and_cyclonic(geo, cfg):
    f = RegionForcing(changed(cfg, ocean_eddy_speed=0.0), geo, START, 2, seed=2)
    uo, vo = f.currents_at(0)
    dx = geo.region.dx
    ocean = geo.mask > 0.5
    # centred divergence at ocean cells whose four neighbours are ocean (their velocities are not zeroed)
    inner = ocean[1:-1, 1:-1] & ocean[2:, 1:-1] & ocean[:-2, 1:-1] & ocean[1:-1, 2:] & ocean[1:-1, :-2]
    div = (uo[1:-1, 2:] - uo[1:-1, :-2] + vo[2:, 1:-1] - vo[:-2, 1:-1]) / (2 * dx)
    assert np.abs(div[inner]).max() < 1e-18
    speed = np.hypot(uo, vo)
    assert 0.005 < speed[ocean].max() < 0.1
    # the boundary current hugs the coast: fastest next to land, slow in the interior
    taper = coastal_taper(geo.mask, dx, cfg.coastal_current_width_km * 1e3)
    assert speed[ocean & (taper < 0.5)].mean() > 3 * speed[ocean & (taper > 0.99)].mean()
    # counter-clockwise about the basin's centroid: angular momentum > 0
    xx, yy = np.meshgrid(geo.x, geo.y)
    xm, ym = xx[ocean].mean(), yy[ocean].mean()
    assert ((xx - xm) * vo - (yy - ym) * uo)[ocean].sum() > 0
    g = RegionForcing(changed(cfg, coastal_current_cyclonic=False), geo, START, 2, seed=2)
    u2, v2 = g.currents_at(0)
    assert ((xx - xm) * v2 - (yy - ym) * u2)[ocean].sum() < ((xx - xm) * vo - (yy - ym) * uo)[ocean].sum()


def test_eddies_are_land_aware_too(geo, cfg):
    f = RegionForcing(changed(cfg, ocean_gyre_speed={"lo": 0.0, "hi": 0.0}), geo, START, 2, seed=4)
    uo, vo = f.currents_at(1)
    ocean = geo.mask > 0.5
    assert not uo[~ocean].any() and 0.002 < np.hypot(uo, vo)[ocean].std() < 0.05


def test_storm_tracks_follow_the_configured_bearing(geo, cfg):
    f = RegionForcing(cfg, geo, START, 120, seed=6)
    assert len(f.vortices) > 10
    north = grid_north_angle(geo.region.centre_lon)
    for v in f.vortices:
        bearing = np.degrees(np.arctan2(v.cx, v.cy)) - north  # clockwise from true north
        off = (bearing - cfg.storm_heading_deg + 180.0) % 360.0 - 180.0
        assert abs(off) <= cfg.storm_heading_spread_deg + 1e-9
        # at mid-life the storm is over the region (widened by the spawn margin)
        t_mid = v.t0 + v.lifetime / 2
        m = cfg.vortices.spawn_margin
        assert -m * f.lx <= v.x0 + v.cx * (t_mid - v.t0) <= (1 + m) * f.lx
        assert -m * f.ly <= v.y0 + v.cy * (t_mid - v.t0) <= (1 + m) * f.ly


def test_climate_follows_latitude(geo, cfg):
    calm = changed(cfg, vortices={**cfg.vortices.model_dump(), "genesis_per_day": 0.0})
    f = RegionForcing(calm, geo, "2000-12-20T00:00", 2, seed=1)
    winter = f.resolved_at(0)
    south, north = geo.lat < 55, geo.lat > 63
    assert winter["tas"][south].mean() > winter["tas"][north].mean() + 4
    assert winter["rsds"][south].mean() > 2 * winter["rsds"][north].mean()
    slope = np.polyfit(geo.lat.ravel(), winter["tas"].ravel(), 1)[0]
    assert slope == pytest.approx(cfg.tas_lat_gradient_c, abs=1e-9)
    summer = RegionForcing(calm, geo, "2000-07-10T00:00", 2, seed=1).resolved_at(0)
    assert summer["tas"].max() > 273.15 + 5  # no 0 degC cap: the bay can melt out
    assert summer["rlds"].mean() > winter["rlds"].mean() + 100


def test_insolation_and_its_calibration_to_mu71():
    assert toa_daily_insolation(0.0, 80.0) == pytest.approx(1361 / np.pi, rel=0.02)  # equinox at the equator
    assert toa_daily_insolation(80.0, 355.0) == 0.0  # polar night
    days = np.arange(365) + 0.5
    mean80 = np.mean([toa_daily_insolation(80.0, d) for d in days])
    assert RegionForcingConfig().sw_transmissivity * mean80 == pytest.approx(MU71_SW.mean(), rel=0.03)
