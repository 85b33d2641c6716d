"""Scores of aligned runs: per-variable area weights, the (variable, lead) scores of one label, the persistence
baseline and the climatological σ used by nRMSE."""
from __future__ import annotations

from typing import Sequence

import xarray as xr

from icecorr.base.errors import InputError
from training.evaluation import metrics as M
from training.evaluation.alignment import Aligned
from training.evaluation.config import EvaluateConfig


def variable_weights(name: str, base: xr.DataArray) -> xr.DataArray:
    """Ocean-cell area weights for one variable: siu's east wall column and siv's north wall row are always 0
    (closed walls, docs/design.md) and are not scored."""
    w = base.copy()
    if name == "siu":
        w[:, -1] = 0.0
    elif name == "siv":
        w[-1, :] = 0.0
    return w


def score_label(a: Aligned, weights: xr.DataArray, cfg: EvaluateConfig) -> xr.Dataset:
    """Scores of one label: (variable, lead) arrays and the rank histogram (variable, lead, rank)."""
    per_var = []
    keep = ("lead",)
    for v in cfg.variables:
        f, r = a.forecast[v], a.reference[v]
        w = variable_weights(v, weights)
        if "member" in f.dims:
            s = M.ensemble_scores(f, r, w, keep, seed=cfg.rank_seed)
        else:
            s = M.deterministic_scores(f, r, w, keep)
        per_var.append(s)
    ds = xr.concat(per_var, dim=xr.DataArray(cfg.variables, dims="variable", name="variable"),
                   data_vars="all", join="outer")
    sic = a.forecast["sic"]
    sic = sic.mean("member") if "member" in sic.dims else sic  # ice edge of the ensemble mean
    ds["iiee"] = M.iiee(sic, a.reference["sic"], weights, cfg.ice_threshold, keep)
    return ds


def persistence(a: Aligned) -> Aligned | None:
    """The persistence baseline of a label's windows: the reference at lead 0 for every lead (None without lead 0)."""
    if 0.0 not in a.reference["lead"].values:
        return None
    start = a.reference.sel(lead=0.0, drop=True)
    fc = start.expand_dims(lead=a.reference["lead"].values).transpose(*a.reference["sic"].dims)
    fc = fc.assign_coords(lead=a.reference["lead"])
    return Aligned(label="persistence", files=["reference at lead 0"], forecast=fc, reference=a.reference)


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
