"""Spread–error reliability (training.evaluation.spread_reliability): a conditionally calibrated ensemble has
rmse ≈ spread in every spread class and a log–log slope near 1; a spread blind to the error has a slope near 0."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from training.evaluation.spread_reliability import spread_error_bins

WINDOWS, LEADS, MEMBERS, N = 6, 3, 8, 24


def ensemble(sigma_members: np.ndarray, sigma_truth: np.ndarray, seed: int = 0):
    """Members and truth drawn around a common centre; the members' std `sigma_members` and the truth's
    `sigma_truth` are (y, x) fields (so the error's size varies over the domain)."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(WINDOWS, LEADS, 1, N, N))
    members = centre + sigma_members * rng.normal(size=(WINDOWS, LEADS, MEMBERS, N, N))
    truth = centre[:, :, 0] + sigma_truth * rng.normal(size=(WINDOWS, LEADS, N, N))
    lead = {"lead": [24.0, 36.0, 48.0]}
    return (xr.DataArray(members, dims=("window", "lead", "member", "y", "x"), coords=lead),
            xr.DataArray(truth, dims=("window", "lead", "y", "x"), coords=lead))


def heteroscedastic() -> np.ndarray:
    """A std growing 100-fold across the domain (calm corner to storm corner)."""
    return np.logspace(-2, 0, N)[None, :] * np.ones((N, 1))


def test_a_conditionally_calibrated_ensemble_has_slope_one_and_unit_ratios():
    s = heteroscedastic()
    f, y = ensemble(s, s)
    b = spread_error_bins(f, y, xr.DataArray(np.ones((N, N)), dims=("y", "x")), bins=8)
    ratio = b["spread_error_bin_spread"] / b["spread_error_bin_rmse"]
    np.testing.assert_allclose(ratio, 1.0, atol=0.15)
    assert abs(float(b["spread_error_slope"]) - 1.0) < 0.1
    np.testing.assert_allclose(b["spread_error_bin_share"], 1 / 8)
    # classes ordered by spread, spanning the 100-fold range
    assert (np.diff(b["spread_error_bin_spread"].values) > 0).all()
    assert float(b["spread_error_bin_spread"][-1] / b["spread_error_bin_spread"][0]) > 20


def test_split_members_keep_a_calibrated_constant_spread_at_one_in_every_class():
    """Sorting by the averaged variance itself would read ~0.6 low and ~1.4 high here (8 members)."""
    f, y = ensemble(np.ones((N, N)), np.ones((N, N)))
    b = spread_error_bins(f, y, xr.DataArray(np.ones((N, N)), dims=("y", "x")), bins=8)
    np.testing.assert_allclose(b["spread_error_bin_spread"] / b["spread_error_bin_rmse"], 1.0, atol=0.12)


def test_a_spread_floor_reads_over_dispersive_in_the_calm_classes_only():
    s = heteroscedastic()
    f, y = ensemble(np.maximum(s, 0.3), s)  # members never narrower than 0.3: too wide where the truth is calm
    b = spread_error_bins(f, y, xr.DataArray(np.ones((N, N)), dims=("y", "x")), bins=8)
    assert float(b["spread_error_ratio_low"]) > 1.4
    assert abs(float(b["spread_error_ratio_high"]) - 1.0) < 0.15
    assert float(b["spread_error_slope"]) > 1.3  # the error varies more than the spread does


def test_land_missing_values_and_early_leads_are_left_out():
    s = heteroscedastic()
    f, y = ensemble(s, s)
    weights = xr.DataArray(np.ones((N, N)), dims=("y", "x"))
    weights[:, :4] = 0.0  # land
    f_bad, y_bad = f.copy(), y.copy()
    f_bad[..., :4] = 1e6  # garbage on land
    y_bad[0, 0, 5, 5] = np.nan  # a missing reference value
    a = spread_error_bins(f.isel(x=slice(4, None)), y.isel(x=slice(4, None)), weights.isel(x=slice(4, None)))
    y_drop = y.isel(x=slice(4, None)).copy()
    y_drop[0, 0, 5, 1] = np.nan
    b = spread_error_bins(f_bad, y_bad, weights)
    c = spread_error_bins(f.isel(x=slice(4, None)), y_drop, weights.isel(x=slice(4, None)))
    np.testing.assert_allclose(b["spread_error_bin_rmse"], c["spread_error_bin_rmse"])
    assert np.isfinite(a["spread_error_bin_rmse"]).all() and float(b["spread_error_bin_rmse"].max()) < 10
    # leads before min_lead_hours are not pooled: a wild first lead changes nothing when it is cut
    f2 = f.assign_coords(lead=[12.0, 24.0, 36.0])
    f2[:, 0] += 100.0
    d = spread_error_bins(f2, y.assign_coords(lead=[12.0, 24.0, 36.0]), weights, min_lead_hours=24.0)
    e = spread_error_bins(f.isel(lead=[1, 2]), y.isel(lead=[1, 2]), weights)
    np.testing.assert_allclose(d["spread_error_bin_rmse"], e["spread_error_bin_rmse"])


def test_needs_an_ensemble_and_two_classes():
    f, y = ensemble(np.ones((N, N)), np.ones((N, N)))
    w = xr.DataArray(np.ones((N, N)), dims=("y", "x"))
    with pytest.raises(ValueError, match="at least 4 members"):
        spread_error_bins(f.isel(member=[0, 1, 2]), y, w)
    with pytest.raises(ValueError, match="at least 2 bins"):
        spread_error_bins(f, y, w, bins=1)
