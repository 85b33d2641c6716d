"""Cost of one training step (forward + backward + AdamW + EMA) on CPU, to size the demo's training configs.

    OMP_NUM_THREADS=1 python -m benchmarks.train_step [--grid 32] [--threads 2] [--repeat 10] [--configs ...]

For each `configs/train_*.yaml` (or the given ones) prints ms per step in fp32 and with bf16 autocast, their ratio,
steps per minute, and the minutes its `train.max_steps` would take. Timings on a shared machine are noisy: compare
ratios and re-run. Uses random inputs on a grid×grid box with the config's network and batch size.
"""
from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch

from corrector.model import CorrectorModel
from icecorr.base.config import load_config
from training.fit.optim import EMA, param_groups
from training.fit.config import TrainRunConfig

ROOT = Path(__file__).resolve().parent.parent


def step_ms(cfg: TrainRunConfig, grid: int, repeat: int, bf16: bool) -> tuple[float, float]:
    """(median wall ms, median process-CPU ms) per step; CPU time / threads estimates an idle machine's wall time."""
    c, t = cfg.corrector, cfg.train
    torch.manual_seed(0)
    model = CorrectorModel(c, len(c.conditioning))
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    ema = EMA(model, t.optim.ema_decay)
    opt = torch.optim.AdamW(param_groups(model, t.optim.weight_decay), lr=t.optim.lr)
    b = t.batch_size
    cond = torch.randn(b, len(c.conditioning), grid, grid)
    cond[:, c.conditioning.index("mask")] = 1.0
    target = torch.randn(b, len(c.variables), grid, grid)
    labels = torch.zeros(b, 3)
    cond, target = cond.contiguous(memory_format=fmt), target.contiguous(memory_format=fmt)
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    times, cpu = [], []
    for i in range(repeat + 2):  # two warm-up steps
        t0, c0 = time.perf_counter(), time.process_time()
        with ctx():
            loss = model.loss(target, cond, labels)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model, i)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    times, cpu = sorted(times[2:]), sorted(cpu[2:])
    return 1000 * times[len(times) // 2], 1000 * cpu[len(cpu) // 2]  # medians


def main() -> None:
    """Command line: time training steps of each configured corrector on a synthetic grid and print the medians."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--no-bf16", action="store_true")
    p.add_argument("--configs", nargs="*", default=None)
    p.add_argument("overrides", nargs="*", default=[], help="key.sub=value applied to every config")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    paths = [Path(x) for x in args.configs] if args.configs else sorted((ROOT / "configs").glob("train_*.yaml"))
    print(f"grid {args.grid}², {args.threads} thread(s), median of {args.repeat} steps")
    for path in paths:
        cfg = load_config(TrainRunConfig, path, args.overrides)
        n_params = sum(p.numel() for p in CorrectorModel(cfg.corrector, len(cfg.corrector.conditioning)).parameters())
        fp32, cpu = step_ms(cfg, args.grid, args.repeat, bf16=False)
        idle = cpu / args.threads
        line = (f"{path.name:30s} {cfg.corrector.kind:13s} {n_params / 1e6:6.3f} M params, batch "
                f"{cfg.train.batch_size:3d}: fp32 {fp32:7.1f} ms/step wall, {cpu:7.1f} ms CPU (idle-machine "
                f"estimate {idle:6.1f} ms/step: max_steps {cfg.train.max_steps} ≈ "
                f"{cfg.train.max_steps * idle / 60e3:5.1f} min)")
        if not args.no_bf16:
            bf16, bf16_cpu = step_ms(cfg, args.grid, args.repeat, bf16=True)
            line += f"; bf16 autocast {bf16:7.1f} ms wall (bf16/fp32 wall {bf16 / fp32:.2f}, CPU {bf16_cpu / cpu:.2f})"
        print(line, flush=True)


if __name__ == "__main__":
    main()
