"""Scores of aligned runs: per-variable area weights, the (variable, lead) scores of one label, the persistence and
climatology baselines and the climatological σ used by nRMSE."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr

from icecorr.base.errors import InputError
from training.evaluation import metrics as M
from training.evaluation.alignment import Aligned
from training.evaluation.config import EvaluateConfig
from training.evaluation.spread_reliability import spread_error_bins


def variable_weights(name: str, base: xr.DataArray) -> xr.DataArray:
    """Ocean-cell area weights for one variable: siu's east wall column and siv's north wall row are always 0
    (closed walls, docs/design.md) and are not scored."""
    w = base.copy()
    if name == "siu":
        w[:, -1] = 0.0
    elif name == "siv":
        w[-1, :] = 0.0
    return w


def score_label(a: Aligned, weights: xr.DataArray, cfg: EvaluateConfig, reliability: bool = True) -> xr.Dataset:
    """Scores of one label: (variable, lead) arrays, the rank histogram (variable, lead, rank) and, for ensembles
    when `reliability`, the spread–error reliability (variable, spread_bin)."""
    per_var = []
    keep = ("lead",)
    for v in cfg.variables:
        f, r = a.forecast[v], a.reference[v]
        w = variable_weights(v, weights)
        if "member" in f.dims:
            s = M.ensemble_scores(f, r, w, keep, seed=cfg.rank_seed)
            if reliability and f.sizes["member"] >= 4:  # the split-member classes need two members per half
                s = xr.merge([s, spread_error_bins(f, r, w, cfg.spread_error_bins, seed=cfg.rank_seed)])
        else:
            s = M.deterministic_scores(f, r, w, keep)
        per_var.append(s)
    ds = xr.concat(per_var, dim=xr.DataArray(cfg.variables, dims="variable", name="variable"),
                   data_vars="all", join="outer")
    sic = a.forecast["sic"]
    sic = sic.mean("member") if "member" in sic.dims else sic  # ice edge of the ensemble mean
    ds["iiee"] = M.iiee(sic, a.reference["sic"], weights, cfg.ice_threshold, keep)
    return ds


def score_labels(aligned: Sequence[Aligned], weights: xr.DataArray, cfg: EvaluateConfig,
                 reliability: bool = True) -> xr.Dataset:
    """`score_label` of every label along a `model` dim. Ensembles carry coordinates (rank, spread_bin) that
    deterministic runs lack: coords="minimal" lets them be missing in any order of the labels (xarray's default
    refuses an ensemble, a deterministic run and an ensemble in that order)."""
    model = xr.DataArray([a.label for a in aligned], dims="model", name="model")
    return xr.concat([score_label(a, weights, cfg, reliability) for a in aligned], dim=model, join="outer",
                     data_vars="all", coords="minimal")


#: variables whose initial value is a forecast worth beating; the ice velocity forgets its initial value within
#: hours (inertial and wind response), so its persistence is a strawman and is not scored
PERSISTENT = ("sic", "sit", "snt", "damage")


def persistence(a: Aligned) -> Aligned | None:
    """The persistence baseline of a label's windows: the reference at lead 0 for every lead (None without lead 0).
    Its scores of the variables outside PERSISTENT are dropped by `drop_strawman_scores`."""
    if 0.0 not in a.reference["lead"].values:
        return None
    start = a.reference.sel(lead=0.0, drop=True)
    fc = start.expand_dims(lead=a.reference["lead"].values).transpose(*a.reference["sic"].dims)
    fc = fc.assign_coords(lead=a.reference["lead"])
    return Aligned(label="persistence", files=["reference at lead 0"], forecast=fc, reference=a.reference)


def drop_strawman_scores(scores: xr.Dataset) -> xr.Dataset:
    """Scores with NaN for the persistence baseline of the variables outside PERSISTENT (the velocity)."""
    if "persistence" not in scores["model"].values:
        return scores
    out = scores.copy()
    for name, da in scores.data_vars.items():
        if "model" in da.dims and "variable" in da.dims and np.issubdtype(da.dtype, np.floating):
            drop = [v for v in da["variable"].values if str(v) not in PERSISTENT]
            if drop:
                da = da.copy()
                da.loc[{"model": "persistence", "variable": drop}] = np.nan
                out[name] = da
    return out


def _day_of_year(times: np.ndarray) -> np.ndarray:
    t = np.asarray(times, dtype="datetime64[ns]")
    year = t.astype("datetime64[Y]")
    return (t - year) / np.timedelta64(1, "D")


def climatology_baseline(a: Aligned, clim: xr.Dataset, window_days: float) -> Aligned:
    """The climatology forecast of a label's records: for every valid time, the mean of the climatology states
    (`clim`, (time, y, x) with CF times, e.g. the training years) within ±`window_days` of the same day of year.
    InputError when the run has no valid times or a valid time has no climatology state in its window."""
    if a.valid_time is None:
        raise InputError(a.files[0], "time", "has no CF valid times: the climatology baseline needs them")
    clim_doy = _day_of_year(clim["time"].values)
    fc = {}
    cache: dict[np.datetime64, dict[str, np.ndarray]] = {}
    for t in np.unique(a.valid_time):
        d = np.abs(clim_doy - _day_of_year(np.array([t]))[0])
        near = np.minimum(d, 365.25 - d) <= window_days
        if not near.any():
            raise InputError(None, "evaluate.climatology", f"no climatology state within {window_days:g} days of "
                             f"the day of year of {np.datetime_as_string(t, unit='D')}")
        cache[t] = {v: np.nanmean(clim[v].values[near], axis=0) for v in a.reference.data_vars}
    for v in a.reference.data_vars:
        fc[v] = (a.reference[v].dims, np.stack([np.stack([cache[t][v] for t in row]) for row in a.valid_time]))
    forecast = xr.Dataset(fc, coords={"lead": a.reference["lead"]})
    return Aligned(label="climatology", files=["climatology"], forecast=forecast, reference=a.reference,
                   valid_time=a.valid_time)


def climatology(aligned: Sequence[Aligned], weights: xr.DataArray, cfg: EvaluateConfig) -> dict[str, float]:
    """σ_v for nRMSE: the configured values, or the std of the reference records of the first label."""
    if cfg.sigma is not None:
        missing = [v for v in cfg.variables if v not in cfg.sigma]
        if missing:
            raise InputError(None, f"evaluate.sigma.{missing[0]}", "no climatological std given")
        return {v: float(cfg.sigma[v]) for v in cfg.variables}
    ref = aligned[0].reference
    out = {v: M.climatological_std(ref[v], variable_weights(v, weights)) for v in cfg.variables}
    for v, s in out.items():
        if not s > 0:
            raise InputError(aligned[0].files[0], v, "reference has zero variance: give evaluate.sigma explicitly")
    return out
