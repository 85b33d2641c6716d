"""Tangent-linear and adjoint of one corrector step, from numpy, via torch.func (for 4D-Var-style uses).

The step is the map conditioning (physical units) → network output: the correction or, in emulator mode, the
tendencies and next states (physical units, land = 0, no bounds: clipping is not differentiable). For the
deterministic kind it is the network; for the diffusion kind it is the ODE sampler with fixed noise (seeds), i.e.
one deterministic member. Conditioning fields not given a tangent get a zero tangent.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch.func import jvp, vjp

from .fields import MASK, stack
from .inference import Corrector
from .seeding import generators, randn_per_generator


class CorrectorTangent:
    """Linearisation of `corrector` around a conditioning state (batch of one: arrays (ny, nx)).

    seed: the member seed fixing the diffusion noise (ignored by the deterministic kind); steps: sampler steps.
    """

    def __init__(self, corrector: Corrector, seed: int = 0, steps: int | None = None):
        if corrector.is_zero:
            raise ValueError("tangent: the zero corrector has no network to linearise")
        if corrector.config.sampler.s_churn > 0:
            raise ValueError("tangent: stochastic churn makes the step random; use s_churn = 0")
        self.c, self.seed, self.steps = corrector, int(seed), steps
        self.names = corrector.conditioning_names
        self.model = corrector.model  # torch.func differentiates w.r.t. the inputs only: weights are untouched

    def _cond(self, conditioning: Mapping[str, np.ndarray]) -> torch.Tensor:
        arrays = {k: np.asarray(v)[None] for k, v in conditioning.items()}
        return stack(self.names, arrays).to(self.c.device)

    def _function(self, cond_phys: torch.Tensor):
        """The step as a pure function of the physical conditioning (mask held fixed)."""
        ocean = self.model.ocean(cond_phys)
        norm = self.c.normalization
        mask_k = self.names.index(MASK) if MASK in self.names else None
        ny, nx = cond_phys.shape[-2:]
        noise = None
        if self.c.kind == "diffusion":
            g = generators(np.array([self.seed]), device=self.c.device)
            noise = randn_per_generator((len(self.c.variables), ny, nx), g, device=self.c.device)

        def step(x: torch.Tensor) -> torch.Tensor:
            xn = norm.normalise_cond(x)
            if mask_k is not None:
                xn = torch.cat([xn[:, :mask_k], cond_phys[:, mask_k:mask_k + 1], xn[:, mask_k + 1:]], dim=1)
            y = self.model.sample_normalised(xn, None, noise, self.steps)
            y = norm.denormalise_target(y)
            return y if ocean is None else y * ocean
        return step

    def _tangent(self, tangent: Mapping[str, np.ndarray], like: torch.Tensor) -> torch.Tensor:
        unknown = sorted(set(tangent) - set(self.names))
        if unknown:
            raise KeyError(f"tangent: fields {unknown} are not conditioning channels ({self.names})")
        full = {n: np.asarray(tangent[n])[None] if n in tangent else np.zeros(like.shape[-2:], np.float32)[None]
                for n in self.names}
        return stack(self.names, full).to(like.device)

    def step(self, conditioning: Mapping[str, np.ndarray]) -> np.ndarray:
        """The correction (n_vars, ny, nx) in physical units."""
        x = self._cond(conditioning)
        with torch.no_grad():
            return self._function(x)(x)[0].cpu().numpy()

    def jvp(self, conditioning: Mapping[str, np.ndarray], tangent: Mapping[str, np.ndarray]) \
            -> tuple[np.ndarray, np.ndarray]:
        """(correction, J·tangent), both (n_vars, ny, nx); tangent: {conditioning name: (ny, nx)}."""
        x = self._cond(conditioning)
        out, dout = jvp(self._function(x), (x,), (self._tangent(tangent, x),))
        return out[0].detach().cpu().numpy(), dout[0].detach().cpu().numpy()

    def vjp(self, conditioning: Mapping[str, np.ndarray], cotangent: np.ndarray) \
            -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(correction, Jᵀ·cotangent as {conditioning name: (ny, nx)}); cotangent: (n_vars, ny, nx)."""
        x = self._cond(conditioning)
        out, pullback = vjp(self._function(x), x)
        ct = torch.as_tensor(np.asarray(cotangent, np.float32)[None], device=x.device)
        if ct.shape != out.shape:
            raise ValueError(f"cotangent: shape {tuple(ct.shape[1:])}, expected {tuple(out.shape[1:])}")
        (grad,) = pullback(ct)
        g = grad[0].detach().cpu().numpy()
        return out[0].detach().cpu().numpy(), {n: g[k] for k, n in enumerate(self.names)}
