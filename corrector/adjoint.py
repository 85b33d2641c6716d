"""Tangent-linear and adjoint products of a deterministic emulator (or corrected model) over one 12 h step and over
an N-step rollout, NumPy in/out, float64 by default — the building blocks of 4D-Var (Durand et al. 2025).

A rollout is x_{k+1} = bound(s_k(x_k)), k = 0 … n−1, on the state x = (V, ny, nx) of the corrector's variables in
physical units. The step s_k is
* emulator mode:  P x + T(cond_k(x)), T the emulator network and P the diagonal 0/1 projection that keeps the
  tendency variables and drops the state variables (`emulator_state_variables`): those are predicted as the next
  state itself, x_{k+1,v} = T_v(cond_k(x)), so their Jacobian has no identity part;
* residual mode:  f + C(cond_k(x, f)), f = physics(x, k) a *differentiable* torch model of the 12 h physics (the
  Fortran coarse model has no adjoint, so a hybrid rollout needs a torch stand-in; the correction alone — its
  derivative with respect to its conditioning, forecast included — is `CorrectorTangent` in float64);
cond_k stacks the state (`initial_*`, `forecast_*` channels) with the fixed inputs of step k (forcing `{f}_t0`,
`{f}_t1`, `mask`). `bound` is the torch face of `corrector.bounds` (`TorchBounds`): the ranges (sic ∈ [0, 1],
sit, snt ≥ 0), no volume without ice, zero velocity on closed walls and faces touching land. Clipping is piecewise
linear: the products are exact derivatives away from the kinks (a.e.), and the tangent-linear and adjoint use the
same branch, so ⟨M′δx, y⟩ = ⟨δx, M′ᵀy⟩ holds to round-off everywhere.

The network is linearised through torch.func (jvp = forward mode, vjp = reverse mode) with the weights fixed; the
corrector's float32 model is copied to `dtype` so the adjoint identity can be checked at 1e-12. The diffusion kind
is allowed and means one member with fixed noise (its ODE sampler is a deterministic map); the deterministic kind
is the intended use. `corrector.tangent.CorrectorTangent` (one step, in `dtype`) is the network map.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .bounds import TorchBounds
from .fields import MASK
from .inference import Corrector
from .tangent import CorrectorTangent, jvp, vjp

#: a differentiable 12 h physics stand-in: (state (V, ny, nx), step index k) -> forecast (V, ny, nx)
Physics = Callable[[torch.Tensor, int], torch.Tensor]
#: a generic differentiable step: (state (V, ny, nx), step index k) -> next state (V, ny, nx), before bounds
Step = Callable[[torch.Tensor, int], torch.Tensor]


class Rollout:
    """An n-step rollout x_{k+1} = bound(step(x_k, k)) with NumPy tangent-linear and adjoint products.

    step: a differentiable torch function (state (V, ny, nx), k) -> next state before bounds; bounds: a
    `TorchBounds` (or None for none). States are (V, ny, nx) arrays in the order of `variables`, physical units.
    """

    def __init__(self, step: Step, n_steps: int, variables: Sequence[str], shape: tuple[int, int],
                 bounds: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 dtype: torch.dtype = torch.float64, device: "torch.device | str" = "cpu"):
        if n_steps < 1:
            raise ValueError(f"a rollout needs at least one step, got n_steps = {n_steps}")
        self._step, self.n_steps = step, int(n_steps)
        self.variables = list(variables)
        self.shape = (len(self.variables), *shape)
        self.bounds, self.dtype, self.device = bounds, dtype, torch.device(device)

    # -- torch level
    def step_tensor(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """One 12 h step k as a torch function (differentiable)."""
        y = self._step(x, k)
        return self.bounds(y) if self.bounds is not None else y

    def trajectory_tensor(self, x0: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """(steps + 1, V, ny, nx): x0 and the states after each step."""
        steps = self._steps(steps)
        states = [x0]
        for k in range(steps):
            states.append(self.step_tensor(states[-1], k))
        return torch.stack(states)

    # -- numpy level
    def _steps(self, steps: int | None) -> int:
        steps = self.n_steps if steps is None else int(steps)
        if not 0 <= steps <= self.n_steps:
            raise ValueError(f"steps must be in 0..{self.n_steps}, got {steps}")
        return steps

    def _tensor(self, a: np.ndarray, what: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        a = np.asarray(a, dtype=np.float64)
        want = shape or self.shape
        if a.shape != want:
            raise ValueError(f"{what}: shape {a.shape}, expected {want} (variables {self.variables})")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{what}: contains NaN/inf")
        return torch.as_tensor(a, dtype=self.dtype, device=self.device)

    @staticmethod
    def _np(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float64)

    def forward(self, x0: np.ndarray, steps: int | None = None) -> np.ndarray:
        """Trajectory (steps + 1, V, ny, nx) from x0 (V, ny, nx)."""
        with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]):
            return self._np(self.trajectory_tensor(self._tensor(x0, "x0"), steps))

    def tlm(self, x0: np.ndarray, dx0: np.ndarray, steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(trajectory, tangent trajectory M′δx), both (steps + 1, V, ny, nx); dx0 (V, ny, nx)."""
        steps = self._steps(steps)
        traj, dtraj = jvp(lambda x: self.trajectory_tensor(x, steps), (self._tensor(x0, "x0"),),
                          (self._tensor(dx0, "dx0"),))
        return self._np(traj), self._np(dtraj)

    def adjoint(self, x0: np.ndarray, cotangent: np.ndarray, steps: int | None = None) \
            -> tuple[np.ndarray, np.ndarray]:
        """(trajectory, M′ᵀy): the gradient with respect to x0 of Σ_k ⟨y_k, x_k⟩ for a cotangent y (steps + 1, V,
        ny, nx) on the whole trajectory (e.g. ∂J_o/∂x_k of a 4D-Var cost) — one reverse sweep."""
        steps = self._steps(steps)
        traj, pullback = vjp(lambda x: self.trajectory_tensor(x, steps), self._tensor(x0, "x0"))
        y = self._tensor(cotangent, "cotangent", (steps + 1, *self.shape))
        (grad,) = pullback(y)
        return self._np(traj), self._np(grad)

    def linearise(self, x0: np.ndarray, steps: int | None = None) \
            -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """(trajectory, pullback): one forward run, then `pullback(y)` = M′ᵀy for cotangents y (steps + 1, V, ny,
        nx) that may depend on the trajectory (a 4D-Var cost's ∂J_o/∂x_k); the pullback can be called repeatedly."""
        steps = self._steps(steps)
        traj, pull = vjp(lambda x: self.trajectory_tensor(x, steps), self._tensor(x0, "x0"))

        def pullback(y: np.ndarray) -> np.ndarray:
            (grad,) = pull(self._tensor(y, "cotangent", (steps + 1, *self.shape)))
            return self._np(grad)
        return self._np(traj), pullback

    def step_tlm(self, x: np.ndarray, dx: np.ndarray, k: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(x_{k+1}, M_k′ δx) of the single step k from state x."""
        self._check_k(k)
        out, dout = jvp(lambda z: self.step_tensor(z, k), (self._tensor(x, "x"),), (self._tensor(dx, "dx"),))
        return self._np(out), self._np(dout)

    def step_adjoint(self, x: np.ndarray, y: np.ndarray, k: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(x_{k+1}, M_k′ᵀ y) of the single step k from state x."""
        self._check_k(k)
        out, pullback = vjp(lambda z: self.step_tensor(z, k), self._tensor(x, "x"))
        (grad,) = pullback(self._tensor(y, "y"))
        return self._np(out), self._np(grad)

    def _check_k(self, k: int) -> None:
        if not 0 <= int(k) < self.n_steps:
            raise ValueError(f"step index must be in 0..{self.n_steps - 1}, got {k}")


class CorrectorRollout(Rollout):
    """A rollout of a loaded `Corrector`: the emulator itself (emulator mode) or physics + correction (residual mode,
    with a differentiable `physics`).

    inputs: per step k, the fixed conditioning fields (ny, nx) — every conditioning channel that is not a state
    channel (`initial_{v}`, `forecast_{v}`), e.g. `uas_t0`, `uas_t1`, … of window k; `mask` may instead be given
    once as `mask` (ny, nx). bounds: apply the differentiable physical bounds after every step.
    """

    def __init__(self, corrector: Corrector, inputs: Sequence[Mapping[str, np.ndarray]],
                 mask: np.ndarray | None = None, physics: Physics | None = None, bounds: bool = True,
                 dtype: torch.dtype = torch.float64, seed: int = 0, sampler_steps: int | None = None):
        if corrector.mode == "residual" and physics is None:
            raise ValueError("a residual-mode rollout needs `physics`: a differentiable torch function (state, k) -> "
                             "12 h forecast (the Fortran coarse model has no adjoint); for the correction's own "
                             "derivative use CorrectorTangent with dtype=torch.float64")
        if corrector.mode == "emulator" and physics is not None:
            raise ValueError("an emulator-mode corrector predicts the whole 12 h step: do not pass `physics`")
        self.tangent = CorrectorTangent(corrector, seed=seed, steps=sampler_steps, dtype=dtype)
        self.physics = physics
        names = corrector.conditioning_names
        variables = corrector.variables
        if not inputs:
            raise ValueError("inputs: one mapping of fixed conditioning fields per step is needed")
        fixed = [n for n in names if n != MASK and not any(n == f"{p}_{v}" for p in ("initial", "forecast")
                                                          for v in variables)]
        first = next(iter(inputs[0].values()), None) if inputs[0] else None
        if mask is None and MASK in names:
            mask = inputs[0].get(MASK)
        if first is None and mask is None:
            raise ValueError("inputs: cannot infer the grid (no field given)")
        ny, nx = np.shape(first if first is not None else mask)
        device = corrector.device
        self._fixed: list[dict[str, torch.Tensor]] = []
        for k, item in enumerate(inputs):
            missing = [n for n in fixed if n not in item]
            if missing:
                raise KeyError(f"inputs of step {k}: conditioning field(s) {missing} missing; got {sorted(item)}")
            step_fields = {}
            for n in fixed:
                a = np.asarray(item[n], dtype=np.float64)
                if a.shape != (ny, nx):
                    raise ValueError(f"inputs of step {k}: field '{n}' has shape {a.shape}, expected ({ny}, {nx})")
                if not np.all(np.isfinite(a)):
                    raise ValueError(f"inputs of step {k}: field '{n}' contains NaN/inf")
                step_fields[n] = torch.as_tensor(a, dtype=dtype, device=device)
            self._fixed.append(step_fields)
        mask_arr = np.ones((ny, nx)) if mask is None else np.asarray(mask, dtype=np.float64)
        self._mask = torch.as_tensor(mask_arr, dtype=dtype, device=device)
        self._names, self._variables = names, variables
        # P of the emulator step P x + T(cond(x)): 1 for tendency variables, 0 for next-state variables
        self._keep = torch.tensor([0.0 if v in corrector.state_variables else 1.0 for v in variables],
                                  dtype=dtype, device=device)[:, None, None]
        # the network map is built once (its ocean mask and any diffusion noise are fixed)
        template = self._conditioning(torch.zeros(len(variables), ny, nx, dtype=dtype, device=device), None, 0)
        self._network = self.tangent.function(template)
        bound = TorchBounds(variables, mask_arr if mask is not None else None, ny, nx, dtype, device) \
            if bounds else None
        super().__init__(self._model_step, len(inputs), variables, (ny, nx), bound, dtype, device)

    def _conditioning(self, x: torch.Tensor, forecast: torch.Tensor | None, k: int) -> torch.Tensor:
        """(1, C, ny, nx) conditioning of step k from the state x (and the physics forecast)."""
        index = {v: i for i, v in enumerate(self._variables)}
        channels = []
        for n in self._names:
            if n == MASK:
                channels.append(self._mask)
            elif n.startswith("initial_") and n[8:] in index:
                channels.append(x[index[n[8:]]])
            elif n.startswith("forecast_") and n[9:] in index:
                channels.append(forecast[index[n[9:]]] if forecast is not None else torch.zeros_like(x[0]))
            else:
                channels.append(self._fixed[k][n])
        return torch.stack(channels)[None]

    def _model_step(self, x: torch.Tensor, k: int) -> torch.Tensor:
        if self.physics is None:
            return self._keep * x + self._network(self._conditioning(x, None, k))[0]
        f = self.physics(x, k)
        return f + self._network(self._conditioning(x, f, k))[0]

    # -- dict <-> array helpers
    def state_array(self, fields: Mapping[str, np.ndarray]) -> np.ndarray:
        """(V, ny, nx) from {variable: (ny, nx)}; raises KeyError naming a missing variable."""
        missing = [v for v in self.variables if v not in fields]
        if missing:
            raise KeyError(f"state: variable(s) {missing} missing; got {sorted(fields)}")
        return np.stack([np.asarray(fields[v], dtype=np.float64) for v in self.variables])

    def state_dict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """{variable: (..., ny, nx)} from an array whose third-last axis is the variable axis."""
        return {v: np.asarray(x)[..., k, :, :] for k, v in enumerate(self.variables)}
