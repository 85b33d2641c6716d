"""Typed configuration of `icecorr assimilate` (the `assimilate:` section of `configs/assimilate.yaml`): the window,
the control variables, the background and its error covariance B, the observations and the minimiser.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from icecorr.base.config import StrictConfig
from icecorr.base.variables import ML_VARIABLES, STEP_HOURS

CONTROLLABLE = ("sic", "sit", "snt")
#: physical box of the controllable variables (lower, upper; None = unbounded)
BOUNDS = {"sic": (0.0, 1.0), "sit": (0.0, None), "snt": (0.0, None)}


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
        """Emulator steps (12 h each) in the window."""
        return max(1, int(round(self.window_days * 24 / STEP_HOURS)))


class AssimilateRunConfig(StrictConfig):
    """The YAML of `icecorr assimilate` (`configs/assimilate.yaml`)."""

    assimilate: AssimilateConfig
