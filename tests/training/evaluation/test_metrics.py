"""Scores against hand-computed values and against the statistics of calibrated synthetic ensembles."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import xarray as xr

from training.evaluation import metrics as M

NAN = np.nan


def da(values, dims=("y", "x")):
    return xr.DataArray(np.asarray(values, dtype=float), dims=dims)


def test_rmse_mae_bias_by_hand_with_mask_and_missing_reference():
    f = da([[1, 2], [3, 4]])
    r = da([[0, 2], [NAN, 8]])
    w_all = M.ocean_weights(None, (2, 2))
    # errors 1, 0, missing, −4
    assert float(M.rmse(f, r, w_all, keep=())) == pytest.approx(np.sqrt(17 / 3))
    assert float(M.mae(f, r, w_all, keep=())) == pytest.approx(5 / 3)
    assert float(M.bias(f, r, w_all, keep=())) == pytest.approx(-1.0)
    w_land = M.ocean_weights(np.array([[1, 1], [1, 0]]), cell_area=256.0)  # (1, 1) is land
    assert float(M.rmse(f, r, w_land, keep=())) == pytest.approx(np.sqrt(0.5))
    assert float(M.bias(f, r, w_land, keep=())) == pytest.approx(0.5)


def test_area_weights_and_per_lead_output():
    f = da(np.zeros((3, 1, 2)), dims=("time", "y", "x"))
    r = da([[[1, 3]], [[2, 2]], [[0, 0]]], dims=("time", "y", "x"))
    w = da([[1.0, 3.0]])
    out = M.bias(f, r, w)
    assert out.dims == ("time",)
    np.testing.assert_allclose(out, [-(1 + 9) / 4, -2, 0])


def test_deterministic_ensemble_functions_reject_wrong_dims():
    ens = da(np.zeros((2, 2, 2)), dims=("member", "y", "x"))
    with pytest.raises(ValueError, match="without a 'member' dim"):
        M.rmse(ens, da(np.zeros((2, 2))))
    with pytest.raises(ValueError, match="at least 2 members"):
        M.spread(ens.isel(member=[0]))


def brute_force_fair_crps(x, y):
    m = len(x)
    skill = np.mean([abs(xi - y) for xi in x])
    pairs = sum(abs(a - b) for a, b in itertools.product(x, x))
    return skill - pairs / (2 * m * (m - 1))


def test_fair_crps_of_small_ensemble_by_hand():
    # members 1, 2, 4 and observation 3: mean |x − y| = 4/3; Σ_ij |x_i − x_j| = 12; fair term 12/(2·3·2) = 1
    assert M.crps_fair_pointwise(np.array([1.0, 2.0, 4.0]), np.array(3.0)) == pytest.approx(1 / 3)
    # observation 0: 7/3 − 1 = 4/3; two members straddling the observation symmetrically: 1 − 1 = 0
    assert M.crps_fair_pointwise(np.array([1.0, 2.0, 4.0]), np.array(0.0)) == pytest.approx(4 / 3)
    assert M.crps_fair_pointwise(np.array([0.0, 2.0]), np.array(1.0)) == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=5)
    np.testing.assert_allclose(M.crps_fair_pointwise(x, y), [brute_force_fair_crps(x[:, k], y[k]) for k in range(5)])
    # xarray wrapper: area-weighted mean of the point values (weights 1 and 3)
    ens = da([[[1.0, 0.0]], [[2.0, 2.0]], [[4.0, 0.0]]], dims=("member", "y", "x"))
    ref = da([[3.0, 0.0]])
    point2 = brute_force_fair_crps([0.0, 2.0, 0.0], 0.0)
    value = M.crps(ens, ref, da([[1.0, 3.0]]), keep=())
    assert float(value) == pytest.approx((1 / 3 + 3 * point2) / 4)
    assert value.attrs["estimator"].startswith("fair")


def test_fair_crps_is_unbiased_for_the_ensemble_size():
    """The mean fair CRPS of M draws equals the CRPS of the distribution they come from, for any M."""
    rng = np.random.default_rng(1)
    # CRPS of N(0, 1) at y = 0 is 2φ(0) − 1/√π = (√2 − 1)/√π
    exact = (np.sqrt(2) - 1) / np.sqrt(np.pi)
    for m in (2, 4):
        x = rng.normal(size=(m, 200_000))
        assert M.crps_fair_pointwise(x, np.zeros(200_000)).mean() == pytest.approx(exact, rel=0.02)


def calibrated_ensemble(rng, members=5, windows=120, n=16, sigma=0.3, under_dispersion=1.0):
    """Truth and members drawn from the same Gaussian around a random field (members optionally too narrow)."""
    centre = rng.normal(size=(windows, 2, 1, n, n))
    truth = centre[:, :, 0] + sigma * rng.normal(size=(windows, 2, n, n))
    ens = centre + under_dispersion * sigma * rng.normal(size=(windows, 2, members, n, n))
    dims = ("window", "time", "member", "y", "x")
    return da(ens, dims), da(truth, ("window", "time", "y", "x"))


def test_spread_skill_ratio_of_calibrated_gaussian_ensemble_is_one():
    rng = np.random.default_rng(2)
    ens, truth = calibrated_ensemble(rng)
    w = M.ocean_weights(None, (16, 16))
    ssr = M.spread_skill_ratio(ens, truth, w)
    assert ssr.dims == ("time",)
    np.testing.assert_allclose(ssr, 1.0, atol=0.02)
    # without the √((M+1)/M) factor a 5-member calibrated ensemble looks under-dispersive by √(5/6)
    raw = M.spread(ens, w) / M.ensemble_mean_rmse(ens, truth, w)
    np.testing.assert_allclose(raw, np.sqrt(5 / 6), atol=0.02)
    np.testing.assert_allclose(M.spread(ens, w), 0.3, rtol=0.02)


def test_spread_is_unbiased():
    ens = da([[[0.0]], [[2.0]]], dims=("member", "y", "x"))
    assert float(M.spread(ens, keep=())) == pytest.approx(np.sqrt(2.0))


def test_rank_histogram_flat_for_calibrated_and_u_shaped_for_underdispersive():
    rng = np.random.default_rng(3)
    ens, truth = calibrated_ensemble(rng, members=4, windows=40)
    hist = M.rank_histogram(ens, truth, keep=())
    assert hist.sizes["rank"] == 5
    assert float(hist.sum()) == pytest.approx(1.0)
    np.testing.assert_allclose(hist, 0.2, atol=0.01)
    narrow, truth = calibrated_ensemble(rng, members=4, windows=40, under_dispersion=0.3)
    u_shape = M.rank_histogram(narrow, truth, keep=())
    assert u_shape[0] > 0.3 and u_shape[-1] > 0.3 and u_shape[2] < 0.1


def test_rank_histogram_breaks_ties_at_bounds_randomly():
    ens = da(np.ones((3, 40, 40)), dims=("member", "y", "x"))  # sic = 1 everywhere, truth too
    hist = M.rank_histogram(ens, da(np.ones((40, 40))), keep=())
    np.testing.assert_allclose(hist, 0.25, atol=0.03)


def test_nrmse_and_climatological_std():
    value = M.nrmse({"sic": xr.DataArray(0.3), "sit": xr.DataArray(0.4)}, {"sic": 1.0, "sit": 2.0})
    assert float(value) == pytest.approx(np.sqrt((0.09 + 0.04) / 2))
    stacked = xr.concat([xr.DataArray([0.3, 0.6], dims="time"), xr.DataArray([0.4, 0.8], dims="time")],
                        dim=xr.DataArray(["sic", "sit"], dims="variable", name="variable"))
    np.testing.assert_allclose(M.nrmse(stacked, {"sic": 1.0, "sit": 2.0}),
                               [np.sqrt(0.065), np.sqrt(0.26)])
    with pytest.raises(ValueError, match="snt"):
        M.nrmse({"snt": xr.DataArray(1.0)}, {"sic": 1.0})
    field = da([[1.0, 2.0], [3.0, 100.0]])
    w = M.ocean_weights(np.array([[1, 1], [1, 0]]))
    assert M.climatological_std(field, w) == pytest.approx(np.std([1.0, 2.0, 3.0]))


def test_iiee_counts_disagreeing_area():
    f = da([[0.9, 0.1], [0.5, 0.0]])
    r = da([[0.9, 0.9], [0.1, NAN]])
    w = M.ocean_weights(None, (2, 2), cell_area=256.0)  # km²
    assert float(M.iiee(f, r, w, keep=())) == pytest.approx(512.0)


def test_ensemble_scores_dataset():
    rng = np.random.default_rng(4)
    ens, truth = calibrated_ensemble(rng, members=3, windows=4)
    out = M.ensemble_scores(ens, truth, M.ocean_weights(None, (16, 16)))
    assert set(out) >= {"rmse", "mae", "bias", "crps", "spread", "spread_skill_ratio", "ensemble_mean_rmse",
                        "member_rmse", "rank_histogram"}
    assert out["rmse"].dims == ("time",) and out["rank_histogram"].dims == ("time", "rank")
    # a single member is as far from the truth as √2 × the ensemble-mean error of a calibrated 3-member ensemble
    assert float((out["member_rmse"] / out["rmse"]).mean()) == pytest.approx(np.sqrt(2 / (1 + 1 / 3)), rel=0.1)


def test_rank_histogram_by_hand_per_lead_and_weighted():
    # members 1, 2, 3 at every point; truth ranks: lead 0 → 0 and 2 (weights 1, 3); lead 1 → 3 and 3
    ens = da(np.broadcast_to(np.array([1.0, 2.0, 3.0])[:, None, None, None], (3, 2, 1, 2)),
             dims=("member", "time", "y", "x"))
    truth = da([[[0.0, 2.5]], [[5.0, 9.0]]], dims=("time", "y", "x"))
    hist = M.rank_histogram(ens, truth, da([[1.0, 3.0]]))
    assert hist.dims == ("time", "rank")
    np.testing.assert_allclose(hist[0], [0.25, 0, 0.75, 0])
    np.testing.assert_allclose(hist[1], [0, 0, 0, 1])
