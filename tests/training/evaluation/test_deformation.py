"""Deformation rates, PDFs and multifractal scaling against analytic values."""
from __future__ import annotations

import numpy as np
import pytest

from training.evaluation.deformation import (
    SECONDS_PER_DAY,
    block_mean,
    default_levels,
    deformation_rates,
    deformation_scaling,
    log_binned_pdf,
    moment_scaling,
    shear_percentile,
    velocity_gradients,
)

DX = 16_000.0
N = 16


def face_coords(n: int = N, dx: float = DX):
    """x of east faces and y of north faces (m), as (y, x) arrays."""
    i = np.arange(n)
    x_east = np.broadcast_to((i + 1.0) * dx, (n, n))
    y_north = np.broadcast_to(((i + 1.0) * dx)[:, None], (n, n))
    x_c = np.broadcast_to((i + 0.5) * dx, (n, n))
    y_c = np.broadcast_to(((i + 0.5) * dx)[:, None], (n, n))
    return x_east, y_north, x_c, y_c


def test_divergence_of_linear_field_is_exact_with_closed_walls():
    a, b = 2e-7, -5e-7  # s⁻¹
    x_east, y_north, _, _ = face_coords()
    rates = deformation_rates(a * x_east, b * y_north, DX)
    np.testing.assert_allclose(rates.divergence, (a + b) * SECONDS_PER_DAY, rtol=1e-12)
    np.testing.assert_allclose(rates.shear, abs(a - b) * SECONDS_PER_DAY, rtol=1e-12)
    np.testing.assert_allclose(rates.total, np.hypot(a + b, a - b) * SECONDS_PER_DAY, rtol=1e-12)


def test_simple_shear_and_rigid_rotation():
    c = 3e-7
    _, _, x_c, y_c = face_coords()
    # u = c·y on every east face: ∂u/∂y = c, no stretching away from the implicit west wall
    g = velocity_gradients(c * y_c, np.zeros((N, N)), DX)
    np.testing.assert_allclose(g.shear_sum, c, rtol=1e-12)
    np.testing.assert_allclose(g.dudx[:, 1:], 0.0, atol=1e-20)
    rates = deformation_rates(c * y_c, np.zeros((N, N)), DX)
    np.testing.assert_allclose(rates.shear[:, 1:], c * SECONDS_PER_DAY, rtol=1e-12)
    # rigid rotation u = −ωy, v = ωx: no deformation in the interior
    omega = 1e-6
    x_east, y_north, _, _ = face_coords()
    rot = deformation_rates(-omega * y_c, omega * x_c, DX)
    np.testing.assert_allclose(rot.total[1:, 1:], 0.0, atol=1e-12)


def test_closed_walls_zero_velocity_and_mask():
    rates = deformation_rates(np.zeros((2, N, N)), np.zeros((2, N, N)), DX)
    assert rates.total.shape == (2, N, N) and not rates.total.any()
    mask = np.zeros((N, N), bool)
    mask[:, : N // 2] = True
    rng = np.random.default_rng(0)
    masked = deformation_rates(rng.normal(size=(N, N)), rng.normal(size=(N, N)), DX, mask=mask)
    assert np.isnan(masked.shear[:, N // 2:]).all() and np.isfinite(masked.shear[:, : N // 2]).all()


def test_divergence_block_mean_equals_divergence_of_coarse_velocity():
    """Gauss: the block mean of the fine divergence is the divergence of face-mean coarse velocities."""
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=(2, N, N)) * 0.1
    u[:, -1] = 0.0
    v[-1, :] = 0.0
    r = 4
    fine = velocity_gradients(u, v, DX)
    fine_div = block_mean(fine.dudx + fine.dvdy, r)
    u_c = u[:, r - 1 :: r].reshape(N // r, r, N // r).mean(axis=1)  # mean of r fine values on each coarse east face
    v_c = v[r - 1 :: r, :].reshape(N // r, N // r, r).mean(axis=2)
    coarse = velocity_gradients(u_c, v_c, DX * r)
    np.testing.assert_allclose(coarse.dudx + coarse.dvdy, fine_div, atol=1e-15)


def test_log_binned_pdf_is_normalised():
    rng = np.random.default_rng(2)
    x = rng.lognormal(mean=-3, sigma=1.0, size=20_000)
    pdf = log_binned_pdf(x, vmin=1e-6, vmax=1e3, nbins=50)
    assert pdf.fraction_in_range == 1.0
    np.testing.assert_allclose((pdf.density * np.diff(pdf.edges)).sum(), 1.0, rtol=1e-12)
    # narrower range: integral equals the fraction inside; NaN ignored; signed values use |x|
    y = np.concatenate([-x, [np.nan]])
    narrow = log_binned_pdf(y, vmin=np.exp(-3), vmax=10.0, nbins=10)
    np.testing.assert_allclose((narrow.density * np.diff(narrow.edges)).sum(), narrow.fraction_in_range)
    assert narrow.count == x.size
    assert 0.45 < narrow.fraction_in_range < 0.55  # median of the log-normal is e^-3


def test_shear_percentile():
    s = np.arange(100, dtype=float).reshape(1, 10, 10)
    s[0, 0, 0] = np.nan
    np.testing.assert_allclose(shear_percentile(s), np.nanpercentile(s[0], 90))
    assert shear_percentile(s).shape == (1,)


def microcanonical_cascade(levels: int, weights, rng) -> np.ndarray:
    """2^levels square field: each 2×2 split multiplies by a random permutation of `weights` (mean 1)."""
    field = np.ones((1, 1))
    w = np.asarray(weights, dtype=float)
    for _ in range(levels):
        n = field.shape[0]
        perm = np.array([rng.permutation(w) for _ in range(n * n)]).reshape(n, n, 2, 2)
        field = (field[:, :, None, None] * perm).transpose(0, 2, 1, 3).reshape(2 * n, 2 * n)
    return field


def test_beta_of_multiplicative_cascade_matches_analytic():
    w = np.array([1.6, 1.2, 0.8, 0.4])
    field = microcanonical_cascade(5, w, np.random.default_rng(3))
    res = moment_scaling(field, DX, q=(1, 2, 3))
    # ⟨ε_L^q⟩ = (mean w^q)^(levels above L) exactly  ⇒  β(q) = log2 mean(w^q)
    expected = np.log2([np.mean(w**q) for q in (1, 2, 3)])
    np.testing.assert_allclose(res.beta, expected, atol=1e-10)
    assert res.beta[1] == pytest.approx(0.263, abs=1e-3) and res.beta[2] == pytest.approx(0.678, abs=1e-3)
    np.testing.assert_allclose(res.beta_stderr, 0.0, atol=1e-10)
    assert res.scales_km.tolist() == [16, 32, 64, 128, 256]
    assert "16–256 km" in res.note()


def test_beta_is_zero_for_constant_gradient_field():
    x_east, y_north, _, _ = face_coords(32)
    u, v = 2e-7 * x_east, 1e-7 * y_north
    for method in ("gradient", "magnitude"):
        res = deformation_scaling(u, v, DX, method=method)
        np.testing.assert_allclose(res.beta, 0.0, atol=1e-12)
    assert default_levels(32, 32) == 4


def test_beta_of_straight_shear_lines_is_q_minus_one():
    """One-dimensional leads: a fraction ∝ L of blocks carries ε ∝ 1/L, so β(q) = q − 1 (gradient method)."""
    n = 32
    u = np.zeros((n, n))
    u[n // 2 :, :] = 0.1  # jumps at row n/2 and (periodically) at the wrap
    res = deformation_scaling(u, np.zeros((n, n)), DX, walls="periodic", levels=3)
    np.testing.assert_allclose(res.beta, [0.0, 1.0, 2.0], atol=1e-10)
    # block-mean of magnitudes conserves the mean: β(1) = 0 there too, but the higher moments differ
    mag = deformation_scaling(u, np.zeros((n, n)), DX, walls="periodic", levels=3, method="magnitude")
    assert abs(mag.beta[0]) < 1e-10


def test_block_mean_respects_valid_fraction():
    f = np.arange(16.0).reshape(4, 4)
    f[0, 0] = np.nan
    bm = block_mean(f, 2, min_valid_fraction=0.5)
    assert bm[0, 0] == pytest.approx((1 + 4 + 5) / 3)
    assert np.isnan(block_mean(f, 2, min_valid_fraction=1.0)[0, 0])
    with pytest.raises(ValueError):
        block_mean(f, 8)


def test_scaling_without_ice_or_motion_is_nan_not_an_error():
    u = np.zeros((2, N, N))
    res = deformation_scaling(u, u, DX)
    assert np.isnan(res.beta).all()
    masked = deformation_scaling(u + 0.1, u, DX, mask=np.zeros((N, N), bool))
    assert np.isnan(masked.beta).all() and np.isnan(masked.moments).all()
