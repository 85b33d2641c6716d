"""Settings of the observation producers (`training.data.observations`): how each variable is observed in the
synthetic twin (`ObservationConfig`), and how user observation files map to model variables (`IngestConfig`)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from icecorr.base.config import StrictConfig
from icecorr.base.variables import ML_VARIABLES
from icecorr.inputs.mapping import VariableSource


class VariableObsConfig(StrictConfig):
    """How one variable is observed in the synthetic twin."""

    instrument: str = Field(description="variables of one instrument share its gaps (e.g. sit and snt)")
    sampling: Literal["swath", "drift", "complete"] = Field(description="gap pattern of the instrument")
    noise_std: float = Field(ge=0, description="Gaussian observation-error std (units of the variable)")


def _default_variables() -> dict[str, VariableObsConfig]:
    return {"sic": VariableObsConfig(instrument="radiometer", sampling="swath", noise_std=0.02),
            "sit": VariableObsConfig(instrument="altimeter", sampling="swath", noise_std=0.05),
            "snt": VariableObsConfig(instrument="altimeter", sampling="swath", noise_std=0.01),
            "siu": VariableObsConfig(instrument="drift", sampling="drift", noise_std=0.01),
            "siv": VariableObsConfig(instrument="drift", sampling="drift", noise_std=0.01)}


class SwathConfig(StrictConfig):
    """Parallel satellite swaths, re-drawn (angle and offset) for every record."""

    period_km: float = Field(200.0, gt=0, description="distance between swath centre lines (km)")
    observed_fraction: float = Field(0.5, gt=0, le=1, description="share of each period inside a swath")


class ObservationConfig(StrictConfig):
    """Synthetic observations of a twin pair file (`synthesize`)."""

    variables: dict[str, VariableObsConfig] = Field(default_factory=_default_variables,
                                                    description="observed variables; the others are all NaN")
    swath: SwathConfig = Field(default_factory=SwathConfig)
    drift_min_sic: float = Field(0.15, ge=0, le=1, description="drift only where sic exceeds this")
    drift_edge_distance_km: float = Field(32.0, ge=0, description="… and at least this far from the ice edge")
    missing_day_probability: float = Field(0.1, ge=0, le=1, description="chance an instrument misses a whole day")
    clip_to_bounds: bool = Field(False, description="clip noisy sic to [0, 1] and thicknesses to ≥ 0 as products "
                                 "do (biases the errors near the bounds; off keeps them unbiased)")
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> "ObservationConfig":
        unknown = sorted(set(self.variables) - set(ML_VARIABLES))
        if unknown:
            raise ValueError(f"variables: unknown {unknown}; allowed {list(ML_VARIABLES)}")
        for name in self.variables:
            group = {v.sampling for k, v in self.variables.items()
                     if v.instrument == self.variables[name].instrument}
            if len(group) > 1:
                raise ValueError(f"instrument '{self.variables[name].instrument}' has several samplings {group}")
        return self


class ObsSource(VariableSource):
    """One observed variable in the user's files: values, and optionally its mask and uncertainty."""

    mask: Optional[str] = Field(None, description="mask variable (non-zero = valid; for a CF flag variable the "
                                "meanings in `valid_flags` are valid); NaN values are always gaps")
    valid_flags: Optional[list[str]] = Field(None, description="flag_meanings of `mask` that mark valid values "
                                             "(required when `mask` is a CF flag variable, e.g. [nominal])")
    error: Optional[VariableSource] = Field(None, description="uncertainty (std) variable and its units")
    error_std: Optional[float] = Field(None, gt=0, description="constant uncertainty (std, model units)")

    @model_validator(mode="after")
    def _one_error(self) -> "ObsSource":
        if self.accumulated:
            raise ValueError("accumulated: true applies to forcing fluxes only, not to observations")
        if (self.error is None) == (self.error_std is None):
            raise ValueError("give exactly one of `error` (a variable) or `error_std` (a constant)")
        return self


class RegridConfig(StrictConfig):
    """Observation files on their own grid, brought onto the model grid (icecorr.inputs.regrid)."""

    method: Literal["mean", "nearest"] = Field("mean", description="mean: conservative average of the source cells "
                                               "inside each model cell; nearest: nearest source cell")
    methods: dict[str, Literal["mean", "nearest"]] = Field(default_factory=dict,
                                                           description="per-variable method (overrides `method`)")
    min_valid_fraction: float = Field(0.5, gt=0, le=1, description="mean: a model cell is observed when at least "
                                      "this share of its source cells is valid")


class IngestConfig(StrictConfig):
    """User observation files (on the model grid or regridded onto it), attached to a pair file (`ingest`)."""

    pairs: str = Field(description="training-pair file providing initial state, forecast and forcing")
    files: list[str] = Field(min_length=1, description="observation NetCDF files (read in order, merged by time)")
    variables: dict[str, ObsSource] = Field(description="model variable (sic, sit, snt, siu, siv) -> source")
    dims: dict[str, str] = Field(default_factory=lambda: {"time": "time", "y": "y", "x": "x"},
                                 description="model dim -> file dim name")
    velocity_points: Literal["centre", "face"] = Field("centre", description="where siu/siv live in the files")
    regrid: Optional[RegridConfig] = Field(None, description="the files are on their own grid: regrid them "
                                           "(None: they must be on the model grid)")

    @model_validator(mode="after")
    def _check(self) -> "IngestConfig":
        unknown = sorted(set(self.variables) - set(ML_VARIABLES))
        if unknown:
            raise ValueError(f"variables: unknown {unknown}; allowed {list(ML_VARIABLES)}")
        if not self.variables:
            raise ValueError("variables: at least one observed variable is needed")
        if ("siu" in self.variables) != ("siv" in self.variables):
            raise ValueError("variables: siu and siv come together (drift vectors)")
        return self


class SynthRunConfig(StrictConfig):
    """YAML of `python -m training.data.observations synth` (top level = the observation config)."""

    observations: ObservationConfig = Field(default_factory=ObservationConfig)


class IngestRunConfig(StrictConfig):
    """YAML of `python -m training.data.observations ingest`."""

    ingest: IngestConfig
