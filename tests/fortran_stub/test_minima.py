"""Minima and the thickness cap of partly covered cells: volume kept, area raised, ordinary ice untouched."""
from __future__ import annotations

import numpy as np

from coupling.bridge import CoarseModel
from fortran_stub.config import CoarsePhysicsConfig, GridConfig
from tests.helpers.physics import uniform_forcing


def _step(state: dict, **physics) -> dict:
    n = 16
    m = CoarseModel(GridConfig(nx=n, ny=n, dx=16e3),
                    CoarsePhysicsConfig(thermo_on=False, dynamics_on=False, **physics))
    m.set_state(state)
    f = uniform_forcing(n, n)
    m.step(f, f)
    return {k: np.array(v) for k, v in m.state_views().items()}


def test_trace_of_area_holding_metres_of_ice_is_spread_volume_conserving():
    n = 16
    sic = np.full((n, n), 0.9)
    sit = np.full((n, n), 1.5)
    sic[5, 7], sit[5, 7] = 1e-4, 2000.0  # V = 0.2 m on 1e-4 of the cell: what split transport can leave
    sic[9, 3], sit[9, 3] = 0.05, 40.0    # V = 2 m on 5 %
    out = _step({"sic": sic, "sit": sit, "snt": np.zeros((n, n))}, h_max=30.0)
    volume = sic * sit
    np.testing.assert_allclose(out["sivol"], volume, rtol=1e-13)  # nothing removed, nothing created
    h = out["sivol"] / out["sic"]
    assert h.max() <= 30.0 * (1 + 1e-12)
    assert abs(out["sic"][5, 7] - 0.2 / 30.0) < 1e-15
    assert abs(out["sic"][9, 3] - 2.0 / 30.0) < 1e-15
    ordinary = np.ones((n, n), bool)
    ordinary[5, 7] = ordinary[9, 3] = False
    np.testing.assert_array_equal(out["sic"][ordinary], sic[ordinary])  # ordinary ice is not touched


def test_compact_ridged_ice_thicker_than_the_cap_keeps_full_cover():
    n = 16
    sic = np.ones((n, n))
    sit = np.full((n, n), 35.0)  # A = 1 already: the cap cannot raise A, thick ridged ice stays
    out = _step({"sic": sic, "sit": sit, "snt": np.zeros((n, n))}, h_max=30.0)
    np.testing.assert_array_equal(out["sic"], sic)
    np.testing.assert_allclose(out["sivol"], sic * sit, rtol=1e-15)
