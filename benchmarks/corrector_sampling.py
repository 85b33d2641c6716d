"""Corrector sampling cost on CPU: batched vs single members, scaling with cells, reference vs few-step sampler.

    OMP_NUM_THREADS=1 python -m benchmarks.corrector_sampling [--threads 1] [--repeat 3]

Prints ratios (timings on a shared machine are noisy: compare ratios, and re-run). Uses the default corrector
network (untrained weights: cost does not depend on the values).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from corrector.config import CorrectorConfig, SamplerConfig
from corrector.inference import Corrector
from corrector.model import CorrectorModel
from corrector.normalization import Normalization
from corrector.sampler import network_evaluations
from corrector.seeding import member_seeds


def make(n: int, network_batch: int) -> tuple[Corrector, dict]:
    """The default corrector (untrained, seed 0) on an n×n all-ocean grid and random conditioning."""
    cfg = CorrectorConfig(sampler={"network_batch": network_batch})
    torch.manual_seed(0)
    model = CorrectorModel(cfg, len(cfg.conditioning))
    corr = Corrector.from_model(model, Normalization.identity(cfg.conditioning, cfg.variables), cfg,
                                dict(nx=n, ny=n), device="cpu")
    rng = np.random.default_rng(0)
    cond = {k: rng.normal(size=(1, n, n)).astype(np.float32) for k in cfg.conditioning}
    cond["mask"] = np.ones((n, n), np.float32)
    return corr, cond


def best_time(fn, repeat: int) -> float:
    """Minimum wall time (s) of `repeat` calls after one warm-up call."""
    fn()  # warm-up (allocator, oneDNN primitive cache)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    """`python -m benchmarks.corrector_sampling [--threads N] [--repeat N]`: print the sampling timings."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    few = SamplerConfig.few_step()
    nfe = network_evaluations(few.name, few.steps)
    print(f"threads={args.threads}; sampler {few.name} ({nfe} network evaluations per member); min of "
          f"{args.repeat} runs")

    # 1. batched members vs one member per network call
    members = 8
    seeds = member_seeds(0, 0, 0, members)[None]
    for n in (16, 32):
        batched, cond = make(n, network_batch=8)
        single, _ = make(n, network_batch=1)
        tb = best_time(lambda: batched.sample(cond, members, seeds=seeds, sampler=few.model_copy(
            update={"network_batch": 8})), args.repeat) / members
        ts = best_time(lambda: single.sample(cond, members, seeds=seeds, sampler=few.model_copy(
            update={"network_batch": 1})), args.repeat) / members
        print(f"{n}²: per member batched(8) {tb * 1e3:.1f} ms, one at a time {ts * 1e3:.1f} ms, "
              f"single/batched = {ts / tb:.2f}")

    # 2. cost vs cells (batched, 8 members)
    per_cell = {}
    for n in (16, 32, 64):
        corr, cond = make(n, network_batch=8)
        t = best_time(lambda: corr.sample(cond, members, seeds=seeds, sampler=few), args.repeat) / members
        per_cell[n] = t / n ** 2
        print(f"{n}²: {t * 1e3:.1f} ms per member per 12 h step, {t / n ** 2 * 1e6:.2f} µs per cell")
    print(f"per-cell cost ratio 64²/16² = {per_cell[64] / per_cell[16]:.2f}, 64²/32² = {per_cell[64] / per_cell[32]:.2f}"
          " (1 = linear in cells)")

    # 3. reference Heun-18 vs few-step sampler
    corr, cond = make(32, network_batch=8)
    ref = SamplerConfig(steps=18)
    tr = best_time(lambda: corr.sample(cond, members, seeds=seeds, sampler=ref), 1)
    tf = best_time(lambda: corr.sample(cond, members, seeds=seeds, sampler=few), args.repeat)
    print(f"32², 8 members: heun-18 ({network_evaluations('heun', 18)} NFE) {tr:.2f} s, few-step ({nfe} NFE) "
          f"{tf:.2f} s, speed-up {tr / tf:.1f}×")


if __name__ == "__main__":
    main()
