"""Tune a few-step σ schedule on the analytic Gaussian problem (the justification of `FEW_STEP_SIGMAS`).

For data x ~ N(μ, s²) the exact EDM denoiser is D(x; σ) = μ + s²/(s² + σ²)(x − μ), so a solver's error can be
measured without any training. Our normalised per-cell conditional residuals are close to Gaussian with conditional
std s between ~0.1 and ~2 (target std is 1 by construction), so a schedule is scored by how well it reproduces mean
and std over that range: Σ_s [ln(std_out/s)]² + [(mean_out − μ)/s]², μ = 1.

Result (scipy Nelder–Mead from a Karras start; `python -m corrector.schedule_tuning`):
  DPM-Solver++(2M), 4 steps = 4 network evaluations, σ = (29.08, 1.701, 0.1455, 0.0007): std/s within 0.94–1.08,
  mean bias −0.034 s over s ∈ [0.1, 2] — against 0.40–0.98 with the Karras ρ = 7 schedule at 4 steps;
  DPM-Solver++(2M), 3 steps, best: std/s 0.60–0.84 (under-dispersive); Heun 2 steps (3 evaluations), best: 0.38–1.56.
  The reference 18-step Heun (35 evaluations) gives 1.04–1.09 (slightly over-dispersive).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

from .sampler import SAMPLERS
from .schedule import karras_sigmas

S_RANGE = np.logspace(-1, 0.3, 8)  # conditional stds s ∈ [0.1, 2] in normalised units


def gaussian_stats(sigmas: torch.Tensor, solver: str = "dpmpp_2m", n: int = 4000, mu: float = 1.0,
                   s_values=S_RANGE, seed: int = 0) -> np.ndarray:
    """(len(s_values), 2): std_out/s and (mean_out − μ)/s of the solver with the exact Gaussian denoiser."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator=g, dtype=torch.float64)
    z = (z - z.mean()) / z.std()
    out = []
    for s in s_values:
        def den(x, sg, s=s):
            return mu + s * s / (s * s + sg * sg) * (x - mu)
        x = SAMPLERS[solver](den, z * float(sigmas[0]), sigmas)
        out.append((x.std().item() / s, (x.mean().item() - mu) / s))
    return np.array(out)


def tune(steps: int, solver: str = "dpmpp_2m", sigma_max: float = 80.0) -> tuple[np.ndarray, float]:
    """Optimise the `steps` non-zero σ levels (a final 0 is implied). Returns (σ levels, objective)."""
    def objective(log_sig: np.ndarray) -> float:
        sig = torch.tensor(list(np.exp(np.sort(log_sig)[::-1])) + [0.0], dtype=torch.float64)
        r = gaussian_stats(sig, solver)
        return float(np.sum(np.log(np.abs(r[:, 0]) + 1e-12) ** 2) + np.sum(r[:, 1] ** 2))

    start = np.log(karras_sigmas(steps, 0.05, sigma_max, 7.0).numpy()[:-1])
    res = minimize(objective, start, method="Nelder-Mead", options=dict(maxiter=3000, xatol=1e-4, fatol=1e-8))
    return np.exp(np.sort(res.x)[::-1]), float(res.fun)


if __name__ == "__main__":
    for solver, steps in (("dpmpp_2m", 4), ("dpmpp_2m", 3), ("heun", 2)):
        sig, f = tune(steps, solver)
        r = gaussian_stats(torch.tensor(list(sig) + [0.0], dtype=torch.float64), solver)
        print(f"{solver} steps={steps}: sigmas={np.round(sig, 4).tolist()} objective={f:.4f} "
              f"std/s=[{r[:, 0].min():.2f}, {r[:, 0].max():.2f}] bias/s=[{r[:, 1].min():+.3f}, {r[:, 1].max():+.3f}]")
