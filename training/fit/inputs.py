"""The inputs of a training run: the train and validation datasets (split, checked against each other, normalised
with statistics fitted on the train split by rank 0), and the batches fed to the network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist

from corrector.normalization import Normalization
from icecorr.base.errors import InputError
from training.fit.config import TrainRunConfig
from training.fit.dataset import PairDataset, collate, split_windows
from training.fit.runtime import Env


@dataclass
class Data:
    """The datasets of a run, normalised with `normalization` (fitted on the train split)."""

    train: PairDataset
    val: Optional[PairDataset]
    normalization: Normalization
    coverage: np.ndarray  # observed share of ocean target cells per variable, train split


def build_data(cfg: TrainRunConfig, env: Env, normalization: Optional[Normalization] = None) -> Data:
    """Train/val datasets with the normalisation fitted on the train split (or the given one, when resuming).

    Only rank 0 fits the statistics (a streaming pass over the train split); the others receive them."""
    c, d = cfg.corrector, cfg.train.data
    train = PairDataset.for_config(c, d.train_file, cache_max_mb=0.0)
    train_idx, val_idx = np.arange(len(train)), None
    if d.val_file is None:
        train_idx, val_idx = split_windows(train.runs, d.val_fraction)
    if d.runs is not None:
        train_idx = train_idx[np.isin(train.runs[train_idx], d.runs)]
        if not len(train_idx):
            raise InputError(str(d.train_file), "train.data.runs", f"no training window of runs {d.runs} (the file "
                                                                    f"has runs {sorted(set(train.runs.tolist()))})")
    if d.max_train_samples:
        train_idx = train_idx[: d.max_train_samples]
    if len(train_idx) < cfg.train.batch_size:
        # one optimiser step needs a full global batch (training.fit.dataset.epoch_batches drops the last partial one)
        held = f" (after holding out val_fraction={d.val_fraction} for validation)" if d.val_file is None else ""
        raise InputError(str(d.train_file), "train.batch_size",
                         f"{len(train_idx)} training window(s){held}, fewer than train.batch_size "
                         f"({cfg.train.batch_size}): one batch needs that many; lower train.batch_size or give more "
                         f"windows")
    train = PairDataset.for_config(c, d.train_file, indices=train_idx, cache_max_mb=d.cache_max_mb, crop=d.crop,
                                   crop_stride=d.crop_stride, crop_min_ocean=d.crop_min_ocean,
                                   rollout_steps=cfg.train.rollout_steps)
    if d.val_file is not None:
        val = PairDataset.for_config(c, d.val_file, cache_max_mb=0.0)
        val_idx = np.arange(len(val))
        val_path = d.val_file
    else:
        val_path = d.train_file
    if d.max_val_samples is not None and val_idx is not None:
        val_idx = val_idx[: d.max_val_samples]
    if d.val_file is not None:
        if (val.ny, val.nx) != (train.ny, train.nx):
            raise InputError(str(d.val_file), "grid", f"(y, x) = ({val.ny}, {val.nx}) differs from the train file's "
                                                      f"({train.ny}, {train.nx}) {d.train_file}")
        if not np.isclose(val.grid_dx, train.grid_dx):
            raise InputError(str(d.val_file), "grid_dx", f"{val.grid_dx:g} m differs from the train file's "
                                                         f"{train.grid_dx:g} m")
    val = (PairDataset.for_config(c, val_path, indices=val_idx, cache_max_mb=d.cache_max_mb)
           if val_idx is not None and len(val_idx) else None)
    payload = [None, None]
    if env.main:
        fitted, coverage = train.fit_normalization()
        payload = [(normalization or fitted).to_dict(), coverage]
    if env.world > 1:
        dist.broadcast_object_list(payload, src=0)
    norm = Normalization.from_dict(payload[0])
    return Data(train.with_normalization(norm), val.with_normalization(norm) if val is not None else None,
                norm, np.asarray(payload[1]))


def loader(ds: PairDataset, batches: Sequence[list], workers: int) -> torch.utils.data.DataLoader:
    """A DataLoader yielding the given batches of keys (`epoch_batches`) of `ds`, with `workers` worker processes."""
    # an own generator: creating a DataLoader iterator draws a worker base seed, which would otherwise advance the
    # global RNG (dropout) at a resume but not in an uninterrupted run (items do not depend on worker seeds)
    return torch.utils.data.DataLoader(ds, batch_sampler=batches, collate_fn=collate, num_workers=workers,
                                       generator=torch.Generator().manual_seed(0))


def to_device(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    """The batch's tensors on `device`; 4-D ones (batch, channel, y, x) in channels-last layout if asked."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {k: v.to(device, non_blocking=True, memory_format=fmt) if v.ndim == 4 else v.to(device, non_blocking=True)
            for k, v in batch.items()}
