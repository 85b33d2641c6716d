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


@pytest.mark.parametrize("gamma", [1.0, 1.065])
def test_stefan_growth(gamma):
    """Fixed surface temperature, no snow, ocean at freezing: h^2 - h0^2 = 2 gamma k dT t / (rho L).

    The model steps h by explicit Euler (dh = gamma k dT dt / (rho L h)), which overshoots the analytic law by
    at most 0.11 % here (h0 = 5 cm, dt = 1 h); 0.2 % cannot hide a wrong conductivity factor (gamma**2 or 1 in
    place of gamma moves h by 3.2 %)."""
    ts = np.array([-10.0, -20.0, -30.0])
    h0 = 0.05
    thermo = ThermoConfig(semtner_gamma=gamma)
    for days in (30.0, 100.0):
        out = _columns(thermo, 3, 1.0, h0, ts, {"tas": 250.0}, days, update_tsurf=False)
        h = out["v"] / out["a"]
        assert np.all(out["a"] == 1.0) and np.all(out["vs"] == 0.0)
        exact = stefan_thickness(ts, days, h0, k=gamma * thermo.k_ice)
        np.testing.assert_allclose(h, exact, rtol=2e-3)
        assert np.all(h >= exact)  # explicit Euler in h overshoots the square-root law


def _step_column(thermo: ThermoConfig, s: dict, forcing: dict, update_tsurf: bool, dt: float = 3600.0) -> dict:
    """One thermodynamic step of one column from the full state s = {a, v, vs, ts, tos} (scalars); a new dict."""
    from fortran_stub import seaice
    _, tp = fortran_params(CoarsePhysicsConfig(thermo=thermo))
    st = {k: np.full((1, 1), float(s[k]), order="F") for k in ("a", "v", "vs", "ts", "tos")}
    f = np.zeros((1, 1, len(FORCING_VARIABLES)), order="F")
    for k, name in enumerate(FORCING_VARIABLES):
        f[:, :, k] = forcing.get(name, 0.0)
    da, dv = np.zeros((1, 1), order="F"), np.zeros((1, 1), order="F")
    ierr = seaice.seaice_api.thermo_columns(tp, 1, 1, len(FORCING_VARIABLES), dt, 1, st["a"], st["v"], st["vs"],
                                            st["ts"], st["tos"], f, update_tsurf, da, dv)
    assert ierr == 0
    return {k: float(x[0, 0]) for k, x in st.items()}


SIGMA = 5.670374419e-8  # W m-2 K-4


def open_water_flux(t, forcing: dict, thermo: ThermoConfig) -> float:
    """Upward open-water heat flux (W m-2) at water temperature t (degC), physics.md §1.6, no latent heat."""
    wind = np.hypot(forcing.get("uas", 0.0), forcing.get("vas", 0.0))
    return (thermo.emissivity * SIGMA * (t + 273.15) ** 4 - forcing.get("rlds", 0.0)
            - (1 - thermo.albedo_water) * forcing.get("rsds", 0.0)
            + thermo.rho_air * thermo.cp_air * thermo.ch_water * wind * (t - (forcing["tas"] - 273.15)))


def bare_ice_fluxes_at_melting(forcing: dict, thermo: ThermoConfig, t_albedo: float) -> tuple[float, float]:
    """(upward atmosphere-ice flux Q_ia, penetrating short wave) in W m-2 of snow-free ice whose surface is at the
    bare-ice melting point, physics.md §1.6 (CCSM3 albedo at the step's starting surface temperature t_albedo,
    i0), no latent heat."""
    tm = -thermo.mu_salinity * thermo.ice_salinity
    wind = np.hypot(forcing.get("uas", 0.0), forcing.get("vas", 0.0))
    albedo = 0.538 - max(0.0, 0.075 * (t_albedo + 1.0))
    sw_abs = (1 - albedo) * forcing.get("rsds", 0.0)
    sw_pen = thermo.i0 * sw_abs
    q_ia = (thermo.emissivity * SIGMA * (tm + 273.15) ** 4 - forcing.get("rlds", 0.0) - (sw_abs - sw_pen)
            + thermo.rho_air * thermo.cp_air * thermo.ch_ice * wind * (tm - (forcing["tas"] - 273.15)))
    return q_ia, sw_pen


def test_open_water_refreezes_with_lateral_growth():
    """Cold air over open water at the freezing point: new ice forms, concentration grows by dV/h0.

    Energy budget, step by step (no latent heat, slab held at freezing): the latent heat of the new volume is the
    open-water loss through 1 - A plus the conduction gamma k (T_f - T_s)/h through the ice-covered part."""
    thermo = ThermoConfig(latent_heat_on=False)
    forcing = {"tas": 248.0, "rlds": 180.0, "uas": 8.0}
    rhol = thermo.rho_ice * thermo.latent_fusion
    dt = 3600.0
    q_ow = open_water_flux(thermo.t_freeze, forcing, thermo)
    assert 300 < q_ow < 500  # ~400 W m-2 lost: ~0.1 m of new ice per day
    s = {"a": 0.0, "v": 0.0, "vs": 0.0, "ts": thermo.t_freeze, "tos": thermo.t_freeze}
    for n in range(24):
        new = _step_column(thermo, s, forcing, update_tsurf=True, dt=dt)
        dv_open = (1 - s["a"]) * q_ow * dt / rhol
        dv_ice = 0.0
        if s["a"] > 0:
            conduction = thermo.semtner_gamma * thermo.k_ice / (s["v"] / s["a"]) * (thermo.t_freeze - new["ts"])
            dv_ice = s["a"] * conduction * dt / rhol
            assert conduction > 0 and new["ts"] < thermo.t_freeze
        assert new["v"] - s["v"] == pytest.approx(dv_open + dv_ice, rel=1e-10, abs=1e-15), n
        assert new["a"] == pytest.approx(min(s["a"] + dv_open / thermo.h0_lateral, 1.0), rel=1e-12), n
        assert new["tos"] == pytest.approx(thermo.t_freeze, abs=1e-12) and new["vs"] == 0.0
        s = new
    assert 0.2 < s["a"] < 1.0 and s["v"] > 0.05
    # while the lead is open h stays near h0; once it closes, growth continues vertically
    assert s["v"] / s["a"] >= thermo.h0_lateral * (1 - 1e-12)


def test_snowfall_accumulates_and_floods():
    thermo = ThermoConfig()
    prsn = 1e-4  # kg m-2 s-1 = 8.64 mm water per day
    out = _columns(thermo, 1, 1.0, 1.0, -20.0, {"tas": 253.15, "prsn": prsn, "rlds": 150.0}, 10.0,
                   update_tsurf=True)
    assert out["vs"][0] == pytest.approx(prsn * 10 * DAY / thermo.rho_snow, rel=1e-9)
    # heavy snow on thin ice, surface held at the freezing point (no conduction, no melt): the only mass source is
    # the snowfall, and the waterline rises above the ice so snow turns into ice. Mass M = rho_i h + rho_s hs is
    # conserved by flooding, which ends exactly at the waterline: h = M / rho_w, hs = (M - rho_i h) / rho_s.
    heavy, h0, days = 2e-3, 0.3, 2.0
    out = _columns(thermo, 1, 1.0, h0, thermo.t_freeze, {"tas": 268.15, "prsn": heavy, "rlds": 300.0}, days,
                   update_tsurf=False)
    h, hs = out["v"][0], out["vs"][0]
    mass = thermo.rho_ice * h0 + heavy * days * DAY
    assert thermo.rho_ice * h + thermo.rho_snow * hs == pytest.approx(mass, rel=1e-12)
    assert h == pytest.approx(mass / thermo.rho_water, rel=1e-12) and h > 2 * h0  # flooded: ~0.6 m of ice
    assert hs == pytest.approx((mass - thermo.rho_ice * h) / thermo.rho_snow, rel=1e-9) and hs > 0.1
    assert out["a"][0] == 1.0


def test_summer_melt_reduces_area_and_volume():
    """Warm air and sun on bare ice with open water: step by step, (1) the column's enthalpy
    E = c_ml (T_ml - T_f) - rho_i L V changes by the surface fluxes (open water at T_ml, ice at its melting point,
    conduction cancels between top and bottom), the penetrating short wave and the slab restoring; (2) the area
    follows Hibler's lateral melt A' = A (1 + phi_M dh/h)."""
    thermo = ThermoConfig(latent_heat_on=False)
    forcing = {"tas": 278.15, "rsds": 300.0, "rlds": 310.0, "uas": 5.0}
    rhol = thermo.rho_ice * thermo.latent_fusion
    heat_cap = thermo.rho_water * thermo.cp_water * thermo.mixed_layer_depth
    tm = -thermo.mu_salinity * thermo.ice_salinity
    dt = 3600.0
    s = {"a": 0.9, "v": 0.9, "vs": 0.0, "ts": -1.0, "tos": thermo.t_freeze}

    def enthalpy(x):  # J m-2 relative to a slab at freezing and no ice
        return heat_cap * (x["tos"] - thermo.t_freeze) - rhol * x["v"]

    checked = 0
    for n in range(5 * 24):
        new = _step_column(thermo, s, forcing, update_tsurf=True, dt=dt)
        h_old, h_new = s["v"] / s["a"], new["v"] / s["a"]  # the volume is A_old h: lateral melt only moves area
        assert new["a"] == pytest.approx(s["a"] * (1 + thermo.phi_melt * (h_new - h_old) / h_old), rel=1e-12), n
        if new["ts"] == tm:  # surface at the melting point (all steps after the first few)
            q_ia, sw_pen = bare_ice_fluxes_at_melting(forcing, thermo, s["ts"])
            gain = dt * (-(1 - s["a"]) * open_water_flux(s["tos"], forcing, thermo) - s["a"] * (q_ia - sw_pen)) \
                + heat_cap * (thermo.sst_restore_target - s["tos"]) * dt / thermo.sst_restore_time
            assert enthalpy(new) - enthalpy(s) == pytest.approx(gain, rel=1e-9), n
            checked += 1
        s = new
    assert checked > 100
    assert s["v"] < 0.9 and s["a"] < 0.9
    assert s["ts"] == pytest.approx(tm)  # bare ice melting point
    assert s["tos"] > thermo.t_freeze  # the open water warms the slab


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
