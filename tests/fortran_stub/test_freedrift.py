"""Free drift (physics.md §4.2): with the rheology off, steady uniform wind and no current, the ice settles to the
steady solution of tau_a = c_w R(theta_w) u + m f k x u, which the test computes itself."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq

from fortran_stub.config import CoarsePhysicsConfig, GridConfig
from coupling.bridge import CoarseModel
from tests.helpers.physics import uniform_forcing


def analytic_free_drift(p: CoarsePhysicsConfig, h: float, wind: float) -> tuple[float, float]:
    """Speed ratio |u|/|U_a| and turning angle (degrees, negative = to the right of the wind) for A = 1."""
    tau = p.rho_air * p.c_air * wind * wind            # along +x
    m = p.rho_ice * h
    rot = np.exp(1j * np.deg2rad(p.turning_angle))      # R(theta_w) in complex form; k x u = i u

    def excess(speed):
        return speed * abs(p.rho_water * p.c_water * speed * rot + 1j * m * p.coriolis) - tau

    speed = brentq(excess, 0.0, 10.0, xtol=1e-14)
    u = tau / (p.rho_water * p.c_water * speed * rot + 1j * m * p.coriolis)
    return abs(u) / wind, np.degrees(np.angle(u))


def test_analytic_solution_matches_physics_table():
    """The test's own solver reproduces the published numbers of physics.md §4.2."""
    bench = CoarsePhysicsConfig()
    for h, ratio, angle in [(0.3, 1.66, -2), (1.0, 1.65, -8), (2.0, 1.63, -16)]:
        r, a = analytic_free_drift(bench, h, 10.0)
        assert r * 100 == pytest.approx(ratio, abs=0.01) and a == pytest.approx(angle, abs=0.6)
    nextsim = CoarsePhysicsConfig(c_air=2.0e-3, turning_angle=25.0)
    r, a = analytic_free_drift(nextsim, 1.0, 10.0)
    assert r * 100 == pytest.approx(2.09, abs=0.01) and a == pytest.approx(-31, abs=0.6)


@pytest.mark.parametrize("h, c_air, theta", [(1.0, 1.2e-3, 0.0), (2.0, 1.2e-3, 0.0), (1.0, 2.0e-3, 25.0)])
def test_free_drift_speed_and_angle(h, c_air, theta):
    ny = nx = 12
    phys = CoarsePhysicsConfig(rheology_on=False, transport_on=False, thermo_on=False, c_air=c_air,
                               turning_angle=theta, n_evp=100)
    model = CoarseModel(GridConfig(nx=nx, ny=ny), phys)
    model.set_state({"sic": np.ones((ny, nx)), "sit": np.full((ny, nx), h)})
    wind = 10.0
    f = uniform_forcing(ny, nx, uas=wind)
    for _ in range(4):  # 2 days: many spin-up times and 4 inertial periods, damped by backward Euler
        model.step(f, f)
    views = model.state_views()
    # central faces: the walls (u = v = 0 there) reach the interior only weakly, through the Coriolis averages
    u = views["siu"][4:-4, 4:-5]
    v = views["siv"][4:-5, 4:-4]
    assert np.ptp(u) < 1e-3 * abs(u).max() and np.ptp(v) < 1e-3 * abs(u).max()
    speed, angle = np.hypot(u.mean(), v.mean()), np.degrees(np.arctan2(v.mean(), u.mean()))
    ratio_exact, angle_exact = analytic_free_drift(phys, h, wind)
    assert speed / wind == pytest.approx(ratio_exact, rel=0.02)
    assert angle == pytest.approx(angle_exact, abs=2.0)
    assert angle < 0  # to the right of the wind in the Northern Hemisphere
