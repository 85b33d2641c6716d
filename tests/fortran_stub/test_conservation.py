"""Transport and conservation of the coarse model (physics.md §4.1): closed-box volume conservation with
thermodynamics off, A in [0, 1], V >= 0, and translation of a blob by the limited flux-form scheme."""
from __future__ import annotations

import numpy as np
import pytest

from fortran_stub.config import LIMITER_NAMES, CoarsePhysicsConfig, GridConfig
from coupling.bridge import CoarseModel
from tests.helpers.physics import smooth_random, uniform_forcing


def _sheared_wind(ny, nx, rng, speed):
    f = uniform_forcing(ny, nx)
    f["uas"] = speed * (0.5 + smooth_random(ny, nx, rng))
    f["vas"] = speed * smooth_random(ny, nx, rng)
    f["uo"] = 0.05 * smooth_random(ny, nx, rng)
    f["vo"] = 0.05 * smooth_random(ny, nx, rng)
    return f


@pytest.mark.parametrize("limiter", ["mc", "upwind"])
def test_volume_conserved_thermo_off(limiter):
    rng = np.random.default_rng(1)
    ny = nx = 16
    phys = CoarsePhysicsConfig(thermo_on=False, limiter=limiter, n_evp=100)
    model = CoarseModel(GridConfig(nx=nx, ny=ny), phys)
    model.set_state({"sic": np.clip(0.8 + 0.3 * smooth_random(ny, nx, rng), 0.3, 1.0),
                     "sit": 1.0 + 0.5 * smooth_random(ny, nx, rng),
                     "snt": 0.1 + 0.05 * smooth_random(ny, nx, rng)})
    views = model.state_views()
    forcings = [_sheared_wind(ny, nx, rng, s) for s in (15.0, 25.0, 10.0, 20.0, 25.0)]
    for f0, f1 in zip(forcings[:-1], forcings[1:]):
        v_before, vs_before = views["sivol"].sum(), views["snvol"].sum()
        a_before = views["sic"].sum()
        model.step(f0, f1)
        info = model.last_step_info
        removed = info["minima_removed_volume"] * nx * ny  # thin ice removed by the minima (m, summed)
        assert abs(views["sivol"].sum() + removed - v_before) / v_before < 1e-12
        if removed == 0.0:
            assert abs(views["snvol"].sum() - vs_before) / vs_before < 1e-12
        assert views["sic"].sum() <= a_before * (1 + 1e-12)  # area only lost by the ridging cap
        assert views["sic"].min() >= 0.0 and views["sic"].max() <= 1.0
        assert views["sivol"].min() >= 0.0 and views["snvol"].min() >= 0.0
        assert info["max_courant"] > 0.01  # the ice really moved
    assert views["sic"].max() == 1.0  # convergence against the walls engaged the ridging cap


def test_volume_conserved_when_the_minima_remove_thin_ice():
    """Thermodynamics off, a band of 5 mm ice (below h_min = 1 cm) in thick ice: the minima remove it, and the ice
    volume is closed with the removed volume the model reports (domain mean, m)."""
    rng = np.random.default_rng(4)
    ny = nx = 16
    phys = CoarsePhysicsConfig(thermo_on=False, n_evp=100)
    model = CoarseModel(GridConfig(nx=nx, ny=ny), phys)
    sic = np.clip(0.8 + 0.3 * smooth_random(ny, nx, rng), 0.3, 1.0)
    sit = 1.0 + 0.5 * smooth_random(ny, nx, rng)
    thin = np.zeros((ny, nx), bool)
    thin[6:10, 3:12] = True
    sic[thin], sit[thin] = 0.5, 0.005
    assert phys.h_min == 0.01
    model.set_state({"sic": sic, "sit": sit, "snt": np.where(thin, 0.0, 0.1)})
    views = model.state_views()
    thin_volume = float(views["sivol"][thin].sum())
    assert thin_volume == pytest.approx(thin.sum() * 0.5 * 0.005)
    f = _sheared_wind(ny, nx, rng, 10.0)
    v_before = views["sivol"].sum()
    model.step(f, f)
    removed = model.last_step_info["minima_removed_volume"] * nx * ny
    # the band is removed (give or take what transport moved across its edges in the first substep)
    assert 0.5 * thin_volume < removed < 1.5 * thin_volume
    assert abs(views["sivol"].sum() + removed - v_before) / v_before < 1e-12
    assert views["sic"].min() >= 0.0 and views["sivol"].min() >= 0.0
    h = np.where(views["sic"] > 0, views["sivol"] / np.where(views["sic"] > 0, views["sic"], 1), np.inf)
    assert h.min() >= phys.h_min  # no ice thinner than h_min is left


def _advect(q, u, v, dx, dt, limiter):
    from fortran_stub import seaice
    nx, ny = q.shape[:2]
    q = np.asfortranarray(q)
    nsub, ierr = seaice.seaice_api.advect_tracers(nx, ny, q.shape[2], dx, dt, np.asfortranarray(u),
                                                  np.asfortranarray(v), q, limiter, 0.5, True)
    assert ierr == 0
    return q, nsub


def _blob(nx, ny, cx, cy, r):
    x, y = np.meshgrid(np.arange(nx) + 0.5, np.arange(ny) + 0.5, indexing="ij")  # Fortran (nx, ny) layout
    d = np.hypot(x - cx, y - cy) / r
    return np.where(d < 1, 0.5 * (1 + np.cos(np.pi * d)), 0.0)  # cosine bell, max 1


def test_translation_limiters_ranked_and_bounded():
    """A cosine bell carried diagonally by a uniform interior flow (far from the walls) for 10 cells."""
    nx = ny = 32
    dx, speed, cells = 1000.0, 0.5, 10.0
    u = np.zeros((nx, ny)); u[: nx - 1, :] = speed
    v = np.zeros((nx, ny)); v[:, : ny - 1] = speed
    start = _blob(nx, ny, 9.0, 9.0, 5.0)
    exact = _blob(nx, ny, 9.0 + cells, 9.0 + cells, 5.0)
    errors = {}
    for code, name in enumerate(LIMITER_NAMES):
        q, nsub = _advect(start[:, :, None].copy(), u, v, dx, cells * dx / speed, code)
        q = q[:, :, 0]
        assert nsub == 20  # Courant 10 per direction at cfl_max 0.5
        assert abs(q.sum() - start.sum()) < 1e-12 * start.sum()
        assert q.min() >= -1e-15 and q.max() <= 1.0 + 1e-12  # positive, no new maximum
        errors[name] = np.abs(q - exact).sum() / exact.sum()
    assert errors["mc"] < 0.5 * errors["upwind"]
    assert errors["vanleer"] < errors["minmod"] < errors["upwind"]
    assert errors["mc"] < 0.25


def test_transport_keeps_tracers_consistent():
    """Transporting A and k*A gives exactly k times the result (linearity), so h = V/A stays uniform."""
    nx, ny = 16, 12
    rng = np.random.default_rng(3)
    u = np.asfortranarray(rng.normal(0, 0.3, (nx, ny))); u[-1, :] = 0
    v = np.asfortranarray(rng.normal(0, 0.3, (nx, ny))); v[:, -1] = 0
    a = rng.uniform(0.2, 1.0, (nx, ny))
    q = np.stack([a, 1.7 * a], axis=2)
    q, _ = _advect(q, u, v, 1000.0, 2000.0, 3)
    np.testing.assert_allclose(q[:, :, 1], 1.7 * q[:, :, 0], rtol=1e-13, atol=1e-15)
    assert q[:, :, 0].min() >= 0
