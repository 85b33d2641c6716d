"""The calibration goals read from metrics.nc: figures and pass/fail on constructed metrics."""
from __future__ import annotations

import numpy as np
import xarray as xr

from training.evaluation.calibration_check import calibration_markdown, calibration_rows

LEADS = np.arange(0.0, 372.0, 12.0)
MODELS = ["coarse", "deterministic", "diffusion"]


def metrics(spread_ratio: float, rank: np.ndarray) -> xr.Dataset:
    shape = (len(MODELS), 2, len(LEADS))
    coords = {"model": MODELS, "variable": ["sit", "siu"], "lead": LEADS}
    rmse = np.ones(shape)
    rmse[0] *= 2.0   # coarse
    rmse[2] *= 0.9   # diffusion ensemble mean
    mae = np.full(shape, 0.8)
    crps = np.full(shape, 0.6)
    ds = xr.Dataset({"rmse": (("model", "variable", "lead"), rmse), "mae": (("model", "variable", "lead"), mae),
                     "crps": (("model", "variable", "lead"), crps),
                     "spread_skill_ratio": (("model", "variable", "lead"), np.full(shape, spread_ratio))},
                    coords=coords)
    ds["rank_histogram"] = (("model", "variable", "lead", "rank"),
                            np.broadcast_to(rank, shape + rank.shape).copy())
    return ds


def test_a_calibrated_ensemble_meets_every_goal():
    rows = calibration_rows(metrics(1.0, np.full(9, 1 / 9)), floor_ratio_12h={"sit": 0.44, "siu": 0.40})
    for r in rows:
        assert r["spread_ok"] and r["rank_ok"] and r["crps_ok"] and r["rmse_ok"] and r["floor_ok"]
        assert r["rank_deviation"] < 1e-12 and r["last_lead"] == 360.0
        np.testing.assert_allclose([r["crps_over_mae_max"], r["rmse_ratio_last"], r["rmse_12h_over_coarse"]],
                                   [0.75, 0.9, 0.45])


def test_an_under_dispersive_u_shaped_ensemble_fails():
    u_shape = np.array([0.3, 0.05, 0.05, 0.05, 0.1, 0.05, 0.05, 0.05, 0.3])
    rows = calibration_rows(metrics(0.7, u_shape), floor_ratio_12h={"sit": 0.35})
    sit, siu = rows
    assert not sit["spread_ok"] and siu["spread_ok"]   # 0.7 is inside the velocities' wider band only
    np.testing.assert_allclose(sit["rank_deviation"], 0.3 * 9 - 1)
    assert not sit["rank_ok"] and not sit["floor_ok"] and "floor_12h" not in siu
    text = "\n".join(calibration_markdown(metrics(0.7, u_shape)))
    assert "0.70–0.70 (**no**)" in text and "| siu | 0.70–0.70 (yes)" in text
