"""β(q) of long runs by lead window against the truth's over the same records."""
from __future__ import annotations

import numpy as np
import xarray as xr

from training.evaluation.longrun_scaling import scaling_by_lead, scaling_markdown


def _state(u, v, sic):
    dims = ("time", "y", "x")
    return xr.Dataset({"siu": (dims, u), "siv": (dims, v), "sic": (dims, sic)})


def test_the_truth_itself_scores_one_and_grid_noise_steepens_the_scaling():
    rng = np.random.default_rng(0)
    n, size = 41, 32
    y, x = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    u = 0.1 * np.sin(2 * np.pi * x + phase) * np.cos(2 * np.pi * y)  # smooth, large-scale drift
    v = 0.1 * np.cos(2 * np.pi * x) * np.sin(2 * np.pi * y + phase)
    sic = np.ones((n, size, size))
    truth = _state(u, v, sic)
    noisy = _state(u + 0.02 * rng.standard_normal(u.shape), v + 0.02 * rng.standard_normal(v.shape), sic)
    short = truth.isel(time=slice(0, 10))
    s = scaling_by_lead({"same": truth, "noisy": noisy, "short": short}, truth, None, 16_000.0, 0.5,
                        windows=((2.0, 4.0), (15.0, 20.0)))
    assert s["beta"]["same"] == s["beta"]["truth"]
    assert all(b > t + 0.2 for b, t in zip(s["beta"]["noisy"][0], s["beta"]["truth"][0]))  # noise → larger β
    assert s["beta"]["short"][0] is not None and s["beta"]["short"][1] is None  # 10 records: no day 15–20
    lines = scaling_markdown(s)
    assert any(line.startswith("| same | 2–4 |") and "1.00/1.00/1.00" in line for line in lines)
    assert not any(line.startswith("| short | 15–20") for line in lines)
