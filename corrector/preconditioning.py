"""EDM preconditioning (Karras et al. 2022, table 1): D(x; σ) = c_skip x + c_out F(c_in x, c_noise).

With σ_data the std of the clean target, these choices give the network F unit-variance inputs and targets at every
noise level, and make the effective training target of F independent of σ in scale.
"""
from __future__ import annotations

import torch


def edm_coefficients(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """(c_skip, c_out, c_in, c_noise), each shaped like `sigma` (B,)."""
    s2, d2 = sigma * sigma, sigma_data * sigma_data
    c_skip = d2 / (s2 + d2)
    c_out = sigma * sigma_data / torch.sqrt(s2 + d2)
    c_in = 1.0 / torch.sqrt(s2 + d2)
    c_noise = torch.log(sigma) / 4.0
    return c_skip, c_out, c_in, c_noise


def loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """λ(σ) = (σ² + σ_data²) / (σ σ_data)² = 1 / c_out²: equalises the loss magnitude across noise levels."""
    return (sigma * sigma + sigma_data * sigma_data) / (sigma * sigma_data) ** 2
