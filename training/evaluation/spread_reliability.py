"""Spread–error reliability: is an ensemble's spread large where its error is large?

A pooled spread/RMSE of 1 says only that the *average* spread matches the *average* error. Sea-ice errors are
heavy-tailed (a few storm windows carry most of the squared error, docs/calibration.md), so an ensemble can have
the right pooled ratio with a spread that does not follow the weather: too wide in the calm majority of points (a
domed rank histogram) and too narrow in the storms. The binned spread–error diagram (Leutbecher & Palmer 2008;
Fortin et al. 2014) separates the two: the (window, lead, cell) samples of the leads ≥ `min_lead_hours` are sorted
by their ensemble variance and cut into `bins` classes of equal area weight; per class

    spread = √((M+1)/M · ⟨s²⟩),  rmse = √⟨(x̄ − y)²⟩             (units of the variable)

and a conditionally calibrated ensemble has rmse ≈ spread in every class.

Split members: sorting by the same s² that is then averaged selects sampling noise — with 16 members a perfectly
calibrated ensemble of constant spread would read 0.7 in the lowest class and 1.3 in the highest. So at every point
the members are split at random into two halves: the classes are cut by the variance of one and s² is that of the
other (independent of it given the forecast distribution, as is the error of the full ensemble mean, for symmetric
distributions): the calibrated ensemble then reads 1 in every class, whatever M (≥ 4). The split is drawn afresh at
every point (from `seed`) because members need not be exchangeable within one run: with a perturbed-parameter
ensemble a fixed half of the members keeps its own parameter draws in every window.

Summaries: `ratio_low`/`ratio_high`, spread/rmse in the lowest and highest class; `slope`, the least-squares slope
of log rmse on log spread over the classes (those with spread and rmse > 0) — about 1 for a calibrated ensemble
whose spread varies much more than across its classes' width; above 1 when the error varies more than the spread
(a spread floor: over-dispersive where calm), below 1 when less (under-dispersive where calm).
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from training.evaluation.metrics import MEMBER, need_member

BIN = "spread_bin"


def spread_error_bins(ensemble: xr.DataArray, reference: xr.DataArray, weights: xr.DataArray,
                      bins: int = 10, min_lead_hours: float = 24.0, seed: int = 0) -> xr.Dataset:
    """Binned spread and ensemble-mean RMSE (dim `spread_bin`), their weight share, and the summary scalars
    `spread_error_slope`, `spread_error_ratio_low`, `spread_error_ratio_high` (see the module docstring).

    `ensemble` has dims (…, lead, member, y, x), `reference` the same without `member`, `weights` (y, x) area
    weights (0 on land). Points where the reference or a member is NaN are left out. Needs M ≥ 4."""
    m = need_member(ensemble, "spread_error_bins", minimum=4)  # two members per half at least
    if bins < 2:
        raise ValueError(f"spread_error_bins: needs at least 2 bins, got {bins}")
    if "lead" in ensemble.dims:
        later = ensemble["lead"].values >= min_lead_hours
        ensemble, reference = ensemble.isel(lead=later), reference.sel(lead=ensemble["lead"].values[later])
    ens, ref = xr.broadcast(ensemble, reference, exclude=[MEMBER])
    x = ens.transpose(*ref.dims, MEMBER).values.astype(np.float64)
    y = ref.values.astype(np.float64)
    w = weights.fillna(0).broadcast_like(ref).transpose(*ref.dims).values
    ok = np.isfinite(y) & np.isfinite(x).all(axis=-1) & (w > 0)
    err2 = (x.mean(axis=-1) - y)[ok] ** 2
    x = x[ok]
    rng = np.random.default_rng(seed)  # a random split of the members at every point: see the module docstring
    x = np.take_along_axis(x, np.argsort(rng.random(x.shape), axis=-1), axis=-1)
    sorter = x[:, : m // 2].var(axis=-1, ddof=1)
    var = x[:, m // 2:].var(axis=-1, ddof=1)
    w = w[ok]
    nan = np.full(bins, np.nan)
    spread_b, rmse_b, share = nan.copy(), nan.copy(), np.zeros(bins)
    if w.sum() > 0:
        order = np.argsort(sorter, kind="stable")
        cum = np.cumsum(w[order]) / w.sum()
        # a sample's class from the weight below its middle: equal-weight classes, ties split by position
        cls = np.minimum((bins * (cum - 0.5 * w[order] / w.sum())).astype(np.int64), bins - 1)
        wsum = np.bincount(cls, weights=w[order], minlength=bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            spread_b = np.sqrt((m + 1) / m * np.bincount(cls, weights=(w * var)[order], minlength=bins) / wsum)
            rmse_b = np.sqrt(np.bincount(cls, weights=(w * err2)[order], minlength=bins) / wsum)
        share = wsum / w.sum()
    good = np.isfinite(spread_b) & np.isfinite(rmse_b) & (spread_b > 0) & (rmse_b > 0)
    slope = float(np.polyfit(np.log(spread_b[good]), np.log(rmse_b[good]), 1)[0]) if good.sum() >= 2 else np.nan
    ratio = spread_b / rmse_b
    low = ratio[good][0] if good.any() else np.nan
    high = ratio[good][-1] if good.any() else np.nan
    coords = {BIN: np.arange(bins)}
    return xr.Dataset({
        "spread_error_bin_spread": xr.DataArray(spread_b, dims=BIN, coords=coords),
        "spread_error_bin_rmse": xr.DataArray(rmse_b, dims=BIN, coords=coords),
        "spread_error_bin_share": xr.DataArray(share, dims=BIN, coords=coords),
        "spread_error_slope": float(slope),
        "spread_error_ratio_low": float(low),
        "spread_error_ratio_high": float(high),
    })


RELIABILITY_NOTE = (
    "Samples of the leads ≥ 1 day (window, lead, cell) in classes of equal area by ensemble spread (the members "
    "split at random at every point: one half sorts, the other gives the spread, so sampling noise does not bias "
    "the classes); spread/RMSE of the ensemble mean per class, from the calmest to the most spread class. 1 in "
    "every class = conditionally calibrated; a pooled spread/RMSE of 1 with ratios above 1 in the calm classes and "
    "below in the stormy ones is spread that does not follow the weather. Slope: of log RMSE on log spread over "
    "the classes (> 1: the error varies more than the spread).")


def reliability_table(metrics: xr.Dataset) -> str | None:
    """Markdown table, one row per (variable, ensemble model): spread/RMSE per spread class and the slope; None
    when no model has the binned scores (no ensemble of ≥ 4 members)."""
    if "spread_error_bin_spread" not in metrics:
        return None
    ratio = metrics["spread_error_bin_spread"] / metrics["spread_error_bin_rmse"]
    models = [mod for mod in metrics["model"].values if np.isfinite(ratio.sel(model=mod)).any()]
    if not models:
        return None
    bins = metrics[BIN].values
    lines = ["| variable | model | " + " | ".join(f"class {b + 1}" for b in bins) + " | slope |",
             "|---|---|" + "---|" * (len(bins) + 1)]
    for v in metrics["variable"].values:
        for mod in models:
            r = ratio.sel(model=mod, variable=v).values
            slope = float(metrics["spread_error_slope"].sel(model=mod, variable=v))
            lines.append(f"| {v} | {mod} | " + " | ".join("–" if not np.isfinite(x) else f"{x:.2f}" for x in r)
                         + f" | {slope:.2f} |")
    return "\n".join(lines)
