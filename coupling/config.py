"""Typed configuration of coupled runs (`icecorr couple`), emulator runs (`emulate`) and offline correction (`correct`)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from icecorr.base.config import StrictConfig
from icecorr.inputs.mapping import UserForecastInputs

#: the longest window a run accepts (days): 100 years of 12 h steps in one trajectory file is already far beyond any
#: forcing the product handles, and a bound keeps absurd lengths (1e308 days) from overflowing the step count
MAX_WINDOW_DAYS = 36525
#: diffusion sampler steps a run accepts: samplers need 10–100; more only makes a run that never ends
MAX_SAMPLER_STEPS = 10_000


def check_window_length(name: str, value: float | None, days: float | None) -> float | None:
    """`value` of the field `name` (n_steps or days, `days` the window in days), or a ValueError saying why a window
    longer than MAX_WINDOW_DAYS is refused."""
    if days is not None and not days <= MAX_WINDOW_DAYS:  # `not <=` also catches NaN
        raise ValueError(f"{name}={value} is longer than {MAX_WINDOW_DAYS} days (100 years, {2 * MAX_WINDOW_DAYS} "
                         f"steps of 12 h), the longest window a run accepts: split it into windows (start_indices)")
    return value


class OutputConfig(StrictConfig):
    """What goes into the output NetCDF besides the corrected state."""

    precision: Literal["float32", "float64"] = Field(
        "float32", description="on-disk type of state variables: float32 (final products, CF); float64 keeps "
        "runs bit-comparable with in-memory states")
    write_forecast: bool = Field(False, description="also write the uncorrected 12 h forecast `forecast_{v}`")
    write_correction: bool = Field(False, description="also write the applied correction `correction_{v}` "
                                                      "(corrected − forecast, after bounds)")


class TimeoutConfig(StrictConfig):
    """Deadlines (s) for waiting on a peer rank: a dead or hung peer aborts the job instead of hanging it."""

    handshake: float = Field(120.0, gt=0, description="start-up handshake between physics and ML ranks (s)")
    step: float = Field(600.0, gt=0, description="any single exchange within a cycle (s)")


class StrengthFieldConfig(StrictConfig):
    """A per-member random field on the ice strength P of the built-in coarse model: log-normal, Gaussian-correlated
    in space, zero domain mean in log space (the domain-wide part is `physics_perturbation.p_star`), constant over
    a window (coupling.member_physics.member_strength_field)."""

    sigma: float = Field(ge=0, le=2, description="std of log(strength factor) over the domain (1)")
    length_km: float = Field(gt=0, description="correlation length ℓ (km): the log-field's correlation at distance r "
                                               "is exp(−r²/(4ℓ²)) (white noise smoothed by a Gaussian of std ℓ)")


class CoupleConfig(StrictConfig):
    """A coupled (physics + corrector) or emulator ensemble run over one or more windows."""

    members: int = Field(8, ge=1, description="ensemble members per window")
    n_steps: int | None = Field(None, ge=1, description="12 h steps per window (give n_steps or days)")
    days: float | None = Field(None, gt=0, description="window length in days (2 steps per day)")
    start: datetime = Field(datetime(2000, 10, 1), description="time of forcing index 0 when the forcing "
                                                               "source has no time axis")
    start_indices: list[int] = Field([0], min_length=1, description="forcing/pair-file time index where each "
                                                                    "window starts (one output file per window)")
    seed: int = Field(0, ge=0, description="base seed; member k's noise at step n depends only on "
                                           "(seed, window start index, k, n)")
    output: str = Field("couple.nc", description="output NetCDF path (windows > 1: `<stem>_w<start><suffix>`)")
    restart_interval: int = Field(0, ge=0, description="write a restart file every this many steps (0 = never)")
    restart_dir: str | None = Field(None, description="folder of restart files (default: next to the output)")
    checkpoint: str | None = Field(None, description="corrector checkpoint; None = zero correction (pure physics)")
    sampler_steps: int | None = Field(None, ge=1, le=MAX_SAMPLER_STEPS,
                                      description="diffusion sampler steps (None = checkpoint default)")
    sampler: dict[str, Any] = Field(
        default_factory=dict, description="overrides of the checkpoint's sampler section for this run (keys of "
        "corrector.config.SamplerConfig), e.g. {noise_decorrelation_days: 0.5, spread_inflation: [1.2, 1.5, 1.4, 1, "
        "1]}: sampling choices tuned after training without rewriting the checkpoint")
    initial_perturbation: float = Field(0.0, ge=0, description="std of the initial-state perturbation per member: "
                                                               "absolute for sic (1), relative for sit/snt")
    physics_perturbation: dict[str, float] = Field(
        default_factory=dict, description="per-member parameters of the built-in coarse model: {parameter of the "
        "physics section: σ}, member k runs for the whole window with parameter × exp(σ z − σ²/2), z ~ N(0, 1) "
        "drawn from (seed, k) (the mean kept): a model error that persists in time, as the "
        "stochastic ice-strength ensembles of Juricke et al. (2013); e.g. {p_star: 0.3, c_air: 0.1}; parameters of "
        "a nested section dotted, e.g. {thermo.k_snow: 0.3}; parameters joined by '+' share one factor, e.g. "
        "{p_star+delta_min: 0.25}: the plastic strength P* perturbed while the viscous creep limit P*/Δ_min is kept")
    strength_field: StrengthFieldConfig | None = Field(
        None, description="per-member spatial field on the ice strength of the built-in coarse model, e.g. {sigma: "
        "0.5, length_km: 48}: weak and strong patches as the reference's heterogeneous (damaged) ice has, instead of "
        "a whole member weaker or stronger; null = none")
    ml_ranks: int = Field(1, ge=1, description="ranks that hold the corrector when the role is not given per rank")
    model: str | None = Field(None, description="Python model of `icecorr couple`: 'package.module:Class' or an entry "
                                                "point of the group icecorr.models, built per member as "
                                                "Class(grid, **model_options) (coupling.model_protocol); None = the "
                                                "built-in coarse model (the `physics` section)")
    model_options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the model class")
    output_options: OutputConfig = Field(default_factory=OutputConfig)
    timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig)

    @field_validator("n_steps")
    @classmethod
    def _steps_bounded(cls, value: int | None) -> int | None:
        # integer comparison first: n_steps / 2 overflows a float for a huge integer
        return check_window_length("n_steps", value, None if value is None else min(value, 4 * MAX_WINDOW_DAYS) / 2)

    @field_validator("days")
    @classmethod
    def _days_bounded(cls, value: float | None) -> float | None:
        return check_window_length("days", value, value)

    @field_validator("sampler")
    @classmethod
    def _sampler_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        from corrector.config import SamplerConfig

        unknown = sorted(set(value) - set(SamplerConfig.model_fields))
        if unknown:
            raise ValueError(f"sampler: {unknown} are not sampler settings (corrector.config.SamplerConfig: "
                             f"{sorted(SamplerConfig.model_fields)})")
        return value

    @field_validator("physics_perturbation")
    @classmethod
    def _perturbable(cls, value: dict[str, float]) -> dict[str, float]:
        from fortran_stub.config import physics_parameter

        for name, sigma in value.items():
            try:
                for part in name.split("+"):
                    physics_parameter(part)
            except ValueError as exc:
                raise ValueError(f"physics_perturbation: {exc}") from None
            if not 0 <= sigma <= 2:  # `not` also catches NaN
                raise ValueError(f"physics_perturbation.{name}: σ = {sigma} outside [0, 2] (a log-normal std)")
        return value

    @model_validator(mode="after")
    def _one_length(self) -> "CoupleConfig":
        if self.n_steps is not None and self.days is not None and self.n_steps != round(self.days * 2):
            raise ValueError(f"n_steps={self.n_steps} and days={self.days} disagree (2 steps per day): give one")
        if self.days is not None and abs(self.days * 2 - round(self.days * 2)) > 1e-9:
            raise ValueError(f"days={self.days} is not a whole number of 12 h steps")
        return self

    @property
    def perturbed_physics(self) -> list[str]:
        """The options set that perturb the built-in coarse model (a model of your own, or the standalone Fortran
        driver, runs every member with one physics and cannot honour them)."""
        return [name for name in ("physics_perturbation", "strength_field") if getattr(self, name)]

    @property
    def steps(self) -> int:
        """12 h steps per window (default 30 = 15 days)."""
        if self.n_steps is not None:
            return self.n_steps
        if self.days is not None:
            return round(self.days * 2)
        return 30


class CorrectConfig(StrictConfig):
    """Offline correction of existing coarse forecasts (`icecorr correct`)."""

    members: int = Field(8, ge=1, description="corrected ensemble members per forecast")
    seed: int = Field(0, ge=0, description="base seed; member k of time index t uses member_seeds(seed, t, 0, …)")
    checkpoint: str | None = Field(None, description="corrector checkpoint (residual mode)")
    sampler_steps: int | None = Field(None, ge=1, le=MAX_SAMPLER_STEPS,
                                      description="diffusion sampler steps (None = checkpoint default)")
    chunk_size: int = Field(16, ge=1, description="time records (with `inputs`: 12 h windows) read, corrected and "
                                                  "written at once")
    output_options: OutputConfig = Field(default_factory=OutputConfig)
    timeout: float = Field(600.0, gt=0, description="deadline (s) for a chunk from another rank")
    inputs: UserForecastInputs | None = Field(None, description="your own forecast files (any coarse model's "
                                              "init_time × lead_time output) and their forcing, corrected on their "
                                              "own grid; null = the pair file given on the command line")
