"""Sea-ice deformation from C-grid velocities: rates, PDFs, shear percentiles and multifractal scaling β(q).

Grid convention (docs/design.md): arrays are (..., y, x); `u[..., j, i]` is the x-velocity on the east face of
cell (j, i), `v[..., j, i]` the y-velocity on its north face. With closed walls the west and south walls are
implicit zeros (the east/north walls are the last column of u / last row of v and are used as given).

Definitions (physics.md §4.7), all rates in day⁻¹:
  divergence D_D = ∂u/∂x + ∂v/∂y
  shear      D_S = √((∂u/∂x − ∂v/∂y)² + (∂u/∂y + ∂v/∂x)²)
  total      ε̇  = √(D_D² + D_S²)
∂u/∂x and ∂v/∂y are exact face differences at cell centres. ∂u/∂y + ∂v/∂x lives on cell corners; it is averaged
(signed) from the corners of each cell that lie between four cells (wall corners carry no-slip ghosts, not ice
deformation, so they are left out). Keeping the signed average means that block means of the three gradient
components are exactly the line integrals around the block, which the scaling analysis relies on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

SECONDS_PER_DAY = 86400.0
Walls = Literal["closed", "periodic"]


@dataclass(frozen=True)
class VelocityGradients:
    """Velocity-gradient components at cell centres (s⁻¹), each shaped like the input (..., y, x)."""

    dudx: np.ndarray
    dvdy: np.ndarray
    shear_sum: np.ndarray  # ∂u/∂y + ∂v/∂x, corner values averaged to the cell centre

    def rates(self) -> "DeformationRates":
        """Divergence, shear and total deformation (day⁻¹) from these components."""
        return _rates(self.dudx, self.dvdy, self.shear_sum)


@dataclass(frozen=True)
class DeformationRates:
    """Deformation rates at cell centres (day⁻¹); NaN where masked out."""

    divergence: np.ndarray
    shear: np.ndarray
    total: np.ndarray


def _rates(dudx: np.ndarray, dvdy: np.ndarray, shear_sum: np.ndarray) -> DeformationRates:
    div = (dudx + dvdy) * SECONDS_PER_DAY
    shear = np.hypot(dudx - dvdy, shear_sum) * SECONDS_PER_DAY
    return DeformationRates(divergence=div, shear=shear, total=np.hypot(div, shear))


def _check_uv(u: np.ndarray, v: np.ndarray, dx: float) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    if u.shape != v.shape or u.ndim < 2:
        raise ValueError(f"u and v must share a shape (..., y, x); got {u.shape} and {v.shape}")
    if u.shape[-1] < 2 or u.shape[-2] < 2:
        raise ValueError(f"need at least 2×2 cells, got {u.shape[-2:]}")
    if not dx > 0:
        raise ValueError(f"dx must be positive (m), got {dx}")
    return u, v


def velocity_gradients(u: np.ndarray, v: np.ndarray, dx: float, walls: Walls = "closed") -> VelocityGradients:
    """Gradient components (s⁻¹) of C-grid face velocities u, v (m s⁻¹) on cells of size dx (m)."""
    u, v = _check_uv(u, v, dx)
    if walls == "closed":
        zeros_col = np.zeros(u.shape[:-1] + (1,))
        zeros_row = np.zeros(v.shape[:-2] + (1, v.shape[-1]))
        u_west = np.concatenate([zeros_col, u[..., :-1]], axis=-1)  # west face = east face of the left cell
        v_south = np.concatenate([zeros_row, v[..., :-1, :]], axis=-2)
    elif walls == "periodic":
        u_west = np.roll(u, 1, axis=-1)
        v_south = np.roll(v, 1, axis=-2)
    else:
        raise ValueError(f"walls must be 'closed' or 'periodic', got {walls!r}")
    dudx = (u - u_west) / dx
    dvdy = (v - v_south) / dx

    # ∂u/∂y + ∂v/∂x on north-east corners: u sits on east faces (rows j, j+1), v on north faces (columns i, i+1)
    if walls == "periodic":
        corner = (np.roll(u, -1, axis=-2) - u + np.roll(v, -1, axis=-1) - v) / dx
        shear_sum = 0.25 * (corner + np.roll(corner, 1, axis=-1) + np.roll(corner, 1, axis=-2)
                            + np.roll(np.roll(corner, 1, axis=-1), 1, axis=-2))
    else:
        # interior corners only: (ny-1, nx-1); pad with zeros and count how many corners each cell has
        interior = (u[..., 1:, :-1] - u[..., :-1, :-1] + v[..., :-1, 1:] - v[..., :-1, :-1]) / dx
        pad = [(0, 0)] * (u.ndim - 2) + [(1, 1), (1, 1)]
        c = np.pad(interior, pad)
        n = np.pad(np.ones(interior.shape[-2:]), 1)
        total = c[..., 1:, 1:] + c[..., 1:, :-1] + c[..., :-1, 1:] + c[..., :-1, :-1]
        count = n[1:, 1:] + n[1:, :-1] + n[:-1, 1:] + n[:-1, :-1]
        shear_sum = total / count
    return VelocityGradients(dudx=dudx, dvdy=dvdy, shear_sum=shear_sum)


def deformation_rates(u: np.ndarray, v: np.ndarray, dx: float, *, mask: np.ndarray | None = None,
                      walls: Walls = "closed") -> DeformationRates:
    """Divergence, shear and total deformation (day⁻¹) of C-grid velocities; NaN where `mask` is False.

    `mask` (bool, broadcastable to (..., y, x)) selects cells with ice, e.g. `(sic > 0.15) & ocean`.
    """
    g = velocity_gradients(u, v, dx, walls)
    rates = g.rates()
    if mask is None:
        return rates
    keep = np.broadcast_to(np.asarray(mask, dtype=bool), rates.total.shape)
    return DeformationRates(*(np.where(keep, a, np.nan) for a in (rates.divergence, rates.shear, rates.total)))


# --------------------------------------------------------------------------------------------------- PDFs


@dataclass(frozen=True)
class LogPDF:
    """Histogram density on logarithmic bins.

    `density` (per unit of the variable) is normalised by the number of all finite samples, so
    ∑ density·width = fraction_in_range (1 when no sample falls outside the bins).
    """

    edges: np.ndarray
    centres: np.ndarray  # geometric bin centres
    density: np.ndarray
    fraction_in_range: float
    count: int


def log_bins(vmin: float, vmax: float, nbins: int) -> np.ndarray:
    """`nbins`+1 logarithmically spaced edges from vmin to vmax (> 0)."""
    if not (0 < vmin < vmax) or nbins < 1:
        raise ValueError(f"need 0 < vmin < vmax and nbins ≥ 1, got {vmin}, {vmax}, {nbins}")
    return np.logspace(np.log10(vmin), np.log10(vmax), nbins + 1)


def log_binned_pdf(values: np.ndarray, edges: np.ndarray | None = None, *, vmin: float = 1e-4,
                   vmax: float = 10.0, nbins: int = 40) -> LogPDF:
    """PDF of the absolute values of `values` (NaN ignored) on log bins (default 1e-4…10, e.g. day⁻¹)."""
    if edges is None:
        edges = log_bins(vmin, vmax, nbins)
    edges = np.asarray(edges, dtype=np.float64)
    x = np.abs(np.asarray(values, dtype=np.float64).ravel())
    x = x[np.isfinite(x)]
    counts, _ = np.histogram(x, bins=edges)
    widths = np.diff(edges)
    n = x.size
    density = counts / (n * widths) if n else np.full(widths.shape, np.nan)
    return LogPDF(edges=edges, centres=np.sqrt(edges[:-1] * edges[1:]), density=density,
                  fraction_in_range=float(counts.sum() / n) if n else float("nan"), count=int(n))


def shear_percentile(shear: np.ndarray, percentile: float = 90.0) -> np.ndarray:
    """Spatial percentile (default P90) of each (y, x) field of `shear`, NaN ignored; shape (...)."""
    s = np.asarray(shear, dtype=np.float64)
    flat = s.reshape(s.shape[:-2] + (-1,))
    out = np.full(flat.shape[:-1], np.nan)
    ok = np.isfinite(flat).any(axis=-1)
    if ok.any():
        out[ok] = np.nanpercentile(flat[ok], percentile, axis=-1)
    return out


# --------------------------------------------------------------------------------------------------- scaling


def block_mean(field: np.ndarray, factor: int, min_valid_fraction: float = 0.5) -> np.ndarray:
    """Mean over non-overlapping factor×factor blocks of the last two axes, NaN ignored.

    Rows/columns that do not fill a whole block are dropped. A block with fewer than `min_valid_fraction`
    finite cells is NaN.
    """
    a = np.asarray(field, dtype=np.float64)
    ny, nx = a.shape[-2] // factor, a.shape[-1] // factor
    if ny == 0 or nx == 0:
        raise ValueError(f"block factor {factor} larger than the grid {a.shape[-2:]}")
    a = a[..., : ny * factor, : nx * factor].reshape(a.shape[:-2] + (ny, factor, nx, factor))
    valid = np.isfinite(a)
    n_valid = valid.sum(axis=(-3, -1))
    total = np.where(valid, a, 0.0).sum(axis=(-3, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n_valid
    return np.where(n_valid >= min_valid_fraction * factor * factor, mean, np.nan)


@dataclass(frozen=True)
class ScalingResult:
    """Moments ⟨ε̇_L^q⟩ (day⁻q) of total deformation at scales L and their power-law exponents.

    ⟨ε̇_L^q⟩ ∝ L^(−β(q)); `beta` is minus the least-squares slope of log moment against log L over
    `fit_range_km`, `beta_stderr` its standard error (NaN with only two scales).
    """

    q: np.ndarray
    scales_km: np.ndarray
    moments: np.ndarray  # (len(q), len(scales_km))
    beta: np.ndarray
    beta_stderr: np.ndarray
    fit_range_km: tuple[float, float]
    method: str

    def note(self) -> str:
        lo, hi = self.fit_range_km
        return (f"β fitted over {lo:g}–{hi:g} km ({self.scales_km.size} scales, "
                f"{self.method} coarse-graining)")


def fit_scaling(scales: np.ndarray, moments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """β(q) = −slope of log moments (rows) against log scales, and its standard error."""
    x = np.log(np.asarray(scales, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):  # zero or NaN moments (no deformation) give NaN β
        y = np.log(np.asarray(moments, dtype=np.float64))
        y = np.where(np.isfinite(y), y, np.nan)
    n = x.size
    if n < 2:
        raise ValueError("need at least two scales to fit a slope")
    xc = x - x.mean()
    sxx = (xc**2).sum()
    slope = (y - y.mean(axis=-1, keepdims=True)) @ xc / sxx
    if n > 2:
        resid = y - y.mean(axis=-1, keepdims=True) - slope[..., None] * xc
        stderr = np.sqrt((resid**2).sum(axis=-1) / (n - 2) / sxx)
    else:
        stderr = np.full(slope.shape, np.nan)
    return -slope, stderr


def default_levels(ny: int, nx: int) -> int:
    """Largest k such that 2^k × 2^k blocks still leave at least 2 × 2 blocks (a moment needs several)."""
    return max(int(np.floor(np.log2(min(ny, nx)))) - 1, 1)


def _moments(fields: Sequence[np.ndarray], q: np.ndarray) -> np.ndarray:
    """Raw moments (q, level); NaN at a level without valid values (e.g. no ice), so β becomes NaN, not an error."""
    out = np.full((q.size, len(fields)), np.nan)
    for k, f in enumerate(fields):
        x = f[np.isfinite(f)]
        if x.size:
            out[:, k] = [np.mean(x**qq) for qq in q]
    return out


def moment_scaling(field: np.ndarray, dx: float, *, q: Sequence[float] = (1, 2, 3), levels: int | None = None,
                   min_valid_fraction: float = 0.5) -> ScalingResult:
    """Scaling of a positive field (e.g. ε̇_tot, day⁻¹) by block means over 2^k cells, k = 0…levels.

    This is the Finn et al. (2024) method. Block means preserve the mean, so β(1) ≈ 0 by construction;
    `deformation_scaling(method="gradient")` gives a meaningful β(1).
    """
    f = np.asarray(field, dtype=np.float64)
    levels = default_levels(*f.shape[-2:]) if levels is None else levels
    qa = np.asarray(q, dtype=np.float64)
    factors = [2**k for k in range(levels + 1)]
    coarse = [block_mean(f, c, min_valid_fraction) for c in factors]
    return _result(qa, factors, dx, _moments(coarse, qa), "block-mean of ε̇_tot")


def _result(q: np.ndarray, factors: Sequence[int], dx: float, moments: np.ndarray, method: str) -> ScalingResult:
    scales_km = np.asarray(factors, dtype=np.float64) * dx / 1000.0
    beta, stderr = fit_scaling(scales_km, moments)
    return ScalingResult(q=q, scales_km=scales_km, moments=moments, beta=beta, beta_stderr=stderr,
                         fit_range_km=(float(scales_km[0]), float(scales_km[-1])), method=method)


def deformation_scaling(u: np.ndarray, v: np.ndarray, dx: float, *, mask: np.ndarray | None = None,
                        walls: Walls = "closed", q: Sequence[float] = (1, 2, 3), levels: int | None = None,
                        method: Literal["gradient", "magnitude"] = "gradient",
                        min_valid_fraction: float = 0.5) -> ScalingResult:
    """Multifractal scaling β(q) of total deformation of C-grid velocities u, v (m s⁻¹), dx (m).

    All leading axes of u, v (time, member, …) are pooled as samples. `method`:
      * "gradient" (default): block-mean the signed gradient components, then form ε̇_tot at each scale — the
        deformation of the coarse-grained velocity (line integrals around the block, as RGPS/Marsan et al. 2004).
      * "magnitude": block-mean ε̇_tot itself (Finn et al. 2024); β(1) ≈ 0 by construction.
    `mask` (bool, broadcastable) marks cells with ice; masked cells are excluded from block means.
    """
    g = velocity_gradients(u, v, dx, walls)
    comps = [g.dudx, g.dvdy, g.shear_sum]
    if mask is not None:
        keep = np.broadcast_to(np.asarray(mask, dtype=bool), g.dudx.shape)
        comps = [np.where(keep, c, np.nan) for c in comps]
    if method == "magnitude":
        return moment_scaling(_rates(*comps).total, dx, q=q, levels=levels, min_valid_fraction=min_valid_fraction)
    if method != "gradient":
        raise ValueError(f"method must be 'gradient' or 'magnitude', got {method!r}")
    levels = default_levels(*g.dudx.shape[-2:]) if levels is None else levels
    qa = np.asarray(q, dtype=np.float64)
    factors = [2**k for k in range(levels + 1)]
    totals = [_rates(*(block_mean(c, f, min_valid_fraction) for c in comps)).total for f in factors]
    return _result(qa, factors, dx, _moments(totals, qa), "gradient (line-integral)")
