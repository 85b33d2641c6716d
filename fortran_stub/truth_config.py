"""Typed configuration of the BBM truth model (physics.md §2), mirrored onto the Fortran type `truth_params`.

Defaults: nextsimDG/neXtSIM BBM values (physics.md §2.2 table), for a truth grid (typically ×2 finer), with
* `e_reduction = 16`: Young's modulus E/16 lets the explicit elastic substep be 4× longer (physics.md §2.2
  "acceleration knob"); the P-wave still crosses the 512 km box in ≈ 40 min, far below the 12 h step.
  Measured (benchmarks/truth_model.py, shared 2-core machine, noisy): 64² at 8 km takes ≈ 0.4–0.8 s per 12 h
  (≈ 5–10 min per simulated year) against ≈ 2.0–2.5 s with the full E. On a 4-day storm run β(1) of the 12 h
  deformation was 0.14 (E), 0.17 (E/16), 0.19 (E/64) and P99 of the total deformation 0.84, 0.79, 0.80 day⁻¹;
  the broken fraction (d < 0.5) is smaller with the knob (0.37, 0.18, 0.11): the knob weakens the ice somewhat;
* the elastic substep is set by the P-wave speed c_p = (E/(ρ(1−ν²)))^½ ≈ 863 m s⁻¹ (not the shear-wave speed
  ≈ 500 m s⁻¹): the explicit staggered scheme needs c_p Δt/Δx < 1/√2; `cfl_elastic = 0.6` gives 5.6 s at 8 km;
* the damage time t_d = Δx (2(1+ν)ρ/(E e^{−C(1−A)}))^½ uses the undamaged modulus (nextsimDG multiplies E by d):
  with t_d ∝ d^−½ the relaxation stalls in broken ice and stresses stayed frozen far outside the envelope;
* `air_drag = 1.5e-3` against the coarse model's 1.2e-3: the optional systematic parameter bias of §2.1.6
  (set `air_drag: 1.2e-3` to switch the purely systematic part off).
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from icecorr.base.config import StrictConfig
from .config import ThermoConfig

LIMITER_CODES = {"upwind": 0, "minmod": 1, "vanleer": 2, "mc": 3}


class TruthPhysicsConfig(StrictConfig):
    """Physics and numerics of the BBM truth. Units in the field descriptions."""

    # momentum
    rho_ice: float = Field(900.0, gt=0, description="ice density in the momentum equation (kg m-3)")
    rho_snow: float = Field(330.0, gt=0, description="snow density (kg m-3)")
    rho_air: float = Field(1.3, gt=0, description="air density (kg m-3)")
    rho_water: float = Field(1026.0, gt=0, description="sea-water density (kg m-3)")
    air_drag: float = Field(1.2e-3, ge=0, description="air-ice drag C_a (1); as the coarse model by default. A "
                            "parametric bias (physics.md §2.1.6, e.g. 1.5e-3) made the 12 h coarse error less "
                            "predictable from the coarse state in our tests: residuals grew less systematic")
    water_drag: float = Field(5.5e-3, ge=0, description="ice-ocean drag C_w (1)")
    turning_angle: float = Field(0.0, ge=-90, le=90, description="ocean turning angle theta_w (degrees)")
    coriolis: float = Field(1.46e-4, description="Coriolis parameter f (s-1)")
    # BBM rheology (Olason et al. 2022; nextsimDG MEBParameters)
    young: float = Field(5.96e8, gt=0, description="undamaged Young's modulus E (Pa)")
    e_reduction: float = Field(16.0, ge=1, description="acceleration knob k: E/k, elastic substep k^0.5 longer")
    poisson: float = Field(1.0 / 3.0, gt=0, lt=0.5, description="Poisson ratio nu (1)")
    lambda0: float = Field(1.0e7, gt=0, description="undamaged viscous relaxation time (s)")
    alpha: float = Field(5.0, ge=1, description="exponent of the relaxation time (1)")
    compaction: float = Field(20.0, ge=0, description="C in exp(-C(1-A)) (1)")
    p0: float = Field(1.0e4, ge=0, description="pressure-cap scale P0 (N m-1 per m^p_exp)")
    p_exp: float = Field(1.5, gt=0, description="thickness exponent of the pressure cap (1)")
    friction: float = Field(0.7, ge=0, description="Mohr-Coulomb friction coefficient mu = tan(phi) (1)")
    cohesion_lab: float = Field(2.0e6, gt=0, description="lab-scale cohesion c_lab (Pa)")
    l_lab: float = Field(0.1, gt=0, description="lab length scale of c_lab (m); c = c_lab (l_lab/dx)^0.5")
    cohesion_factor_min: float = Field(1.0, gt=0, description="random cohesion factor U(min, max) per cell (1)")
    cohesion_factor_max: float = Field(2.0, gt=0, description="upper bound of the random cohesion factor (1)")
    n_max: float = Field(1.0e10, gt=0, description="lab-scale compressive strength (Pa), scaled like cohesion")
    healing_days: float = Field(15.0, gt=0, description="healing time scale t_h (days)")
    # numerics
    cfl_elastic: float = Field(0.6, gt=0, le=0.7, description="elastic substep = cfl dx / c_p (P-wave speed)")
    dt_adv: float = Field(3600.0, gt=0, le=43200, description="advective (transport/thermodynamics) step (s)")
    h_min_dyn: float = Field(0.01, ge=0, description="faces with less mean ice volume (m) are kept at rest")
    limiter: Literal["upwind", "minmod", "vanleer", "mc"] = Field("mc", description="transport limiter")
    cfl_max: float = Field(0.5, gt=0, le=1, description="Courant number per transport substep")
    h_min: float = Field(0.01, ge=0, description="ice thinner than this (m, V/A) is removed")
    h_max: float = Field(30.0, gt=0, description="thickness cap of partly covered cells (m): A >= V/h_max")
    a_min: float = Field(1.0e-12, ge=0, description="minimum concentration (1)")
    dynamics_on: bool = True
    transport_on: bool = True
    thermo_on: bool = True
    thermo: ThermoConfig = Field(default_factory=ThermoConfig,
                                 description="thermodynamics parameters (same scheme and defaults as the coarse model)")

    @model_validator(mode="after")
    def _check_ranges(self) -> "TruthPhysicsConfig":
        if self.cohesion_factor_max < self.cohesion_factor_min:
            raise ValueError("cohesion_factor_max must be >= cohesion_factor_min")
        return self

    def pwave_speed(self) -> float:
        """P-wave speed (m s-1) of undamaged compact ice with the reduced modulus."""
        return math.sqrt(self.young / self.e_reduction / (self.rho_ice * (1.0 - self.poisson ** 2)))

    def elastic_substep(self, dx: float) -> float:
        """Largest elastic substep (s) at cell size dx (m)."""
        return self.cfl_elastic * dx / self.pwave_speed()

    def cohesion_scale(self, dx: float) -> float:
        """(l_lab/dx)^0.5: scale factor of lab cohesion to the grid scale (1)."""
        return math.sqrt(self.l_lab / dx)

    def fortran_values(self, dx: float) -> dict[str, float | int | bool]:
        """Component values of the Fortran `truth_params` type for cell size dx (m)."""
        skip = {"cohesion_lab", "l_lab", "cohesion_factor_min", "cohesion_factor_max",
                "healing_days", "limiter", "thermo"}
        out: dict[str, float | int | bool] = {k: v for k, v in self.model_dump().items() if k not in skip}
        out["healing_time"] = self.healing_days * 86400.0
        out["limiter"] = LIMITER_CODES[self.limiter]
        out["scale_coef"] = self.cohesion_scale(dx)
        return out
