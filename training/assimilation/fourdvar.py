"""`icecorr assimilate`: strong-constraint 4D-Var with a deterministic emulator and its adjoint (Durand et al. 2025).

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

Inputs: a deterministic emulator checkpoint, an observation pair file (`training.data.observations`: `reference_*`
NaN where unobserved, `obs_error_*`; it also gives the forcing and the mask), the window start and length, and a
background: from a file, the file's `initial_*` at the start, or — for twin experiments — the truth perturbed by
noise drawn from B. With a truth file the analysis and both forecasts are scored against it.
Outputs in `out_dir`: `analysis.nc` (analysis, background, truth and their trajectories), `cost.csv` (J, J_b,
J_o, ‖∇J‖ per iteration), `assimilation.png` and `summary.json`.

Run: `icecorr assimilate configs/assimilate.yaml assimilate.start=2003-11-10T00:00 [--out runs/assimilate]`.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Mapping, Optional, Sequence

import numpy as np
import xarray as xr
from pydantic import Field, field_validator, model_validator
from scipy.optimize import minimize

from icecorr.base.variables import ML_VARIABLES, STEP_HOURS
from corrector.adjoint import CorrectorRollout, Rollout
from icecorr.base.errors import InputError
from icecorr.base.config import StrictConfig
from icecorr.base.files import temp_path as temporary_path
from training.data.io import write_netcdf_atomic

CONTROLLABLE = ("sic", "sit", "snt")
#: physical box of the controllable variables (lower, upper; None = unbounded)
BOUNDS = {"sic": (0.0, 1.0), "sit": (0.0, None), "snt": (0.0, None)}


# ----------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------

class BackgroundErrorConfig(StrictConfig):
    """B = Σ C Σ: std per control variable (its units) and the correlation length (null or 0 = diagonal B)."""

    sigma: dict[str, float] = Field(default_factory=lambda: {"sit": 0.3, "sic": 0.05, "snt": 0.05})
    length_scale_km: Optional[float] = Field(100.0, ge=0, description="Gaussian correlation length (km)")

    @field_validator("sigma")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: s for k, s in v.items() if not s > 0}
        if bad:
            raise ValueError(f"standard deviations must be positive: {bad}")
        return v


class BackgroundConfig(StrictConfig):
    """Where the background x_b comes from.

    file: NetCDF with (y, x) fields named `background_{v}` or `{v}` (e.g. a previous analysis or forecast);
    initial: the observation file's `initial_*` at the window start (a model state, for prepared real data);
    perturbed_truth: twin experiments only — the truth's initial state plus noise drawn from B (σ and ℓ of
    `perturbation`), clipped to the bounds.
    """

    kind: Literal["file", "initial", "perturbed_truth"] = "perturbed_truth"
    file: Optional[Path] = None
    perturbation: BackgroundErrorConfig = Field(default_factory=BackgroundErrorConfig)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _file(self) -> "BackgroundConfig":
        if (self.kind == "file") != (self.file is not None):
            raise ValueError("background.file is needed exactly when background.kind = file")
        return self


class MinimizerConfig(StrictConfig):
    """scipy L-BFGS-B settings."""

    max_iterations: int = Field(60, ge=1)
    gtol: float = Field(1e-6, gt=0, description="stop when the largest gradient component (∂J/∂z) is below")
    ftol: float = Field(1e-10, gt=0, description="stop when the relative cost reduction is below")
    memory: int = Field(10, ge=1, description="L-BFGS correction pairs")


class AssimilateConfig(StrictConfig):
    """One 4D-Var analysis."""

    checkpoint: Path = Field(Path("runs/train_emulator/best.pt"), description="deterministic emulator checkpoint")
    observations: Path = Field(Path("data/test_obs.nc"), description="observation pair file")
    truth: Optional[Path] = Field(None, description="pair file of the truth (twin experiments: scores)")
    start: str = Field(description="window start: ISO date-time of a window of the observation file, or its index")
    window_days: float = Field(5.0, gt=0, description="assimilation window; n = 2 × days 12 h steps")
    control: list[str] = Field(default_factory=lambda: ["sit", "sic"], min_length=1)
    obs_variables: Optional[list[str]] = Field(None, description="observed variables used; null = all present")
    obs_error_inflation: float = Field(1.0, gt=0, description="multiplies every observation-error std")
    use_initial_time_obs: bool = Field(True, description="also use observations valid at the window start")
    background: BackgroundConfig = Field(default_factory=BackgroundConfig)
    b: BackgroundErrorConfig = Field(default_factory=BackgroundErrorConfig)
    minimizer: MinimizerConfig = Field(default_factory=MinimizerConfig)
    out_dir: Path = Path("runs/assimilate")
    threads: int = Field(1, ge=1, description="torch threads")

    @model_validator(mode="after")
    def _check(self) -> "AssimilateConfig":
        bad = [v for v in self.control if v not in CONTROLLABLE]
        if bad:
            raise ValueError(f"control: {bad} cannot be controlled; choose from {list(CONTROLLABLE)}")
        missing = [v for v in self.control if v not in self.b.sigma]
        if missing:
            raise ValueError(f"b.sigma lacks the control variable(s) {missing}")
        if self.obs_variables is not None:
            bad = [v for v in self.obs_variables if v not in ML_VARIABLES]
            if bad:
                raise ValueError(f"obs_variables: unknown {bad}")
        return self

    @property
    def n_steps(self) -> int:
        return max(1, int(round(self.window_days * 24 / STEP_HOURS)))


class AssimilateRunConfig(StrictConfig):
    """The YAML of `icecorr assimilate` (`configs/assimilate.yaml`)."""

    assimilate: AssimilateConfig


# ----------------------------------------------------------------------------------------------------------------
# Background-error correlation
# ----------------------------------------------------------------------------------------------------------------

def gaussian_sqrt(n: int, dx_m: float, length_m: float) -> np.ndarray:
    """(n, n) square root L of a 1-D Gaussian correlation of length ℓ on n cells (closed ends): Gaussian rows of
    std ℓ/√2 (two such kernels convolve to std ℓ), each row scaled so that L Lᵀ has a unit diagonal."""
    r = (np.arange(n)[:, None] - np.arange(n)[None, :]) * dx_m
    s = length_m / np.sqrt(2.0)
    m = np.exp(-0.5 * (r / s) ** 2)
    return m / np.sqrt((m ** 2).sum(axis=1, keepdims=True))


class Correlation:
    """The separable square root L = L_y ⊗ L_x acting on (C, ny, nx) fields; identity when length is 0/None."""

    def __init__(self, ny: int, nx: int, dx_m: float, length_m: float | None):
        self.identity = not length_m
        if not self.identity:
            self.ly, self.lx = gaussian_sqrt(ny, dx_m, length_m), gaussian_sqrt(nx, dx_m, length_m)

    def apply(self, z: np.ndarray) -> np.ndarray:
        return z if self.identity else np.einsum("ij,cjk,lk->cil", self.ly, z, self.lx)

    def transpose(self, g: np.ndarray) -> np.ndarray:
        return g if self.identity else np.einsum("ji,cjk,kl->cil", self.ly, g, self.lx)


# ----------------------------------------------------------------------------------------------------------------
# The variational problem
# ----------------------------------------------------------------------------------------------------------------

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
        z = np.asarray(z_flat, np.float64).reshape(self.scale.shape)
        x0, _ = self.initial_state(z)
        traj = self.rollout.forward(x0)
        return 0.5 * float(np.sum(z ** 2)) + 0.5 * float(np.sum(self.weight * np.where(self.observed,
                                                                                       traj - self.y, 0.0) ** 2))

    def minimise(self, cfg: MinimizerConfig, log=None) -> Analysis:
        t0 = time.perf_counter()
        last: dict = {}

        def fun(zf):
            j, g, parts = self.cost_and_gradient(zf)
            last.update(parts, J=j, grad_norm=float(np.linalg.norm(g)), z=zf.copy())
            return j, g

        def record(iteration: int) -> None:
            row = {"iteration": iteration, "J": last["J"], "J_b": last["J_b"], "J_o": last["J_o"],
                   "grad_norm": last["grad_norm"], "evaluations": self.n_evaluations}
            self.history.append(row)
            if log is not None:
                log(f"iter {iteration:3d}  J {row['J']:.6g}  J_b {row['J_b']:.4g}  J_o {row['J_o']:.6g}  "
                    f"|grad| {row['grad_norm']:.3g}")

        z0 = np.zeros(self.n_control)
        fun(z0)
        record(0)

        def callback(intermediate_result):
            if not np.array_equal(last["z"], intermediate_result.x):  # the accepted point was not evaluated last
                fun(intermediate_result.x)
            record(len(self.history))

        res = minimize(fun, z0, jac=True, method="L-BFGS-B", bounds=self.box(), callback=callback,
                       options={"maxiter": cfg.max_iterations, "gtol": cfg.gtol, "ftol": cfg.ftol,
                                "maxcor": cfg.memory})
        state, _ = self.initial_state(res.x.reshape(self.scale.shape))
        return Analysis(state, res.x.reshape(self.scale.shape), self.history, str(res.message),
                        self.n_evaluations, time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------------------------------
# Reading the window
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Window:
    """Everything read for one assimilation window (arrays in the emulator's variable order)."""

    start_index: int
    times: np.ndarray  # (n + 1,) datetime64 state times
    inputs: list[dict[str, np.ndarray]]
    mask: np.ndarray
    obs: np.ndarray
    obs_std: np.ndarray
    initial: np.ndarray  # the file's initial_* at the start
    dx: float


def _open(path: Path, what: str) -> xr.Dataset:
    if not Path(path).is_file():
        raise InputError(str(path), None, f"{what} file not found")
    try:
        return xr.open_dataset(path)
    except Exception as exc:
        raise InputError(str(path), None, f"cannot read {what} as NetCDF: {exc}") from exc


def start_index(ds: xr.Dataset, path: Path, start: str) -> int:
    """Index of the window starting at `start` (ISO date-time or integer index)."""
    n = ds.sizes["time"]
    if start.strip().lstrip("-").isdigit():
        i = int(start)
        if not 0 <= i < n:
            raise InputError(str(path), "time", f"window index {i} outside 0..{n - 1}")
        return i
    try:
        t = np.datetime64(datetime.fromisoformat(start), "ns")
    except ValueError:
        raise InputError(str(path), "assimilate.start", f"not an ISO date-time or an index: {start!r}") from None
    hits = np.flatnonzero(ds["time"].values.astype("datetime64[ns]") == t)
    if hits.size == 0:
        tv = ds["time"].values
        raise InputError(str(path), "time", f"no window starts at {start} (windows "
                         f"{np.datetime_as_string(tv[0], unit='m')} .. {np.datetime_as_string(tv[-1], unit='m')})")
    return int(hits[0])


def _contiguous(ds: xr.Dataset, path: Path, first: int, last: int) -> bool:
    """Windows first..last (inclusive) are consecutive 12 h windows of one run."""
    if first < 0 or last >= ds.sizes["time"]:
        return False
    t = ds["time"].values[first:last + 1].astype("datetime64[ns]")
    ok = np.all(np.diff(t) == np.timedelta64(STEP_HOURS, "h"))
    if "run" in ds.variables:
        ok &= len(np.unique(ds["run"].values[first:last + 1])) == 1
    return bool(ok)


def read_window(cfg: AssimilateConfig, variables: Sequence[str], fixed_names: Sequence[str]) -> Window:
    """Forcing, mask and observations of the window from the observation file."""
    path = cfg.observations
    with _open(path, "observation") as ds:
        i0 = start_index(ds, path, cfg.start)
        n = cfg.n_steps
        if not _contiguous(ds, path, i0, i0 + n - 1):
            raise InputError(str(path), "time", f"the {cfg.window_days:g}-day window from "
                             f"{np.datetime_as_string(ds['time'].values[i0], unit='m')} needs {n} consecutive 12 h "
                             "windows of one run in the file")
        sl = slice(i0, i0 + n)
        mask = (np.nan_to_num(np.asarray(ds["mask"].values, np.float64)) > 0.5) if "mask" in ds.variables else \
            np.ones((ds.sizes["y"], ds.sizes["x"]), bool)
        inputs = []
        data = {}
        for name in fixed_names:
            if name not in ds.variables:
                raise InputError(str(path), name, "missing (a conditioning field of the emulator)")
            data[name] = np.asarray(ds[name].isel(time=sl).values, np.float64)
        for k in range(n):
            inputs.append({name: np.where(mask, a[k], 0.0) for name, a in data.items()})
        shape = (n + 1, len(variables), ds.sizes["y"], ds.sizes["x"])
        obs, std = np.full(shape, np.nan), np.full(shape, np.nan)
        use = cfg.obs_variables if cfg.obs_variables is not None else list(variables)
        found = []
        with_initial = cfg.use_initial_time_obs and _contiguous(ds, path, i0 - 1, i0)
        first = i0 - 1 if with_initial else i0
        rows = np.arange(first, i0 + n)
        for c, v in enumerate(variables):
            if v not in use or f"reference_{v}" not in ds.variables:
                continue
            y = np.asarray(ds[f"reference_{v}"].isel(time=rows).values, np.float64)
            if f"obs_error_{v}" not in ds.variables:
                if cfg.obs_variables is not None:
                    raise InputError(str(path), f"obs_error_{v}", "missing: observation-error std is needed for "
                                     "every observed variable (write observation files with training.data.observations)")
                continue
            r = np.asarray(ds[f"obs_error_{v}"].isel(time=rows).values, np.float64) * cfg.obs_error_inflation
            if f"observed_{v}" in ds.variables:
                y = np.where(np.asarray(ds[f"observed_{v}"].isel(time=rows).values) > 0, y, np.nan)
            bad = np.isfinite(y) & ~(np.isfinite(r) & (r > 0))
            if bad.any():
                raise InputError(str(path), f"obs_error_{v}", f"{int(bad.sum())} observation(s) without a positive "
                                 "error std")
            y = np.where(mask, y, np.nan)
            k0 = 0 if with_initial else 1
            obs[k0:, c], std[k0:, c] = y, r
            found.append(v)
        if not found:
            raise InputError(str(path), "reference_*", f"no usable observations of {use} (needs reference_{{v}} and "
                             "obs_error_{v})")
        initial = np.stack([np.asarray(ds[f"initial_{v}"].isel(time=i0).values, np.float64) for v in variables])
        times = ds["time"].values[i0] + np.arange(n + 1) * np.timedelta64(STEP_HOURS, "h")
        dx = float(ds.attrs.get("grid_dx", np.nan))
        if not np.isfinite(dx):
            dx = float(np.diff(ds["x"].values[:2])[0]) if "x" in ds.coords and ds.sizes["x"] > 1 else np.nan
        if not np.isfinite(dx) or dx <= 0:
            raise InputError(str(path), "grid_dx", "grid spacing unknown (no grid_dx attribute or x coordinate)")
    return Window(i0, times, inputs, mask, obs, std, initial, dx)


def read_truth(path: Path, times: np.ndarray, variables: Sequence[str]) -> np.ndarray:
    """(n + 1, V, ny, nx) truth at the window's state times: `initial_*` of the windows starting then, the last one
    from `reference_*` of the last window."""
    with _open(path, "truth") as ds:
        tv = ds["time"].values.astype("datetime64[ns]")
        pos = {t: i for i, t in enumerate(tv)}
        out = []
        for t in times[:-1]:
            if t not in pos:
                raise InputError(str(path), "time", f"no truth window at {np.datetime_as_string(t, unit='m')}")
            out.append([ds[f"initial_{v}"].values[pos[t]] for v in variables])
        last = times[-1] - np.timedelta64(STEP_HOURS, "h")
        if last not in pos:
            raise InputError(str(path), "time", f"no truth window at {np.datetime_as_string(last, unit='m')}")
        out.append([ds[f"reference_{v}"].values[pos[last]] for v in variables])
    truth = np.asarray(out, np.float64)
    if not np.all(np.isfinite(truth)):
        raise InputError(str(path), "reference_*", "the truth file has gaps (use the complete twin pair file)")
    return truth


def read_background_file(path: Path, variables: Sequence[str], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    with _open(path, "background") as ds:
        out = {}
        for v in variables:
            name = f"background_{v}" if f"background_{v}" in ds.variables else v
            if name not in ds.variables:
                continue
            a = np.asarray(ds[name].values, np.float64)
            if a.shape != shape:
                raise InputError(str(path), name, f"shape {a.shape}, expected (y, x) = {shape}")
            if not np.all(np.isfinite(a)):
                raise InputError(str(path), name, "contains NaN/inf")
            out[v] = a
    return out


def perturbed(truth0: np.ndarray, variables: Sequence[str], cfg: BackgroundConfig, ocean: np.ndarray,
              dx: float) -> np.ndarray:
    """Twin background: truth + σ L ξ for the perturbed variables (ξ standard normal, seeded), clipped to bounds."""
    pert = cfg.perturbation
    ny, nx = ocean.shape
    corr = Correlation(ny, nx, dx, (pert.length_scale_km or 0.0) * 1e3)
    rng = np.random.default_rng([cfg.seed, 4242])
    xb = truth0.copy()
    for v, s in pert.sigma.items():
        if v not in variables:
            continue
        c = list(variables).index(v)
        noise = corr.apply(rng.standard_normal((1, ny, nx)))[0]
        a = xb[c] + s * noise * ocean
        lo, hi = BOUNDS.get(v, (None, None))
        xb[c] = np.clip(a, lo, hi)
    return xb


# ----------------------------------------------------------------------------------------------------------------
# Scores and outputs
# ----------------------------------------------------------------------------------------------------------------

def rmse(a: np.ndarray, b: np.ndarray, ocean: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a[..., ocean] - b[..., ocean]) ** 2)))


def scores(analysis_traj: np.ndarray, background_traj: np.ndarray, truth: np.ndarray, variables: Sequence[str],
           ocean: np.ndarray) -> dict:
    """Initial-state and window-mean forecast RMSE per variable (analysis vs background) against the truth."""
    out: dict = {}
    for c, v in enumerate(variables):
        a0, b0 = rmse(analysis_traj[0, c], truth[0, c], ocean), rmse(background_traj[0, c], truth[0, c], ocean)
        af = [rmse(analysis_traj[k, c], truth[k, c], ocean) for k in range(1, len(truth))]
        bf = [rmse(background_traj[k, c], truth[k, c], ocean) for k in range(1, len(truth))]
        out[v] = {"initial_rmse_background": b0, "initial_rmse_analysis": a0,
                  "initial_rmse_reduction": 1.0 - a0 / b0 if b0 > 0 else None,  # None: not perturbed
                  "forecast_rmse_background": float(np.mean(bf)), "forecast_rmse_analysis": float(np.mean(af)),
                  "forecast_rmse_background_by_lead": bf, "forecast_rmse_analysis_by_lead": af}
    return out


def write_analysis(path: Path, window: Window, variables: Sequence[str], analysis_traj: np.ndarray,
                   background_traj: np.ndarray, truth: np.ndarray | None, attrs: Mapping) -> Path:
    lead = np.arange(len(window.times)) * STEP_HOURS
    ny, nx = window.mask.shape
    coords = {"lead": ("lead", lead, {"units": "hours", "long_name": "time since the window start"}),
              "time": ("lead", window.times), "y": ("y", (np.arange(ny) + 0.5) * window.dx, {"units": "m"}),
              "x": ("x", (np.arange(nx) + 0.5) * window.dx, {"units": "m"})}
    ds = xr.Dataset(coords=coords)
    for c, v in enumerate(variables):
        ds[f"analysis_{v}"] = (("y", "x"), analysis_traj[0, c], {"long_name": f"4D-Var analysis of {v} at the "
                                                                             "window start"})
        ds[f"background_{v}"] = (("y", "x"), background_traj[0, c], {"long_name": f"background {v}"})
        ds[f"forecast_analysis_{v}"] = (("lead", "y", "x"), analysis_traj[:, c],
                                        {"long_name": f"emulator forecast of {v} from the analysis"})
        ds[f"forecast_background_{v}"] = (("lead", "y", "x"), background_traj[:, c],
                                          {"long_name": f"emulator forecast of {v} from the background"})
        if truth is not None:
            ds[f"truth_{v}"] = (("lead", "y", "x"), truth[:, c], {"long_name": f"truth {v}"})
    ds["mask"] = (("y", "x"), window.mask.astype(np.int8))
    ds.attrs.update({k: (json.dumps(v) if not isinstance(v, (str, int, float)) else v) for k, v in attrs.items()})
    return write_netcdf_atomic(ds, path)


def write_history(path: Path, history: list[dict]) -> Path:
    tmp = temporary_path(path)
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["iteration", "J", "J_b", "J_o", "grad_norm", "evaluations"])
        w.writeheader()
        for row in history:
            w.writerow({k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in row.items()})
    os.replace(tmp, path)
    return path


def plot(path: Path, history: list[dict], variables: Sequence[str], analysis_traj: np.ndarray,
         background_traj: np.ndarray, truth: np.ndarray | None, ocean: np.ndarray, var: str = "sit") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = list(variables).index(var)
    ncols = 5 if truth is not None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(3.4 * ncols, 3.2))
    it = [r["iteration"] for r in history]
    axes[0].semilogy(it, [r["J"] for r in history], label="J")
    axes[0].semilogy(it, [max(r["J_b"], 1e-12) for r in history], label="J_b")
    axes[0].semilogy(it, [r["J_o"] for r in history], label="J_o")
    axes[0].set_xlabel("iteration")
    axes[0].set_title("cost")
    axes[0].legend(fontsize=7)
    lead = np.arange(len(analysis_traj)) * STEP_HOURS / 24
    if truth is not None:
        axes[1].plot(lead, [rmse(background_traj[k, c], truth[k, c], ocean) for k in range(len(lead))],
                     label="from background")
        axes[1].plot(lead, [rmse(analysis_traj[k, c], truth[k, c], ocean) for k in range(len(lead))],
                     label="from analysis")
        axes[1].set_ylabel(f"RMSE {var}")
        axes[1].set_title("forecast error vs truth")
    else:
        axes[1].plot(lead, [float(np.mean(analysis_traj[k, c][ocean])) for k in range(len(lead))], label="analysis")
        axes[1].plot(lead, [float(np.mean(background_traj[k, c][ocean])) for k in range(len(lead))],
                     label="background")
        axes[1].set_ylabel(f"mean {var}")
    axes[1].set_xlabel("lead (days)")
    axes[1].legend(fontsize=7)
    if truth is not None:
        err_b = background_traj[0, c] - truth[0, c]
        err_a = analysis_traj[0, c] - truth[0, c]
        lim = float(np.abs(err_b[ocean]).max()) or 1.0
        for ax, field_, title, kw in (
                (axes[2], truth[0, c], f"truth {var} (t0)", {"cmap": "viridis"}),
                (axes[3], err_b, "background − truth", {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim}),
                (axes[4], err_a, "analysis − truth", {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim})):
            im = ax.imshow(np.where(ocean, field_, np.nan), origin="lower", **kw)
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.subplots_adjust(left=0.06, right=0.97, bottom=0.16, top=0.88, wspace=0.45)
    tmp = temporary_path(path)
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------------

def build_rollout(corrector, window_inputs, mask) -> CorrectorRollout:
    return CorrectorRollout(corrector, window_inputs, mask=mask.astype(np.float64))


def run_assimilate(cfg: AssimilateConfig, out_dir: Path | None = None, log=print) -> dict:
    """Run one 4D-Var analysis; write the outputs; return the summary (also written as summary.json)."""
    import torch

    from corrector.checkpoint import CheckpointError
    from corrector.inference import Corrector

    torch.set_num_threads(cfg.threads)
    out = Path(out_dir or cfg.out_dir)
    c = Corrector.load(cfg.checkpoint, device="cpu")
    if c.mode != "emulator":
        raise CheckpointError(str(cfg.checkpoint), "4D-Var needs an emulator-mode checkpoint (the whole 12 h step); a "
                              "residual corrector needs the coarse model's adjoint, which does not exist")
    if c.kind != "deterministic":
        log("note: diffusion emulator — linearising one member with fixed noise (seed 0)")
    variables = c.variables
    missing = [v for v in cfg.control if v not in variables]
    if missing:
        raise InputError(str(cfg.checkpoint), "variables", f"control variable(s) {missing} are not emulated")
    fixed = [n for n in c.conditioning_names if n != "mask" and not n.startswith(("initial_", "forecast_"))]
    window = read_window(cfg, variables, fixed)
    ocean = window.mask
    truth = read_truth(cfg.truth, window.times, variables) if cfg.truth is not None else None
    bg = cfg.background
    if bg.kind == "perturbed_truth":
        if truth is None:
            raise InputError(None, "assimilate.truth", "background.kind = perturbed_truth needs a truth file")
        xb = perturbed(truth[0], variables, bg, ocean, window.dx)
    elif bg.kind == "initial":
        xb = window.initial.copy()
    else:
        fields = read_background_file(bg.file, variables, ocean.shape)
        xb = window.initial.copy()
        for k, v in enumerate(variables):
            if v in fields:
                xb[k] = fields[v]
            elif v in cfg.control:
                raise InputError(str(bg.file), v, "missing control variable in the background file")
    rollout = build_rollout(c, window.inputs, ocean)
    corr = Correlation(*ocean.shape, window.dx, (cfg.b.length_scale_km or 0.0) * 1e3)
    problem = FourDVar(rollout, xb, window.obs, window.obs_std, cfg.control, cfg.b.sigma, ocean, corr)
    n_obs = int(problem.observed.sum())
    log(f"assimilate: window {np.datetime_as_string(window.times[0], unit='m')} + {cfg.window_days:g} days "
        f"({cfg.n_steps} steps), control {cfg.control} ({problem.n_control} values), {n_obs} observations, "
        f"B {'diagonal' if corr.identity else f'Gaussian {cfg.b.length_scale_km:g} km'}")
    result = problem.minimise(cfg.minimizer, log=log)
    analysis_traj = rollout.forward(result.state)
    background_traj = rollout.forward(xb)
    summary = {"start": np.datetime_as_string(window.times[0], unit="m"), "window_days": cfg.window_days,
               "steps": cfg.n_steps, "control": list(cfg.control), "observations": n_obs,
               "iterations": len(result.history) - 1, "evaluations": result.evaluations,
               "seconds": round(result.seconds, 2), "message": result.message,
               "J_initial": result.history[0]["J"], "J_final": result.history[-1]["J"]}
    if truth is not None:
        summary["scores"] = scores(analysis_traj, background_traj, truth, variables, ocean)
    out.mkdir(parents=True, exist_ok=True)
    write_analysis(out / "analysis.nc", window, variables, analysis_traj, background_traj, truth,
                   {"producer": "icecorr assimilate", "checkpoint": str(cfg.checkpoint),
                    "observations": str(cfg.observations), "summary": summary})
    write_history(out / "cost.csv", result.history)
    plot(out / "assimilation.png", result.history, variables, analysis_traj, background_traj, truth, ocean,
         "sit" if "sit" in variables else variables[0])
    tmp = temporary_path(out / "summary.json")
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out / "summary.json")
    return summary


def format_summary(summary: Mapping) -> str:
    lines = [f"4D-Var {summary['start']} + {summary['window_days']:g} d: J {summary['J_initial']:.5g} -> "
             f"{summary['J_final']:.5g} in {summary['iterations']} iterations ({summary['evaluations']} evaluations, "
             f"{summary['seconds']:.1f} s), {summary['observations']} observations"]
    for v, s in summary.get("scores", {}).items():
        red = s["initial_rmse_reduction"]
        initial = (f"initial RMSE background {s['initial_rmse_background']:.4g} -> analysis "
                   f"{s['initial_rmse_analysis']:.4g} ({100 * red:.0f} % lower)" if red is not None else
                   "initial state = background")
        lines.append(f"  {v}: {initial}; window forecast RMSE {s['forecast_rmse_background']:.4g} -> "
                     f"{s['forecast_rmse_analysis']:.4g}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`icecorr assimilate CONFIG.yaml [key.sub=value …] [--out DIR]`."""
    from corrector.checkpoint import CheckpointError
    from icecorr.base.config import ConfigError, dump_config, load_config

    p = argparse.ArgumentParser(prog="icecorr assimilate", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="YAML with an `assimilate:` section (configs/assimilate.yaml)")
    p.add_argument("overrides", nargs="*", help="key.sub=value, e.g. assimilate.start=2003-11-10T00:00")
    p.add_argument("--out", default=None, help="output folder (default assimilate.out_dir)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the resolved config")
    args, extra = p.parse_known_args(argv)
    bad = [a for a in extra if a.startswith("-") or "=" not in a]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)}")
    try:
        cfg = load_config(AssimilateRunConfig, args.config, list(args.overrides) + extra).assimilate
        if args.dry_run:
            print(dump_config(AssimilateRunConfig(assimilate=cfg)), end="")
            return 0
        summary = run_assimilate(cfg, Path(args.out) if args.out else None)
    except (ConfigError, InputError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(f"wrote {Path(args.out or cfg.out_dir)}/{{analysis.nc,cost.csv,assimilation.png,summary.json}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
