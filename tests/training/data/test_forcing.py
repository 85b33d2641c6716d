"""Synthetic forcing (physics.md §5): reproducibility, analytic limits, climatologies, CF output."""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
import xarray as xr

from fortran_stub.config import GridConfig
from training.data.coarsegrain import block_mean
from training.data.config import ForcingConfig, VortexConfig
from training.data.forcing import (FORCING_NAMES, MU71_LW, MU71_SW, SyntheticForcing, Vortex, generate_forcing,
    mu71_radiation, mu71_snowfall, saturation_specific_humidity_ice, write_forcing)
from icecorr.base.variables import STEP_SECONDS
from training.data.io import write_netcdf_atomic

FINE = GridConfig(nx=16, ny=16, dx=32_000.0)  # the 512 km box


def test_same_seed_same_forcing_any_access_order():
    a = SyntheticForcing(ForcingConfig(), FINE, "2000-10-01T00:00", 40, seed=7)
    b = SyntheticForcing(ForcingConfig(), FINE, "2000-10-01T00:00", 40, seed=7)
    late = b.truth_at(30)  # b goes forward first, then back: the OU fields restart from a checkpoint
    early = b.truth_at(3)
    for name in FORCING_NAMES:
        np.testing.assert_array_equal(a.truth_at(3)[name], early[name])
        np.testing.assert_array_equal(a.truth_at(30)[name], late[name])
    c = SyntheticForcing(ForcingConfig(), FINE, "2000-10-01T00:00", 40, seed=8)
    assert not np.allclose(c.truth_at(3)["uas"], early["uas"])


def test_longer_run_has_shorter_run_as_prefix():
    short = SyntheticForcing(ForcingConfig(), FINE, "2000-10-01T00:00", 10, seed=3)
    long = SyntheticForcing(ForcingConfig(), FINE, "2000-10-01T00:00", 200, seed=3)
    for k in range(10):
        for name, arr in short.truth_at(k).items():
            np.testing.assert_array_equal(arr, long.truth_at(k)[name], err_msg=f"{name} at step {k}")
    with pytest.raises(IndexError):
        short.truth_at(10)


def _single_vortex_forcing(sign: int, alpha_deg: float = 72.0) -> SyntheticForcing:
    cfg = ForcingConfig(background_wind_std=0.0, subgrid_wind_std=0.0, vortices=VortexConfig(
        genesis_per_day=0.0, winter_intensification=0.0))
    grid = GridConfig(nx=64, ny=64, dx=8000.0)
    f = SyntheticForcing(cfg, grid, "2000-10-01T00:00", 3, seed=0)
    # the benchmark vortex: V = 30/e m s-1 at R = 100 km, centred in the box, at the peak of its envelope
    f.vortices = [Vortex(t0=-0.5 * 4 * 86400, lifetime=4 * 86400, peak_speed=30 / np.e, radius=100e3,
                         alpha=np.deg2rad(alpha_deg), sign=sign, x0=256e3, y0=256e3, cx=0.0, cy=0.0)]
    return f


def test_benchmark_vortex_peak_speed_rotation_and_inflow():
    f = _single_vortex_forcing(+1)
    w = f.resolved_at(0)
    xx, yy = np.meshgrid(f.x - 256e3, f.y - 256e3)
    r = np.hypot(xx, yy)
    speed = np.hypot(w["uas"], w["vas"])
    # |U| = 3e-4 r exp(-r/R): the benchmark formula (physics.md §3), maximum 11.04 m s-1 at r = R
    np.testing.assert_allclose(speed, 3e-4 * r * np.exp(-r / 100e3), rtol=1e-12, atol=1e-12)
    assert speed.max() == pytest.approx(30 / np.e, rel=2e-3)
    radial = (w["uas"] * xx + w["vas"] * yy) / np.maximum(r, 1.0)
    azimuthal = (-w["uas"] * yy + w["vas"] * xx) / np.maximum(r, 1.0)
    ring = (r > 50e3) & (r < 200e3)
    assert np.all(azimuthal[ring] > 0), "a cyclone turns counter-clockwise"
    assert np.all(radial[ring] < 0), "a cyclone converges"
    np.testing.assert_allclose(-radial[ring] / speed[ring], np.cos(np.deg2rad(72)), rtol=1e-9)
    # warm core of +5 K, on top of a seasonal temperature that is uniform in space
    assert w["tas"][r == r.min()].max() - w["tas"][r == r.max()].max() > 4.0
    anti = _single_vortex_forcing(-1).resolved_at(0)
    np.testing.assert_allclose(anti["uas"], -w["uas"], atol=1e-12)  # clockwise and divergent
    assert np.ptp(anti["tas"]) < np.ptp(w["tas"]), "only cyclones carry a warm anomaly"


def test_storm_translation_is_capped_per_step():
    f = SyntheticForcing(ForcingConfig(), FINE, "2000-10-01T00:00", 400, seed=11)
    cap = ForcingConfig().vortices.max_shift_radii_per_step
    assert len(f.vortices) > 30
    for v in f.vortices:
        assert np.hypot(v.cx, v.cy) * STEP_SECONDS <= cap * v.radius * (1 + 1e-12)
        assert 75e3 <= v.radius <= 250e3 and 5 <= v.peak_speed <= 20


def test_wind_cap_and_statistics_over_a_year():
    grid = GridConfig(nx=16, ny=16, dx=32_000.0)
    f = SyntheticForcing(ForcingConfig(subgrid_wind_std=0.0), grid, "2000-10-01T00:00", 730, seed=2)
    w = [f.resolved_at(k) for k in range(0, 730, 3)]
    speed = np.hypot(np.stack([x["uas"] for x in w]), np.stack([x["vas"] for x in w]))
    assert speed.max() <= 25.0 + 1e-9
    uas = np.stack([x["uas"] for x in w])
    assert 3.0 < uas.std() < 8.0  # ERA5 target ≈ 4.8 m s-1 (Finn et al. 2024)
    tas = np.stack([x["tas"] for x in w])
    assert tas.max() <= 273.15 + 1e-9
    assert 255.0 < tas.mean() < 265.0  # ERA5 target 261.1 K


def test_seasonal_temperature_radiation_and_snowfall_climatology():
    cfg = ForcingConfig(vortices=VortexConfig(genesis_per_day=0.0), tas_cap_c=None)
    f = SyntheticForcing(cfg, FINE, "2001-01-01T00:00", 730, seed=0)
    tas = np.array([f.resolved_at(k)["tas"].mean() for k in range(730)])
    assert tas.mean() - 273.15 == pytest.approx(-12.0, abs=0.1)
    assert np.argmin(tas) / 2 == pytest.approx(20.0, abs=1.0)  # coldest on 21 Jan (day 20 after 1 Jan)
    assert tas.min() - 273.15 == pytest.approx(-26.0, abs=0.05)
    # MU71: the spline passes through the monthly values at mid-month; shortwave never negative
    for month in (1, 4, 7, 10):
        start = datetime(2001, month, 1)
        mid = start + (datetime(2001 + month // 12, month % 12 + 1, 1) - start) / 2
        sw, lw = mu71_radiation(mid)
        assert sw == pytest.approx(MU71_SW[month - 1], abs=1.0)
        assert lw == pytest.approx(MU71_LW[month - 1], abs=1.0)
    days = [datetime(2001, 1, 1) + timedelta(hours=6 * i) for i in range(4 * 365)]
    assert min(mu71_radiation(d)[0] for d in days) >= 0.0
    # periodic: no jump at the turn of the year
    a, b = mu71_radiation(datetime(2001, 12, 31, 23, 59)), mu71_radiation(datetime(2002, 1, 1))
    assert a == pytest.approx(b, abs=0.1)
    # snowfall: 30 + 5 + 5 cm of snow at 330 kg m-3 per year = 132 kg m-2
    total = sum(mu71_snowfall(d) * 6 * 3600 for d in days)
    assert total == pytest.approx(0.40 * 330, rel=0.01)
    assert mu71_snowfall(datetime(2001, 7, 1)) == 0.0


def test_specific_humidity_over_ice_at_freezing():
    # saturation vapour pressure over ice at 0 degC is 611 Pa -> q = 0.622 e / (p - 0.378 e) ≈ 3.77e-3
    q = saturation_specific_humidity_ice(np.array(273.15), 101325.0)
    assert float(q) == pytest.approx(0.622 * 611.15 / (101325 - 0.378 * 611.15), rel=1e-9)
    assert saturation_specific_humidity_ice(np.array(250.0), 101325.0) < q


def test_noise_is_additive_and_coarse_forcing_is_the_block_mean():
    f = SyntheticForcing(ForcingConfig(), GridConfig(nx=32, ny=32, dx=16_000.0), "2000-10-01T00:00", 30, seed=5)
    for k in (0, 17):
        res, noise, truth = f.resolved_at(k), f.noise_at(k), f.truth_at(k)
        np.testing.assert_allclose(truth["uas"], res["uas"] + noise["uas_noise"])
        np.testing.assert_allclose(truth["vas"], res["vas"] + noise["vas_noise"])
        np.testing.assert_array_equal(truth["tas"], res["tas"])
        coarse = f.coarse_at(k, 2)
        for name in FORCING_NAMES:
            np.testing.assert_allclose(coarse[name], block_mean(truth[name], 2))
    noise = np.stack([f.noise_at(k)["uas_noise"] for k in range(30)])
    assert noise.std() == pytest.approx(1.5, rel=0.2)
    # OU with a 6 h time scale sampled every 12 h: lag-1 correlation exp(-2) ≈ 0.14
    lag1 = np.corrcoef(noise[1:].ravel(), noise[:-1].ravel())[0, 1]
    assert 0.0 < lag1 < 0.35


def test_ocean_gyre_and_eddies():
    cfg = ForcingConfig(ocean_eddy_speed=0.0)
    f = SyntheticForcing(cfg, FINE, "2000-10-01T00:00", 4, seed=1)
    o = f.resolved_at(0)
    assert 0.01 <= f.gyre_speed <= 0.03
    # benchmark gyre u = U0 (2y/L - 1), v = U0 (1 - 2x/L): clockwise, zero at the centre
    assert o["uo"][0, 0] == pytest.approx(f.gyre_speed * (2 * f.y[0] / f.ly - 1))
    assert o["vo"][0, 0] == pytest.approx(f.gyre_speed * (1 - 2 * f.x[0] / f.lx))
    e = SyntheticForcing(ForcingConfig(), GridConfig(nx=32, ny=32, dx=16e3), "2000-10-01T00:00", 200, seed=4)
    eddy_u = np.stack([e.resolved_at(k)["uo"] - e.gyre_speed * (2 * e._yy / e.ly - 1) for k in range(0, 200, 20)])
    assert eddy_u.std() == pytest.approx(0.02, rel=0.35)
    # u = -dpsi/dy of a periodic streamfunction has zero box mean
    assert abs(eddy_u.mean()) < 0.01


def test_cf_dataset_fine_and_coarse_roundtrip(tmp_path):
    fine = generate_forcing(ForcingConfig(), GridConfig(nx=32, ny=32, dx=16e3), "2000-10-01T00:00", 6, seed=9)
    assert fine["uas"].dims == ("time", "y", "x")
    assert set(FORCING_NAMES) | {"uas_noise", "vas_noise"} == set(fine.data_vars)
    for name in FORCING_NAMES:
        assert fine[name].attrs["units"] and fine[name].attrs["long_name"]
    assert fine["prsn"].attrs["units"] == "kg m-2 s-1" and fine["tas"].attrs["units"] == "K"
    assert (np.diff(fine["time"].values) == np.timedelta64(12, "h")).all()
    coarse = generate_forcing(ForcingConfig(), GridConfig(nx=32, ny=32, dx=16e3), "2000-10-01T00:00", 6, seed=9,
                              coarsen=2)
    assert coarse.sizes == {"time": 6, "y": 16, "x": 16}
    np.testing.assert_allclose(coarse["uas"].values, block_mean((fine["uas"] + fine["uas_noise"]).values, 2))
    np.testing.assert_allclose(coarse["x"].values, (np.arange(16) + 0.5) * 32e3)
    path = write_netcdf_atomic(coarse, tmp_path / "forcing.nc", chunk_time=4)
    assert [p.name for p in tmp_path.iterdir()] == ["forcing.nc"]  # no temporary file left behind
    with xr.open_dataset(path) as back:
        np.testing.assert_array_equal(back["time"].values, coarse["time"].values)
        np.testing.assert_allclose(back["tas"].values, coarse["tas"].values)
        assert back["tas"].encoding["chunksizes"] == (4, 16, 16)
        assert back["time"].encoding["units"].startswith("hours since")


def test_write_forcing_float32(tmp_path):
    path = write_forcing(tmp_path / "f.nc", ForcingConfig(), FINE, "2000-10-01T00:00", 3, seed=1, coarsen=2)
    with xr.open_dataset(path) as ds:
        assert ds["uas"].dtype == np.float32 and ds.sizes == {"time": 3, "y": 8, "x": 8}
        assert ds.attrs["seed"] == 1 and ds.attrs["coarsen"] == 2
