"""Cost of the BBM truth (`coupling.truth.TruthModel`) per 12 h step on a region's grid at several resolutions: the
measurement that sizes the Arctic data set (docs/arctic.md, 'Cost').

    python -m training.data.arctic_cost configs/region/arctic/grid.yaml --resolutions 50 40 25 --steps 4

For each resolution: the region's grid and mask at that cell size (refinement 1: the BBM runs on the grid the
emulator learns), the region's synthetic forcing from `--start` (mid-winter by default: compact, thick ice, the
costliest dynamics), compact initial ice (`training.data.generate.initial_truth_state`), `--warmup` steps untimed,
then `--steps` timed steps of the truth and of the coarse mEVP model (which `icecorr generate` also runs at every
window; its forecast is unused by an emulator). One process, one thread: run it with OMP_NUM_THREADS=1.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from icecorr.base.config import load_config
from training.data.config import GenerateConfig, RegionForcingConfig
from training.data.generate import coarse_grained, coarse_start_state, default_models, initial_truth_state
from training.data.geography import RegionGrid
from training.data.region_forcing import RegionForcing
from training.data.region_twin import region_twin_grids


def step_costs(region: RegionGrid, forcing_cfg: RegionForcingConfig, start: str, steps: int, warmup: int,
               seed: int = 1) -> dict[str, float]:
    """{cells, ocean_cells, truth_s, coarse_s, forcing_s}: mean seconds per 12 h step on `region`'s grid."""
    from fortran_stub.truth_config import TruthPhysicsConfig
    from fortran_stub.config import CoarsePhysicsConfig

    coarse_cls, truth_cls = default_models()
    grids = region_twin_grids(region, 1)
    n = warmup + steps + 1
    t0 = time.perf_counter()
    forcing = RegionForcing(forcing_cfg, grids.fine_geo, start, n, seed)
    fields = [forcing.truth_at(k) for k in range(n)]
    t_forcing = (time.perf_counter() - t0) / n
    truth = truth_cls(grids.fine, TruthPhysicsConfig(), seed)
    truth.set_state(initial_truth_state(GenerateConfig().initial, grids.fine, seed))
    t_truth, t_coarse = [], []
    for k in range(warmup + steps):
        start_state = coarse_grained(truth.get_state(), 1, grids.fine.ocean_mask())
        a = time.perf_counter()
        truth.step(fields[k], fields[k + 1])
        b = time.perf_counter()
        coarse = coarse_cls(grids.coarse, CoarsePhysicsConfig())
        coarse_vars = set(coarse.get_state().data_vars)
        coarse.set_state(coarse_start_state(start_state, coarse_vars))
        coarse.step(fields[k], fields[k + 1])
        c = time.perf_counter()
        if k >= warmup:
            t_truth.append(b - a)
            t_coarse.append(c - b)
    ny, nx = region.shape
    return {"cells": ny * nx, "ocean_cells": int(grids.fine.ocean_mask().sum()), "truth_s": float(np.mean(t_truth)),
            "coarse_s": float(np.mean(t_coarse)), "forcing_s": t_forcing}


def main(argv: list[str] | None = None) -> None:
    """Print one line per resolution: cells, seconds per step (truth, coarse, forcing), 1-year cost on one core."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grid", help="region grid YAML (RegionGrid)")
    p.add_argument("--forcing", default="configs/region/arctic/forcing.yaml", help="RegionForcingConfig YAML")
    p.add_argument("--resolutions", type=float, nargs="+", default=[50.0, 25.0], help="cell sizes (km)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--start", default="2001-01-15T00:00")
    a = p.parse_args(argv)
    region = load_config(RegionGrid, a.grid)
    forcing_cfg = load_config(RegionForcingConfig, a.forcing)
    print(f"# OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} load average {os.getloadavg()}", flush=True)
    print("res_km  ny x nx   ocean  truth_s/step  coarse_s/step  forcing_s/step  truth_min/year", flush=True)
    for res in a.resolutions:
        reg = region.model_copy(update={"resolution_km": res})
        c = step_costs(reg, forcing_cfg, a.start, a.steps, a.warmup)
        ny, nx = reg.shape
        print(f"{res:6.1f}  {ny:3d} x {nx:3d}  {c['ocean_cells']:6d}  {c['truth_s']:12.3f}  {c['coarse_s']:13.3f}  "
              f"{c['forcing_s']:14.3f}  {c['truth_s'] * 730 / 60:14.1f}", flush=True)
    print(f"# load average after {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
