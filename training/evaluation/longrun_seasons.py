"""Seasonal scores of long coupled runs against the truth (issue 19's long-run goal): per meteorological season
(DJF, MAM, JJA, SON) the gridpoint RMSE of the ensemble mean for every variable and the mean absolute error of
the domain-mean ice volume (sic·sit, m), each run beside the uncorrected coarse model's, which a corrector has to
beat in every season.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import xarray as xr

from icecorr.base.variables import ML_VARIABLES

SEASONS = {"DJF": (12, 1, 2), "MAM": (3, 4, 5), "JJA": (6, 7, 8), "SON": (9, 10, 11)}


def seasonal_scores(run: xr.Dataset, truth: xr.Dataset, mask: np.ndarray | None) -> dict[str, dict[str, float]]:
    """{season: {variable: gridpoint RMSE of the member mean over ocean cells and the season's records,
    "volume": mean |domain-mean volume error| (m), "records": n}} for the seasons the run covers. Records are
    matched by index from the common start (both trajectories start at the truth's first state); the season is
    the truth's date. A record with a non-finite value counts as missing (a blown-up run scores NaN)."""
    n = min(run.sizes["time"], truth.sizes["time"])
    ocean = np.ones(truth["sic"].shape[-2:], bool) if mask is None else np.asarray(mask) > 0.5
    months = truth["time"].dt.month.values[:n]

    def ens_mean(ds: xr.Dataset, v: str) -> np.ndarray:
        a = ds[v].isel(time=slice(0, n))
        return (a.mean("member") if "member" in a.dims else a).values[:, ocean].astype(np.float64)

    def mean_volume(ds: xr.Dataset) -> np.ndarray:
        # the volume of each member, then the mean over members and cells (not the volume of the mean state)
        cells = (ds["sic"] * ds["sit"]).isel(time=slice(0, n)).values[..., ocean]
        return cells.astype(np.float64).reshape(n, -1).mean(axis=1)

    fields = {v: (ens_mean(run, v), ens_mean(truth, v)) for v in ML_VARIABLES}
    volume = {"run": mean_volume(run), "truth": mean_volume(truth)}
    out: dict[str, dict[str, float]] = {}
    for season, in_season in SEASONS.items():
        sel = np.isin(months, in_season)
        if not sel.any():
            continue
        row = {v: float(np.sqrt(np.mean((r[sel] - t[sel]) ** 2))) for v, (r, t) in fields.items()}
        row["volume"] = float(np.mean(np.abs(volume["run"][sel] - volume["truth"][sel])))
        row["records"] = int(sel.sum())
        out[season] = row
    return out


def seasonal_markdown(scores: Mapping[str, dict], reference: str = "coarse uncorrected") -> list[str]:
    """Markdown: per run and season the RMSE ratios to the reference run (< 1 = better) and the volume errors;
    per run whether it beats the reference in every season for every variable and on volume."""
    if reference not in scores or len(scores) < 2:  # nothing to compare with the reference
        return []
    ref = scores[reference]
    cols = [*ML_VARIABLES, "volume"]
    lines = ["| run | season | records | " + " | ".join(f"RMSE {v} / coarse" for v in ML_VARIABLES)
             + " | volume error (m), run / coarse |", "|---|" + "---|" * (len(cols) + 2)]
    verdicts = []
    for name, seasons in scores.items():
        if name == reference:
            continue
        beats = True
        for season, row in seasons.items():
            base = ref.get(season)
            if base is None:
                continue
            ratios = [row[v] / base[v] if base[v] > 0 else float("nan") for v in cols]
            beats &= all(np.isfinite(r) and r < 1 for r in ratios[:-1]) and row["volume"] <= base["volume"]
            lines.append(f"| {name} | {season} | {row['records']} | " + " | ".join(f"{r:.2f}" for r in ratios[:-1])
                         + f" | {row['volume']:.3f} / {base['volume']:.3f} |")
        verdicts.append(f"- {name}: {'beats' if beats else 'does **not** beat'} the uncorrected coarse model in "
                        "every season (every variable's RMSE and the volume error)")
    return lines + [""] + verdicts
