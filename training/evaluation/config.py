"""Settings of `icecorr evaluate` (the `evaluate:` section of a run config)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from icecorr.base.variables import ML_VARIABLES


class EvaluateConfig(BaseModel):
    """Settings of `icecorr evaluate` (strict: unknown keys are an error)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    variables: list[str] = Field(list(ML_VARIABLES), min_length=1, description="variables to score")
    sigma: dict[str, float] | None = Field(
        None, description="climatological std per variable for nRMSE; None = computed from the reference")
    first_lead_hours: Literal["auto"] | float = Field(
        "auto", description="lead of the first record of files without `step`: 'auto' = 0 if it equals the "
        "reference (an initial state), else 12")
    summary_leads_hours: tuple[float, float] = Field((12.0, 360.0), description="short and long lead of the summary")
    spectrum_leads_hours: list[float] = Field(
        [12.0, 120.0, 360.0], min_length=1, description="leads (hours) of the spectra, small-scale power ratios and "
        "maps (the nearest available lead); e.g. add 1200 for 50 days of a long rollout")
    dx_m: float | None = Field(None, gt=0, description="cell size (m) if the reference has no x coordinate/grid_dx")
    ice_threshold: float = Field(0.15, ge=0, le=1, description="sic above which deformation is computed; ice edge")
    spectrum_detrend: Literal["none", "mean", "linear"] = "mean"
    spectrum_window: Literal["none", "hann"] = Field(
        "hann", description="taper before the FFT: the closed box's walls are not periodic, and an unwindowed "
        "field's jump at the border leaks power into every wavenumber")
    velocity_reference: Literal["instantaneous", "mean12h"] = Field(
        "instantaneous", description="score siu/siv against the reference at each time ('instantaneous') or "
        "against its mean over the preceding 12 h (`reference_siu_mean12h` of twin pair files: the BBM truth's "
        "velocity rings elastically within a step)")
    small_scale_max_wavelength_cells: float = Field(4.0, gt=2, description="band of the small-scale power ratio")
    scaling_q: list[float] = Field([1.0, 2.0, 3.0], min_length=1)
    scaling_levels: int | None = Field(None, ge=1, description="coarsest block 2^levels cells; None = leave 2×2 blocks")
    scaling_min_valid_fraction: float = Field(0.5, gt=0, le=1)
    pdf_range: tuple[float, float] = Field((1e-4, 10.0), description="deformation PDF bin range (day⁻¹)")
    pdf_bins: int = Field(40, ge=2)
    spread_error_bins: int = Field(10, ge=2, description="equal-weight classes of ensemble spread in the spread–"
                                   "error reliability of ensembles (training.evaluation.spread_reliability)")
    rank_seed: int = Field(0, description="seed of the random tie-breaking in rank histograms")
    map_window: int = Field(0, ge=0)
    map_member: int = Field(0, ge=0)
    persistence: bool = Field(True, description="add a 'persistence' baseline (the reference at lead 0 kept "
                              "constant; sic/sit/snt only: velocity persistence is a strawman) when the first run "
                              "starts with its initial state")
    climatology: list[str] | None = Field(None, description="reference files of other years (e.g. the training "
                                          "pairs): add a 'climatology' baseline, their mean state at the same "
                                          "day of year")
    climatology_window_days: float = Field(15.0, gt=0, description="± days of year averaged by the climatology")
    coastal_band_cells: float = Field(2.0, ge=0, description="on a grid with land, also score the ocean cells "
                                      "within this many cells of land (rmse_coastal, …) apart from the rest "
                                      "(rmse_open, …); 0 = off")
    floor: str | None = Field(None, description="floor file of `icecorr floor`; None = floor.nc beside the "
                              "reference if there is one")
    plots: bool = True
