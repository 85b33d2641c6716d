"""Per-member seeds: member k's noise depends only on (base seed, start index, step index, k).

So member k is identical whether 4 or 16 members run, on 1 or N ranks, and across restarts. Seeds come from numpy's
SeedSequence (a hash of the four integers), so neighbouring indices give unrelated streams.

Noise that persists over coupled steps (`SamplerConfig.noise_decorrelation_days`): member k's initial latent noise
at step n is the AR(1) process z_0 = ε_0, z_n = ρ z_{n−1} + √(1−ρ²) ε_n of its white per-step draws ε_n, written
in closed form, z_n = Σ_l w_l ε_{n−l} (`ar1_weights`). Each ε_j still comes from the seed of step j only, so z_n
is a function of the seeds alone: no state to carry across restarts or between ranks.
"""
from __future__ import annotations

import math

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


STEP_DAYS = 0.5  # one coupled step (12 h)
AR1_TOLERANCE = 1e-8  # lags whose weight ρ^l falls below this are dropped: far under float32 round-off


def ar1_coefficient(decorrelation_days: float, step_days: float = STEP_DAYS) -> float:
    """ρ = exp(−Δt/τ) of an AR(1) process with decorrelation (e-folding) time τ days sampled every Δt days;
    0 (white noise) for τ ≤ 0."""
    if decorrelation_days <= 0:
        return 0.0
    return math.exp(-step_days / decorrelation_days)


def ar1_weights(rho: float, step: int, tol: float = AR1_TOLERANCE) -> np.ndarray:
    """Weights w_l (l = 0 … L−1) of the white draws ε_{step−l} in z_step of the unit-variance AR(1) process
    z_0 = ε_0, z_n = ρ z_{n−1} + √(1−ρ²) ε_n: w_l = √(1−ρ²) ρ^l for step − l ≥ 1 and ρ^step for ε_0.
    Σ w_l² = 1; lags with ρ^l < tol are left out. ρ = 0 or step 0: [1.0] (the white draw itself)."""
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"AR(1) coefficient must be in [0, 1), got {rho}")
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    if rho == 0.0 or step == 0:
        return np.ones(1)
    a = math.sqrt(1.0 - rho * rho)
    out = []
    for lag in range(step + 1):
        decay = rho ** lag
        if decay < tol:
            break
        out.append(decay if lag == step else a * decay)
    return np.array(out)


def lagged_member_seeds(base_seed: int, start_index: int, step_index: int, members: int,
                        lags: int) -> np.ndarray:
    """(members, lags) seeds: column l holds `member_seeds(base_seed, start_index, step_index − l, members)`."""
    if lags < 1 or lags > step_index + 1:
        raise ValueError(f"lags must be in 1 … step_index + 1 = {step_index + 1}, got {lags}")
    return np.stack([member_seeds(base_seed, start_index, step_index - lag, members) for lag in range(lags)], axis=1)


def filtered_noise(shape_per_item: tuple[int, ...], gens: list[torch.Generator], past_seeds: np.ndarray | None,
                   weights: np.ndarray | None, device: "torch.device | str" = "cpu") -> torch.Tensor:
    """(len(gens), *shape_per_item) float32 noise Σ_l w_l ε_l: ε_0 from `gens` (which advance, as for white
    noise), ε_l (l ≥ 1) from fresh generators seeded with past_seeds[:, l − 1] (N, L − 1). Without weights (or a
    single weight 1): white noise, identical to `randn_per_generator`. Summed in float64 in a fixed order, so an
    item's noise does not depend on the other items."""
    white = randn_per_generator(shape_per_item, gens, device=device)
    if weights is None or (len(weights) == 1 and float(weights[0]) == 1.0):
        return white
    past = np.asarray(past_seeds, dtype=np.int64).reshape(len(gens), -1)
    if past.shape[1] != len(weights) - 1:
        raise ValueError(f"filtered_noise: {past.shape[1]} past seeds per item for {len(weights)} weights")
    acc = float(weights[0]) * white.double()
    for lag in range(1, len(weights)):
        eps = randn_per_generator(shape_per_item, generators(past[:, lag - 1], device=device), device=device)
        acc += float(weights[lag]) * eps.double()
    return acc.float()
