"""`evaluate` scores forecast files laid out per initialisation: `icecorr correct`'s output (every record an
independent 12 h forecast) and `init_time × lead_time` files (WeatherBench/anemoi), several ensembles in one call;
the reference records are found by valid time = init + lead."""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from training.evaluation.alignment import align, read_reference
from training.evaluation.config import EvaluateConfig

NAMES = ["sic", "sit", "snt", "siu", "siv"]
TIMES = pd.date_range("2001-01-01", periods=8, freq="12h")


def _reference(path):
    rng = np.random.default_rng(0)
    ds = xr.Dataset({v: (("time", "y", "x"), rng.random((8, 4, 5))) for v in NAMES},
                    coords={"time": TIMES, "y": np.arange(4) * 1e4 + 5e3, "x": np.arange(5) * 1e4 + 5e3})
    ds.to_netcdf(path)
    return ds


def test_correct_output_each_record_is_a_window(tmp_path):
    ref = _reference(tmp_path / "ref.nc")
    valid = TIMES[1:6]
    run = xr.Dataset({v: (("time", "member", "y", "x"), np.repeat(ref[v].values[1:6, None], 3, axis=1) + 0.1)
                      for v in NAMES}, coords={"time": valid, "member": np.arange(3)})
    run["step"] = ("time", np.ones(5))
    run.to_netcdf(tmp_path / "corrected.nc")
    ref_raw, ref_files = read_reference([str(tmp_path / "ref.nc")], NAMES)
    a = align("corrected", str(tmp_path / "corrected.nc"), ref_raw, ref_files, EvaluateConfig())
    assert a.forecast.sizes["window"] == 5 and list(a.forecast["lead"].values) == [12.0] and a.members == 3
    np.testing.assert_allclose(a.forecast["sic"].values - a.reference["sic"].values[:, :, None], 0.1)


def test_init_time_by_lead_time_file(tmp_path):
    ref = _reference(tmp_path / "ref.nc")
    inits, leads = TIMES[[0, 2]], pd.to_timedelta([0, 12, 24], unit="h")
    data = {v: (("init_time", "lead_time", "member", "y", "x"),
                np.stack([np.stack([ref[v].sel(time=i + lt).values for lt in leads]) for i in inits])[:, :, None]
                * np.ones((1, 1, 2, 1, 1)) - 0.05) for v in NAMES}
    xr.Dataset(data, coords={"init_time": inits, "lead_time": leads}).to_netcdf(tmp_path / "fc.nc")
    ref_raw, ref_files = read_reference([str(tmp_path / "ref.nc")], NAMES)
    a = align("fc", str(tmp_path / "fc.nc"), ref_raw, ref_files, EvaluateConfig())
    assert a.forecast.sizes["window"] == 2 and list(a.forecast["lead"].values) == [0.0, 12.0, 24.0]
    np.testing.assert_allclose(a.forecast["sit"].values - a.reference["sit"].values[:, :, None], -0.05)
    np.testing.assert_array_equal(a.reference["siu"].values[1, 2], ref["siu"].sel(time=TIMES[4]).values)


def test_climatology_baseline_is_the_same_season_mean_of_other_years(tmp_path):
    from training.evaluation.scores import climatology_baseline

    _reference(tmp_path / "ref.nc")
    # two Januaries of other years, a state every 12 h: 1 in 1999, 3 in 2000 (equal counts in any ±15-day window
    # of the run's valid times, 1–2 January)
    times = pd.DatetimeIndex(list(pd.date_range("1999-01-01", "1999-01-31", freq="12h"))
                             + list(pd.date_range("2000-01-01", "2000-01-31", freq="12h")))
    value = np.where(times.year == 1999, 1.0, 3.0)[:, None, None] + np.zeros((1, 4, 5))
    clim = xr.Dataset({v: (("time", "y", "x"), value) for v in NAMES}, coords={"time": times})
    run = xr.Dataset({v: (("time", "y", "x"), np.zeros((4, 4, 5))) for v in NAMES}, coords={"time": TIMES[:4]})
    run.to_netcdf(tmp_path / "run.nc")
    ref_raw, ref_files = read_reference([str(tmp_path / "ref.nc")], NAMES)
    a = align("run", str(tmp_path / "run.nc"), ref_raw, ref_files, EvaluateConfig())
    c = climatology_baseline(a, clim, window_days=15.0)
    np.testing.assert_allclose(c.forecast["sic"].values, 2.0)
    assert c.forecast["sic"].dims == a.reference["sic"].dims
