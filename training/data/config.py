"""Typed config sections of the data side: synthetic forcing, twin-experiment generation, ingestion of real data.

Each section is a strict pydantic model (unknown keys are an error). `icecorr/base/config.py` composes them into the run
config; the fit/evaluate sections live with their own modules.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from icecorr.base.config import StrictConfig
from icecorr.base.variables import STEP_HOURS
from icecorr.inputs.mapping import ForecastFilesConfig, VariableSource, only_forcing_accumulates
from training.data.geography import RegionGrid

#: 12 h windows per day
_STEPS_PER_DAY = 24 // STEP_HOURS

DEFAULT_START = "2000-10-01T00:00"


def _parse_start(value: str) -> str:
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"not an ISO date-time (e.g. {DEFAULT_START}): {value!r}") from exc
    return value


class Range(StrictConfig):
    """A closed interval [lo, hi] from which a value is drawn uniformly."""

    lo: float
    hi: float

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if self.hi < self.lo:
            raise ValueError(f"hi ({self.hi}) < lo ({self.lo})")
        return self


class VortexConfig(StrictConfig):
    """Moving cyclones/anticyclones (physics.md §5): a generalised Mehlmann et al. (2021) benchmark vortex."""

    genesis_per_day: float = Field(1.0 / 3.0, ge=0, description="Poisson genesis rate (systems per day)")
    peak_speed: Range = Field(default_factory=lambda: Range(lo=5.0, hi=20.0), description="V_k (m s-1) at r = R_k")
    radius: Range = Field(default_factory=lambda: Range(lo=75e3, hi=250e3), description="R_k (m)")
    inflow_angle_deg: Range = Field(default_factory=lambda: Range(lo=60.0, hi=85.0),
                                    description="rotation angle alpha_k (deg); 90 = purely rotational")
    lifetime_days: Range = Field(default_factory=lambda: Range(lo=2.0, hi=6.0))
    translation_speed: Range = Field(default_factory=lambda: Range(lo=1.0, hi=4.0),
                                     description="track speed (m s-1) before the per-radius cap")
    max_shift_radii_per_step: float = Field(
        0.5, gt=0, description="cap on the 12 h displacement in units of R_k: linear interpolation between "
        "snapshots of a vortex that jumps further than ~R_k shows two weakened ghosts instead of one storm")
    cyclone_fraction: float = Field(0.7, ge=0, le=1)
    winter_intensification: float = Field(0.3, ge=0, description="relative extra intensity at the coldest day")
    spawn_margin: float = Field(0.25, ge=0, description="centres spawn in [-m L, (1+m) L] (1.5 L box for 0.25)")
    warm_anomaly_k: float = Field(5.0, ge=0, description="cyclone warm-core anomaly amplitude (K)")


class ForcingConfig(StrictConfig):
    """Synthetic atmosphere/ocean forcing for the twin experiment (physics.md §5)."""

    background_wind_std: float = Field(3.0, ge=0, description="OU background wind std per component (m s-1)")
    background_wind_tau_days: float = Field(3.0, gt=0, description="OU decorrelation time (days)")
    max_wind_speed: float = Field(25.0, gt=0, description="cap on |U_a| of the resolved wind (m s-1)")
    vortices: VortexConfig = Field(default_factory=VortexConfig)
    subgrid_wind_std: float = Field(1.5, ge=0, description="truth-only subgrid wind noise std (m s-1)")
    subgrid_wind_length: float = Field(20e3, gt=0, description="its Gaussian correlation length (m)")
    subgrid_wind_tau_hours: float = Field(6.0, gt=0, description="its OU time scale (h)")
    tas_mean_c: float = Field(-12.0, description="annual mean air temperature (degC)")
    tas_amplitude_c: float = Field(14.0, ge=0, description="seasonal amplitude (degC); coldest on tas_coldest_day")
    tas_coldest_day: float = Field(20.0, description="day of year of the coldest air (days after 1 Jan)")
    tas_cap_c: float | None = Field(0.0, description="cap on air temperature over ice (degC); null = no cap")
    relative_humidity: float = Field(0.9, gt=0, le=1, description="huss = RH x saturation over ice at tas")
    surface_pressure: float = Field(101325.0, gt=0, description="(Pa), for huss")
    snowfall_scale: float = Field(1.0, ge=0, description="multiplies the MU71 snowfall climatology")
    ocean_gyre_speed: Range = Field(default_factory=lambda: Range(lo=0.01, hi=0.03),
                                    description="benchmark gyre amplitude U0 (m s-1), drawn per run")
    ocean_eddy_speed: float = Field(0.02, ge=0, description="eddy current std (m s-1)")
    ocean_eddy_length: float = Field(100e3, gt=0, description="eddy streamfunction correlation length (m)")
    ocean_eddy_tau_days: float = Field(20.0, gt=0, description="eddy OU time scale (days)")


class RegionForcingConfig(ForcingConfig):
    """`ForcingConfig` plus the region's storm track, latitude-dependent climate and coastal currents
    (`training.data.region_forcing`)."""

    tas_reference_lat: float = Field(60.0, ge=-90, le=90, description="latitude (deg N) of tas_mean_c")
    tas_lat_gradient_c: float = Field(-0.5, description="change of the annual mean air temperature per degree "
                                                          "north (degC)")
    sw_transmissivity: float = Field(0.575, gt=0, le=1, description="surface / top-of-atmosphere short-wave")
    storm_heading_deg: float = Field(100.0, description="mean bearing of storm tracks (deg clockwise from north)")
    storm_heading_spread_deg: float = Field(30.0, ge=0, le=180, description="tracks within ± this of the mean")
    coastal_current_width_km: float = Field(60.0, gt=0, description="width w of the coastal taper tanh(d/w) (km)")
    coastal_current_cyclonic: bool = Field(True, description="boundary current counter-clockwise (cyclonic)")


class SplitSeeds(StrictConfig):
    """Seeds of the twin runs per split; every seed is one run (one truth trajectory)."""

    train: list[int] = Field(default_factory=lambda: [1, 2])
    val: list[int] = Field(default_factory=lambda: [3])
    test: list[int] = Field(default_factory=lambda: [4])

    @model_validator(mode="after")
    def _disjoint(self) -> "SplitSeeds":
        seen: dict[int, str] = {}
        for split in ("train", "val", "test"):
            for s in getattr(self, split):
                if s in seen:
                    raise ValueError(f"seed {s} is in both '{seen[s]}' and '{split}': splits must be separate runs")
                seen[s] = split
        if not self.train:
            raise ValueError("'train' needs at least one seed")
        return self


class InitialIceConfig(StrictConfig):
    """Initial truth state (physics.md §5): compact ice with a smooth random thickness perturbation, d = 1."""

    concentration: Range = Field(default_factory=lambda: Range(lo=0.95, hi=1.0))
    thickness: Range = Field(default_factory=lambda: Range(lo=0.5, hi=1.5), description="(m)")
    snow_thickness: float = Field(0.05, ge=0, description="(m)")
    length_scale: float = Field(100e3, gt=0, description="correlation length of the perturbation (m)")


class GenerateConfig(StrictConfig):
    """Twin-experiment training pairs: truth on the refined grid, coarse 12 h re-forecasts from its coarse-graining."""

    refinement: int = Field(2, ge=1, description="truth grid = coarse grid refined by this factor")
    seeds: SplitSeeds = Field(default_factory=SplitSeeds)
    start: str = Field(DEFAULT_START, description="start of the first run (spin-up included); run i starts i years later")
    spinup_days: float = Field(30.0, ge=0, description="truth spin-up, discarded")
    run_days: float = Field(180.0, gt=0.5, description="retained length of every run (days); windows = 2 per day. "
                            "Default: 4 runs of 30 + 180 days (Oct-Apr) ≈ 6 min on 2 cores")
    initial: InitialIceConfig = Field(default_factory=InitialIceConfig)
    forecast: Literal["coarse", "persistence"] = Field(
        "coarse", description="the pairs' forecast_*: coarse = the coarse model's 12 h forecast from C(truth) (twin "
        "pairs for a corrector); persistence = initial_* itself, no coarse model runs (emulator pairs: an emulator "
        "reads only initial_*, reference_* and the forcing; with refinement 1 the BBM learns the BBM on its own grid "
        "and generation costs the truth alone, docs/arctic.md)")
    coarse_stress_start: Literal["carry", "zero"] = Field(
        "carry", description="coarse stresses at each re-forecast start. carry: the coarse model's own stresses from "
        "its previous 12 h forecast (the state is reset to C(truth), the mEVP stresses are kept) — exactly what a "
        "coupled run does after each correction; zero: restart from zero stresses, which mEVP needs many steps to "
        "rebuild in compact ice (about one e-fold per N=200 iterations at alpha ~ 1000), so the forecast drifts "
        "towards free drift and its error is dominated by that spin-up shock")
    coarse_spinup_steps: int = Field(
        8, ge=0, description="carry mode: the coarse model is cycled this many 12 h steps alongside the end of the "
        "truth spin-up (reset to C(truth) each step) so that its stresses are developed at the first window")
    drift_segment_days: float = Field(
        0.0, ge=0, description="> 0: append drift windows to the splits in `drift_splits` — free coarse-model runs "
        "restarted from the reference every this many days, so the corrector also learns the states a coupled run "
        "drifts into (training.data.drift); 0 = off")
    drift_splits: list[Literal["train", "val", "test"]] = Field(["train"], description="splits given drift windows")
    dtype: Literal["float32", "float64"] = Field("float32", description="storage type (residuals computed in float64)")
    chunk_time: int = Field(64, ge=1, description="longest NetCDF chunk along time (shorter on large grids: "
                            "training.data.io.time_chunk)")

    _check_start = field_validator("start")(classmethod(lambda cls, v: _parse_start(v)))

    @property
    def n_windows(self) -> int:
        return int(round(self.run_days * _STEPS_PER_DAY))

    @property
    def n_spinup(self) -> int:
        return int(round(self.spinup_days * _STEPS_PER_DAY))


class PrepareConfig(StrictConfig):
    """Ingestion of reference data (e.g. neXtSIM output) into training pairs: mapping, checks, splits."""

    state_files: list[str] = Field(description="NetCDF files with the reference state (concatenated along time)")
    forcing_files: list[str] = Field(description="NetCDF files with the forcing on the same grid and times")
    state: dict[str, VariableSource] = Field(description="model name (sic, sit, snt, siu, siv, damage) -> source")
    forcing: dict[str, VariableSource] = Field(description="model forcing name (uas, …) -> source")
    dims: dict[str, str] = Field(default_factory=lambda: {"time": "time", "y": "y", "x": "x"},
                                 description="model dim -> file dim name")
    forcing_dims: dict[str, str] | None = Field(None, description="model dim -> dim name in the forcing files, "
                                                "when they differ from the state files' (null = as `dims`)")
    time_resample: Literal["snapshot", "mean"] = Field(
        "snapshot", description="state files more often than 12-hourly (e.g. 6-hourly): the 00/12 UTC record "
        "(snapshot) or the mean over t ± 6 h (mean)")
    mask_variable: str | None = Field(None, description="ocean mask in the state files (nonzero = ocean, or a CF "
                                      "flag variable whose flag_meanings say land/ocean); null = ocean where sic is "
                                      "finite at the first time")
    velocity_points: Literal["centre", "face", "corner"] = Field(
        "centre", description="where siu/siv live in the file: cell centres (neXtSIM CG/DG output, averaged to "
        "C-grid faces here), already on east/north faces, or north-east corners (B-grid)")
    thickness_is_mean: bool = Field(False, description="true if `sit` is the cell-mean (V = A h, e.g. CMIP "
                                    "sivol) instead of the thickness of the ice-covered part")
    forecasts: ForecastFilesConfig | None = Field(None, description="the user's model forecasts; null = re-run "
                                                  "the built-in coarse model from every reference state")
    splits: dict[Literal["train", "val", "test"], list[str]] = Field(
        description="split -> [first, last] window start (ISO dates, inclusive)")
    coordinate_tolerance: float = Field(1e-3, gt=0, description="relative tolerance of the x/y spacing check")
    dtype: Literal["float32", "float64"] = "float32"
    chunk_time: int = Field(64, ge=1, description="longest NetCDF chunk along time (training.data.io.time_chunk)")

    @field_validator("state")
    @classmethod
    def _state_names(cls, v: dict[str, VariableSource]) -> dict[str, VariableSource]:
        allowed = {"sic", "sit", "snt", "siu", "siv", "damage"}
        unknown = set(v) - allowed
        if unknown:
            raise ValueError(f"unknown state variable(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        missing = {"sic", "sit", "siu", "siv"} - set(v)
        if missing:
            raise ValueError(f"state mapping lacks {sorted(missing)}")
        return only_forcing_accumulates(v, "state")

    @field_validator("splits")
    @classmethod
    def _split_ranges(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, rng in v.items():
            if len(rng) != 2:
                raise ValueError(f"split '{name}': expected [first, last], got {rng}")
            a, b = (_parse_start(s) for s in rng)
            if datetime.fromisoformat(b) < datetime.fromisoformat(a):
                raise ValueError(f"split '{name}': last {b} is before first {a}")
        if "train" not in v:
            raise ValueError("splits need a 'train' range")
        return v


def _physics_types():
    from fortran_stub.config import CoarsePhysicsConfig, GridConfig
    from fortran_stub.truth_config import TruthPhysicsConfig
    return GridConfig, CoarsePhysicsConfig, TruthPhysicsConfig


_Grid, _Coarse, _Truth = _physics_types()


class TwinConfig(StrictConfig):
    """Everything `run_generate` reads (the CLI's composed run config may hold more sections).

    With `region` (a `RegionGrid`, inline or the path of its YAML) the twin runs on real geography
    (`training.data.region_twin`): `grid`'s nx, ny, dx are the region's (filled in when absent), the masks and
    latitudes come from the coastline data, and `forcing` is a `RegionForcingConfig` (inline or a YAML path)."""

    grid: _Grid = Field(default_factory=_Grid)
    physics: _Coarse = Field(default_factory=_Coarse, description="coarse model physics")
    truth: _Truth = Field(default_factory=_Truth, description="BBM truth physics")
    region: RegionGrid | None = Field(None, description="real region (RegionGrid, inline or a YAML path); "
                                      "null = the closed box")
    forcing: SerializeAsAny[ForcingConfig] = Field(default_factory=ForcingConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)

    @model_validator(mode="before")
    @classmethod
    def _region_sections(cls, data):
        """Region given: load the region and forcing YAML paths, take nx/ny/dx from the region (a conflicting
        value is an error) and read `forcing` as a RegionForcingConfig."""
        if not isinstance(data, dict) or data.get("region") is None:
            return data
        data = dict(data)
        region = data["region"]
        if isinstance(region, str):
            region = _yaml_section(region, "region")
        region = RegionGrid.model_validate(region)
        ny, nx = region.shape
        grid = dict(data.get("grid") or {})
        for key, value in (("nx", nx), ("ny", ny), ("dx", region.dx)):
            if key in grid and float(grid[key]) != float(value):
                raise ValueError(f"grid.{key} = {grid[key]} but the region {region.name} has {key} = {value}: "
                                 f"leave grid.{key} out (it comes from the region)")
            grid[key] = value
        forcing = data.get("forcing") or {}
        if isinstance(forcing, str):
            forcing = _yaml_section(forcing, "forcing")
        data.update(region=region, grid=grid, forcing=RegionForcingConfig.model_validate(
            forcing.model_dump() if isinstance(forcing, ForcingConfig) else forcing))
        return data


def _yaml_section(path: str, name: str) -> dict:
    """The mapping in the YAML file `path` (a config section given by path); ValueError naming `name`."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{name}: file {p} not found")
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{name}: {p} does not hold a mapping")
    return data


class PrepareRunConfig(StrictConfig):
    """Everything `run_prepare` reads."""

    grid: _Grid = Field(default_factory=_Grid)
    physics: _Coarse = Field(default_factory=_Coarse, description="coarse model physics")
    prepare: PrepareConfig
