"""The regional twin's grids (training.data.region_twin) and `icecorr generate` on a region: consistent masks,
real mask, lat/lon and grid mapping in the pair files, no ice on land; the box keeps its all-ocean mask.

The coastline data are replaced by a synthetic coast (`synthetic_ocean`): no 0.9 GiB global grid in the tests."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from icecorr.base.config import ConfigError, load_config
from training.data import geography
from training.data.coarsegrain import coarse_ocean_mask
from training.data.config import RegionForcingConfig, TwinConfig
from training.data.geography import RegionGrid
from training.data.region_twin import consistent_masks, fine_region, region_twin_grids

#: a 300 km square in the middle of Hudson Bay at 25 km: 12 x 12 coarse cells, 24 x 24 truth cells
SMALL = {"name": "small_bay", "centre_lon": -86.0, "centre_lat": 60.0, "size_km": [300.0, 300.0],
         "resolution_km": 25.0, "supersample": 2}


def synthetic_ocean(lat, lon):
    """Land east of 85.2°W (a coast) and a round island near 59.6°N 87°W; ocean elsewhere."""
    lat, lon = np.asarray(lat), np.asarray(lon)
    island = (lat - 59.6) ** 2 + ((lon + 87.0) * 0.5) ** 2 < 0.12 ** 2
    return ~((lon > -85.2) | island)


@pytest.fixture
def fake_coast(monkeypatch):
    monkeypatch.setattr(geography, "is_ocean", synthetic_ocean)


def test_consistent_masks_obey_the_coarse_graining_rule():
    rng = np.random.default_rng(0)
    raw = np.ones((32, 40), dtype=bool)
    raw[:, 30:] = False                                     # a coast
    raw[10:13, 8:11] = False                                # an island
    raw |= rng.random(raw.shape) < 0.05                     # speckle: lakes, dead ends, isolated cells
    raw[5, 33] = raw[6, 33] = True                          # a fine inlet in coarse land
    fine, coarse = consistent_masks(raw, 2)
    assert np.array_equal(coarse_ocean_mask(fine, 2), coarse)
    assert not fine[np.kron(coarse, np.ones((2, 2))) == 0].any()   # no truth ocean where the coarse grid is land
    assert not (fine > raw).any()                                  # cleaning only turns ocean into land
    for m in (fine, coarse):
        assert not m[0].any() and not m[-1].any() and not m[:, 0].any() and not m[:, -1].any()
        p = np.pad(m, 1)
        neighbours = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]
        assert (neighbours[m > 0] >= 2).all()                      # no dead end


def test_region_twin_grids(fake_coast):
    region = RegionGrid(**SMALL)
    g = region_twin_grids(region, 2)
    assert (g.coarse.ny, g.coarse.nx, g.coarse.dx) == (12, 12, 25_000.0)
    assert (g.fine.ny, g.fine.nx, g.fine.dx) == (24, 24, 12_500.0)
    cm, fm = g.coarse.ocean_mask(), g.fine.ocean_mask()
    assert np.array_equal(coarse_ocean_mask(fm, 2), cm)
    assert 0 < cm[1:-1, 1:-1].mean() < 1                           # land inside the frame: the coast
    assert np.array_equal(g.fine_geo.mask, fm) and np.array_equal(g.coarse_geo.mask, cm)
    assert np.allclose(g.coarse.latitudes(), g.coarse_geo.lat) and 58 < g.fine.latitudes().mean() < 62
    assert fine_region(region, 2).supersample == 1
    with pytest.raises(ValueError, match="whole number"):
        region_twin_grids(RegionGrid(**{**SMALL, "size_km": [310.0, 300.0]}), 2)


def test_twin_config_region_sections(tmp_path):
    (tmp_path / "grid.yaml").write_text("name: small_bay\ncentre_lon: -86.0\ncentre_lat: 60.0\n"
                                        "size_km: [300.0, 300.0]\nresolution_km: 25.0\n")
    (tmp_path / "forcing.yaml").write_text("tas_lat_gradient_c: -0.7\nstorm_heading_deg: 90.0\n")
    cfg = load_config(TwinConfig, None, [f"region={tmp_path / 'grid.yaml'}", f"forcing={tmp_path / 'forcing.yaml'}"])
    assert (cfg.grid.nx, cfg.grid.ny, cfg.grid.dx) == (12, 12, 25_000.0)
    assert isinstance(cfg.forcing, RegionForcingConfig) and cfg.forcing.storm_heading_deg == 90.0
    assert cfg.model_dump()["forcing"]["tas_lat_gradient_c"] == -0.7   # region keys survive the dump (provenance)
    with pytest.raises(ConfigError, match="grid.nx"):
        load_config(TwinConfig, None, [f"region={tmp_path / 'grid.yaml'}", "grid.nx=32"])
    with pytest.raises(ConfigError, match="storm_heading_deg"):                # region keys need a region
        load_config(TwinConfig, None, ["forcing.storm_heading_deg=90"])
    assert type(load_config(TwinConfig).forcing).__name__ == "ForcingConfig"


@pytest.fixture
def region_pairs(fake_coast, tmp_path):
    from training.data.generate import run_generate

    cfg = TwinConfig.model_validate({
        "region": SMALL, "forcing": {"storm_heading_deg": 100.0},
        "generate": {"refinement": 2, "spinup_days": 1, "run_days": 2, "coarse_spinup_steps": 1,
                     "seeds": {"train": [1], "val": [], "test": []}, "start": "2001-01-10T00:00"}})
    run_generate(cfg, tmp_path / "data", progress=False)
    return xr.load_dataset(tmp_path / "data" / "train.nc"), cfg


def test_generate_on_a_region_writes_mask_geography_and_no_ice_on_land(region_pairs):
    ds, cfg = region_pairs
    grids = region_twin_grids(cfg.region, 2)
    mask = ds["mask"].values
    assert np.array_equal(mask, grids.coarse.ocean_mask()) and (mask == 0).sum() > 44   # more than the frame
    assert ds["lat"].dims == ("y", "x") and ds["lon"].dims == ("y", "x")
    assert np.allclose(ds["lat"].values, grids.coarse_geo.lat)
    assert ds["x"].attrs["standard_name"] == "projection_x_coordinate"
    assert ds["polar_stereographic"].attrs["grid_mapping_name"] == "polar_stereographic"
    assert ds["initial_sic"].attrs["grid_mapping"] == "polar_stereographic"
    land = mask == 0
    for v in ("sic", "sit", "snt", "siu", "siv"):
        for prefix in ("initial_", "forecast_", "reference_", "residual_"):
            assert np.all(ds[prefix + v].values[:, land] == 0.0), prefix + v
    assert ds["initial_sic"].values[:, ~land].mean() > 0.5
    assert "storm_heading_deg" in ds.attrs["config"] and "small_bay" in ds.attrs["config"]
