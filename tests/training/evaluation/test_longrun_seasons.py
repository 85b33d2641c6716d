"""Seasonal long-run scores: RMSE of the ensemble mean by season, volume error, the verdict against the coarse run."""
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from icecorr.base.variables import ML_VARIABLES
from training.evaluation.longrun_seasons import seasonal_markdown, seasonal_scores


def _state(n, rng, offset=0.0, members=None):
    time = pd.date_range("2001-10-01", periods=n, freq="12h")
    shape = (n, 4, 5) if members is None else (n, members, 4, 5)
    dims = ("time", "y", "x") if members is None else ("time", "member", "y", "x")
    base = {v: 0.5 + 0.1 * np.sin(np.arange(n) / 50.0)[(slice(None),) + (None,) * (len(shape) - 1)]
            + np.zeros(shape) for v in ML_VARIABLES}
    return xr.Dataset({v: (dims, base[v] + offset + (rng.normal(0, 1e-3, shape) if rng else 0))
                       for v in ML_VARIABLES}, coords={"time": time})


def test_rmse_by_season_and_the_verdict():
    n = 730  # one year of 12 h records from 1 October: every season present
    truth = _state(n, None)
    mask = np.ones((4, 5))
    mask[0, 0] = 0  # a land cell never counts
    good = _state(n, np.random.default_rng(0), offset=0.01, members=3)
    bad = _state(n, None, offset=0.03)
    bad["sic"][:, 0, 0] = 1e6  # on land: ignored
    scores = {"coarse uncorrected": seasonal_scores(bad, truth, mask),
              "coupled good": seasonal_scores(good, truth, mask)}
    assert set(scores["coupled good"]) == {"DJF", "MAM", "JJA", "SON"}
    assert sum(s["records"] for s in scores["coupled good"].values()) == n
    for season, row in scores["coarse uncorrected"].items():
        assert row["sic"] == pytest.approx(0.03, rel=1e-6)
        # domain-mean volume: (t + 0.03)² − t² = 0.06 t + 0.0009 with t = 0.5 ± 0.1
        assert 0.06 * 0.4 < row["volume"] < 0.06 * 0.6 + 0.001
    for row in scores["coupled good"].values():
        assert row["sit"] == pytest.approx(0.01, rel=0.05)  # the member mean's noise averages out
    lines = "\n".join(seasonal_markdown(scores))
    assert "coupled good: beats" in lines and "0.33" in lines


def test_a_blown_up_or_worse_run_does_not_beat_the_coarse_model():
    n = 200
    truth = _state(n, None)
    coarse = _state(n, None, offset=0.01)
    worse_in_one_season = _state(n, None, offset=0.005)
    worse_in_one_season["sit"][-20:] = 5.0  # the last records (winter) far off
    nan_run = _state(n, None, offset=0.001)
    nan_run["siu"][50] = np.nan
    scores = {"coarse uncorrected": seasonal_scores(coarse, truth, None),
              "worse": seasonal_scores(worse_in_one_season, truth, None),
              "blown up": seasonal_scores(nan_run, truth, None)}
    assert np.isnan(scores["blown up"]["SON"]["siu"])
    text = "\n".join(seasonal_markdown(scores))
    assert "worse: does **not** beat" in text and "blown up: does **not** beat" in text
    assert seasonal_markdown({"worse": scores["worse"]}) == []  # no coarse run, no comparison
