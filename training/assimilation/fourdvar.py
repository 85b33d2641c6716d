"""Strong-constraint 4D-Var with a deterministic emulator and its adjoint (Durand et al. 2025).

The control is the initial state of the control variables (default sit and sic; snt optional; the other variables,
e.g. the velocities, are held at the background). With the background state x_b, background-error std σ_v per
control variable and the emulator rollout x_k = M_k(x_0) over the window (k = 0 … n, 12 h steps), the cost is

    J(x_0) = ½ (x_0 − x_b)ᵀ B⁻¹ (x_0 − x_b) + ½ Σ_k Σ_obs (x_k − y_k)² / r²,

observations y_k on the model grid (H = selection of observed cells), r their error std from `obs_error_*`.
B = Σ C Σ with C = I (diagonal) or a Gaussian correlation of length ℓ given by its square root L (separable, unit
diagonal). The minimisation runs on the control-variable transform x_0 = x_b + Σ L z, so J_b = ½‖z‖² and the
problem is well conditioned; ∇_z J = z + Lᵀ Σ M′ᵀ ∂J_o/∂x from one adjoint sweep (`corrector.adjoint`), and scipy's
L-BFGS-B minimises it — with the physical bounds (sic ∈ [0, 1], thicknesses ≥ 0) as box constraints when B is
diagonal, or by projection of x_0 onto them when it is correlated.

The inputs, outputs and the driver are in `training.assimilation.runner`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy.optimize import minimize

from corrector.adjoint import CorrectorRollout, Rollout
from training.assimilation.background import Correlation
from training.assimilation.config import BOUNDS, MinimizerConfig


@dataclass
class Analysis:
    """Result of a minimisation: analysis state (V, ny, nx), control z, history rows, scipy message."""

    state: np.ndarray
    z: np.ndarray
    history: list[dict]
    message: str
    evaluations: int
    seconds: float


@dataclass
class FourDVar:
    """Strong-constraint 4D-Var on a `Rollout` (see the module docstring).

    background: (V, ny, nx) in the rollout's variable order; obs, obs_std: (n + 1, V, ny, nx), obs NaN = missing;
    control: variables estimated; sigma: background-error std per control variable; ocean: (ny, nx) bool.
    bounded: L-BFGS-B box constraints (needs a diagonal B); otherwise x_0 is projected onto the bounds.
    """

    rollout: Rollout
    background: np.ndarray
    obs: np.ndarray
    obs_std: np.ndarray
    control: Sequence[str]
    sigma: Mapping[str, float]
    ocean: np.ndarray
    correlation: Correlation
    history: list[dict] = field(default_factory=list)

    def __post_init__(self):
        names = self.rollout.variables
        self.index = [names.index(v) for v in self.control]
        self.scale = np.stack([self.sigma[v] * self.ocean.astype(np.float64) for v in self.control])
        self.observed = np.isfinite(self.obs) & np.isfinite(self.obs_std) & (self.obs_std > 0)
        self.weight = np.where(self.observed, 1.0 / np.where(self.observed, self.obs_std, 1.0) ** 2, 0.0)
        self.y = np.where(self.observed, self.obs, 0.0)
        self.bounded = self.correlation.identity
        self.n_evaluations = 0

    @property
    def n_control(self) -> int:
        """Number of control values (control variables × cells, land included)."""
        return int(self.scale.size)

    def initial_state(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x_0, d x_0 / d(unprojected) as 0/1 per control entry) for control z (n_ctrl, ny, nx)."""
        x0 = self.background.copy()
        raw = self.background[self.index] + self.scale * self.correlation.apply(z)
        inside = np.ones_like(raw)
        if not self.bounded:  # projection onto the physical box; its derivative is 1 inside, 0 where it clips
            for c, v in enumerate(self.control):
                lo, hi = BOUNDS[v]
                clipped = np.clip(raw[c], lo, hi)
                inside[c] = (clipped == raw[c]).astype(np.float64)
                raw[c] = clipped
        x0[self.index] = raw
        return x0, inside

    def box(self) -> list[tuple[float | None, float | None]] | None:
        """L-BFGS-B bounds on z (diagonal B only): x = x_b + σ z within the physical box; land entries free."""
        if not self.bounded:
            return None
        out = []
        for c, v in enumerate(self.control):
            lo, hi = BOUNDS[v]
            s = self.scale[c]
            xb = self.background[self.index[c]]
            with np.errstate(divide="ignore", invalid="ignore"):
                zlo = np.where(s > 0, (lo - xb) / np.where(s > 0, s, 1.0), -np.inf) if lo is not None else \
                    np.full(s.shape, -np.inf)
                zhi = np.where(s > 0, (hi - xb) / np.where(s > 0, s, 1.0), np.inf) if hi is not None else \
                    np.full(s.shape, np.inf)
            zlo, zhi = np.minimum(zlo, 0.0), np.maximum(zhi, 0.0)  # z = 0 (the background) always feasible
            out += [(None if not np.isfinite(a) else float(a), None if not np.isfinite(b) else float(b))
                    for a, b in zip(zlo.ravel(), zhi.ravel())]
        return out

    def cost_and_gradient(self, z_flat: np.ndarray) -> tuple[float, np.ndarray, dict]:
        """(J, ∂J/∂z flat, {J_b, J_o, n_obs}) — one forward run and one adjoint sweep."""
        z = np.asarray(z_flat, np.float64).reshape(self.scale.shape)
        x0, inside = self.initial_state(z)
        traj, pullback = self.rollout.linearise(x0)
        innovation = np.where(self.observed, traj - self.y, 0.0)
        jb = 0.5 * float(np.sum(z ** 2))
        jo = 0.5 * float(np.sum(self.weight * innovation ** 2))
        gx0 = pullback(self.weight * innovation)
        gz = z + self.correlation.transpose(self.scale * inside * gx0[self.index])
        self.n_evaluations += 1
        return jb + jo, gz.ravel(), {"J_b": jb, "J_o": jo, "n_obs": int(self.observed.sum())}

    def cost(self, z_flat: np.ndarray) -> float:
        """J at control z (flat) from a forward run only (no adjoint), e.g. to check the gradient."""
        z = np.asarray(z_flat, np.float64).reshape(self.scale.shape)
        x0, _ = self.initial_state(z)
        traj = self.rollout.forward(x0)
        return 0.5 * float(np.sum(z ** 2)) + 0.5 * float(np.sum(self.weight * np.where(self.observed,
                                                                                       traj - self.y, 0.0) ** 2))

    def minimise(self, cfg: MinimizerConfig, log=None) -> Analysis:
        """Minimise J over z with L-BFGS-B from z = 0 (the background); one history row per accepted iterate
        (iteration 0 = the background), each also passed to `log` as a line when given."""
        t0 = time.perf_counter()
        self._last: dict = {}  # J, its parts, |grad| and z of the latest evaluation
        self._log = log
        z0 = np.zeros(self.n_control)
        self._evaluate(z0)
        self._record(0)
        res = minimize(self._evaluate, z0, jac=True, method="L-BFGS-B", bounds=self.box(), callback=self._accept,
                       options={"maxiter": cfg.max_iterations, "gtol": cfg.gtol, "ftol": cfg.ftol,
                                "maxcor": cfg.memory})
        state, _ = self.initial_state(res.x.reshape(self.scale.shape))
        return Analysis(state, res.x.reshape(self.scale.shape), self.history, str(res.message),
                        self.n_evaluations, time.perf_counter() - t0)

    def _evaluate(self, zf: np.ndarray) -> tuple[float, np.ndarray]:
        """(J, ∂J/∂z) for scipy, remembered for the history row of an accepted iterate."""
        j, g, parts = self.cost_and_gradient(zf)
        self._last.update(parts, J=j, grad_norm=float(np.linalg.norm(g)), z=zf.copy())
        return j, g

    def _record(self, iteration: int) -> None:
        last = self._last
        row = {"iteration": iteration, "J": last["J"], "J_b": last["J_b"], "J_o": last["J_o"],
               "grad_norm": last["grad_norm"], "evaluations": self.n_evaluations}
        self.history.append(row)
        if self._log is not None:
            self._log(f"iter {iteration:3d}  J {row['J']:.6g}  J_b {row['J_b']:.4g}  J_o {row['J_o']:.6g}  "
                      f"|grad| {row['grad_norm']:.3g}")

    def _accept(self, intermediate_result) -> None:
        """scipy's callback after each iteration: record the accepted iterate (evaluated again if it was not the
        latest evaluation)."""
        if not np.array_equal(self._last["z"], intermediate_result.x):
            self._evaluate(intermediate_result.x)
        self._record(len(self.history))


def build_rollout(corrector, window_inputs, mask) -> CorrectorRollout:
    """The emulator's rollout over the window: `corrector` stepped with the window's per-step inputs, on `mask`."""
    return CorrectorRollout(corrector, window_inputs, mask=mask.astype(np.float64))
