"""Zero-layer thermodynamics (physics.md §1.6, §4.6): Stefan growth, lead refreezing with Hibler lateral growth,
snowfall and its flooding, summer melt."""
from __future__ import annotations

import numpy as np
import pytest

from fortran_stub.config import CoarsePhysicsConfig, GridConfig, ThermoConfig
from coupling.bridge import CoarseModel, fortran_params
from icecorr.base.variables import FORCING_VARIABLES

DAY = 86400.0


def _columns(thermo: ThermoConfig, n: int, a, h, ts, forcing: dict, days: float, update_tsurf: bool,
             dt: float = 3600.0):
    """Run the Fortran thermodynamics alone on n independent columns (nx = n, ny = 1); returns the arrays."""
    from fortran_stub import seaice
    _, tp = fortran_params(CoarsePhysicsConfig(thermo=thermo))
    col = lambda x: np.asfortranarray(np.broadcast_to(np.asarray(x, float), (n,)).reshape(n, 1).copy())  # noqa
    st = {"a": col(a), "v": col(np.asarray(a) * np.asarray(h)), "vs": col(0.0), "ts": col(ts),
          "tos": col(thermo.t_freeze)}
    f = np.zeros((n, 1, len(FORCING_VARIABLES)), order="F")
    for k, name in enumerate(FORCING_VARIABLES):
        f[:, :, k] = forcing.get(name, 0.0)
    da, dv = col(0.0), col(0.0)
    ierr = seaice.seaice_api.thermo_columns(tp, n, 1, len(FORCING_VARIABLES), dt, int(round(days * DAY / dt)),
                                            st["a"], st["v"], st["vs"], st["ts"], st["tos"], f, update_tsurf,
                                            da, dv)
    assert ierr == 0
    return {k: x[:, 0] for k, x in st.items()}


def stefan_thickness(ts, days, h0, k=2.0334, rho=917.0, lf=333.55e3, tf=-1.8):
    return np.sqrt(h0 ** 2 + 2 * k * (tf - ts) * days * DAY / (rho * lf))


def test_stefan_formula_reproduces_physics_table():
    table = {-10: (0.53, 0.97, 1.30), -20: (0.79, 1.45, 1.94), -30: (0.99, 1.80, 2.42)}
    for ts, row in table.items():
        np.testing.assert_allclose(stefan_thickness(ts, np.array([30, 100, 180]), 0.0), row, atol=0.006)


@pytest.mark.parametrize("gamma, tol", [(1.0, 0.01), (1.065, 0.10)])
def test_stefan_growth(gamma, tol):
    """Fixed surface temperature, no snow, ocean at freezing: h^2 - h0^2 = 2 gamma k dT t / (rho L)."""
    ts = np.array([-10.0, -20.0, -30.0])
    h0 = 0.05
    thermo = ThermoConfig(semtner_gamma=gamma)
    for days in (30.0, 100.0):
        out = _columns(thermo, 3, 1.0, h0, ts, {"tas": 250.0}, days, update_tsurf=False)
        h = out["v"] / out["a"]
        assert np.all(out["a"] == 1.0) and np.all(out["vs"] == 0.0)
        np.testing.assert_allclose(h, stefan_thickness(ts, days, h0), rtol=tol)
        # Semtner's factor makes the ice grow faster (K up by 6.5 %, h up by ~3 %)
        if gamma > 1:
            assert np.all(h > stefan_thickness(ts, days, h0))


def test_open_water_refreezes_with_lateral_growth():
    """Cold air over open water at the freezing point: new ice forms, concentration grows by dV/h0."""
    thermo = ThermoConfig()
    out = _columns(thermo, 1, 0.0, 0.0, thermo.t_freeze, {"tas": 248.0, "rlds": 180.0, "uas": 8.0},
                   1.0, update_tsurf=True)
    a, v = out["a"][0], out["v"][0]
    assert 0.2 < a < 1.0 and v > 0.05  # ~400 W m-2 lost: ~0.1 m of new ice per day
    assert out["tos"][0] == pytest.approx(thermo.t_freeze)
    # while the lead is open h stays near h0; once it closes, growth continues vertically
    assert v / a >= thermo.h0_lateral * (1 - 1e-12)


def test_snowfall_accumulates_and_floods():
    thermo = ThermoConfig()
    prsn = 1e-4  # kg m-2 s-1 = 8.64 mm water per day
    out = _columns(thermo, 1, 1.0, 1.0, -20.0, {"tas": 253.15, "prsn": prsn, "rlds": 150.0}, 10.0,
                   update_tsurf=True)
    assert out["vs"][0] == pytest.approx(prsn * 10 * DAY / thermo.rho_snow, rel=1e-9)
    # heavy snow on thin ice: the waterline rises above the ice and snow turns into ice (mass conserved)
    heavy = 2e-3
    out = _columns(thermo, 1, 1.0, 0.3, -5.0, {"tas": 268.15, "prsn": heavy, "rlds": 300.0}, 2.0,
                   update_tsurf=True)
    h, hs = out["v"][0], out["vs"][0]
    draft = (thermo.rho_ice * h + thermo.rho_snow * hs) / thermo.rho_water
    assert draft <= h * (1 + 1e-9)  # no ice below the waterline after flooding
    assert h > 0.3


def test_summer_melt_reduces_area_and_volume():
    thermo = ThermoConfig()
    out = _columns(thermo, 1, 0.9, 1.0, -1.0, {"tas": 278.15, "rsds": 300.0, "rlds": 310.0, "uas": 5.0,
                                                "huss": 4e-3}, 5.0, update_tsurf=True)
    assert out["v"][0] < 0.9 and out["a"][0] < 0.9
    assert out["ts"][0] == pytest.approx(-thermo.mu_salinity * thermo.ice_salinity)  # bare ice melting point
    assert out["tos"][0] > thermo.t_freeze  # the open water warms the slab


def test_coarse_model_thermodynamics_is_switchable():
    ny = nx = 8
    f = {name: np.zeros((ny, nx)) for name in FORCING_VARIABLES}
    f["tas"][:] = 240.0
    f["rlds"][:] = 150.0
    for on in (True, False):
        model = CoarseModel(GridConfig(nx=nx, ny=ny), CoarsePhysicsConfig(thermo_on=on))
        model.set_state({"sic": np.full((ny, nx), 0.5), "sit": np.full((ny, nx), 1.0)})
        model.step(f, f)
        v = model.state_views()
        if on:
            assert v["sic"].min() > 0.5 and v["sivol"].min() > 0.5 and v["tsi"].max() < -10
            assert model.last_step_info["new_ice_volume"] > 0
        else:
            assert np.all(v["sic"] == 0.5) and np.all(v["sivol"] == 0.5)
