"""Forecast scores per variable and lead time (WeatherBench-style names, conventions.md).

Inputs are xarray DataArrays with named dims: spatial `y, x`, ensemble `member`, and any number of sample dims
(e.g. `window`). Every score is area-weighted over ocean cells with `weights` (y, x) — cell area times the ocean
mask, zero on land — and averaged over every dim not in `keep` (default: keep `time`, the lead). NaN in the
reference (or forecast) marks a missing value: its weight is dropped from the mean.

Definitions (M members, ⟨·⟩ weighted mean over space and samples, x̄ ensemble mean, y reference):
  rmse = √⟨(f − y)²⟩,  mae = ⟨|f − y|⟩,  bias = ⟨f − y⟩                     (deterministic f or f = x̄)
  ensemble_mean_rmse = √⟨(x̄ − y)²⟩
  spread = √⟨s²⟩ with s² the unbiased (ddof = 1) ensemble variance
  spread_skill_ratio = √((M+1)/M) · spread / ensemble_mean_rmse               (1 for a calibrated ensemble)
  spread_skill_ratio_raw = spread / ensemble_mean_rmse          (√(M/(M+1)) for a calibrated M-member ensemble)
  ensemble_mean_rmse_fair = √max(⟨(x̄ − y)²⟩ − ⟨s²⟩/M, 0)      (unbiased MSE of the M → ∞ ensemble mean)
  crps (fair) = ⟨(1/M) Σ_i |x_i − y| − 1/(2M(M−1)) Σ_i Σ_j |x_i − x_j|⟩       (Ferro 2014; unbiased for M → ∞)
  nrmse = √(mean_v (rmse_v / σ_v)²)                                          (anchors §1.3)
Square roots are taken after averaging over samples and space (mean squared error first).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import xarray as xr

MEMBER = "member"
SPACE = ("y", "x")


def ocean_weights(mask: xr.DataArray | np.ndarray | None, shape: tuple[int, int] | None = None,
                  cell_area: float | xr.DataArray = 1.0) -> xr.DataArray:
    """Area weights (y, x): cell_area where mask is ocean (non-zero), 0 on land; all ocean if mask is None."""
    if mask is None:
        if shape is None:
            raise ValueError("ocean_weights needs a mask or a shape")
        mask = np.ones(shape)
    m = mask if isinstance(mask, xr.DataArray) else xr.DataArray(np.asarray(mask), dims=SPACE)
    return (m.fillna(0) != 0).astype(np.float64) * cell_area


def _mean(da: xr.DataArray, weights: xr.DataArray | None, keep: Sequence[str]) -> xr.DataArray:
    dims = [d for d in da.dims if d not in keep]
    if weights is None:
        return da.mean(dims, skipna=True)
    # weights apply over space; samples (windows, …) count equally
    return da.weighted(weights.fillna(0)).mean(dims, skipna=True)


def _missing_aware(forecast: xr.DataArray, reference: xr.DataArray) -> xr.DataArray:
    """Forecast with NaN wherever the reference is missing (so both drop out of means)."""
    return forecast.where(reference.notnull())


def _no_member(da: xr.DataArray, name: str) -> None:
    if MEMBER in da.dims:
        raise ValueError(f"{name}: expected a deterministic field without a '{MEMBER}' dim; "
                         f"take the ensemble mean first or use the ensemble scores")


def need_member(da: xr.DataArray, name: str, minimum: int = 1) -> int:
    """The member count of an ensemble `da`; ValueError naming the score `name` without `minimum` members."""
    if MEMBER not in da.dims:
        raise ValueError(f"{name}: expected an ensemble with a '{MEMBER}' dim")
    m = da.sizes[MEMBER]
    if m < minimum:
        raise ValueError(f"{name}: needs at least {minimum} members, got {m}")
    return m


def rmse(forecast: xr.DataArray, reference: xr.DataArray, weights: xr.DataArray | None = None,
         keep: Sequence[str] = ("time",)) -> xr.DataArray:
    """Root-mean-square error (units of the variable) of a deterministic forecast."""
    _no_member(forecast, "rmse")
    err = _missing_aware(forecast, reference) - reference
    return np.sqrt(_mean(err**2, weights, keep))


def mae(forecast: xr.DataArray, reference: xr.DataArray, weights: xr.DataArray | None = None,
        keep: Sequence[str] = ("time",)) -> xr.DataArray:
    """Mean absolute error of a deterministic forecast."""
    _no_member(forecast, "mae")
    return _mean(abs(_missing_aware(forecast, reference) - reference), weights, keep)


def bias(forecast: xr.DataArray, reference: xr.DataArray, weights: xr.DataArray | None = None,
         keep: Sequence[str] = ("time",)) -> xr.DataArray:
    """Mean error forecast − reference."""
    _no_member(forecast, "bias")
    return _mean(_missing_aware(forecast, reference) - reference, weights, keep)


def ensemble_mean_rmse(ensemble: xr.DataArray, reference: xr.DataArray, weights: xr.DataArray | None = None,
                       keep: Sequence[str] = ("time",)) -> xr.DataArray:
    """RMSE of the ensemble mean."""
    need_member(ensemble, "ensemble_mean_rmse")
    return rmse(ensemble.mean(MEMBER), reference, weights, keep)


def spread(ensemble: xr.DataArray, weights: xr.DataArray | None = None, keep: Sequence[str] = ("time",),
           reference: xr.DataArray | None = None) -> xr.DataArray:
    """√ of the mean unbiased (ddof = 1) ensemble variance; points where `reference` is NaN are left out."""
    need_member(ensemble, "spread", minimum=2)
    var = ensemble.var(MEMBER, ddof=1)
    if reference is not None:
        var = _missing_aware(var, reference)
    return np.sqrt(_mean(var, weights, keep))


def spread_skill_ratio(ensemble: xr.DataArray, reference: xr.DataArray, weights: xr.DataArray | None = None,
                       keep: Sequence[str] = ("time",)) -> xr.DataArray:
    """√((M+1)/M) · spread / ensemble-mean RMSE: 1 when truth is statistically indistinguishable from a member."""
    m = need_member(ensemble, "spread_skill_ratio", minimum=2)
    return (np.sqrt((m + 1) / m) * spread(ensemble, weights, keep, reference)
            / ensemble_mean_rmse(ensemble, reference, weights, keep))


def spread_skill_ratio_raw(ensemble: xr.DataArray, reference: xr.DataArray, weights: xr.DataArray | None = None,
                           keep: Sequence[str] = ("time",)) -> xr.DataArray:
    """spread / ensemble-mean RMSE without the finite-ensemble factor: a calibrated M-member ensemble gives
    √(M/(M+1)) (0.82 for M = 2, 0.94 for M = 8), so it reads as under-dispersive for small M."""
    need_member(ensemble, "spread_skill_ratio_raw", minimum=2)
    return spread(ensemble, weights, keep, reference) / ensemble_mean_rmse(ensemble, reference, weights, keep)


def ensemble_mean_rmse_fair(ensemble: xr.DataArray, reference: xr.DataArray, weights: xr.DataArray | None = None,
                            keep: Sequence[str] = ("time",)) -> xr.DataArray:
    """Ensemble-mean RMSE (units of the variable) corrected to an infinite ensemble: √max(MSE_M − ⟨s²⟩/M, 0).

    The mean of M exchangeable members carries sampling variance s²/M, so E[MSE_M] = MSE_∞ + E[s²]/M; with the
    unbiased (ddof = 1) variance averaged exactly like the squared error (same weights, same missing points),
    MSE_M − ⟨s²⟩/M is unbiased for MSE_∞. It is clipped at 0 before the root (an estimate, not a bound).
    Needs M ≥ 2: a single member has no spread to estimate s² from.
    """
    m = need_member(ensemble, "ensemble_mean_rmse_fair", minimum=2)
    err2 = (_missing_aware(ensemble.mean(MEMBER), reference) - reference) ** 2
    var = _missing_aware(ensemble.var(MEMBER, ddof=1), reference)
    # one mask for both terms: a point missing in either drops out of both means
    both = err2.notnull() & var.notnull()
    mse_inf = _mean(err2.where(both), weights, keep) - _mean(var.where(both), weights, keep) / m
    return np.sqrt(mse_inf.clip(min=0.0))


def crps_fair_pointwise(members: np.ndarray, observation: np.ndarray, axis: int = 0) -> np.ndarray:
    """Fair ensemble CRPS at every point; `members` has the ensemble on `axis`, `observation` the rest.

    Uses the sorted form Σ_i Σ_j |x_i − x_j| = 2 Σ_k (2k − M − 1) x_(k), k = 1…M, which is O(M log M).
    """
    x = np.moveaxis(np.asarray(members, dtype=np.float64), axis, -1)
    y = np.asarray(observation, dtype=np.float64)[..., None]
    m = x.shape[-1]
    if m < 2:
        raise ValueError("the fair CRPS needs at least 2 members")
    skill = np.abs(x - y).mean(axis=-1)
    xs = np.sort(x, axis=-1)
    k = np.arange(1, m + 1)
    pair_sum = 2.0 * (xs * (2 * k - m - 1)).sum(axis=-1)  # Σ_i Σ_j |x_i − x_j|
    return skill - pair_sum / (2.0 * m * (m - 1))


def crps(ensemble: xr.DataArray, reference: xr.DataArray, weights: xr.DataArray | None = None,
         keep: Sequence[str] = ("time",)) -> xr.DataArray:
    """Fair ensemble CRPS (units of the variable), area-weighted mean."""
    need_member(ensemble, "crps", minimum=2)
    ens, ref = xr.broadcast(ensemble, reference, exclude=[MEMBER])
    ens = ens.transpose(MEMBER, *ref.dims)
    point = xr.DataArray(crps_fair_pointwise(ens.values, ref.values, axis=0), dims=ref.dims, coords=ref.coords)
    return _mean(point.where(ref.notnull()), weights, keep).assign_attrs(estimator="fair (Ferro 2014)")


def rank_histogram(ensemble: xr.DataArray, reference: xr.DataArray, weights: xr.DataArray | None = None,
                   keep: Sequence[str] = ("time",), seed: int = 0) -> xr.DataArray:
    """Relative frequency of the reference's rank among M members (dim `rank`, 0…M), weighted by area.

    Ties (common at the bounds sic = 0 or 1) are broken uniformly at random, so a calibrated ensemble gives a flat
    histogram even for bounded variables. Frequencies sum to 1 along `rank`.
    """
    m = need_member(ensemble, "rank_histogram")
    ens, ref = xr.broadcast(ensemble, reference, exclude=[MEMBER])
    kept = [d for d in ref.dims if d in keep]
    ref = ref.transpose(*kept, ...)  # kept dims first: one flat group index per kept combination
    x = ens.transpose(*ref.dims, MEMBER).values
    y = ref.values[..., None]
    below = (x < y).sum(axis=-1)
    ties = (x == y).sum(axis=-1)
    rng = np.random.default_rng(seed)
    rank = below + np.floor(rng.random(below.shape) * (ties + 1)).astype(np.int64)
    valid = np.isfinite(ref.values) & np.isfinite(x).all(axis=-1)
    w = (np.ones(ref.shape) if weights is None
         else weights.fillna(0).broadcast_like(ref).transpose(*ref.dims).values)
    w = np.where(valid, w, 0.0)
    kept_shape = ref.shape[: len(kept)]
    groups = int(np.prod(kept_shape, dtype=np.int64))
    group = np.arange(groups).reshape(kept_shape + (1,) * (ref.ndim - len(kept)))
    index = (np.broadcast_to(group, rank.shape) * (m + 1) + rank).ravel()
    counts = np.bincount(index, weights=w.ravel(), minlength=groups * (m + 1)).reshape(kept_shape + (m + 1,))
    coords = {d: ref[d] for d in kept if d in ref.coords}
    hist = xr.DataArray(counts, dims=tuple(kept) + ("rank",), coords={**coords, "rank": np.arange(m + 1)})
    return hist / hist.sum("rank")


def nrmse(rmse_by_variable: Mapping[str, xr.DataArray] | xr.DataArray, sigma: Mapping[str, float]) -> xr.DataArray:
    """√(mean over variables of (rmse_v / σ_v)²); accepts a mapping or a DataArray with a `variable` dim."""
    if isinstance(rmse_by_variable, xr.DataArray):
        names = [str(v) for v in rmse_by_variable["variable"].values]
        items = {n: rmse_by_variable.sel(variable=n, drop=True) for n in names}
    else:
        items = dict(rmse_by_variable)
    missing = [n for n in items if n not in sigma]
    if missing:
        raise ValueError(f"nrmse: no climatological std for {missing}")
    terms = [(items[n] / sigma[n]) ** 2 for n in items]
    return np.sqrt(sum(terms) / len(terms))


def climatological_std(reference: xr.DataArray, weights: xr.DataArray | None = None) -> float:
    """Area-weighted standard deviation of a reference field over all its points (NaN ignored)."""
    mean = _mean(reference, weights, keep=())
    return float(np.sqrt(_mean((reference - mean) ** 2, weights, keep=())))


def iiee(forecast_sic: xr.DataArray, reference_sic: xr.DataArray, weights: xr.DataArray,
         threshold: float = 0.15, keep: Sequence[str] = ("time",)) -> xr.DataArray:
    """Integrated ice-edge error: area (units of `weights`, e.g. km²) where forecast and reference disagree on
    sic ≥ threshold, summed over space and averaged over the remaining sample dims."""
    _no_member(forecast_sic, "iiee")
    valid = reference_sic.notnull() & forecast_sic.notnull()
    wrong = ((forecast_sic >= threshold) != (reference_sic >= threshold)) & valid
    area = (wrong * weights.fillna(0)).sum(SPACE)
    rest = [d for d in area.dims if d not in keep]
    return area.mean(rest) if rest else area


def deterministic_scores(forecast: xr.DataArray, reference: xr.DataArray, weights: xr.DataArray | None = None,
                         keep: Sequence[str] = ("time",)) -> xr.Dataset:
    """rmse, mae, bias and crps (= mae for a single deterministic forecast) per lead."""
    m = mae(forecast, reference, weights, keep)
    return xr.Dataset({"rmse": rmse(forecast, reference, weights, keep), "mae": m,
                       "bias": bias(forecast, reference, weights, keep), "crps": m})


def ensemble_scores(ensemble: xr.DataArray, reference: xr.DataArray, weights: xr.DataArray | None = None,
                    keep: Sequence[str] = ("time",), seed: int = 0) -> xr.Dataset:
    """All scores of an ensemble per lead: rmse/mae/bias of the ensemble mean, ensemble_mean_rmse,
    member_rmse (mean over members of single-member RMSE), spread, spread_skill_ratio, crps, rank_histogram;
    with M ≥ 2 also the finite-ensemble pair ensemble_mean_rmse_fair and spread_skill_ratio_raw."""
    mean = ensemble.mean(MEMBER)
    out = deterministic_scores(mean, reference, weights, keep)
    out["ensemble_mean_rmse"] = out["rmse"]
    member_keep = tuple(keep) + (MEMBER,)
    err2 = (_missing_aware(ensemble, reference) - reference) ** 2
    out["member_rmse"] = np.sqrt(_mean(err2, weights, member_keep)).mean(MEMBER)
    if ensemble.sizes[MEMBER] >= 2:
        out["spread"] = spread(ensemble, weights, keep, reference)
        out["spread_skill_ratio"] = spread_skill_ratio(ensemble, reference, weights, keep)
        out["spread_skill_ratio_raw"] = spread_skill_ratio_raw(ensemble, reference, weights, keep)
        out["ensemble_mean_rmse_fair"] = ensemble_mean_rmse_fair(ensemble, reference, weights, keep)
        out["crps"] = crps(ensemble, reference, weights, keep)
    out["rank_histogram"] = rank_histogram(ensemble, reference, weights, keep, seed)
    return out
