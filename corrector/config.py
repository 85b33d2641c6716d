"""Typed configuration of the corrector: network size, diffusion formulation, sampler and what is predicted.

The `corrector:` section of a training YAML. Every section rejects unknown keys (a silently ignored sampler
setting is a classic bug). `corrector` imports nothing from the other project packages but the bottom layer
`icecorr.base` (the strict config base, the variable table).
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from icecorr.base.config import StrictConfig
from icecorr.base.variables import FORCING_VARIABLES, ML_VARIABLES, RANGES

from .fields import DRIFT_STEPS, conditioning_names
from .schedule import FEW_STEP_SIGMAS, explicit_sigmas, karras_sigmas

# Emulator-mode variables predicted as the state at t+12 h rather than as a 12 h tendency (see CorrectorConfig).
DEFAULT_STATE_VARIABLES: tuple[str, ...] = ("siu", "siv")
# Default forcing subset fed to the network: wind and ocean current drive the 12 h drift/deformation errors that a
# coarse model makes; air temperature stands in for the thermodynamic forcing (radiation and humidity correlate with
# it strongly in the synthetic forcing and mostly act through the physics, which the forecast already carries).
DEFAULT_FORCING: tuple[str, ...] = ("uas", "vas", "tas", "uo", "vo")


class NetworkConfig(StrictConfig):
    """U-Net size. Grids must be divisible by 2**(len(channel_mults) - 1) (one down-sampling between levels)."""

    base_channels: int = Field(32, ge=4, description="feature channels at full resolution")
    channel_mults: list[int] = Field([1, 2, 2], min_length=1,
                                     description="channel multiplier per level; level k has base*mults[k] channels")
    blocks_per_level: int = Field(1, ge=1, description="residual blocks per level on the way down (and up)")
    attention_bottleneck: bool = Field(True, description="multi-head self-attention at the coarsest level")
    attention_window: int = Field(16, ge=1, description="attention acts within windows of at most this many "
                                                        "bottleneck cells per side (keeps cost linear in cells)")
    heads: int = Field(4, ge=1, description="attention heads")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout inside residual blocks")
    embedding_dim: int = Field(128, ge=8, description="width of the noise-level + augmentation-label embedding")
    norm_groups: int = Field(8, ge=1, description="GroupNorm groups (reduced to a divisor of each width)")

    @field_validator("channel_mults")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(m < 1 for m in v):
            raise ValueError(f"channel_mults must be positive integers, got {v}")
        return v

    @property
    def downsamplings(self) -> int:
        """Number of 2× down-samplings: grids must be divisible by 2**downsamplings."""
        return len(self.channel_mults) - 1


class DiffusionConfig(StrictConfig):
    """EDM formulation (Karras et al. 2022) on targets normalised to unit standard deviation.

    sigma_data = 1 because the targets are z-scored. The training σ distribution is log-normal(P_mean, P_std); its
    median exp(P_mean) ≈ 0.67 σ_data sits a little higher than EDM's image default (0.6·σ_data at P_mean = −1.2,
    σ_data = 0.5) and P_std is wider, so that the large-σ end — which sets the ensemble spread of the large scales —
    is trained as well: published sea-ice diffusion ensembles are under-dispersive (spread/RMSE 0.5–0.7).
    """

    formulation: Literal["edm"] = "edm"
    sigma_data: float = Field(1.0, gt=0, description="std of the (normalised) target")
    P_mean: float = Field(-0.4, description="mean of ln σ during training")
    P_std: float = Field(1.4, gt=0, description="std of ln σ during training")
    sigma_min: float = Field(0.002, gt=0, description="smallest σ of the sampling schedule")
    sigma_max: float = Field(80.0, gt=0, description="largest σ of the sampling schedule")
    rho: float = Field(7.0, gt=0, description="Karras schedule curvature")
    remainder_scale_cells: Optional[int] = Field(
        None, ge=1, description="with a regression stage: learn (target − stage) / s, s the local rms of the stage's "
                                "prediction over this odd window of cells (corrector.remainder_scale); None = off")
    remainder_scale_floor: float = Field(0.01, gt=0, description="floor of that scale (normalised units)")
    remainder_scale_variables: Optional[list[str]] = Field(
        None, description="the variables whose remainder is scaled (None = all; the others keep scale 1)")

    @model_validator(mode="after")
    def _check(self) -> "DiffusionConfig":
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        if self.remainder_scale_cells is not None and self.remainder_scale_cells % 2 == 0:
            raise ValueError(f"remainder_scale_cells must be odd (a window centred on its cell), got "
                             f"{self.remainder_scale_cells}")
        return self


class SamplerConfig(StrictConfig):
    """How samples are drawn.

    - `heun`: EDM 2nd-order Heun (2·steps − 1 network evaluations), optional stochastic churn (s_churn > 0).
      Reference: 18 steps (35 evaluations) on the Karras ρ = 7 schedule.
    - `dpmpp_2m`: DPM-Solver++(2M), a 2nd-order multistep solver: one network evaluation per step.

    Few-step sampling (`SamplerConfig.few_step()`: dpmpp_2m with the 4 σ levels of `schedule.FEW_STEP_SIGMAS`, i.e.
    4 network evaluations per 12 h step). Why this choice: multistep reuse of the previous denoised estimate gives
    second order without a second evaluation per step, and it needs no extra training (unlike consistency or
    progressive distillation, which would double the training pipeline and its failure modes). Tuning the σ levels
    on the analytic Gaussian problem (`corrector/schedule_tuning.py`) reproduces conditional std within 0.94–1.08
    of the truth for conditional stds 0.1–2 σ_data, where the Karras schedule at 4 steps gives 0.40–0.98 and the
    best 2-step Heun (3 evaluations) 0.38–1.56 — dispersion errors the calibration target (spread/RMSE 0.7–1.3)
    cannot afford.
    """

    name: Literal["heun", "dpmpp_2m"] = "heun"
    steps: int = Field(18, ge=1, description="σ levels of the schedule (network evaluations: heun 2n−1, dpmpp_2m n)")
    sigmas: Optional[list[float]] = Field(None, description="explicit decreasing σ levels (final 0 implied); "
                                                            "overrides steps and the Karras schedule")
    sigma_max: Optional[float] = Field(None, gt=0, description="override diffusion.sigma_max for sampling")
    sigma_min: Optional[float] = Field(None, gt=0, description="override diffusion.sigma_min for sampling")
    rho: Optional[float] = Field(None, gt=0, description="override diffusion.rho for sampling")
    s_churn: float = Field(0.0, ge=0, description="stochastic churn (heun only); 0 = deterministic ODE")
    s_tmin: float = Field(0.0, ge=0, description="churn only for σ in [s_tmin, s_tmax]")
    s_tmax: float = Field(float("inf"), ge=0)
    s_noise: float = Field(1.0, gt=0, description="std multiplier of the churn noise")
    network_batch: int = Field(8, ge=1, description="exact size of every network batch: the B × members samples "
                                                   "run in chunks of this many, the last one padded. A fixed batch "
                                                   "size makes each member independent of how many members or batch "
                                                   "items run, to float32 round-off (CPU kernels pick batch-size-"
                                                   "dependent algorithms); on CPU per-member cost flattens out by ~8")
    noise_decorrelation_days: float = Field(
        0.0, ge=0, description="coupled and emulator runs: decorrelation time τ (days) of each member's initial "
        "latent noise over 12 h steps, an AR(1) process with ρ = exp(−0.5/τ) (`corrector.seeding.ar1_weights`), so "
        "that a member's corrections keep a sign for days like the hidden causes of the model error (static "
        "cohesion, slowly healing damage); 0 = independent noise at every step")
    spread_inflation: Optional[list[float]] = Field(
        None, description="per-variable factor k on the generated part of a model with a regression stage, "
        "x = base + k·(x − base): a post-hoc calibration fitted on validation data by `icecorr calibrate` so that "
        "12 h spread matches the ensemble-mean error (the stochastic baselines of anchors §1.2 inflate their std "
        "the same way); null = 1")

    bounds: Literal["clip", "ridge", "conserve", "conserve_area", "conserve_physics"] = Field(
        "clip", description="how `Corrector.apply` bounds a corrected state (corrector.bounds.BOUNDS_MODES): clip = "
        "clip to the physical ranges (noise clipped at sic = 1 is rectified into a loss of area and volume); "
        "conserve_area = clip, then give each member's clipped area back to its ice cells with room below 1; "
        "conserve = also the ice and snow volume totals; ridge = a cell clipped at sic = 1 keeps its volume; "
        "conserve_physics (residual mode) = each member's area, ice and snow volume totals are the physics "
        "forecast's: the correction only moves ice (a coupled year otherwise accumulates the corrections' mean)")

    @model_validator(mode="after")
    def _check(self) -> "SamplerConfig":
        if self.spread_inflation is not None and any(k <= 0 for k in self.spread_inflation):
            raise ValueError(f"spread_inflation must be positive, got {self.spread_inflation}")
        if self.s_churn > 0 and self.name != "heun":
            raise ValueError(f"s_churn > 0 is only supported by the 'heun' sampler, not {self.name!r}")
        if self.sigmas is not None:
            if not self.sigmas or any(s <= 0 for s in self.sigmas) or \
                    any(b >= a for a, b in zip(self.sigmas, self.sigmas[1:])):
                raise ValueError(f"sigmas must be strictly decreasing positive values, got {self.sigmas}")
            if self.steps != len(self.sigmas):
                object.__setattr__(self, "steps", len(self.sigmas))
        return self

    @classmethod
    def few_step(cls, **kw) -> "SamplerConfig":
        """DPM-Solver++(2M) on the tuned 4-level schedule: 4 network evaluations per sample."""
        return cls(name="dpmpp_2m", sigmas=list(FEW_STEP_SIGMAS), steps=len(FEW_STEP_SIGMAS), **kw)

    def schedule(self, diffusion: "DiffusionConfig", steps: int | None = None):
        """The σ schedule (float64 tensor ending in 0). An explicit `steps` (≠ len(sigmas)) selects the Karras
        schedule with that many steps; otherwise `sigmas` if set, else Karras with `self.steps`."""
        if self.sigmas is not None and (steps is None or steps == len(self.sigmas)):
            return explicit_sigmas(self.sigmas)
        return karras_sigmas(steps or self.steps, self.sigma_min or diffusion.sigma_min,
                             self.sigma_max or diffusion.sigma_max, self.rho or diffusion.rho)


class CorrectorConfig(StrictConfig):
    """What the corrector predicts and from what.

    mode 'residual': target = reference − coarse forecast (a model-error correction);
    mode 'emulator': no physics involved; the target of a variable in `emulator_state_variables` is its state at
    t+12 h (reference), that of the others the 12 h tendency (reference − initial) — see `corrector.fields`.
    `conditioning` defaults to `corrector.fields.conditioning_names(mode, variables, forcing_variables)`.
    """

    kind: Literal["diffusion", "deterministic"] = "diffusion"
    mode: Literal["residual", "emulator"] = "residual"
    variables: list[str] = Field(list(ML_VARIABLES), min_length=1, description="predicted variables, in order")
    forcing_variables: list[str] = Field(list(DEFAULT_FORCING),
                                         description="forcing used for the default conditioning")
    conditioning: Optional[list[str]] = Field(None, description="conditioning channel names; null = default")
    emulator_state_variables: Optional[list[str]] = Field(
        None, description="emulator mode only: variables predicted as the state at t+12 h itself, not as a 12 h "
        "tendency. Sea-ice momentum relaxes to the wind/ocean forcing within hours (free-drift e-folding time "
        "ρ_i h / (ρ_w C_w |u_rel|) ≈ 5 h for h = 1 m), so the 12 h velocity keeps little memory of the initial one; "
        "a tendency target makes the network integrate its own velocity errors over a rollout (unbounded drift). "
        "null = the velocities (siu, siv) among `variables` in emulator mode, [] in residual mode, where it must "
        "stay empty. Checkpoints written before this option existed load as [] (all tendencies)")
    max_drift_steps: int = Field(
        0, ge=0, description="> 0: condition on `drift_steps`, the 12 h steps since the state was last the "
        "reference (a coupled run: steps since its start; training: the drift windows of `training.data.drift`), "
        "clamped at this value. A coupled run's states drift off the reference's manifold and its error grows, so "
        "the correction and its spread depend on how long it has run; the channel lets one network hold the 12 h "
        "correction (0 steps) and the drifted one. The default conditioning then gains the channel. 0 = none")
    network: NetworkConfig = NetworkConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    sampler: SamplerConfig = SamplerConfig()
    loss_balance: Literal["pooled", "per_variable"] = Field(
        "pooled", description="average of the loss over valid target values: pooled (all variables together; DDP "
        "gradients then equal one process exactly) or per_variable (each variable's mean over its own observed "
        "cells, then the mean over variables: for gappy observations, where variables are observed on different "
        "shares of the cells; identical on complete data)")
    loss_bounded: bool = Field(
        False, description="emulator mode, deterministic kind: the loss on the bounded next state (initial + predicted "
        "tendency of sic, sit, snt clamped to 0 ≤ sic ≤ 1, sit, snt ≥ 0), the state a rollout sees, instead of on the "
        "raw tendency. With the raw loss a small positive sic tendency over compact ice costs almost nothing, and the "
        "clip at sic = 1 then removes its volume every step (docs/arctic.md); a clamped value has no gradient, so "
        "the loss neither rewards nor punishes what the bounds remove. Training only: running is unchanged")
    loss_window_floor: Optional[float] = Field(
        None, gt=0, description="weight each window's and variable's loss by (1 + f) / (v + f), v the mean square of "
        "its normalised target over valid cells: a calm window (v ≈ 0, where the coarse model is already right) "
        "counts (1 + f) / f times, a storm (v ≫ 1) less, so that the corrector learns to stay quiet where nothing "
        "needs correcting; null = the plain mean (storm windows dominate)")
    base_network: Optional[NetworkConfig] = Field(
        None, description="diffusion kind only: the network of a frozen deterministic regression stage (same mode, "
        "variables; its conditioning may be a subset, `base_conditioning`, and its normalisation statistics its own) "
        "whose prediction the diffusion model corrects — the diffusion "
        "generates target − base and also sees the base prediction (CorrDiff/ResDiff, anchors §1.2, §8). Set by "
        "`train.base_checkpoint`; its weights travel inside the checkpoint")
    base_conditioning: Optional[list[str]] = Field(
        None, description="with base_network: the regression stage's conditioning channels, a subset of "
        "`conditioning` (null = the same). Set by `train.base_checkpoint`")

    @model_validator(mode="after")
    def _resolve(self) -> "CorrectorConfig":
        if len(set(self.variables)) != len(self.variables):
            raise ValueError(f"variables has duplicates: {self.variables}")
        if self.sampler.bounds == "conserve_physics" and self.mode != "residual":
            raise ValueError("sampler.bounds 'conserve_physics' keeps the physics forecast's totals: residual mode "
                             "only (an emulator has no physics forecast)")
        unknown = [f for f in self.forcing_variables if f not in FORCING_VARIABLES]
        if unknown:
            raise ValueError(f"forcing_variables: unknown {unknown}; choose from {list(FORCING_VARIABLES)}")
        if self.conditioning is None:
            # resolve once so that the saved config states the channels explicitly
            object.__setattr__(self, "conditioning",
                               conditioning_names(self.mode, self.variables, self.forcing_variables,
                                                  drift=self.max_drift_steps > 0))
        elif len(set(self.conditioning)) != len(self.conditioning):
            raise ValueError(f"conditioning has duplicates: {self.conditioning}")
        elif not self.conditioning:
            raise ValueError("conditioning must name at least one channel")
        if (DRIFT_STEPS in self.conditioning) != (self.max_drift_steps > 0):
            raise ValueError(f"conditioning {'has' if DRIFT_STEPS in self.conditioning else 'lacks'} "
                             f"'{DRIFT_STEPS}' but max_drift_steps is {self.max_drift_steps}: set both or neither")
        states = self.emulator_state_variables
        if states is None:
            states = [v for v in DEFAULT_STATE_VARIABLES if v in self.variables] if self.mode == "emulator" else []
            object.__setattr__(self, "emulator_state_variables", states)  # stated explicitly in the saved config
        unknown = [v for v in states if v not in self.variables]
        if unknown:
            raise ValueError(f"emulator_state_variables: {unknown} not among variables {self.variables}")
        if len(set(states)) != len(states):
            raise ValueError(f"emulator_state_variables has duplicates: {states}")
        if states and self.mode != "emulator":
            raise ValueError(f"emulator_state_variables {states}: only an emulator-mode corrector predicts states "
                             f"(set it to [] in {self.mode} mode)")
        unknown = [v for v in self.diffusion.remainder_scale_variables or [] if v not in self.variables]
        if unknown:
            raise ValueError(f"diffusion.remainder_scale_variables: {unknown} not among variables {self.variables}")
        if self.base_network is not None and self.kind != "diffusion":
            raise ValueError("base_network: only a diffusion corrector has a regression stage")
        if self.base_conditioning is not None:
            extra = [n for n in self.base_conditioning if n not in self.conditioning]
            if self.base_network is None or extra:
                raise ValueError(f"base_conditioning: needs base_network and channels among conditioning "
                                 f"(not among them: {extra})")
        if self.loss_bounded:
            missing = [f"initial_{v}" for v in RANGES
                       if v in self.variables and v not in states and f"initial_{v}" not in self.conditioning]
            if self.mode != "emulator" or self.kind != "deterministic" or missing:
                raise ValueError(f"loss_bounded: needs an emulator-mode deterministic corrector with the initial "
                                 f"state of its bounded tendencies among its conditioning (mode {self.mode!r}, kind "
                                 f"{self.kind!r}, missing {missing})")
        if self.mode == "emulator":
            forecast = [n for n in self.conditioning if n.startswith("forecast_")]
            if forecast:
                raise ValueError(f"conditioning: {forecast} in emulator mode, where no physics forecast exists")
            blind = [f"initial_{v}" for v in states if f"initial_{v}" not in self.conditioning]
            if blind:
                raise ValueError(f"conditioning lacks {blind}: a state-target variable needs its initial state "
                                 f"(persistence, the reference of validation skill); add it or drop the variable "
                                 f"from emulator_state_variables")
        return self
