"""Scores of a 4D-Var analysis against the truth (twin experiments): RMSE over ocean cells of the initial state and
of the forecasts from the analysis and from the background.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def rmse(a: np.ndarray, b: np.ndarray, ocean: np.ndarray) -> float:
    """Root-mean-square difference of `a` and `b` over the ocean cells (the last two axes), in their units."""
    return float(np.sqrt(np.mean((a[..., ocean] - b[..., ocean]) ** 2)))


def scores(analysis_traj: np.ndarray, background_traj: np.ndarray, truth: np.ndarray, variables: Sequence[str],
           ocean: np.ndarray) -> dict:
    """Initial-state and window-mean forecast RMSE per variable (analysis vs background) against the truth."""
    out: dict = {}
    for c, v in enumerate(variables):
        a0, b0 = rmse(analysis_traj[0, c], truth[0, c], ocean), rmse(background_traj[0, c], truth[0, c], ocean)
        af = [rmse(analysis_traj[k, c], truth[k, c], ocean) for k in range(1, len(truth))]
        bf = [rmse(background_traj[k, c], truth[k, c], ocean) for k in range(1, len(truth))]
        out[v] = {"initial_rmse_background": b0, "initial_rmse_analysis": a0,
                  "initial_rmse_reduction": 1.0 - a0 / b0 if b0 > 0 else None,  # None: not perturbed
                  "forecast_rmse_background": float(np.mean(bf)), "forecast_rmse_analysis": float(np.mean(af)),
                  "forecast_rmse_background_by_lead": bf, "forecast_rmse_analysis_by_lead": af}
    return out
