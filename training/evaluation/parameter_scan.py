"""Tune the coarse model before learning its residual: the uncorrected coarse model's error against the reference
with one physics parameter scaled by each of several factors.

A corrector trained on a mis-tuned model spends its capacity on a bias one number removes (docs/calibration.md: in
the twin, P* × 2.5 alone halves the coarse model's 15-day velocity error). Scan on the training pairs, put the best
value in the `physics` section of `generate` and `couple`, and only then generate the pairs the corrector learns on.

    python -m training.evaluation.parameter_scan PAIRS --parameter p_star --factors 0.5 1 2 2.5 3
        [--starts 0 30 60 …] [--days 15] [--json scan.json]

For each factor f the coarse model (the physics the pair file's forecasts ran, as its `config` attribute records
it, else the defaults; with the parameter × f, a nested one dotted, e.g. thermo.k_snow) runs from the pair file's reference states at `starts` (window indices) for `days`, forced by the
file's forcing, and its RMSE against the reference (`reference_{v}` of the following windows; land excluded) is
pooled over windows and leads per variable. Every window must lie inside one run of the file.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from coupling.member_physics import scaled_physics
from fortran_stub.config import CoarsePhysicsConfig, GridConfig, physics_parameter
from icecorr.base.errors import InputError
from icecorr.base.files import open_netcdf, write_text_atomic
from icecorr.base.variables import ML_VARIABLES
from training.data.provenance import physics_of
from training.fit.dataset import pair_grid_dx


def scan(pairs: Path, parameter: str, factors: Sequence[float], starts: Sequence[int], steps: int,
         physics: CoarsePhysicsConfig | None = None) -> dict[float, dict[str, float]]:
    """{factor: {variable: RMSE pooled over the windows at `starts` and leads 1..`steps` (12 h each)}}."""
    from coupling.config import CoupleConfig
    from coupling.couple import run_couple
    from coupling.forcing import FileForcing

    physics_parameter(parameter)  # a bad name or window fails before anything runs
    forcing = FileForcing(pairs)
    for s in starts:
        forcing.check_window(s, steps)  # in the file, consecutive and inside one run
    with open_netcdf(pairs, "pair file") as ds:
        physics = physics if physics is not None else physics_of(ds.attrs, pairs)
        ny, nx = ds.sizes["y"], ds.sizes["x"]
        mask = ds["mask"].values.astype(np.float64) if "mask" in ds else None
        reference = {v: np.stack([ds[f"reference_{v}"].values[s:s + steps] for s in starts]) for v in ML_VARIABLES}
        grid = GridConfig(nx=nx, ny=ny, dx=pair_grid_dx(ds, pairs), mask=mask.tolist() if mask is not None else None)
    ocean = np.ones((ny, nx), bool) if mask is None else mask > 0.5
    out: dict[float, dict[str, float]] = {}
    cfg = CoupleConfig(members=1, n_steps=steps, start_indices=list(starts), seed=0, restart_interval=0,
                       output_options={"precision": "float64"})
    with tempfile.TemporaryDirectory() as tmp:
        for f in factors:
            files = run_couple(cfg, str(pairs), forcing, Path(tmp) / f"scan_{f:g}.nc", comm=None, grid=grid,
                               physics=scaled_physics(physics, {parameter: f}),
                               command="training.evaluation.parameter_scan")
            err = {v: [] for v in ML_VARIABLES}
            for k, path in enumerate(files):
                with xr.open_dataset(path) as run:
                    for v in ML_VARIABLES:  # records 1..steps are the states after each 12 h step
                        err[v].append((run[v].values[1:, 0] - reference[v][k])[:, ocean] ** 2)
            out[float(f)] = {v: float(np.sqrt(np.mean(err[v]))) for v in ML_VARIABLES}
    return out


def table(result: dict[float, dict[str, float]], parameter: str, baseline: float = 1.0) -> str:
    """Markdown table: RMSE per factor and variable, with the ratio to the `baseline` factor (if scanned)."""
    base = result.get(baseline)
    head = f"| {parameter} × | " + " | ".join(ML_VARIABLES) + " |"
    rows = [head, "|" + "---|" * (len(ML_VARIABLES) + 1)]
    for f, rmse in result.items():
        cells = [f"{rmse[v]:.4g}" + (f" ({rmse[v] / base[v]:.2f})" if base and base[v] > 0 else "") for v in ML_VARIABLES]
        rows.append(f"| {f:g} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the scan's table and the best factor per variable; 2 on bad input."""
    p = argparse.ArgumentParser(prog="python -m training.evaluation.parameter_scan", description=__doc__.split("\n\n")[0])
    p.add_argument("pairs", type=Path, help="pair file (the training split: tuning is training)")
    p.add_argument("--parameter", default="p_star", help="coarse-physics parameter (dotted for a nested section)")
    p.add_argument("--factors", type=float, nargs="+", default=[0.5, 1.0, 2.0, 3.0])
    p.add_argument("--starts", type=int, nargs="+", default=[0, 30, 60, 90, 120, 150])
    p.add_argument("--days", type=float, default=15.0)
    p.add_argument("--json", type=Path, default=None, help="also write the RMSE table here")
    a = p.parse_args(argv)
    try:
        result = scan(a.pairs, a.parameter, a.factors, a.starts, round(2 * a.days))
    except (InputError, ValueError) as exc:
        print(f"parameter_scan: {exc}")
        return 2
    print(f"RMSE of the uncorrected coarse model over {len(a.starts)} windows × {a.days:g} days, {a.parameter} scaled "
          f"(ratio to × 1):\n" + table(result, a.parameter))
    best = {v: min(result, key=lambda f: result[f][v]) for v in ML_VARIABLES}
    print("best factor per variable: " + ", ".join(f"{v} {f:g}" for v, f in best.items()))
    if a.json:
        write_text_atomic(json.dumps({"parameter": a.parameter, "rmse": {f"{f:g}": r for f, r in result.items()}},
                                     indent=1), a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
