"""`icecorr train`: fit a corrector on training-pair files; exact resume, EMA, data-parallel over torchrun ranks.

Run: `python -m training.fit configs/train_tiny.yaml train.max_steps=50` (or `icecorr train …`), and for data
parallelism `torchrun --nproc_per_node 2 -m training.fit …` (gloo on CPU, nccl on GPU).

What a run directory holds (`train.out_dir`): `best.pt` (EMA weights of the best validation metric) and `last.pt`
(corrector checkpoints, loadable by `corrector.inference.Corrector.load`), `resume.pt` (everything needed to continue
bit-identically: raw + EMA weights, optimiser, step/epoch/position, schedule horizon, RNG states per rank),
`metrics.csv` and `config.yaml` (the resolved config).

Reproducibility: the batches are a pure function of (seed, epoch, position) (`training.fit.dataset.epoch_batches`),
the loss noise comes from a per-rank generator whose state is saved, so an interrupted and resumed run produces the
same weights bit for bit as an uninterrupted one (same world size, device and thread count).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch.distributed as dist
from torch import nn

from corrector.checkpoint import CheckpointError
from corrector.config import CorrectorConfig
from icecorr.base.config import ConfigError, dump_config, load_config
from icecorr.base.errors import InputError, RunError
from training.fit.config import TrainRunConfig
from training.fit.dataset import PairDataset
from training.fit.runtime import setup_env
from training.fit.trainer import ModelFactory, Trainer


def default_model(cfg: CorrectorConfig, n_cond: int) -> nn.Module:
    """The network of a corrector config: `corrector.model.CorrectorModel` with `n_cond` conditioning channels."""
    from corrector.model import CorrectorModel

    return CorrectorModel(cfg, n_cond)


def run_train(cfg: TrainRunConfig, *, config_text: Optional[str] = None, device: Optional[str] = None,
              progress: Optional[bool] = None, stop_after_steps: Optional[int] = None,
              model_factory: Optional[ModelFactory] = None, verbose: bool = True) -> Path:
    """Train the corrector described by `cfg`; return the path of the selected checkpoint (best.pt when a
    validation ran, else last.pt).

    config_text: the resolved YAML to save in the run directory (default: dumped from cfg); device overrides
    train.device; progress overrides train.progress; stop_after_steps ends this invocation after that many steps
    (resume state written), like an interruption; model_factory(corrector_cfg, n_cond) replaces CorrectorModel.
    Under torchrun (WORLD_SIZE > 1) every rank calls this; rank 0 writes the files.
    """
    env = setup_env(cfg.train, device)
    try:
        return Trainer(cfg, env, model_factory or default_model, progress, verbose).run(config_text,
                                                                                       stop_after_steps)
    finally:
        if env.owns_group:
            dist.destroy_process_group()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m training.fit CONFIG.yaml [key.sub=value ...]` (also run by `icecorr train`)."""
    p = argparse.ArgumentParser(prog="icecorr train", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="training YAML (configs/train_*.yaml)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.max_steps=100")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="validate config and inputs, then exit")
    args = p.parse_args(argv)
    overrides = list(args.overrides) + ([f"train.seed={args.seed}"] if args.seed is not None else [])
    try:
        cfg = load_config(TrainRunConfig, args.config, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.dry_run:
            for name in ("train_file", "val_file"):
                f = getattr(cfg.train.data, name)
                if f is not None:
                    PairDataset.for_config(cfg.corrector, f, cache_max_mb=0.0)
            print(dump_config(cfg))
            return 0
        path = run_train(cfg, device=args.device, progress=False if args.no_progress else None)
    except (InputError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"checkpoint: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
