"""The demo's floor stage runs the truth ensembles at the coupled windows' own start dates (same dates, same scores),
and falls back to the even spread when a window lies outside the floor's run."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import xarray as xr

from icecorr.cli.demo import Demo


def _demo(tmp_path, monkeypatch, runs):
    demo = Demo(tmp_path, quick=True, progress=False, reuse=False)
    demo.plan = dataclasses.replace(demo.plan, windows=3)  # 3-day windows at 0, 17, 33 of 40 records
    demo.data.mkdir(parents=True, exist_ok=True)
    xr.Dataset({"run": ("time", np.asarray(runs, np.int32))}).to_netcdf(demo.data / "test.nc")
    calls = []
    monkeypatch.setattr(Demo, "icecorr", lambda self, *args, **kw: calls.append(args))
    demo.floor()
    return demo, [a for a in calls[-1] if a.startswith("floor.start_windows=")]


def test_floor_starts_at_the_coupled_windows(tmp_path, monkeypatch):
    demo, given = _demo(tmp_path, monkeypatch, [0] * 40)
    assert given == [f"floor.start_windows={json.dumps(demo.window_starts())}"]


def test_windows_in_another_run_keep_the_even_spread(tmp_path, monkeypatch):
    demo, given = _demo(tmp_path, monkeypatch, [0] * 20 + [1] * 20)
    assert any(s >= 20 for s in demo.window_starts()) and given == []
