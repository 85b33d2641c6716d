"""ODE/SDE samplers for an EDM denoiser D(x; σ): Heun (EDM Algorithm 2, optional churn) and DPM-Solver++(2M).

`denoise(x, sigma)` takes x (B, C, H, W) and a scalar σ (python float) and returns the denoised estimate.
Ensembles are simply batch items with independent noise; the per-item churn noise comes from per-item generators so
that each member's trajectory depends only on its own seed.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .seeding import randn_per_generator

Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


def heun(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, s_churn: float = 0.0, s_tmin: float = 0.0,
         s_tmax: float = float("inf"), s_noise: float = 1.0,
         generators: Sequence[torch.Generator] | None = None,
         mask: torch.Tensor | None = None) -> torch.Tensor:
    """2nd-order Heun from x = σ_0·noise down the schedule `sigmas` (ending in 0). 2n−1 network calls for n steps.

    s_churn > 0 re-injects noise (γ_i = min(s_churn/n, √2−1) for σ_i ∈ [s_tmin, s_tmax]), which makes the sampler
    stochastic: it corrects errors of the learned score and widens under-dispersive ensembles.
    """
    n = len(sigmas) - 1
    sig = [float(s) for s in sigmas]
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        gamma = min(s_churn / n, math.sqrt(2.0) - 1.0) if (s_churn > 0 and s_tmin <= s <= s_tmax) else 0.0
        s_hat = s * (1.0 + gamma)
        if gamma > 0:
            eps = _noise_like(x, generators)
            if mask is not None:
                eps = eps * mask
            x = x + math.sqrt(s_hat ** 2 - s ** 2) * s_noise * eps
        d = (x - denoise(x, s_hat)) / s_hat
        x_next = x + (s_next - s_hat) * d
        if s_next > 0:
            d2 = (x_next - denoise(x_next, s_next)) / s_next
            x_next = x + (s_next - s_hat) * 0.5 * (d + d2)
        x = x_next
    return x


def dpmpp_2m(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, **_unused) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022) in the EDM parameterisation: n network calls for n steps.

    Works in λ = −ln σ; each step is exact for a denoiser that is constant over the step, and the multistep term
    (a linear extrapolation of the denoised estimate from the previous step) makes it second order for free.
    """
    n = len(sigmas) - 1
    sig = [float(s) for s in sigmas]
    old = None
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        den = denoise(x, s)
        if s_next == 0.0:
            x = den  # λ → ∞: the solution is the denoised estimate
        else:
            h = math.log(s / s_next)
            if old is None:
                d = den
            else:
                r = math.log(sig[i - 1] / s) / h
                d = (1 + 1 / (2 * r)) * den - (1 / (2 * r)) * old
            x = (s_next / s) * x - math.expm1(-h) * d
        old = den
    return x


SAMPLERS = {"heun": heun, "dpmpp_2m": dpmpp_2m}


def network_evaluations(name: str, steps: int) -> int:
    """Denoiser calls per sample."""
    return 2 * steps - 1 if name == "heun" else steps


def _noise_like(x: torch.Tensor, generators: Sequence[torch.Generator] | None) -> torch.Tensor:
    if generators is None:
        return torch.randn_like(x)
    if len(generators) != x.shape[0]:
        raise ValueError(f"sampler: {len(generators)} generators for a batch of {x.shape[0]}")
    return randn_per_generator(tuple(x.shape[1:]), list(generators), device=x.device, dtype=x.dtype)
