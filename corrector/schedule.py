"""Noise levels: the log-normal training distribution and the Karras et al. (2022) sampling schedule."""
from __future__ import annotations

import torch

# DPM-Solver++(2M) 4-step σ levels tuned on the analytic Gaussian problem (corrector/schedule_tuning.py): 4 network
# evaluations per sample with conditional mean/std within a few per cent for conditional stds 0.1–2 σ_data.
FEW_STEP_SIGMAS: tuple[float, ...] = (29.08, 1.701, 0.1455, 0.0007)


def training_sigmas(batch: int, p_mean: float, p_std: float, generator: torch.Generator | None = None,
                    device: "torch.device | str" = "cpu") -> torch.Tensor:
    """(batch,) σ with ln σ ~ N(P_mean, P_std²)."""
    z = torch.randn(batch, generator=generator, device=device)
    return torch.exp(p_mean + p_std * z)


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0,
                  device: "torch.device | str" = "cpu") -> torch.Tensor:
    """(steps + 1,) decreasing σ: σ_i = (σ_max^(1/ρ) + i/(n−1) (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, then a final 0.

    One step means a single jump from σ_max to 0 (the denoised estimate at σ_max).
    """
    if steps < 1:
        raise ValueError(f"sampler steps must be ≥ 1, got {steps}")
    if steps == 1:
        return torch.tensor([sigma_max, 0.0], device=device, dtype=torch.float64)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64, device=device)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sig = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sig, sig.new_zeros(1)])


def explicit_sigmas(levels, device: "torch.device | str" = "cpu") -> torch.Tensor:
    """Given strictly decreasing positive σ levels, the schedule with a final 0 appended."""
    sig = torch.tensor([float(v) for v in levels] + [0.0], dtype=torch.float64, device=device)
    if len(levels) < 1 or bool((sig[:-1] <= 0).any()) or bool((sig[1:-1] >= sig[:-2]).any()):
        raise ValueError(f"sampler sigmas must be strictly decreasing and positive, got {list(levels)}")
    return sig
