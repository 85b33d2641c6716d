"""Typed configuration of a training run: data, optimisation, validation, checkpoints and run-time resources.

The `train:` section of a training YAML (`configs/train_*.yaml`); the network/diffusion settings live in the
corrector's own `corrector:` section. Every field has a default so that a config only states what it changes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from corrector.config import CorrectorConfig
from icecorr.base.config import StrictConfig


class DataConfig(StrictConfig):
    """Where the training-pair files are and how items are drawn from them."""

    train_file: Path = Field(Path("data/train.nc"), description="training-pair NetCDF of the train split")
    val_file: Optional[Path] = Field(
        Path("data/val.nc"), description="validation split; null = hold out `val_fraction` of train_file's runs")
    allow_val_is_train: bool = Field(
        False, description="accept val_file = train_file (validation then scores the windows it trains on, so best.pt "
                           "and the skill mean nothing: smoke tests only)")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0,
                                description="share of train_file windows held out when val_file is null (last runs)")
    max_train_samples: Optional[int] = Field(None, ge=1, description="use only the first N training windows")
    runs: Optional[list[int]] = Field(
        None, description="train only on the windows of these runs (the pair file's `run` index); null = all. "
                          "For the folds of a cross-fitted regression stage (`train.cross_fit`)")
    max_val_samples: Optional[int] = Field(None, ge=1, description="use only the first N validation windows")
    augment: bool = Field(True, description="random x/y flips and rot90 (square grids), flags fed as labels")
    cache_max_mb: float = Field(
        1024.0, ge=0.0, description="files whose needed variables fit in this many MiB are read into memory once; "
                                    "larger files are read item by item")
    crop: Optional[int] = Field(
        None, ge=4, description="train on random crop × crop patches of the domain (training.fit.dataset: items are "
        "(window, patch) pairs; the mask and geography channels are cut with the state), validate on whole windows; "
        "a multiple of 2**network.downsamplings. null = whole windows")
    crop_stride: Optional[int] = Field(None, ge=1, description="lattice of patch corners (cells); null = crop // 4")
    crop_min_ocean: float = Field(0.1, ge=0.0, le=1.0, description="patches with less ocean are skipped")

    @model_validator(mode="after")
    def _separate_validation(self) -> "DataConfig":
        if self.val_file is not None and not self.allow_val_is_train and same_file(self.train_file, self.val_file):
            raise ValueError(f"val_file {self.val_file} is the train file {self.train_file}: validation would score "
                             f"the windows it trains on, so best.pt and the skill would mean nothing; give a separate "
                             f"split, val_file: null (hold out val_fraction of the runs), or "
                             f"train.data.allow_val_is_train: true")
        return self


def same_file(a: Path, b: Path) -> bool:
    """The same file: one inode (hard or symbolic links) when both exist, else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


class OptimConfig(StrictConfig):
    """AdamW with linear warm-up and cosine decay (minGPT-style: no weight decay on biases/norms/embeddings)."""

    name: Literal["adamw"] = "adamw"
    lr: float = Field(5e-4, gt=0, description="peak learning rate")
    min_lr: float = Field(1e-6, ge=0, description="learning rate at the end of the cosine decay")
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = Field(1e-3, ge=0)
    warmup_steps: int = Field(100, ge=0, description="linear warm-up from 0 to lr over this many steps")
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: Optional[float] = Field(1.0, gt=0, description="max global gradient norm; null = no clipping")
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0,
                             description="EMA of weights; effective decay min(ema_decay, (1+n)/(10+n)) at step n")

    @model_validator(mode="after")
    def _check(self) -> "OptimConfig":
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        return self


class TrainConfig(StrictConfig):
    """Everything about one training run except the network itself."""

    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    batch_size: int = Field(32, ge=1, description="global batch (summed over data-parallel ranks)")
    max_steps: int = Field(2000, ge=1, description="optimiser steps; also the cosine horizon")
    max_epochs: Optional[int] = Field(None, ge=1, description="stop after this many epochs (if reached first)")
    time_budget_minutes: Optional[float] = Field(
        None, gt=0, description="wall-clock budget: stop cleanly (last checkpoint + resume state) when exceeded")
    fit_schedule_to_budget: bool = Field(
        False, description="shorten the cosine horizon to the steps that fit the time budget, estimated from the "
                           "first steps (the run is then not bit-reproducible)")
    val_every: int = Field(200, ge=1, description="validate (and consider for best checkpoint) every N steps")
    val_batches: Optional[int] = Field(None, ge=1, description="validation-loss batches per validation (null = all)")
    skill_batches: int = Field(2, ge=0, description="validation batches used for the RMSE-skill estimate")
    skill_members: int = Field(4, ge=1, description="ensemble members for the diffusion skill estimate")
    skill_steps: Optional[int] = Field(None, ge=1, description="sampler steps for the diffusion skill estimate "
                                                               "(null = the corrector's sampler setting)")
    best_metric: Literal["val_skill", "val_loss", "val_crps"] = Field(
        "val_skill", description="selects best.pt: val_skill (higher is better), val_loss or val_crps (fair CRPS of "
                                 "the skill_members samples relative to the uncorrected MAE; lower is better)")
    checkpoint_every: int = Field(500, ge=1, description="write last.pt + resume.pt every N steps")
    log_every: int = Field(20, ge=1, description="metrics-CSV row (train loss averaged over the interval) every N steps")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="mixed precision: auto = bf16 on CUDA when supported, else fp16 on CUDA, off on CPU")
    base_checkpoint: Optional[Path] = Field(
        None, description="diffusion kind: a trained deterministic checkpoint (same mode, variables, conditioning and "
        "training data) used as the frozen regression stage; the diffusion then learns only what it leaves "
        "(corrector.base_network, CorrDiff-style)")
    init_checkpoint: Optional[Path] = Field(
        None, description="start from this checkpoint's weights (EMA) and normalisation instead of random weights: "
        "fine-tuning, e.g. a one-step emulator continued with rollout_steps > 1 (GraphCast-style). The corrector "
        "config (kind, mode, variables, conditioning, network) must be the checkpoint's; the optimiser starts afresh")
    rollout_steps: int = Field(
        1, ge=1, le=16, description="deterministic emulators: the loss over K consecutive 12 h steps, each started "
        "from the previous prediction (bounded as in a rollout) and scored against the reference state, "
        "back-propagated through the K steps — so training sees the states its own rollouts reach. Items are "
        "chains of K windows of one run; validation stays one-step. 1 = the one-step loss")
    cross_fit: Optional[dict[int, Path]] = Field(
        None, description="with base_checkpoint: {run: deterministic checkpoint trained without that run's windows}; "
        "each training window's regression prediction comes from the checkpoint that never saw it, so the diffusion "
        "stage learns residuals as wide as the ones it meets on new data (in-sample ones are narrower); every run "
        "of the training file needs an entry. Validation and sampling use base_checkpoint. Measured on the demo: "
        "wider 12 h ensembles offline, coupled spread unchanged (docs/calibration.md)")
    channels_last: bool = Field(True, description="NHWC memory format for the network (≈0.7× step time on CPU "
                                                   "here: oneDNN convolutions avoid layout reorders)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Optional[int] = Field(None, ge=1, description="torch intra-op threads per rank; null = cores / ranks")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes per rank")
    seed: int = 0
    out_dir: Path = Field(Path("runs/train"), description="run directory: checkpoints, resume state, metrics.csv")
    resume: bool = Field(True, description="continue from out_dir/resume.pt if it exists")
    progress: bool = Field(True, description="tqdm bar on rank 0 (only when stderr is a terminal)")


class TrainRunConfig(StrictConfig):
    """A training YAML (`configs/train_*.yaml`): the corrector to build and how to train it."""

    corrector: CorrectorConfig = CorrectorConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _rollout_needs_an_emulator(self) -> "TrainRunConfig":
        c = self.corrector
        if self.train.rollout_steps > 1 and (c.kind != "deterministic" or c.mode != "emulator"):
            raise ValueError(f"train.rollout_steps={self.train.rollout_steps}: needs a deterministic emulator "
                             f"(corrector.kind {c.kind!r}, mode {c.mode!r})")
        return self

    @model_validator(mode="after")
    def _cross_fit_needs_a_stage(self) -> "TrainRunConfig":
        if self.train.cross_fit and self.train.base_checkpoint is None:
            raise ValueError("train.cross_fit: needs train.base_checkpoint (the regression stage used for "
                             "validation and sampling)")
        return self
