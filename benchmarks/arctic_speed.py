"""The Arctic emulator against the BBM on the Arctic grid (issue 20, "Arctic"): seconds per 12 h step on the whole
domain, the speed-up, the goal of a step under 1 s and 3-year rollout times, measured in one run.

    python -m benchmarks.arctic_speed [--resolution-km 25] [--threads 1 2] [--checkpoint runs/arctic25/….pt]
    python -m benchmarks.arctic_speed --resolution-km 200 --bbm-steps 1 --repeat 1     # smoke test

Measured in this process, on the region's grid with its land (configs/region/arctic/grid.yaml at
`--resolution-km`):
  bbm        the BBM truth (`training.data.arctic_cost.step_costs`: mid-winter, compact ice, the costliest
             dynamics; one untimed step, then `--bbm-steps`), serial Fortran on one core: its only mode here
  emulator   one 12 h step on the whole domain in one pass, the network, conditioning channels and sampler of
             `--config` (configs/region/arctic/train_emulator.yaml; untrained weights unless `--checkpoint`: the
             cost does not depend on their values), 1 member: the diffusion emulator (every evaluation of its
             sampler) and a deterministic emulator of the same network (one evaluation), with each of `--threads`
             torch threads
Every emulator figure is the minimum wall time over `--repeat` calls after one warm-up (noise only adds time); the
speed-ups are ratios of timings of this run. On a shared machine a second torch thread measures contention
rather than speed: run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from benchmarks.emulator_scaling import emulator_config, ratio
from benchmarks.performance import STEPS_3_YEARS
from benchmarks.timing import Table, best_time, machine_line, print_table, threads
from corrector.config import CorrectorConfig
from corrector.inference import Corrector
from corrector.model import CorrectorModel
from corrector.normalization import Normalization
from corrector.seeding import member_seeds
from coupling.ensemble import with_sampler

ROOT = Path(__file__).resolve().parents[1]
REGION = ROOT / "configs" / "region" / "arctic"
GOAL_STEP_S = 1.0
GOAL_ROLLOUT_S = 30 * 60.0
BBM_START = "2001-01-15T00:00"  # mid-winter


def region_ocean(region) -> np.ndarray:
    """The ocean mask (1 ocean, 0 land) of a `RegionGrid` on its own cells."""
    from training.data.region_twin import region_twin_grids

    return region_twin_grids(region, 1).fine.ocean_mask().astype(np.float32)


def emulator_call(cfg: CorrectorConfig, ocean: np.ndarray, checkpoint: Path | None = None, seed: int = 0):
    """One 12 h sample of one member on the whole domain (random conditioning, the real land mask), in a network
    batch of one (as the Arctic report's one-member rollouts; the default pads every batch to 8 samples)."""
    ny, nx = ocean.shape
    torch.manual_seed(seed)
    if checkpoint is not None:
        corr = Corrector.load(checkpoint)
        if cfg.kind != corr.config.kind:
            raise SystemExit(f"{checkpoint}: a {corr.config.kind} checkpoint, not {cfg.kind}")
    else:
        model = CorrectorModel(cfg, len(cfg.conditioning))
        norm = Normalization.identity(cfg.conditioning, cfg.variables)
        corr = Corrector.from_model(model, norm, cfg, dict(nx=nx, ny=ny), device="cpu")
    corr = with_sampler(corr, {"network_batch": 1})
    cfg = corr.config
    rng = np.random.default_rng(seed)
    cond = {k: rng.normal(size=(1, ny, nx)).astype(np.float32) for k in cfg.conditioning}
    cond["mask"] = ocean
    seeds = member_seeds(0, 0, 0, 1)[None]
    return lambda: corr.sample(cond, 1, seeds=seeds)


def measure(resolution_km: float, thread_counts: Sequence[int], repeat: int, bbm_steps: int,
            config: Path, checkpoints: dict[str, Path]) -> tuple[Table, dict]:
    """The rows and the raw timings (s per 12 h step)."""
    from icecorr.base.config import load_config
    from training.data.arctic_cost import step_costs
    from training.data.config import RegionForcingConfig
    from training.data.geography import RegionGrid

    region = load_config(RegionGrid, REGION / "grid.yaml").model_copy(update={"resolution_km": resolution_km})
    (ny, nx), ocean = region.shape, region_ocean(region)
    table, raw = Table(), {"grid": [ny, nx], "ocean_cells": int(ocean.sum()), "emulator": {}}
    where = f"{ny} × {nx} at {resolution_km:g} km ({int(ocean.sum())} ocean cells)"
    base = emulator_config(config)
    kinds = {"diffusion": base, "deterministic": base.model_copy(update={"kind": "deterministic"})}
    for name, cfg in kinds.items():
        evaluations = cfg.sampler.steps if name == "diffusion" else 1
        for n in thread_counts:
            with threads(n):
                sec = best_time(emulator_call(cfg, ocean, checkpoints.get(name)), repeat)
            raw["emulator"][f"{name}, {n} thread(s)"] = sec
            table.add("emulator", f"{name} ({evaluations} network evaluation(s)), {where}, {n} torch thread(s)",
                      f"{sec:.3f} s per 12 h step", f"< {GOAL_STEP_S:g} s", sec < GOAL_STEP_S)
    forcing = load_config(RegionForcingConfig, REGION / "forcing.yaml")
    cost = step_costs(region, forcing, BBM_START, bbm_steps, warmup=1)
    raw["bbm_s"], raw["mevp_s"] = cost["truth_s"], cost["coarse_s"]
    table.add("bbm", f"BBM truth, {where}, serial (one core), mean of {bbm_steps} mid-winter step(s)",
              f"{cost['truth_s']:.3f} s per 12 h step (mEVP coarse model {cost['coarse_s']:.3f} s)")
    for label, sec in raw["emulator"].items():
        table.add("speed-up", f"BBM / emulator, {label}", ratio(cost["truth_s"] / sec))
    for label, sec in raw["emulator"].items():
        total = sec * STEPS_3_YEARS
        kind, n_threads = label.split(", ")
        bbm_hours = cost["truth_s"] * STEPS_3_YEARS / 3600
        table.add("rollout", f"3 years ({STEPS_3_YEARS} steps) of the {kind} emulator, {n_threads}",
                  f"{total / 60:.1f} min (BBM {bbm_hours:.1f} h)", f"< {GOAL_ROLLOUT_S / 60:g} min",
                  total < GOAL_ROLLOUT_S)
    return table, raw


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.arctic_speed …`: measure and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution-km", type=float, default=25.0)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts of the emulator")
    ap.add_argument("--repeat", type=int, default=3, help="timed emulator calls (the minimum is kept)")
    ap.add_argument("--bbm-steps", type=int, default=3, help="timed BBM steps (the mean is kept)")
    ap.add_argument("--config", type=Path, default=REGION / "train_emulator.yaml", help="emulator training YAML")
    ap.add_argument("--checkpoint", action="append", default=[], metavar="KIND=PATH",
                    help="time a trained checkpoint (KIND diffusion or deterministic) instead of random weights")
    a = ap.parse_args(argv)
    checkpoints = {k: Path(v) for k, v in (c.split("=", 1) for c in a.checkpoint)}
    print(machine_line(), flush=True)
    t0, before = time.perf_counter(), os.getloadavg()
    table, _ = measure(a.resolution_km, a.threads, a.repeat, a.bbm_steps, a.config, checkpoints)
    print_table("benchmarks.arctic_speed", argv, table,
                f"; load average before {before[0]:.1f}; total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
