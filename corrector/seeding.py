"""Per-member seeds: member k's noise depends only on (base seed, start index, step index, k).

So member k is identical whether 4 or 16 members run, on 1 or N ranks, and across restarts. Seeds come from numpy's
SeedSequence (a hash of the four integers), so neighbouring indices give unrelated streams.
"""
from __future__ import annotations

import numpy as np
import torch

_MAX_SEED = np.uint64(2**63 - 1)


def _one(base_seed: int, start_index: int, step_index: int, member: int) -> np.int64:
    for name, v in (("base_seed", base_seed), ("start_index", start_index), ("step_index", step_index),
                    ("member", member)):
        if int(v) < 0:
            raise ValueError(f"{name} must be non-negative, got {v}")
    words = np.random.SeedSequence([int(base_seed), int(start_index), int(step_index), int(member)]) \
        .generate_state(1, dtype=np.uint64)
    return np.int64(words[0] & _MAX_SEED)  # non-negative int64: valid for torch.Generator.manual_seed


def member_seeds(base_seed: int, start_index, step_index: int, members: int) -> np.ndarray:
    """Seeds of members 0..members−1.

    start_index: int → shape (members,); 1-D array of B start indices → shape (B, members) (one row per batch item,
    as `Corrector.sample` wants). dtype int64, all ≥ 0.
    """
    if members < 1:
        raise ValueError(f"members must be ≥ 1, got {members}")
    starts = np.asarray(start_index)
    if starts.ndim == 0:
        return np.array([_one(base_seed, int(starts), step_index, k) for k in range(members)], dtype=np.int64)
    if starts.ndim != 1:
        raise ValueError(f"start_index must be an int or a 1-D array, got shape {starts.shape}")
    return np.array([[_one(base_seed, int(s), step_index, k) for k in range(members)] for s in starts],
                    dtype=np.int64)


def generators(seeds: np.ndarray, device: "torch.device | str" = "cpu") -> list[torch.Generator]:
    """One torch.Generator per seed (flattened in C order)."""
    out = []
    for s in np.asarray(seeds, dtype=np.int64).ravel():
        g = torch.Generator(device=device)
        g.manual_seed(int(s))
        out.append(g)
    return out


def randn_per_generator(shape_per_item: tuple[int, ...], gens: list[torch.Generator],
                        device: "torch.device | str" = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(len(gens), *shape_per_item) standard normal noise, item i drawn from gens[i] only."""
    return torch.stack([torch.randn(shape_per_item, generator=g, device=device, dtype=dtype) for g in gens])
