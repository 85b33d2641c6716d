"""The ensemble-calibration goals of a coupled evaluation, checked from its `metrics.nc` (a table for summaries).

Per variable, over the leads from 1 day to the last (the 12 h step is the corrector's own target and is scored
apart):
- spread/RMSE: the finite-ensemble-corrected ratio (`spread_skill_ratio`), its range over leads; goal [0.8, 1.2]
  for the slow variables (sic, sit, snt) and [0.6, 1.4] for the weather-driven velocities;
- rank histogram: the largest relative deviation of a bin from flat, max_k |K h_k − 1| over the K bins of the
  histogram pooled over those leads; goal ≤ 0.3;
- CRPS of the ensemble / MAE of the deterministic hybrid: the largest ratio over leads; goal < 1 at every lead;
- ensemble-mean RMSE / deterministic RMSE at the last lead; goal ≤ 1;
- (no goal: a diagnosis) spread/RMSE in the calmest and the most spread tenth of the points
  (`training.evaluation.spread_reliability`): where the pooled ratio hides a spread that ignores the weather;
- optionally, the 12 h RMSE of the ensemble mean relative to the uncorrected model's beside the predictability
  floor (the truth ensemble's spread relative to the same coarse error); goal: within 0.05 of the floor.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import xarray as xr

SLOW_VARIABLES = ("sic", "sit", "snt")
SPREAD_GOAL = {"slow": (0.8, 1.2), "velocity": (0.6, 1.4)}
RANK_GOAL = 0.3
FLOOR_TOLERANCE = 0.05


def _pair(low: float, high: float) -> str:
    return "–" if not (np.isfinite(low) and np.isfinite(high)) else f"{low:.2f} / {high:.2f}"


def _ok(flag: bool) -> str:
    return "yes" if flag else "**no**"


def calibration_rows(metrics: xr.Dataset, ensemble: str = "diffusion", deterministic: str = "deterministic",
                     coarse: str = "coarse", floor_ratio_12h: Mapping[str, float] | None = None) -> list[dict]:
    """One dict per variable with the figures above (NaN where a model is missing) and whether each goal holds."""
    leads = metrics["lead"].values
    later = leads[leads >= 24.0]
    last = float(later.max()) if later.size else float("nan")
    rows = []
    for v in metrics["variable"].values:
        v = str(v)

        def get(name: str, model: str, lead=None):
            if name not in metrics or model not in metrics["model"].values:
                return np.full(len(later) if lead is None else 1, np.nan)
            da = metrics[name].sel(model=model, variable=v)
            return da.sel(lead=later).values if lead is None else np.atleast_1d(da.sel(lead=lead).values)

        ratio = get("spread_skill_ratio", ensemble)
        crps_over_mae = get("crps", ensemble) / get("mae", deterministic)
        row = {"variable": v, "spread_skill_min": float(np.nanmin(ratio)) if np.isfinite(ratio).any() else np.nan,
               "spread_skill_max": float(np.nanmax(ratio)) if np.isfinite(ratio).any() else np.nan,
               "crps_over_mae_max": float(np.nanmax(crps_over_mae)) if np.isfinite(crps_over_mae).any() else np.nan,
               "rmse_ratio_last": float(get("rmse", ensemble, last)[0] / get("rmse", deterministic, last)[0]),
               "rank_deviation": np.nan, "last_lead": last}
        if "rank_histogram" in metrics and ensemble in metrics["model"].values:
            h = metrics["rank_histogram"].sel(model=ensemble, variable=v, lead=later).sum("lead").values
            if h.sum() > 0:
                row["rank_deviation"] = float(np.max(np.abs(h / h.sum() * h.size - 1.0)))
        for end in ("low", "high"):
            key = f"spread_error_ratio_{end}"
            row[f"reliability_{end}"] = (float(metrics[key].sel(model=ensemble, variable=v))
                                         if key in metrics and ensemble in metrics["model"].values else np.nan)
        lo, hi = SPREAD_GOAL["slow" if v in SLOW_VARIABLES else "velocity"]
        row["spread_ok"] = lo <= row["spread_skill_min"] and row["spread_skill_max"] <= hi
        row["rank_ok"] = row["rank_deviation"] <= RANK_GOAL
        row["crps_ok"] = row["crps_over_mae_max"] < 1.0
        row["rmse_ok"] = row["rmse_ratio_last"] <= 1.0
        row["rmse_12h_over_coarse"] = float(get("rmse", ensemble, 12.0)[0] / get("rmse", coarse, 12.0)[0])
        if floor_ratio_12h is not None and v in floor_ratio_12h:
            row["floor_12h"] = float(floor_ratio_12h[v])
            row["floor_ok"] = row["rmse_12h_over_coarse"] <= row["floor_12h"] + FLOOR_TOLERANCE
        rows.append(row)
    return rows


def calibration_markdown(metrics: xr.Dataset, floor_ratio_12h: Mapping[str, float] | None = None,
                         **models: str) -> list[str]:
    """The checks as markdown lines: a table with the figures and whether each goal holds."""
    rows = calibration_rows(metrics, floor_ratio_12h=floor_ratio_12h, **models)
    if not rows:
        return []
    last = rows[0]["last_lead"]
    with_floor = any("floor_12h" in r for r in rows)
    head = ("| variable | spread/RMSE 1 d–{:g} h (finite-M) | rank histogram max dev. | max CRPS / det. MAE "
            "| {:g} h RMSE ens. mean / det. | spread/RMSE calmest / most spread class | 12 h RMSE / coarse"
            .format(last, last))
    head += " | floor at 12 h |" if with_floor else " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = (f"| {r['variable']} | {r['spread_skill_min']:.2f}–{r['spread_skill_max']:.2f} ({_ok(r['spread_ok'])}) "
                f"| {r['rank_deviation']:.2f} ({_ok(r['rank_ok'])}) | {r['crps_over_mae_max']:.2f} ({_ok(r['crps_ok'])}) "
                f"| {r['rmse_ratio_last']:.2f} ({_ok(r['rmse_ok'])}) "
                f"| {_pair(r['reliability_low'], r['reliability_high'])} | {r['rmse_12h_over_coarse']:.2f}")
        line += f" | {r['floor_12h']:.2f} ({_ok(r['floor_ok'])}) |" if "floor_12h" in r else (" | – |" if with_floor else " |")
        lines.append(line)
    lines += ["", f"Goals: spread/RMSE in {SPREAD_GOAL['slow']} for sic/sit/snt and {SPREAD_GOAL['velocity']} for "
              f"siu/siv at every lead from 1 day; rank-histogram bins within ±{RANK_GOAL:.0%} of flat; CRPS below the "
              f"deterministic MAE at every lead; ensemble-mean RMSE at the last lead ≤ the deterministic one's; 12 h "
              f"RMSE ratio within {FLOOR_TOLERANCE} of the predictability floor. The calmest / most spread class "
              "column is a diagnosis (1 / 1 = the spread follows the error; report.md, spread–error reliability)."]
    return lines
