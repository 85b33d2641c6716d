"""Finite-ensemble-fair scores: the corrected ensemble-mean RMSE and the spread/skill ratio with and without the
√((M+1)/M) factor, against the analytic expectations of a perfect (statistically indistinguishable) ensemble."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from training.evaluation import metrics as M

SIGMA = 0.3  # std of the unpredictable part, shared by truth and members


def perfect_ensemble(members: int, seed: int, windows: int = 40, n: int = 48):
    """Members and truth drawn from one law N(μ, σ²) around a predictable μ (window, y, x).

    Returns (ensemble, truth, mu): the infinite-ensemble mean is μ, so its MSE is σ² in expectation and the
    M-member mean's MSE is σ²(1 + 1/M).
    """
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(windows, n, n))
    ens = mu[:, None] + SIGMA * rng.normal(size=(windows, members, n, n))
    truth = mu + SIGMA * rng.normal(size=(windows, n, n))
    dims = ("window", "y", "x")
    return (xr.DataArray(ens, dims=("window", "member", "y", "x")), xr.DataArray(truth, dims=dims),
            xr.DataArray(mu, dims=dims))


def land_weights(n: int = 48) -> xr.DataArray:
    mask = np.ones((n, n))
    mask[:10, :10] = 0  # land: must drop out of every mean alike
    return M.ocean_weights(mask, cell_area=2.5)


@pytest.mark.parametrize("members", [2, 4, 16])
def test_perfect_ensemble_fair_ratio_is_one_and_raw_ratio_is_biased_low(members):
    ens, truth, _ = perfect_ensemble(members, seed=members)
    w = land_weights()
    fair = float(M.spread_skill_ratio(ens, truth, w, keep=()))
    raw = float(M.spread_skill_ratio_raw(ens, truth, w, keep=()))
    # E[s²] = σ², E[MSE_M] = σ²(1 + 1/M): raw → √(M/(M+1)) (0.816 for M = 2), corrected → 1, for any M
    assert fair == pytest.approx(1.0, abs=0.02)
    assert raw == pytest.approx(np.sqrt(members / (members + 1)), abs=0.02)
    assert raw == pytest.approx(fair * np.sqrt(members / (members + 1)), rel=1e-12)
    if members == 2:
        assert raw < 0.85  # a calibrated 2-member ensemble reads as clearly under-dispersive without the factor


@pytest.mark.parametrize("members", [2, 4, 16])
def test_corrected_mse_matches_the_infinite_ensemble_mse_within_sampling_error(members):
    ens, truth, mu = perfect_ensemble(members, seed=10 + members)
    w = land_weights()
    fair = float(M.ensemble_mean_rmse_fair(ens, truth, w, keep=()))
    raw = float(M.ensemble_mean_rmse(ens, truth, w, keep=()))
    mse_inf = float(M.rmse(mu, truth, w, keep=())) ** 2  # the M → ∞ mean is μ
    # sampling error of the corrected estimate, from its pointwise terms (uniform weights over ocean)
    ocean = (w > 0).broadcast_like(truth)
    term = ((ens.mean("member") - truth) ** 2 - ens.var("member", ddof=1) / members).where(ocean)
    se = float(term.std()) / np.sqrt(int(ocean.sum()))
    assert abs(fair**2 - mse_inf) < 4 * se
    assert fair**2 == pytest.approx(SIGMA**2, rel=0.03)
    # the raw one carries the s²/M sampling variance of the finite mean: σ²(1 + 1/M)
    assert raw**2 == pytest.approx(SIGMA**2 * (1 + 1 / members), rel=0.03)
    assert raw**2 - mse_inf > 4 * se


def test_corrected_rmse_by_hand_with_missing_reference_and_per_lead():
    # point a: members 0, 2 → mean 1, s² 2, y 0 → err² 1; point b: members 2, 4 → mean 3, s² 2, err² 9;
    # point c: reference missing → out of both means. MSE 5 − mean(s²)/M = 5 − 2/2 = 4 → 2
    ens = xr.DataArray([[[0.0, 2.0, 100.0]], [[2.0, 4.0, 0.0]]], dims=("member", "y", "x"))
    ref = xr.DataArray([[0.0, 0.0, np.nan]], dims=("y", "x"))
    assert float(M.ensemble_mean_rmse_fair(ens, ref, keep=())) == pytest.approx(2.0)
    assert float(M.ensemble_mean_rmse(ens, ref, keep=())) == pytest.approx(np.sqrt(5.0))
    per_lead = M.ensemble_mean_rmse_fair(ens.expand_dims(time=[0, 12]), ref, keep=("time",))
    assert per_lead.dims == ("time",)
    np.testing.assert_allclose(per_lead, 2.0)


def test_zero_spread_leaves_the_rmse_unchanged_and_overdispersion_clips_at_zero():
    ens, truth, _ = perfect_ensemble(3, seed=1, windows=2, n=8)
    frozen = xr.concat([ens.isel(member=0)] * 3, dim="member").transpose(*ens.dims)  # three identical members
    assert float(M.ensemble_mean_rmse_fair(frozen, truth, keep=())) == pytest.approx(
        float(M.ensemble_mean_rmse(frozen, truth, keep=())), rel=1e-12)
    assert float(M.spread_skill_ratio_raw(frozen, truth, keep=())) == pytest.approx(0.0, abs=1e-12)
    assert float(M.spread_skill_ratio(frozen, truth, keep=())) == pytest.approx(0.0, abs=1e-12)
    # exact truth at the mean of a wide ensemble: MSE_M = 0 < s²/M → clipped to 0, not NaN
    wide = xr.DataArray([[[-1.0]], [[1.0]]], dims=("member", "y", "x"))
    assert float(M.ensemble_mean_rmse_fair(wide, xr.DataArray([[0.0]], dims=("y", "x")), keep=())) == 0.0


def test_a_single_member_has_no_fair_scores():
    ens, truth, _ = perfect_ensemble(1, seed=0, windows=2, n=8)
    with pytest.raises(ValueError, match="ensemble_mean_rmse_fair: needs at least 2 members, got 1"):
        M.ensemble_mean_rmse_fair(ens, truth)
    with pytest.raises(ValueError, match="spread_skill_ratio_raw: needs at least 2 members, got 1"):
        M.spread_skill_ratio_raw(ens, truth)
    one = M.ensemble_scores(ens, truth, keep=())
    assert "ensemble_mean_rmse_fair" not in one and "spread_skill_ratio_raw" not in one
    assert "ensemble_mean_rmse" in one  # the raw scores stay


def test_ensemble_scores_carry_raw_and_fair_side_by_side():
    ens, truth, _ = perfect_ensemble(4, seed=3, windows=6, n=16)
    ens = ens.expand_dims(time=[0.0, 12.0], axis=1)
    truth = truth.expand_dims(time=[0.0, 12.0], axis=1)
    out = M.ensemble_scores(ens, truth, M.ocean_weights(None, (16, 16)))
    for name in ("ensemble_mean_rmse", "ensemble_mean_rmse_fair", "spread_skill_ratio", "spread_skill_ratio_raw"):
        assert out[name].dims == ("time",)
    assert (out["ensemble_mean_rmse_fair"] < out["ensemble_mean_rmse"]).all()
    np.testing.assert_allclose(out["spread_skill_ratio_raw"], out["spread_skill_ratio"] * np.sqrt(4 / 5))
