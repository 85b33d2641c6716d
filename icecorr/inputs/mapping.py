"""The mapping of a user's files onto model variables: which file variable holds a model variable and in which
units (`VariableSource`), and how the user's own model forecasts are laid out (`ForecastFilesConfig`). Strict
pydantic sections (unknown keys are errors) composed into the prepare / ingest / correct configs."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from icecorr.base.config import StrictConfig


class VariableSource(StrictConfig):
    """Where one model variable comes from in the user's files, and in which units it is stored there."""

    name: str = Field(description="variable name in the file")
    units: str = Field(description="units the file uses (checked against its `units` attribute)")
    accumulated: bool = Field(False, description="true if the field is accumulated over the output interval ending "
                              "at each record (ERA5-like radiation in J m-2, snowfall in kg m-2 or m of water): "
                              "divided by that interval, taken from the time axis, into a rate (J m-2 -> W m-2)")

    @field_validator("units", mode="before")
    @classmethod
    def _number_units(cls, v):
        # YAML reads `units: 1` as an integer; dimensionless "1" is a valid unit string
        return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def only_forcing_accumulates(sources: dict[str, VariableSource], what: str) -> dict[str, VariableSource]:
    """`sources` unchanged; ValueError if one is marked `accumulated` (a state is a snapshot, not a flux sum)."""
    accumulated = sorted(k for k, src in sources.items() if src.accumulated)
    if accumulated:
        raise ValueError(f"accumulated: true applies to forcing fluxes only, not to {what} {accumulated}")
    return sources


class ForecastFilesConfig(StrictConfig):
    """The user's own coarse-model forecasts (CICE, SI3, coarse neXtSIM, …): `prepare` pairs them with the reference
    to learn that model's errors instead of re-running the built-in model."""

    files: list[str] = Field(min_length=1, description="forecast NetCDF files: init_time × lead_time × y × x, or "
                             "one forecast per file along lead_time (timedelta leads or datetime valid times)")
    variables: dict[str, VariableSource] = Field(description="model name (sic, sit, snt, siu, siv) -> source")
    dims: dict[str, str] = Field(default_factory=lambda: {"init_time": "init_time", "lead_time": "lead_time",
                                                          "y": "y", "x": "x"},
                                 description="model dim -> file dim name")
    velocity_points: Literal["centre", "face", "corner"] = Field(
        "centre", description="where siu/siv live in the files: cell centres (A-grid), east/north faces (C-grid) "
        "or north-east corners (B-grid, CICE)")
    thickness_is_mean: bool = Field(False, description="true if `sit` is the cell mean (V = A h)")

    @field_validator("variables")
    @classmethod
    def _forecast_names(cls, v: dict[str, VariableSource]) -> dict[str, VariableSource]:
        allowed, needed = {"sic", "sit", "snt", "siu", "siv"}, {"sic", "sit", "siu", "siv"}
        if set(v) - allowed:
            raise ValueError(f"unknown forecast variable(s) {sorted(set(v) - allowed)}; allowed: {sorted(allowed)}")
        if needed - set(v):
            raise ValueError(f"forecast mapping lacks {sorted(needed - set(v))}")
        return only_forcing_accumulates(v, "forecast variables")


class UserForecastInputs(StrictConfig):
    """`correct.inputs`: the user's own forecast files and their forcing, corrected by `icecorr correct` on the
    user's grid (no pair file). Relative paths are taken from the config file's folder."""

    forecasts: ForecastFilesConfig = Field(description="the forecast files and their mapping (as prepare.forecasts)")
    forcing_files: list[str] = Field(min_length=1, description="forcing NetCDF files on the forecasts' grid, "
                                     "concatenated along time; every window's start and end time must be in them")
    forcing: dict[str, VariableSource] = Field(description="model forcing name (uas, vas, tas, huss, rsds, rlds, "
                                               "prsn, uo, vo) -> source, as prepare.forcing")
    forcing_dims: dict[str, str] = Field(default_factory=lambda: {"time": "time", "y": "y", "x": "x"},
                                         description="model dim -> dim name in the forcing files")
    mask_variable: str | None = Field(None, description="ocean mask in the forecast files (non-zero = ocean, or a "
                                      "CF flag variable whose flag_meanings say land/ocean); null = land is where "
                                      "the forecast's sic is fill/NaN at every time")
