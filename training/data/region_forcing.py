"""Synthetic forcing on a real region's grid (training.data.geography): the variables, units and 12 h steps of
`training.data.forcing`, with the geography put in:

* storms cross the region along a track: headings drawn around a geographic bearing (`storm_heading_deg`, e.g.
  100° = towards east-south-east, the usual path of Hudson Bay lows) and turned into grid directions with the
  meridian convergence; each storm is at mid-life somewhere in the region (plus the spawn margin), so it enters
  from the upwind side and leaves downwind. Sizes, strengths, lifetimes and speeds are those of `VortexConfig`;
* `tas` (K) follows latitude: the seasonal cosine of `ForcingConfig` at `tas_reference_lat`, plus
  `tas_lat_gradient_c` per degree north, plus the cyclones' warm cores;
* `rsds` (W m-2): daily-mean top-of-atmosphere insolation at each cell's latitude times a constant transmissivity
  (0.575 gives the annual mean of the MU71 climatology, 100 W m-2, at 80°N); `rlds` (W m-2): the MU71 climatology
  scaled by (T_a / T_arctic)^4, T_arctic the default (central-Arctic) seasonal cycle MU71 was measured in;
* `uo`, `vo` (m s-1): land-aware currents from a streamfunction ψ that vanishes on land and rises over
  `coastal_current_width_km` from the coast (taper tanh(d/w)): a boundary current of the run's gyre speed along
  every coast (cyclonic, i.e. counter-clockwise, as Hudson Bay's mean circulation) plus OU eddies of
  `ocean_eddy_speed` times the same taper. u = −∂ψ/∂y, v = ∂ψ/∂x (centred differences: no divergence away from the
  coast), parallel to the coast near it, zero on land;
* winds (background + storms + truth-only subgrid noise), `huss` and `prsn` as in `training.data.forcing`.

Vectors are grid-relative (x/y of EPSG:3413, the CF `x_wind`, `sea_water_x_velocity` of the variable table). Every
field is finite on land too (winds and temperatures are those of the air over land; currents are 0 there).
"""
from __future__ import annotations

from datetime import datetime

import numpy as np
import xarray as xr
from scipy import ndimage

from fortran_stub.config import GridConfig
from icecorr.base.variables import STEP_SECONDS
from training.data.config import ForcingConfig, RegionForcingConfig
from training.data.forcing import (DAY, T0C, SyntheticForcing, Vortex, day_of_year, forcing_dataset,
                                   mu71_radiation, mu71_snowfall, saturation_specific_humidity_ice)
from training.data.geography import Geography, attach_geography, grid_north_angle
from training.data.io import write_netcdf_atomic

SOLAR_CONSTANT = 1361.0  # W m-2 (Kopp & Lean 2011)
STEFAN_BOLTZMANN = 5.670374419e-8  # W m-2 K-4


def toa_daily_insolation(lat: np.ndarray, doy: float) -> np.ndarray:
    """Daily-mean top-of-atmosphere insolation (W m-2) at latitude `lat` (degrees) on day of year `doy`
    (declination −23.44° cos(2π(doy + 10)/365), eccentricity factor 1 + 0.033 cos(2π doy/365))."""
    phi = np.deg2rad(lat)
    dec = np.deg2rad(-23.44) * np.cos(2 * np.pi * (doy + 10.0) / 365.0)
    ecc = 1.0 + 0.033 * np.cos(2 * np.pi * doy / 365.0)
    h0 = np.arccos(np.clip(-np.tan(phi) * np.tan(dec), -1.0, 1.0))  # half-day length (rad); 0 in polar night
    return SOLAR_CONSTANT / np.pi * ecc * (h0 * np.sin(phi) * np.sin(dec) + np.cos(phi) * np.cos(dec) * np.sin(h0))


def coastal_taper(mask: np.ndarray, dx: float, width: float) -> np.ndarray:
    """tanh(d / width) with d (m) the distance from the coast (half a cell from the centre of an ocean cell next to
    land) for ocean cells, 0 on land; (ny, nx)."""
    ocean = np.asarray(mask) > 0.5
    d = (ndimage.distance_transform_edt(ocean) - 0.5) * dx
    return np.where(ocean, np.tanh(np.maximum(d, 0.0) / width), 0.0)


def streamfunction_velocity(psi: np.ndarray, dx: float, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) = (−∂ψ/∂y, ∂ψ/∂x) by centred differences (m s-1 for ψ in m2 s-1), zero on land."""
    dpsi_dy, dpsi_dx = np.gradient(psi, dx)
    ocean = np.asarray(mask) > 0.5
    return np.where(ocean, -dpsi_dy, 0.0), np.where(ocean, dpsi_dx, 0.0)


class RegionForcing(SyntheticForcing):
    """Synthetic forcing on a Geography's grid (see the module docstring); the interface of SyntheticForcing
    (`resolved_at`, `noise_at`, `truth_at`, `times`), arrays (ny, nx) float64."""

    def __init__(self, cfg: RegionForcingConfig, geo: Geography, start: datetime | str, n_steps: int, seed: int):
        self.geo = geo
        ny, nx = geo.shape
        super().__init__(cfg, GridConfig(nx=nx, ny=ny, dx=geo.region.dx), start, n_steps, seed)
        dx = geo.region.dx
        self._taper = coastal_taper(geo.mask, dx, cfg.coastal_current_width_km * 1e3)
        sign = -1.0 if cfg.coastal_current_cyclonic else 1.0  # cyclonic = low ψ inside (u = −∂ψ/∂y)
        self._psi_mean = sign * self.gyre_speed * cfg.coastal_current_width_km * 1e3 * self._taper
        # eddy streamfunction filter on the full FFT grid, scaled so that −∂ψ/∂y has unit variance before the taper
        ky = 2 * np.pi * np.fft.fftfreq(ny, d=dx)[:, None]
        kx = 2 * np.pi * np.fft.fftfreq(nx, d=dx)[None, :]
        amp = np.exp(-(kx**2 + ky**2) * cfg.ocean_eddy_length**2 / 4.0)
        self._psi_filter = amp / np.sqrt(np.mean(np.abs(ky * amp) ** 2))
        self._arctic = ForcingConfig()  # the central-Arctic temperature cycle the MU71 long-wave belongs to

    def _storm_catalogue(self) -> list[Vortex]:
        """Poisson genesis (as in SyntheticForcing) with headings around the configured geographic bearing; each
        storm is at mid-life at a uniform point of the region widened by the spawn margin."""
        c, v = self.cfg, self.cfg.vortices
        rng = np.random.default_rng([self.seed, self._S_STORMS])
        t_end = (self.n_steps - 1) * STEP_SECONDS
        t = -v.lifetime_days.hi * DAY
        out: list[Vortex] = []
        if v.genesis_per_day <= 0:
            return out
        north = grid_north_angle(self.geo.region.centre_lon)  # deg clockwise from grid +y to true north
        m = v.spawn_margin
        while True:
            t += rng.exponential(DAY / v.genesis_per_day)
            if t > t_end:
                return out
            radius = rng.uniform(v.radius.lo, v.radius.hi)
            speed = min(rng.uniform(v.translation_speed.lo, v.translation_speed.hi),
                        v.max_shift_radii_per_step * radius / STEP_SECONDS)
            bearing = c.storm_heading_deg + rng.uniform(-1.0, 1.0) * c.storm_heading_spread_deg
            gamma = np.deg2rad(north + bearing)  # clockwise from grid +y
            cx, cy = speed * np.sin(gamma), speed * np.cos(gamma)
            lifetime = rng.uniform(v.lifetime_days.lo, v.lifetime_days.hi) * DAY
            xm = rng.uniform(-m * self.lx, (1 + m) * self.lx)
            ym = rng.uniform(-m * self.ly, (1 + m) * self.ly)
            out.append(Vortex(
                t0=t, lifetime=lifetime, peak_speed=rng.uniform(v.peak_speed.lo, v.peak_speed.hi), radius=radius,
                alpha=np.deg2rad(rng.uniform(v.inflow_angle_deg.lo, v.inflow_angle_deg.hi)),
                sign=1 if rng.uniform() < v.cyclone_fraction else -1,
                x0=xm - cx * lifetime / 2.0, y0=ym - cy * lifetime / 2.0, cx=cx, cy=cy))

    def _seasonal_tas_c(self, cfg: ForcingConfig, t: datetime) -> float:
        """The seasonal cosine of `cfg` at time t (degC, no warm cores, no cap)."""
        return cfg.tas_mean_c - cfg.tas_amplitude_c * np.cos(2 * np.pi * (day_of_year(t) - cfg.tas_coldest_day)
                                                             / 365.0)

    def currents_at(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Ocean currents (uo, vo) at step k (m s-1): coastal boundary current plus tapered eddies, zero on land."""
        eddy = np.real(np.fft.ifft2(np.fft.fft2(self._eddy.at(k)) * self._psi_filter))
        psi = self._psi_mean + self.cfg.ocean_eddy_speed * eddy * self._taper
        return streamfunction_velocity(psi, self.geo.region.dx, self.geo.mask)

    def resolved_at(self, k: int) -> dict[str, np.ndarray]:
        """All forcing variables at step k without the subgrid wind noise; (ny, nx) float64 arrays."""
        self._check_step(k)
        c, t = self.cfg, self.time(k)
        shape = self._xx.shape
        u_v, v_v, warm = self._vortex_fields(k)
        uas = self._background[k, 0] + u_v
        vas = self._background[k, 1] + v_v
        cap = np.minimum(1.0, c.max_wind_speed / np.maximum(np.hypot(uas, vas), 1e-12))
        tas_c = (self._seasonal_tas_c(c, t) + c.tas_lat_gradient_c * (self.geo.lat - c.tas_reference_lat)
                 + warm)
        if c.tas_cap_c is not None:
            tas_c = np.minimum(tas_c, c.tas_cap_c)
        tas = tas_c + T0C
        _, lw_arctic = mu71_radiation(t)
        t_arctic = self._seasonal_tas_c(self._arctic, t) + T0C
        uo, vo = self.currents_at(k)
        return {
            "uas": uas * cap, "vas": vas * cap, "tas": tas,
            "huss": c.relative_humidity * saturation_specific_humidity_ice(tas, c.surface_pressure),
            "rsds": c.sw_transmissivity * toa_daily_insolation(self.geo.lat, day_of_year(t)),
            "rlds": lw_arctic * (tas / t_arctic) ** 4,
            "prsn": np.full(shape, mu71_snowfall(t, c.snowfall_scale)),
            "uo": uo, "vo": vo,
        }


def generate_region_forcing(cfg: RegionForcingConfig, geo: Geography, start: datetime | str, n_steps: int,
                            seed: int, noise: bool = True) -> xr.Dataset:
    """Forcing Dataset (time, y, x) on the region's grid, 12-hourly from `start`: the resolved forcing and (if
    `noise`) the truth-only subgrid wind noise as `uas_noise`, `vas_noise`; with x/y, lat/lon, `mask`,
    `coriolis_parameter` and the `polar_stereographic` grid mapping (`attach_geography`)."""
    gen = RegionForcing(cfg, geo, start, n_steps, seed)
    fields = [{**gen.resolved_at(k), **(gen.noise_at(k) if noise else {})} for k in range(n_steps)]
    attrs = {"Conventions": "CF-1.10", "title": f"icecorr synthetic forcing on the {geo.region.name} grid",
             "seed": int(seed), "ocean_gyre_speed": gen.gyre_speed, "forcing_config": cfg.model_dump_json(),
             "coarsen": 1, "vectors": "grid-relative x/y components (EPSG:3413), not eastward/northward"}
    ds = forcing_dataset(fields, gen.times(), geo.region.dx, attrs)
    return attach_geography(ds, geo)


def write_region_forcing(path, cfg: RegionForcingConfig, geo: Geography, start: datetime | str, n_steps: int,
                         seed: int, noise: bool = True, chunk_time: int = 64, dtype: str | None = "float32"):
    """Generate the region's forcing (`generate_region_forcing`) and write it as CF NetCDF, atomically (lat/lon
    and x/y stay float64); returns the path."""
    ds = generate_region_forcing(cfg, geo, start, n_steps, seed, noise)
    return write_netcdf_atomic(ds, path, chunk_time=chunk_time, dtype=dtype)
