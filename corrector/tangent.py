"""Tangent-linear and adjoint of one corrector step, from numpy, via torch.func (for 4D-Var-style uses), in a chosen
floating-point type (float32: the corrector's own network; float64: a copy, for adjoint identities at 1e-12).

The step is the map conditioning (physical units) → network output: the correction or, in emulator mode, the
tendencies and next states (physical units, land = 0, no bounds: clipping is not differentiable). For the
deterministic kind it is the network; for the diffusion kind it is the ODE sampler with fixed noise (seeds), i.e.
one deterministic member. Conditioning fields not given a tangent get a zero tangent.
"""
from __future__ import annotations

import copy
from typing import Callable, Mapping

import numpy as np
import torch
from torch.func import jvp as _jvp
from torch.func import vjp as _vjp
from torch.nn.attention import SDPBackend, sdpa_kernel

from .fields import MASK, stack
from .inference import Corrector
from .seeding import generators, randn_per_generator


def jvp(*args, **kw):
    """torch.func.jvp with the plain-math attention kernel (the fused CPU kernels have no forward-mode AD)."""
    with sdpa_kernel([SDPBackend.MATH]):
        return _jvp(*args, **kw)


def vjp(f, *primals):
    """torch.func.vjp with the same attention kernel as `jvp`, so both linearise the identical function."""
    with sdpa_kernel([SDPBackend.MATH]):
        out, pullback = _vjp(f, *primals)

    def pull(ct):
        with sdpa_kernel([SDPBackend.MATH]):
            return pullback(ct)
    return out, pull


class CorrectorTangent:
    """Linearisation of `corrector` around a conditioning state (batch of one: arrays (ny, nx)), in `dtype`.

    seed: the member seed fixing the diffusion noise (ignored by the deterministic kind); steps: sampler steps.
    dtype: the network's own type uses the corrector's model (torch.func differentiates with respect to the inputs
    only, so its weights are untouched); another type (float64 for adjoint checks) uses a copy of the model.
    """

    def __init__(self, corrector: Corrector, seed: int = 0, steps: int | None = None,
                 dtype: torch.dtype = torch.float32):
        if corrector.is_zero:
            raise ValueError("tangent: the zero corrector has no network to linearise")
        if corrector.config.sampler.s_churn > 0:
            raise ValueError("tangent: stochastic churn makes the step random; use s_churn = 0")
        self.c, self.seed, self.steps, self.dtype = corrector, int(seed), steps, dtype
        self.names = corrector.conditioning_names
        self.model = corrector.model
        if next(self.model.parameters()).dtype != dtype:
            self.model = copy.deepcopy(corrector.model).to(dtype).eval()
            for p in self.model.parameters():
                p.requires_grad_(False)

    def _cond(self, conditioning: Mapping[str, np.ndarray]) -> torch.Tensor:
        """(1, C, ny, nx) in `dtype` on the corrector's device from {name: (ny, nx)}; names a missing or
        misshapen field."""
        arrays = {k: torch.as_tensor(np.asarray(v), dtype=self.dtype)[None] if k in self.names else v
                  for k, v in conditioning.items()}
        return stack(self.names, arrays, dtype=self.dtype, device=self.c.device)

    def function(self, cond_phys: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The step as a pure torch function of the physical conditioning (1, C, ny, nx); the ocean mask and any
        diffusion noise are fixed from `cond_phys`."""
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
        """(1, C, ny, nx) like `like` from {conditioning name: (ny, nx)}, zero for the names not given."""
        unknown = sorted(set(tangent) - set(self.names))
        if unknown:
            raise KeyError(f"tangent: fields {unknown} are not conditioning channels ({self.names})")
        full = {n: torch.as_tensor(np.asarray(tangent[n]), dtype=like.dtype)[None] if n in tangent
                else torch.zeros((1, *like.shape[-2:]), dtype=like.dtype) for n in self.names}
        return stack(self.names, full, dtype=like.dtype, device=like.device)

    def step(self, conditioning: Mapping[str, np.ndarray]) -> np.ndarray:
        """The correction (n_vars, ny, nx) in physical units."""
        x = self._cond(conditioning)
        with torch.no_grad():
            return self.function(x)(x)[0].cpu().numpy()

    def jvp(self, conditioning: Mapping[str, np.ndarray], tangent: Mapping[str, np.ndarray]) \
            -> tuple[np.ndarray, np.ndarray]:
        """(correction, J·tangent), both (n_vars, ny, nx); tangent: {conditioning name: (ny, nx)}, others 0."""
        x = self._cond(conditioning)
        out, dout = jvp(self.function(x), (x,), (self._tangent(tangent, x),))
        return out[0].detach().cpu().numpy(), dout[0].detach().cpu().numpy()

    def vjp(self, conditioning: Mapping[str, np.ndarray], cotangent: np.ndarray) \
            -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(correction, Jᵀ·cotangent as {conditioning name: (ny, nx)}); cotangent: (n_vars, ny, nx)."""
        x = self._cond(conditioning)
        out, pullback = vjp(self.function(x), x)
        ct = torch.as_tensor(np.asarray(cotangent)[None], dtype=x.dtype, device=x.device)
        if ct.shape != out.shape:
            raise ValueError(f"cotangent: shape {tuple(ct.shape[1:])}, expected {tuple(out.shape[1:])}")
        (grad,) = pullback(ct)
        g = grad[0].detach().cpu().numpy()
        return out[0].detach().cpu().numpy(), {n: g[k] for k, n in enumerate(self.names)}
