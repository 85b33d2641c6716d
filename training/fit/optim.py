"""Optimisation pieces of a training run: AdamW parameter groups, the learning-rate schedule (warm-up + cosine), the
EMA of the weights, mixed precision (autocast) and the loss of a batch weighted consistently across ranks.
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch import nn

from training.fit.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """minGPT-style split: decay matrices/kernels (ndim ≥ 2), not biases, norm scales or 1-D embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "embed" not in name.lower() else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def learning_rate(step: int, cfg: TrainConfig, horizon: int) -> float:
    """lr for optimiser step `step` (0-based): linear warm-up to lr, then cosine to min_lr at `horizon`."""
    o = cfg.optim
    if o.warmup_steps and step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    span = max(horizon - o.warmup_steps, 1)
    progress = min(max(step - o.warmup_steps, 0) / span, 1.0)
    return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1.0 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of a model's parameters (buffers are copied), kept as a full module copy so it
    can be evaluated and checkpointed like the model. Decay warms up as min(decay, (1 + n) / (10 + n)) so short
    runs are not dominated by the random initialisation."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the average towards `model`'s parameters after optimiser step `step` (0-based); copy its buffers."""
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        ema_p = list(self.module.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1.0 - d)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)


def autocast_context(amp: str, device: torch.device) -> tuple[Callable[[], contextlib.AbstractContextManager], bool]:
    """(context factory for the forward pass, whether a GradScaler is needed) for train.amp."""
    if amp == "auto":
        if device.type != "cuda":
            amp = "off"
        else:
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "off":
        return contextlib.nullcontext, False
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return (lambda: torch.autocast(device.type, dtype=dtype)), amp == "fp16"


def batch_loss(net: nn.Module, batch: dict, world: int, generator: Optional[torch.Generator] = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to back-propagate, this rank's loss) for a batch; `net` is the model or its DDP wrapper (whose
    forward is the loss).

    The loss is a mean over valid (observed ocean) target values, and their number differs between ranks (gappy
    references, land moved by augmentation). DDP averages gradients over ranks, which would weight each rank's mean
    equally; scaling by world × local / global count makes the averaged gradient that of the mean over the whole
    global batch — the same as one process on that batch.
    """
    rollout = ({k: batch[f"rollout_{k}"] for k in ("target", "cond", "target_mask")}
               if "rollout_target" in batch else None)
    loss, stats = net(batch["target"], batch["cond"], batch["labels"], target_mask=batch["target_mask"],
                      generator=generator, return_stats=True, base=batch.get("base"), rollout=rollout)
    if world == 1:
        return loss, loss
    local = torch.tensor([float(stats["coverage"])], dtype=torch.float64, device=loss.device)
    total = local.clone()
    dist.all_reduce(total)
    scale = float(local * world / total) if float(total) > 0 else 1.0
    return loss * scale, loss
