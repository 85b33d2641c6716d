"""Synthetic, seeded atmosphere/ocean forcing for the twin experiment (physics.md §5).

Every 12 h snapshot at cell centres of the grid it is built for (normally the fine truth grid):

* wind `uas`, `vas` (m s-1): an Ornstein–Uhlenbeck (OU) background plus moving cyclones/anticyclones (a
  generalised Mehlmann et al. 2021 benchmark vortex), |U| capped; the truth-only subgrid noise (`uas_noise`,
  `vas_noise`, an OU Gaussian random field) is a separate additive part — the truth sees resolved + noise, the
  coarse model sees the block mean of that sum;
* `tas` (K): seasonal cosine plus warm cores in cyclones, capped at 0 degC over ice; `huss` (kg kg-1) from a fixed
  relative humidity over ice;
* `rsds`, `rlds` (W m-2): the Maykut & Untersteiner (1971) monthly climatology through a periodic cubic spline;
* `prsn` (kg m-2 s-1): the MU71 snowfall climatology (nextsimDG `snowfall()`);
* `uo`, `vo` (m s-1): the benchmark gyre with a per-run amplitude plus OU eddies from a random streamfunction.

Reproducibility: all randomness comes from numpy Generators seeded by (seed, stream[, step]). Scalar series and the
storm catalogue are drawn sequentially, so a longer run has a shorter run as its prefix; the random fields draw the
innovation of step k from its own Generator, so `at(k)` gives the same fields in any access order. Fields are built
on demand (`at(k)` rolls the OU fields forward from a cached checkpoint), so years are never held in memory.

Storm tracks: the models interpolate forcing linearly between 12-hourly snapshots; a vortex that moves more than
about its radius in 12 h would appear as two half-strength ghosts in between. Track speeds are therefore drawn in
U(1, 4) m s-1 and capped at `max_shift_radii_per_step` (0.5) R_k per 12 h, i.e. 0.87 m s-1 for R = 75 km and 2.9 m s-1
for R = 250 km: slower than the 2–10 m s-1 of physics.md §5, faster than the benchmark's 0.6 m s-1.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterator, Mapping

import numpy as np
import xarray as xr
from scipy.interpolate import CubicSpline

from icecorr.base.variables import FORCING_VARIABLES, STEP_SECONDS, VARIABLES
from fortran_stub.config import GridConfig
from training.data.coarsegrain import block_mean
from training.data.config import ForcingConfig

DAY = 86400.0
T0C = 273.15
RHO_SNOW = 330.0  # kg m-3 (nextsimDG Ice::rhoSnow), converts MU71 snow depths to mass

#: forcing variables in contract order: name -> (units, standard_name, long_name), from icecorr.base.variables
FORCING_METADATA: dict[str, tuple[str, str, str]] = {
    name: (VARIABLES[name]["units"], VARIABLES[name].get("standard_name", ""), VARIABLES[name]["long_name"])
    for name in FORCING_VARIABLES}
FORCING_NAMES: tuple[str, ...] = tuple(FORCING_METADATA)
NOISE_NAMES = ("uas_noise", "vas_noise")

# Maykut & Untersteiner (1971) incoming radiation, Jan..Dec (W m-2), physics.md §5 / nextsimDG MU71Atmosphere.hpp
MU71_SW = np.array([0, 0, 30, 159, 282, 306, 216, 143, 59, 6, 0, 0], dtype=float)
MU71_LW = np.array([166, 164, 164, 185, 240, 286, 304, 298, 263, 221, 178, 173], dtype=float)
_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=float)
_MID_MONTH = np.cumsum(_MONTH_DAYS) - _MONTH_DAYS / 2.0  # day of year of mid-month (365-day year)


def _periodic_spline(values: np.ndarray) -> CubicSpline:
    x = np.concatenate([_MID_MONTH, [_MID_MONTH[0] + 365.0]])
    return CubicSpline(x, np.concatenate([values, values[:1]]), bc_type="periodic")


_SW_SPLINE = _periodic_spline(MU71_SW)
_LW_SPLINE = _periodic_spline(MU71_LW)


def day_of_year(t: datetime) -> float:
    """Days since 1 January 00:00 of t's year, rescaled to a 365-day year (leap years stretch slightly)."""
    jan1 = datetime(t.year, 1, 1)
    length = (datetime(t.year + 1, 1, 1) - jan1).days
    return (t - jan1).total_seconds() / DAY * 365.0 / length


def mu71_radiation(t: datetime) -> tuple[float, float]:
    """(SW_in, LW_in) in W m-2 at time t: periodic cubic spline through the monthly MU71 values, SW clipped at 0."""
    d = day_of_year(t)
    d = d + 365.0 if d < _MID_MONTH[0] else d
    return max(0.0, float(_SW_SPLINE(d))), float(_LW_SPLINE(d))


def mu71_snowfall(t: datetime, scale: float = 1.0) -> float:
    """Snowfall rate (kg m-2 s-1): 30 cm from 20 Aug to 31 Oct, 5 cm spread over 1 Nov–30 Apr, 5 cm in May,
    none from 1 Jun to 19 Aug (nextsimDG MU71 `snowfall()`), snow density 330 kg m-3."""
    y = t.year
    periods = [  # (start, end, snow depth in m)
        (datetime(y, 8, 20), datetime(y, 11, 1), 0.30),
        (datetime(y, 11, 1), datetime(y + 1, 5, 1), 0.05),
        (datetime(y - 1, 11, 1), datetime(y, 5, 1), 0.05),
        (datetime(y, 5, 1), datetime(y, 6, 1), 0.05),
    ]
    for a, b, depth in periods:
        if a <= t < b:
            return scale * depth * RHO_SNOW / (b - a).total_seconds()
    return 0.0


def saturation_specific_humidity_ice(tas_k: np.ndarray, pressure: float) -> np.ndarray:
    """Saturation specific humidity over ice (kg kg-1), Buck (1981) vapour pressure over ice."""
    tc = tas_k - T0C
    e = 611.15 * np.exp(22.452 * tc / (272.55 + tc))
    return 0.622 * e / (pressure - 0.378 * e)


@dataclass(frozen=True)
class Vortex:
    """One moving cyclone (sign +1) or anticyclone (sign -1); times in s since the forcing start, lengths in m."""

    t0: float
    lifetime: float
    peak_speed: float
    radius: float
    alpha: float  # rad
    sign: int
    x0: float
    y0: float
    cx: float  # track velocity (m s-1)
    cy: float

    def envelope(self, t: float) -> float:
        s = (t - self.t0) / self.lifetime
        return float(np.sin(np.pi * s) ** 2) if 0.0 <= s <= 1.0 else 0.0


def gaussian_filter(ny: int, nx: int, dx: float, length: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectral amplitude filter of a Gaussian random field with correlation ~exp(-r²/(2 length²)), and the
    wavenumbers (rad m-1) for spectral derivatives. The filter is normalised to unit output variance."""
    ky = 2 * np.pi * np.fft.fftfreq(ny, d=dx)[:, None]
    kx = 2 * np.pi * np.fft.rfftfreq(nx, d=dx)[None, :]
    amp = np.exp(-(kx**2 + ky**2) * length**2 / 4.0)
    return amp, kx * np.ones_like(ky), ky * np.ones_like(kx)


def _rfft_var(spec: np.ndarray, nx: int) -> float:
    """Variance of irfft2(spec * fft(white noise)) for unit white noise: mean of |spec|² over the full spectrum."""
    w = np.full(spec.shape[-1], 2.0)
    w[0] = 1.0
    if nx % 2 == 0:
        w[-1] = 1.0
    return float((np.abs(spec) ** 2 * w).sum() / (spec.shape[0] * nx))


class _OUField:
    """A white-noise field z_k = rho z_{k-1} + sqrt(1-rho²) xi_k (stationary, unit variance) whose innovation xi_k
    comes from Generator(seed, stream, k); state cached with checkpoints so that any step is cheap to reach."""

    def __init__(self, seed: int, stream: int, shape: tuple[int, int], rho: float, every: int = 64):
        self.seed, self.stream, self.shape, self.rho, self.every = seed, stream, shape, rho, every
        self._k = -1
        self._z: np.ndarray | None = None
        self._checkpoints: dict[int, np.ndarray] = {}

    def _xi(self, k: int) -> np.ndarray:
        return np.random.default_rng([self.seed, self.stream, k]).standard_normal(self.shape)

    def at(self, k: int) -> np.ndarray:
        if k < 0:
            raise ValueError(f"step {k} < 0")
        if self._z is None or k < self._k:
            start = max((c for c in self._checkpoints if c <= k), default=None)
            if start is None:
                self._k, self._z = 0, self._xi(0)
            else:
                self._k, self._z = start, self._checkpoints[start].copy()
        c = np.sqrt(1.0 - self.rho**2)
        while self._k < k:
            self._k += 1
            self._z = self.rho * self._z + c * self._xi(self._k)
            if self._k % self.every == 0:
                self._checkpoints[self._k] = self._z.copy()
        return self._z


class SyntheticForcing:
    """Synthetic forcing on `grid` from `start`, one snapshot per 12 h step k = 0 … n_steps-1.

    `resolved_at(k)` and `noise_at(k)` give the two additive parts, `truth_at(k)` their sum (what the fine truth
    sees), `coarse_at(k, r)` its r×r block mean (what the coarse model sees). Arrays are (ny, nx) float64.
    """

    # independent random streams
    _S_WIND, _S_STORMS, _S_OCEAN_AMP, _S_NOISE_U, _S_NOISE_V, _S_EDDY = range(6)

    def __init__(self, cfg: ForcingConfig, grid: GridConfig, start: datetime | str, n_steps: int, seed: int):
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        self.cfg, self.grid, self.n_steps, self.seed = cfg, grid, int(n_steps), int(seed)
        self.start = datetime.fromisoformat(start) if isinstance(start, str) else start
        ny, nx, dx = grid.ny, grid.nx, grid.dx
        self.x = (np.arange(nx) + 0.5) * dx
        self.y = (np.arange(ny) + 0.5) * dx
        self.lx, self.ly = nx * dx, ny * dx
        self._xx, self._yy = np.meshgrid(self.x, self.y)
        self._background = self._background_wind()
        self.vortices = self._storm_catalogue()
        rng = np.random.default_rng([self.seed, self._S_OCEAN_AMP])
        self.gyre_speed = float(rng.uniform(cfg.ocean_gyre_speed.lo, cfg.ocean_gyre_speed.hi))
        # subgrid wind noise: unit-variance OU white noise, filtered to the correlation length each step
        rho_n = float(np.exp(-STEP_SECONDS / (cfg.subgrid_wind_tau_hours * 3600.0)))
        self._noise_u = _OUField(self.seed, self._S_NOISE_U, (ny, nx), rho_n)
        self._noise_v = _OUField(self.seed, self._S_NOISE_V, (ny, nx), rho_n)
        self._noise_filter, _, _ = gaussian_filter(ny, nx, dx, cfg.subgrid_wind_length)
        self._noise_filter /= np.sqrt(_rfft_var(self._noise_filter, nx))
        # ocean eddies: streamfunction psi, u = -dpsi/dy, v = dpsi/dx, scaled so that each component has the
        # configured std (isotropic: var(u) = var(v))
        rho_e = float(np.exp(-STEP_SECONDS / (cfg.ocean_eddy_tau_days * DAY)))
        self._eddy = _OUField(self.seed, self._S_EDDY, (ny, nx), rho_e)
        amp, kx, ky = gaussian_filter(ny, nx, dx, cfg.ocean_eddy_length)
        norm = np.sqrt(_rfft_var(ky * amp, nx))
        self._eddy_u_filter = -1j * ky * amp / norm
        self._eddy_v_filter = 1j * kx * amp / norm

    # ---------------------------------------------------------------- random ingredients
    def _background_wind(self) -> np.ndarray:
        """OU background wind (n_steps, 2) in m s-1, stationary from step 0."""
        c = self.cfg
        rho = np.exp(-STEP_SECONDS / (c.background_wind_tau_days * DAY))
        rng = np.random.default_rng([self.seed, self._S_WIND])
        out = np.empty((self.n_steps, 2))
        out[0] = c.background_wind_std * rng.standard_normal(2)
        for k in range(1, self.n_steps):
            out[k] = rho * out[k - 1] + np.sqrt(1 - rho**2) * c.background_wind_std * rng.standard_normal(2)
        return out

    def _storm_catalogue(self) -> list[Vortex]:
        """Poisson genesis from one maximum lifetime before the start (so storms are present at step 0)."""
        v = self.cfg.vortices
        rng = np.random.default_rng([self.seed, self._S_STORMS])
        t_end = (self.n_steps - 1) * STEP_SECONDS
        t = -v.lifetime_days.hi * DAY
        out: list[Vortex] = []
        if v.genesis_per_day <= 0:
            return out
        m = v.spawn_margin
        while True:
            t += rng.exponential(DAY / v.genesis_per_day)
            if t > t_end:
                return out
            radius = rng.uniform(v.radius.lo, v.radius.hi)
            speed = min(rng.uniform(v.translation_speed.lo, v.translation_speed.hi),
                        v.max_shift_radii_per_step * radius / STEP_SECONDS)
            heading = rng.uniform(0.0, 2 * np.pi)
            out.append(Vortex(
                t0=t, lifetime=rng.uniform(v.lifetime_days.lo, v.lifetime_days.hi) * DAY,
                peak_speed=rng.uniform(v.peak_speed.lo, v.peak_speed.hi), radius=radius,
                alpha=np.deg2rad(rng.uniform(v.inflow_angle_deg.lo, v.inflow_angle_deg.hi)),
                sign=1 if rng.uniform() < v.cyclone_fraction else -1,
                x0=rng.uniform(-m * self.lx, (1 + m) * self.lx), y0=rng.uniform(-m * self.ly, (1 + m) * self.ly),
                cx=speed * np.cos(heading), cy=speed * np.sin(heading)))

    # ---------------------------------------------------------------- deterministic parts
    def time(self, k: int) -> datetime:
        return self.start + timedelta(seconds=k * STEP_SECONDS)

    def times(self) -> np.ndarray:
        return np.array([np.datetime64(self.time(k), "ns") for k in range(self.n_steps)])

    def _coldness(self, t: datetime) -> float:
        """1 on the coldest day, 0 on the warmest (seasonal phase of the air temperature)."""
        return 0.5 * (1.0 + np.cos(2 * np.pi * (day_of_year(t) - self.cfg.tas_coldest_day) / 365.0))

    def _vortex_fields(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Wind (m s-1) of all active vortices and the cyclones' warm anomaly (K) at step k."""
        c = self.cfg
        t = k * STEP_SECONDS
        intensity = 1.0 + c.vortices.winter_intensification * self._coldness(self.time(k))
        u = np.zeros_like(self._xx)
        v = np.zeros_like(self._xx)
        warm = np.zeros_like(self._xx)
        for vx in self.vortices:
            env = vx.envelope(t)
            if env == 0.0:
                continue
            xp = self._xx - (vx.x0 + vx.cx * (t - vx.t0))
            yp = self._yy - (vx.y0 + vx.cy * (t - vx.t0))
            decay = np.exp(-np.hypot(xp, yp) / vx.radius)
            # benchmark form: U = -s (cos a x' + sin a y'), V = -s (-sin a x' + cos a y'), |U| peaks at V_k at r = R_k
            s = -vx.sign * np.e * vx.peak_speed * intensity / vx.radius * decay * env
            ca, sa = np.cos(vx.alpha), np.sin(vx.alpha)
            u += s * (ca * xp + sa * yp)
            v += s * (-sa * xp + ca * yp)
            if vx.sign > 0:
                warm += c.vortices.warm_anomaly_k * env * decay
        return u, v, warm

    def resolved_at(self, k: int) -> dict[str, np.ndarray]:
        """All forcing variables at step k without the subgrid wind noise; (ny, nx) float64 arrays."""
        self._check_step(k)
        c, t = self.cfg, self.time(k)
        shape = self._xx.shape
        u_v, v_v, warm = self._vortex_fields(k)
        uas = self._background[k, 0] + u_v
        vas = self._background[k, 1] + v_v
        speed = np.hypot(uas, vas)
        cap = np.minimum(1.0, c.max_wind_speed / np.maximum(speed, 1e-12))
        uas, vas = uas * cap, vas * cap
        tas_c = c.tas_mean_c - c.tas_amplitude_c * np.cos(2 * np.pi * (day_of_year(t) - c.tas_coldest_day) / 365.0)
        tas_c = tas_c + warm
        if c.tas_cap_c is not None:
            tas_c = np.minimum(tas_c, c.tas_cap_c)
        tas = tas_c + T0C
        sw, lw = mu71_radiation(t)
        eddy = np.fft.rfft2(self._eddy.at(k))
        uo = self.gyre_speed * (2 * self._yy / self.ly - 1) + c.ocean_eddy_speed * np.fft.irfft2(
            eddy * self._eddy_u_filter, s=shape)
        vo = self.gyre_speed * (1 - 2 * self._xx / self.lx) + c.ocean_eddy_speed * np.fft.irfft2(
            eddy * self._eddy_v_filter, s=shape)
        return {
            "uas": uas, "vas": vas, "tas": tas,
            "huss": c.relative_humidity * saturation_specific_humidity_ice(tas, c.surface_pressure),
            "rsds": np.full(shape, sw), "rlds": np.full(shape, lw),
            "prsn": np.full(shape, mu71_snowfall(t, c.snowfall_scale)),
            "uo": uo, "vo": vo,
        }

    def noise_at(self, k: int) -> dict[str, np.ndarray]:
        """Truth-only subgrid wind noise (m s-1) at step k: `uas_noise`, `vas_noise`."""
        self._check_step(k)
        shape = self._xx.shape
        std = self.cfg.subgrid_wind_std
        return {
            "uas_noise": std * np.fft.irfft2(np.fft.rfft2(self._noise_u.at(k)) * self._noise_filter, s=shape),
            "vas_noise": std * np.fft.irfft2(np.fft.rfft2(self._noise_v.at(k)) * self._noise_filter, s=shape),
        }

    def truth_at(self, k: int) -> dict[str, np.ndarray]:
        """What the fine truth model sees: resolved forcing plus subgrid wind noise."""
        f = self.resolved_at(k)
        n = self.noise_at(k)
        f["uas"] = f["uas"] + n["uas_noise"]
        f["vas"] = f["vas"] + n["vas_noise"]
        return f

    def coarse_at(self, k: int, r: int) -> dict[str, np.ndarray]:
        """What the coarse model sees: r×r block means of the truth forcing (noise partly averages out)."""
        return {name: block_mean(a, r) for name, a in self.truth_at(k).items()}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (self.truth_at(k) for k in range(self.n_steps))

    def _check_step(self, k: int) -> None:
        if not 0 <= k < self.n_steps:
            raise IndexError(f"forcing step {k} outside 0..{self.n_steps - 1}")


def forcing_dataset(fields: list[Mapping[str, np.ndarray]], times: np.ndarray, dx: float,
                    attrs: Mapping[str, object] | None = None) -> xr.Dataset:
    """CF Dataset (time, y, x) from per-step dicts of forcing (and optional noise) arrays."""
    ny, nx = next(iter(fields[0].values())).shape
    ds = xr.Dataset(coords={
        "time": ("time", times, {"standard_name": "time", "long_name": "time"}),
        "y": ("y", (np.arange(ny) + 0.5) * dx, {"units": "m", "long_name": "y of cell centre", "axis": "Y",
                                                "standard_name": "projection_y_coordinate"}),
        "x": ("x", (np.arange(nx) + 0.5) * dx, {"units": "m", "long_name": "x of cell centre", "axis": "X",
                                                "standard_name": "projection_x_coordinate"}),
    }, attrs=dict(attrs or {}))
    for name in fields[0]:
        data = np.stack([f[name] for f in fields])
        if name in FORCING_METADATA:
            units, std_name, long_name = FORCING_METADATA[name]
            meta = {"units": units, "standard_name": std_name, "long_name": long_name}
        else:  # subgrid noise
            meta = {"units": "m s-1", "long_name": f"truth-only subgrid noise of {name.split('_')[0]} "
                    "(additive; the truth wind is the resolved wind plus this)"}
        ds[name] = (("time", "y", "x"), data, meta)
    return ds


def generate_forcing(cfg: ForcingConfig, grid: GridConfig, start: datetime | str, n_steps: int, seed: int,
                     coarsen: int = 1) -> xr.Dataset:
    """Forcing Dataset (time, y, x), 12-hourly from `start`.

    coarsen == 1: the resolved forcing on `grid` plus the noise as separate `uas_noise`, `vas_noise` variables.
    coarsen == r > 1: the coarse-model forcing, block means of (resolved + noise) on the grid r times coarser.
    """
    gen = SyntheticForcing(cfg, grid, start, n_steps, seed)
    if coarsen == 1:
        fields = [{**gen.resolved_at(k), **gen.noise_at(k)} for k in range(n_steps)]
        dx = grid.dx
    else:
        fields = [gen.coarse_at(k, coarsen) for k in range(n_steps)]
        dx = grid.dx * coarsen
    attrs = {"Conventions": "CF-1.10", "title": "icecorr synthetic forcing", "seed": int(seed),
             "ocean_gyre_speed": gen.gyre_speed, "forcing_config": cfg.model_dump_json(), "grid_dx": dx,
             "coarsen": int(coarsen)}
    return forcing_dataset(fields, gen.times(), dx, attrs)


def write_forcing(path, cfg: ForcingConfig, grid: GridConfig, start: datetime | str, n_steps: int, seed: int,
                  coarsen: int = 1, chunk_time: int = 64, dtype: str | None = "float32"):
    """Generate the forcing (see `generate_forcing`) and write it as CF NetCDF, atomically; returns the path."""
    from training.data.io import write_netcdf_atomic
    ds = generate_forcing(cfg, grid, start, n_steps, seed, coarsen)
    return write_netcdf_atomic(ds, path, chunk_time=chunk_time, dtype=dtype)
