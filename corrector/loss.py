"""Masked losses: averages only over cells where the target is valid (ocean, and observed when gappy).

`coverage` = share of target values that entered the loss; the trainer logs it (gappy observations later).
"""
from __future__ import annotations

import torch


def valid_mask(target: torch.Tensor, ocean: torch.Tensor | None, target_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, C, H, W) float 0/1: ocean (B, 1, H, W) × target_mask ((B, C, H, W) or (B, 1, H, W)) × finite(target)."""
    m = torch.isfinite(target).to(target.dtype)
    if ocean is not None:
        m = m * ocean.to(target.dtype)
    if target_mask is not None:
        if target_mask.ndim != 4 or target_mask.shape[0] != target.shape[0] or \
                target_mask.shape[-2:] != target.shape[-2:] or target_mask.shape[1] not in (1, target.shape[1]):
            raise ValueError(f"target_mask: shape {tuple(target_mask.shape)}, expected (B, 1 or C, H, W) with "
                             f"target shape {tuple(target.shape)}")
        m = m * (target_mask > 0.5).to(target.dtype)
    return m


def masked_mean(values: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Σ w·mask·values / Σ mask over everything; `weight` (B,) per-sample factor. 0 (with grad) if mask is empty."""
    v = values * mask
    if weight is not None:
        v = v * weight.reshape(-1, *([1] * (values.ndim - 1)))
    return v.sum() / mask.sum().clamp_min(1.0)


def variable_balanced_mean(values: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None
                           ) -> torch.Tensor:
    """Mean over variables (dim 1) of each variable's masked mean: with gappy targets a variable observed on 90 % of
    the cells (drift) would otherwise outweigh one observed on 45 % (concentration) two to one. Equal to
    `masked_mean` when every variable has the same valid cells."""
    v = values * mask
    if weight is not None:
        v = v * weight.reshape(-1, *([1] * (values.ndim - 1)))
    dims = [d for d in range(values.ndim) if d != 1]
    count = mask.sum(dims)
    present = (count > 0).to(values.dtype)
    per_variable = v.sum(dims) / count.clamp_min(1.0)
    return (per_variable * present).sum() / present.sum().clamp_min(1.0)


def coverage(mask: torch.Tensor) -> float:
    """Share of valid target values."""
    return float(mask.mean()) if mask.numel() else 0.0
