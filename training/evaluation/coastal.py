"""The coastal band scored apart from the open sea: on a grid with land, ocean cells within `band` cells of land
(Euclidean distance between cell centres, `scipy.ndimage.distance_transform_edt`: a cell next to land is 1 away,
its diagonal neighbour √2) form the coastal band, the other ocean cells the open sea. Coastal ice is where the
no-slip walls, land-fast ice and the masks of the two grids act, so a correction can help there differently.

    region_masks(ocean, band) -> {"coastal": (y, x), "open": (y, x)} or None (no land: the closed box)
    region_scores(aligned, weights, masks, cfg) -> rmse_coastal, rmse_open, … (model, variable, lead)
    coastal_table(metrics, lead) -> markdown table of the report
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import xarray as xr
from scipy import ndimage

from training.evaluation.alignment import Aligned
from training.evaluation.config import EvaluateConfig
from training.evaluation.scores import score_labels

#: scores computed again per region (suffix _coastal / _open); the others stay domain-wide
REGION_SCORES = ("rmse", "bias", "crps", "spread", "spread_skill_ratio", "iiee")
REGIONS = ("coastal", "open")


def coastal_band(ocean: np.ndarray, band: float) -> np.ndarray:
    """Bool (y, x): ocean cells whose centre is at most `band` cells from the centre of a land cell."""
    oc = np.asarray(ocean) > 0.5
    if oc.all():
        return np.zeros_like(oc)
    return oc & (ndimage.distance_transform_edt(oc) <= band)


def region_masks(ocean: xr.DataArray, band: float) -> dict[str, xr.DataArray] | None:
    """{"coastal", "open"} float masks (y, x) of the ocean cells near land and away from it; None when the grid has
    no land or `band` is 0 (nothing to separate)."""
    oc = np.asarray(ocean.values) > 0.5
    if band <= 0 or oc.all():
        return None
    coast = coastal_band(oc, band)
    return {"coastal": xr.DataArray(coast.astype(np.float64), dims=ocean.dims),
            "open": xr.DataArray((oc & ~coast).astype(np.float64), dims=ocean.dims)}


def region_scores(aligned: Mapping[str, Aligned], weights: xr.DataArray, masks: Mapping[str, xr.DataArray],
                  cfg: EvaluateConfig) -> xr.Dataset:
    """The REGION_SCORES of every label over each region, as `<score>_<region>` (model, variable, lead)."""
    out = {}
    for region, mask in masks.items():
        w = weights * mask
        # only REGION_SCORES are kept: the domain-wide spread–error reliability is not recomputed per region
        scores = score_labels(list(aligned.values()), w, cfg, reliability=False)
        for name in REGION_SCORES:
            if name in scores:
                out[f"{name}_{region}"] = scores[name].assign_attrs(
                    region=f"{region}: ocean cells {'within' if region == 'coastal' else 'farther than'} "
                           f"{cfg.coastal_band_cells:g} cells of land")
        out[f"cells_{region}"] = xr.DataArray(int(mask.sum()), attrs={"long_name": f"ocean cells in the {region} "
                                                                                   "region"})
    return xr.Dataset(out)


def coastal_table(m: xr.Dataset, lead: float) -> str | None:
    """Markdown table (variable, model): RMSE and spread/RMSE over the coastal band and the open sea at the lead
    nearest `lead`; None without coastal scores."""
    if "rmse_coastal" not in m:
        return None
    leads = m["rmse_coastal"]["lead"].values
    leads = leads[leads > 0] if (leads > 0).any() else leads
    at_lead = float(leads[np.argmin(np.abs(leads - lead))])
    has_ssr = "spread_skill_ratio_coastal" in m
    header = ["variable", "model", "RMSE coastal", "RMSE open", "RMSE coastal / open"]
    header += ["spread/RMSE coastal", "spread/RMSE open"] if has_ssr else []

    def at(name: str, mod, v) -> float:
        return float(m[name].sel(model=mod, variable=v, lead=at_lead)) if name in m else float("nan")

    def fmt(x: float) -> str:
        return "–" if not np.isfinite(x) else f"{x:.3g}"

    lines = [f"Lead {at_lead:g} h; coastal band: {int(m['cells_coastal'])} ocean cells within "
             f"{float(m.attrs.get('coastal_band_cells', np.nan)):g} cells of land, open sea: {int(m['cells_open'])} "
             "cells.", "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for v in m["variable"].values:
        for mod in m["model"].values:
            c, o = at("rmse_coastal", mod, v), at("rmse_open", mod, v)
            row = [str(v), str(mod), fmt(c), fmt(o), fmt(c / o if o else float("nan"))]
            if has_ssr:
                row += [fmt(at("spread_skill_ratio_coastal", mod, v)), fmt(at("spread_skill_ratio_open", mod, v))]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
