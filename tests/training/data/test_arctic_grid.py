"""The Arctic region (configs/region/arctic): its 25 km mask against known points, the walls that close Fram
Strait, the Barents opening and Bering Strait, latitude-dependent Coriolis, and the seasonal forcing's cycle."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from icecorr.base.config import load_config
from tests.helpers.paths import CONFIGS
from training.data.config import RegionForcingConfig
from training.data.geography import Geography, RegionGrid, check_landmarks, coriolis_parameter, is_ocean
from training.data.region_forcing import RegionForcing
from training.data.region_twin import region_twin_grids

ARCTIC = CONFIGS / "region" / "arctic"


@pytest.fixture(scope="module")
def region() -> RegionGrid:
    return load_config(RegionGrid, ARCTIC / "grid.yaml")


@pytest.fixture(scope="module")
def geo(region) -> Geography:
    return Geography(region)


def test_arctic_grid_size_ocean_area_and_one_water_body(geo):
    assert geo.shape == (128, 192) and geo.region.dx == 25e3
    ny, nx = geo.shape
    assert ny % 16 == 0 and nx % 16 == 0  # U-Nets with up to 4 down-samplings run on the whole domain
    # Arctic Ocean with the Barents, Kara, Laptev, East Siberian, Chukchi and Beaufort Seas and the archipelago:
    # about 9.5 million km2 (the real one with its marginal seas: ~ 9.4-10 M km2 without the Greenland Sea)
    assert 8.5e6 < geo.mask.sum() * 625.0 < 11e6
    _, n = ndimage.label(geo.mask > 0.5)
    assert n == 1


def test_arctic_landmarks(geo):
    marks = check_landmarks(geo)
    names = {m["name"] for m in marks}
    for wanted in ("North Pole", "Beaufort Sea", "Laptev Sea", "Barents Sea", "Greenland (north interior)",
                   "Svalbard (Spitsbergen)", "Novaya Zemlya", "Severnaya Zemlya"):
        assert wanted in names
    bad = [m for m in marks if not m["ok"]]
    assert not bad, bad


@pytest.mark.parametrize("name, lon, lat", [("Greenland Sea, south of Fram Strait", 0.0, 77.0),
                                            ("Norwegian Sea, south of the Barents opening", 12.0, 72.5),
                                            ("Chukchi side of Bering Strait is kept", -168.0, 68.0)])
def test_walls_close_the_straits(geo, name, lon, lat):
    j, i = geo.cell_of(lon, lat)
    assert bool(is_ocean(np.array(lat), np.array(lon)))  # open sea in the coastline data
    kept = geo.mask[j, i] > 0.5
    assert kept == name.endswith("kept"), name


def test_bering_sea_is_cut_off(geo):
    """Bering Sea water inside the frame (south of the strait) is not part of the domain."""
    j, i = geo.cell_of(-172.0, 64.0)
    assert bool(is_ocean(np.array(64.0), np.array(-172.0))) and geo.mask[j, i] == 0.0


def test_emulator_grid_is_the_bbm_grid_with_latitude_dependent_coriolis(region):
    coarse = region.model_copy(update={"resolution_km": 100.0, "supersample": 4})
    grids = region_twin_grids(coarse, 1)
    assert np.array_equal(grids.fine.mask, grids.coarse.mask)
    lat = np.asarray(grids.fine.latitude)
    assert lat.shape == coarse.shape and 60 < lat.min() and lat.max() > 89
    f = coriolis_parameter(lat)
    assert f.max() / f.min() > 1.05  # f varies from the marginal seas to the pole


@pytest.mark.slow
def test_arctic_forcing_has_a_seasonal_cycle_and_storms(region):
    cfg = load_config(RegionForcingConfig, ARCTIC / "forcing.yaml")
    geo = Geography(region.model_copy(update={"resolution_km": 200.0, "supersample": 2}))
    forcing = RegionForcing(cfg, geo, "2000-09-01T00:00", 2 * 137 + 731, seed=1)
    pole = geo.cell_of(0.0, 90.0)
    jan, jul = forcing.resolved_at(2 * 137), forcing.resolved_at(2 * 318)  # mid-January, mid-July
    barents = geo.cell_of(40.0, 74.0)
    assert jan["tas"][pole] < 250.0 < 265.0 < jul["tas"][pole]  # about -32 C and -5 C at the pole
    assert jul["tas"][barents] > 273.15 > jan["tas"][barents]  # the marginal seas thaw in summer
    assert jan["rsds"][pole] == pytest.approx(0.0, abs=1e-6) and jul["rsds"][pole] > 150.0
    # a second year looks like the first: the cycle repeats (multi-year runs)
    jan2 = forcing.resolved_at(2 * 137 + 730)
    assert abs(np.mean(jan2["tas"]) - np.mean(jan["tas"])) < 8.0
    # storms: strong winds somewhere on the domain most of the time (about one new low a day)
    windy = [np.hypot(f["uas"], f["vas"]).max() > 12.0 for f in (forcing.resolved_at(k) for k in range(0, 730, 20))]
    assert np.mean(windy) > 0.3
