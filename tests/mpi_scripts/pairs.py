"""A small training-pair file in the docs/design.md format, made with the real CoarseModel (seconds)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from tests.mpi_scripts import case

VARS = ("sic", "sit", "snt", "siu", "siv")


def make_pair_file(path: str | Path, n_time: int = 6, n: int = 16) -> Path:
    """`initial_*` from a coarse run, `forecast_*` its 12 h re-forecast with a 20 % stronger wind, `reference_*` the
    run's next state: a real (if small) model error to correct."""
    from coupling.bridge import CoarseModel

    forcing = case.forcing(n, n_time + 2, seed=5)
    truth = CoarseModel(case.grid(n))
    truth.set_state(case.initial_state(n))
    recs = {k: [] for k in ("initial", "forecast", "reference")}
    f0s, f1s = [], []
    for t in range(n_time):
        f0, f1 = forcing.pair(t)
        ini = truth.get_state()
        fc = CoarseModel(case.grid(n))
        fc.set_state({k: ini[k].values for k in ("sic", "sivol", "snvol", "siu", "siv", "tsi", "tos")})
        windy = [{**f, "uas": 1.2 * f["uas"], "vas": 1.2 * f["vas"]} for f in (f0, f1)]
        fc.step(*windy)
        truth.step(f0, f1)
        for key, st in (("initial", ini), ("forecast", fc.get_state()), ("reference", truth.get_state())):
            recs[key].append({v: st[v].values for v in VARS})
        f0s.append(f0)
        f1s.append(f1)
    dims = ("time", "y", "x")
    data = {}
    for key, lst in recs.items():
        for v in VARS:
            data[f"{key}_{v}"] = (dims, np.stack([r[v] for r in lst]))
    for v in VARS:
        data[f"residual_{v}"] = (dims, data[f"reference_{v}"][1] - data[f"forecast_{v}"][1])
    for f in f0s[0]:
        data[f"{f}_t0"] = (dims, np.stack([x[f] for x in f0s]))
        data[f"{f}_t1"] = (dims, np.stack([x[f] for x in f1s]))
    data["mask"] = (("y", "x"), np.ones((n, n)))
    data["run"] = (("time",), np.zeros(n_time, dtype=np.int32))
    ds = xr.Dataset(data, coords={"time": pd.date_range("2000-10-01", periods=n_time, freq="12h"),
                                  "x": (np.arange(n) + 0.5) * 16_000.0, "y": (np.arange(n) + 0.5) * 16_000.0},
                    attrs={"icecorr_version": "test", "producer": "tests/mpi_scripts/pairs.py", "config": "",
                           "grid_dx": 16_000.0})
    ds.to_netcdf(path)
    return Path(path)


if __name__ == "__main__":
    import sys

    make_pair_file(sys.argv[1])
