"""The moving-cyclone benchmark (physics.md §3, §4.8) on the default 32x32 16 km box for 2 days."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from fortran_stub.config import CoarsePhysicsConfig, GridConfig
from coupling.cyclone import cyclone_centre, cyclone_forcing, run_cyclone


def test_analytic_forcing_matches_nextsimdg():
    grid = GridConfig()
    f = cyclone_forcing(grid, 0.0)
    speed = np.hypot(f["uas"], f["vas"])
    assert speed.max() == pytest.approx(30 / np.e, rel=0.01)  # 11.04 m/s at r = 100 km (cells sample it)
    assert cyclone_centre(grid, 2 * 86400.0) == pytest.approx((358.4e3, 358.4e3))
    # ocean gyre: -0.01 / +0.01 at the south-west corner, clockwise (BenchmarkBoundaries_test values)
    assert f["uo"][0, 0] == pytest.approx(-0.01 * (1 - 1 / 32)) and f["vo"][0, 0] == pytest.approx(0.01 * (1 - 1 / 32))
    # the storm is cyclonic (counter-clockwise) and convergent: inflow ~ cos(72 deg) of the speed
    x = (np.arange(32) + 0.5) * grid.dx
    xx, yy = np.meshgrid(x, x)
    rx, ry = xx - 256e3, yy - 256e3
    r = np.hypot(rx, ry)
    ring = (r > 60e3) & (r < 140e3)
    radial = (f["uas"] * rx + f["vas"] * ry) / r
    tangential = (-f["uas"] * ry + f["vas"] * rx) / r
    assert np.all(radial[ring] < 0) and np.all(tangential[ring] > 0)
    np.testing.assert_allclose(-radial[ring] / speed[ring], np.cos(np.deg2rad(72)), rtol=1e-9)
    # away from the track the wind weakens as the storm moves off
    later = cyclone_forcing(grid, 3600.0)
    assert np.hypot(later["uas"], later["vas"])[0, 0] < speed[0, 0]


def test_cyclone_two_days(tmp_path):
    grid = GridConfig()
    path = run_cyclone(grid, CoarsePhysicsConfig(), tmp_path, days=2.0, output_every_hours=12)
    assert path == tmp_path / "cyclone.nc" and (tmp_path / "cyclone.png").stat().st_size > 10_000
    assert not list(tmp_path.glob("*.tmp-*"))
    ds = xr.open_dataset(path)
    assert ds.sizes == {"time": 5, "y": 32, "x": 32}
    assert ds["time"].encoding["units"].startswith("hours since 2000-10-01")
    assert ds["sic"].attrs["standard_name"] == "sea_ice_area_fraction" and ds["sit"].attrs["units"] == "m"
    for name in ds.data_vars:
        assert np.all(np.isfinite(ds[name].values)), name
        assert "units" in ds[name].attrs and "long_name" in ds[name].attrs
    # volume is conserved (no thermodynamics), A stays in [0, 1]
    vol = ds["sivol"].sum(("y", "x")).values
    np.testing.assert_allclose(vol, vol[0], rtol=1e-11)
    assert ds["sic"].min() >= 0 and ds["sic"].max() <= 1

    # distance of every cell to the track segment (box centre -> centre at day 2)
    x, y = np.meshgrid(ds.x.values, ds.y.values)
    p0, p1 = np.array(cyclone_centre(grid, 0.0)), np.array(cyclone_centre(grid, 2 * 86400.0))
    d = p1 - p0
    s = np.clip(((x - p0[0]) * d[0] + (y - p0[1]) * d[1]) / (d @ d), 0, 1)
    dist = np.hypot(x - (p0[0] + s * d[0]), y - (p0[1] + s * d[1]))
    inner = (np.minimum(x, 512e3 - x) > 48e3) & (np.minimum(y, 512e3 - y) > 48e3)  # 3 cells off the walls
    core, flank, far = (dist < 50e3) & inner, (dist > 75e3) & (dist < 175e3) & inner, (dist > 225e3) & inner
    div = ds["divergence"].isel(time=slice(1, None)).mean("time").values
    shear = ds["shear"].isel(time=slice(1, None)).mean("time").values
    dh = (ds["sit"].isel(time=-1) - ds["sit"].isel(time=0)).values
    # convergence under the storm: ice thickens along the path, compact ice stays compact
    assert div[dist < 100e3].mean() < 0 and div[dist < 100e3].mean() < div[far].mean()
    assert dh[dist < 100e3].mean() > 0.005 and dh[dist < 100e3].mean() > 5 * abs(dh[far].mean())
    assert ds["sic"].isel(time=-1).values[dist < 100e3].min() > 0.99
    # shear: the storm core turns nearly rigidly, a band of enhanced shear runs along both flanks of the track
    assert shear[flank].mean() > 1.5 * shear[core].mean()
    assert shear[flank].mean() > 1.1 * shear[far].mean()
