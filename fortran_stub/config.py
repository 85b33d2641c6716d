"""Typed configuration of the grid and of the Fortran physics (mirrors the Fortran parameter types)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Union

import numpy as np
from pydantic import Field, field_validator, model_validator

from icecorr.base.config import StrictConfig

#: Earth's rotation rate Omega (s-1): f = 2 Omega sin(latitude)
EARTH_ROTATION = 7.2921e-5

#: a (ny, nx) field given inline (nested lists; a NumPy array is converted) or as the path of a .npy or NetCDF file
GridField = Union[list[list[float]], str, None]


def load_grid_field(value, name: str, aliases: tuple[str, ...] = ()) -> np.ndarray:
    """`value` (nested lists, array, or the path of a .npy file or a NetCDF file holding variable `name` or one of
    `aliases`) as a float64 (ny, nx) array. ValueError naming the field and the file when it cannot be read."""
    if not isinstance(value, str):
        return np.asarray(value, dtype=np.float64)
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"{name}: file {path} not found")
    if path.suffix == ".npy":
        return np.asarray(np.load(path), dtype=np.float64)
    from icecorr.base.files import open_netcdf

    with open_netcdf(path, f"{name} file") as ds:
        for var in (name, *aliases):
            if var in ds:
                return np.asarray(ds[var].values, dtype=np.float64)
    raise ValueError(f"{name}: {path} holds none of the variables {(name, *aliases)}")


def refine_linear(a: np.ndarray, factor: int) -> np.ndarray:
    """A cell-centred (ny, nx) field at the centres of a grid `factor` times finer: linear in each direction
    between the coarse centres, extrapolated linearly beyond the outermost ones (exact for a linear field)."""
    out = np.asarray(a, dtype=np.float64)
    for axis in (0, 1):
        n = out.shape[axis]
        pos = (np.arange(n * factor) + 0.5) / factor - 0.5  # fine centres in coarse index units
        i0 = np.clip(np.floor(pos).astype(int), 0, max(n - 2, 0))
        w = pos - i0 if n > 1 else np.zeros_like(pos)
        lo, hi = np.take(out, i0, axis=axis), np.take(out, np.minimum(i0 + 1, n - 1), axis=axis)
        shape = [1, 1]
        shape[axis] = -1
        out = lo + w.reshape(shape) * (hi - lo)
    return out


class GridConfig(StrictConfig):
    """Regular Arakawa C-grid with closed walls. Default: the 512 km benchmark box at 16 km, all ocean, constant f.

    `mask` (optional): ocean mask (ny, nx), 1 = ocean, 0 = land, inline or as a path (.npy, or NetCDF variable
    `mask`). Land is treated like the walls (docs/physics-land.md). `latitude` (optional): cell-centre latitudes
    (degrees north), inline or a path (.npy, or NetCDF `latitude`/`lat`); then the Coriolis parameter is the field
    f = 2 Omega sin(latitude), else the physics' constant `coriolis`. Paths are read relative to the working
    directory. Both are validated on construction (shape, 0/1 only with an ocean cell, latitudes in [-90, 90]).
    """

    nx: int = Field(32, ge=4, description="cells along x")
    ny: int = Field(32, ge=4, description="cells along y")
    dx: float = Field(16_000.0, gt=0, description="cell size (m), same along x and y")
    mask: GridField = Field(None, description="ocean mask (ny, nx): 1 ocean, 0 land; inline or a .npy/NetCDF path; "
                                              "none = all ocean (the closed box)")
    latitude: GridField = Field(None, description="cell-centre latitudes (degrees north) (ny, nx), inline or a "
                                                  ".npy/NetCDF path: Coriolis f = 2 Omega sin(latitude); none = "
                                                  "the constant physics.coriolis")

    @field_validator("mask", "latitude", mode="before")
    @classmethod
    def _arrays_as_lists(cls, value):
        """A NumPy array (or Path) is stored as nested lists (or a string), so that the config dumps to YAML."""
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, Path):
            return str(value)
        return value

    @model_validator(mode="after")
    def _check_fields(self) -> "GridConfig":
        if self.mask is not None:
            self.ocean_mask()
        if self.latitude is not None:
            self.latitudes()
        return self

    def _field(self, value, name: str, aliases: tuple[str, ...] = ()) -> np.ndarray:
        arr = load_grid_field(value, name, aliases)
        if arr.shape != (self.ny, self.nx):
            raise ValueError(f"{name}: shape {arr.shape}, expected (ny, nx) = ({self.ny}, {self.nx})")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: contains NaN or infinite values")
        return arr

    def ocean_mask(self) -> np.ndarray:
        """(ny, nx) float64: 1 ocean, 0 land (all ones without a mask). ValueError for values other than 0 and 1,
        a wrong shape, or no ocean cell."""
        if self.mask is None:
            return np.ones((self.ny, self.nx))
        m = self._field(self.mask, "mask")
        if not np.all((m == 0.0) | (m == 1.0)):
            raise ValueError("mask: values must be 0 (land) or 1 (ocean)")
        if not m.any():
            raise ValueError("mask: no ocean cell (every cell is land)")
        return m

    def has_land(self) -> bool:
        """True if the mask has a land cell."""
        return self.mask is not None and bool((self.ocean_mask() == 0.0).any())

    def latitudes(self) -> np.ndarray | None:
        """(ny, nx) cell-centre latitudes (degrees north), or None when the grid has none."""
        if self.latitude is None:
            return None
        lat = self._field(self.latitude, "latitude", ("lat",))
        if np.abs(lat).max() > 90.0:
            raise ValueError("latitude: values outside [-90, 90] degrees")
        return lat

    def coriolis_field(self, constant: float) -> np.ndarray:
        """(ny, nx) Coriolis parameter (s-1) at the cell centres: 2 Omega sin(latitude) if the grid has latitudes,
        else `constant` everywhere (the box; bit-identical to a scalar f inside the models)."""
        lat = self.latitudes()
        if lat is None:
            return np.full((self.ny, self.nx), float(constant))
        return 2.0 * EARTH_ROTATION * np.sin(np.deg2rad(lat))

    def refined(self, factor: int) -> "GridConfig":
        """The same box at `factor` times finer resolution (twin-experiment truth grid): each coarse cell's mask
        value is repeated on its factor × factor fine cells (so the coarse-graining rule of
        `training.data.coarsegrain.coarse_ocean_mask` gives the mask back), latitudes are interpolated linearly."""
        mask = None if self.mask is None else np.kron(self.ocean_mask(), np.ones((factor, factor)))
        lat = self.latitudes()
        return GridConfig(nx=self.nx * factor, ny=self.ny * factor, dx=self.dx / factor, mask=mask,
                          latitude=None if lat is None else refine_linear(lat, factor))


LIMITER_NAMES = ("upwind", "minmod", "vanleer", "mc")  # Fortran codes 0..3 (seaice_transport)


class ThermoConfig(StrictConfig):
    """Zero-layer thermodynamics and slab mixed layer (physics.md §1.6); mirrors Fortran `thermo_params`."""

    rho_ice: float = Field(917.0, gt=0, description="ice density for latent heat (kg m-3)")
    rho_snow: float = Field(330.0, gt=0, description="snow density (kg m-3)")
    rho_water: float = Field(1026.0, gt=0, description="sea-water density (kg m-3)")
    rho_air: float = Field(1.3, gt=0, description="air density (kg m-3)")
    k_ice: float = Field(2.0334, gt=0, description="ice conductivity (W m-1 K-1)")
    k_snow: float = Field(0.3096, gt=0, description="snow conductivity (W m-1 K-1)")
    semtner_gamma: float = Field(1.065, gt=0, description="Semtner conductivity factor (1)")
    emissivity: float = Field(0.996, ge=0, le=1, description="long-wave emissivity (1)")
    i0: float = Field(0.17, ge=0, le=1, description="penetrating short-wave fraction of bare ice (1)")
    ch_ice: float = Field(1.3e-3, ge=0, description="bulk heat-transfer coefficient over ice (1)")
    ch_water: float = Field(0.83e-3, ge=0, description="bulk heat-transfer coefficient over water (1)")
    albedo_water: float = Field(0.07, ge=0, le=1, description="open-water albedo (1)")
    h0_lateral: float = Field(0.25, gt=0, description="Hibler lead-closing thickness h0 (m)")
    phi_melt: float = Field(0.5, ge=0, le=1, description="Hibler lateral-melt factor (1)")
    t_freeze: float = Field(-1.8, description="sea-water freezing point (degC)")
    mu_salinity: float = Field(0.055, ge=0, description="liquidus slope (K psu-1)")
    ice_salinity: float = Field(5.0, ge=0, description="bulk ice salinity (psu)")
    latent_fusion: float = Field(333.55e3, gt=0, description="latent heat of fusion (J kg-1)")
    latent_sublimation: float = Field(2.834e6, gt=0, description="latent heat of sublimation (J kg-1)")
    latent_vaporisation: float = Field(2.501e6, gt=0, description="latent heat of vaporisation (J kg-1)")
    cp_air: float = Field(1004.64, gt=0, description="specific heat of air (J kg-1 K-1)")
    cp_water: float = Field(4186.84, gt=0, description="specific heat of sea water (J kg-1 K-1)")
    mixed_layer_depth: float = Field(10.0, gt=0, description="slab mixed-layer depth (m)")
    sst_restore_time: float = Field(30 * 86400.0, gt=0, description="slab restoring time scale (s)")
    sst_restore_target: float = Field(-1.8, description="slab restoring temperature (degC)")
    air_pressure: float = Field(101325.0, gt=0, description="surface pressure for saturation humidity (Pa)")
    latent_heat_on: bool = Field(True, description="include the bulk latent heat flux")


class CoarsePhysicsConfig(StrictConfig):
    """Coarse mEVP-VP model (physics.md §1); every field except `thermo` mirrors Fortran `coarse_params`.

    Defaults: benchmark column of physics.md §1.2-1.3, aEVP (c* = 4, alpha_min = 5), dt_dyn = 3600 s, N = 200.
    """

    dt_dyn: float = Field(3600.0, gt=0, le=43200, description="dynamics/thermodynamics step, upper bound (s)")
    n_evp: int = Field(200, ge=1, description="mEVP iterations per dynamics step")
    aevp: bool = Field(True, description="adaptive alpha = beta (Kimmritz 2016); false uses alpha_fixed")
    alpha_fixed: float = Field(300.0, gt=0, description="fixed alpha = beta when aevp is false")
    aevp_cstar: float = Field(4.0, gt=0, description="aEVP c* (1)")
    aevp_alpha_min: float = Field(5.0, gt=0, description="aEVP minimum alpha (1)")
    dynamics_on: bool = Field(True, description="momentum solve (false: ice at rest)")
    rheology_on: bool = Field(True, description="internal stress (false: free drift)")
    transport_on: bool = Field(True, description="advection of A, V, Vs")
    thermo_on: bool = Field(True, description="thermodynamics and slab mixed layer")
    rho_ice: float = Field(900.0, gt=0, description="ice density in the momentum equation (kg m-3)")
    rho_snow: float = Field(330.0, gt=0, description="snow density in the momentum equation (kg m-3)")
    rho_air: float = Field(1.3, gt=0, description="air density (kg m-3)")
    rho_water: float = Field(1026.0, gt=0, description="sea-water density (kg m-3)")
    c_air: float = Field(1.2e-3, ge=0, description="air-ice drag coefficient C_a (1)")
    c_water: float = Field(5.5e-3, ge=0, description="ice-ocean drag coefficient C_w (1)")
    turning_angle: float = Field(0.0, ge=-90, le=90, description="ocean turning angle theta_w (degrees)")
    coriolis: float = Field(1.46e-4, description="Coriolis parameter f (s-1)")
    p_star: float = Field(27.5e3, ge=0, description="ice strength P* (N m-2)")
    c_star: float = Field(20.0, ge=0, description="strength concentration parameter C* (1)")
    ecc: float = Field(2.0, gt=0, description="yield-ellipse aspect ratio e (1)")
    delta_min: float = Field(2.0e-9, gt=0, description="Delta regularisation Delta_min (s-1)")
    replacement_pressure: bool = Field(True, description="P_R = P Delta/Delta* (no creep at rest)")
    limiter: Literal["upwind", "minmod", "vanleer", "mc"] = Field("mc", description="transport slope limiter")
    cfl_max: float = Field(0.5, gt=0, le=1, description="Courant number per transport substep")
    h_min: float = Field(0.01, ge=0, description="ice thinner than this (m, V/A) is removed")
    h_max: float = Field(30.0, gt=0, description="thickness cap of partly covered cells (m): A is raised to V/h_max "
                         "(volume kept), so that area and volume transported apart cannot leave a trace of area "
                         "holding metres of ice")
    a_min: float = Field(1.0e-12, ge=0, description="ice with lower concentration is removed (1)")
    thermo: ThermoConfig = Field(default_factory=ThermoConfig, description="thermodynamics parameters")

    def fortran_values(self) -> dict[str, float | int | bool]:
        """Component values of the Fortran `coarse_params` type (limiter as its integer code)."""
        out = self.model_dump(exclude={"thermo"})
        out["limiter"] = LIMITER_NAMES.index(self.limiter)
        return out


def physics_parameter(name: str) -> tuple[list[str], str]:
    """(sections, key) of the real-valued coarse-physics parameter `name`: a field of CoarsePhysicsConfig ("p_star")
    or, dotted, of one of its sections ("thermo.k_snow"). ValueError naming it otherwise."""
    *sections, key = name.split(".")
    config = CoarsePhysicsConfig
    for part in sections:
        field = config.model_fields.get(part)
        config = field.annotation if field is not None else None
        if not (isinstance(config, type) and hasattr(config, "model_fields")):
            break
    else:
        field = config.model_fields.get(key)
        if field is not None and field.annotation is float:
            return sections, key
    raise ValueError(f"{name!r} is not a real parameter of the coarse physics")
