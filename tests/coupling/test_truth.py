"""TruthModel bridge API, conservation and robustness (cyclone-like wind, 32² and 64²)."""
import numpy as np
import pytest
import xarray as xr

from icecorr.base.errors import InputError
from coupling.truth import TruthModel
from fortran_stub.config import GridConfig
from fortran_stub.truth_config import TruthPhysicsConfig
from training.data.coarsegrain import coarsen_state, refine_state


def _cyclone(n, t_seconds, dx):
    """Moving convergent benchmark cyclone (physics.md §3) with the anticyclonic ocean gyre, cold air."""
    L = n * dx
    x = (np.arange(n) + 0.5) * dx
    X, Y = np.meshgrid(x, x)
    c = 0.5 * L + 0.1 * L * t_seconds / 86400.0
    xp, yp = X - c, Y - c
    s = 30.0 * 1e-5 * np.exp(-np.hypot(xp, yp) / (L / 5.12))
    a = np.deg2rad(72.0)
    z = np.zeros((n, n))
    return {"uas": -s * (np.cos(a) * xp + np.sin(a) * yp), "vas": -s * (-np.sin(a) * xp + np.cos(a) * yp),
            "tas": z + 255.0, "huss": z + 5e-4, "rsds": z, "rlds": z + 180.0, "prsn": z + 1e-6,
            "uo": 0.01 * (2 * Y / L - 1), "vo": 0.01 * (1 - 2 * X / L)}


def _initial(n, seed=0):
    rng = np.random.default_rng(seed)
    a = np.clip(0.97 + 0.03 * rng.standard_normal((n, n)), 0.0, 1.0)
    return {"sic": a, "sit": 1.0 + 0.2 * rng.standard_normal((n, n)).clip(-2, 2), "snt": np.full((n, n), 0.1)}


def _run(n, dx, steps, **phys):
    m = TruthModel(GridConfig(nx=n, ny=n, dx=dx), TruthPhysicsConfig(**phys), seed=5)
    m.set_state(_initial(n))
    for k in range(steps):
        m.step(_cyclone(n, k * 43200.0, dx), _cyclone(n, (k + 1) * 43200.0, dx))
    return m


def test_volume_conserved_without_thermodynamics():
    n, dx = 32, 16e3
    m = TruthModel(GridConfig(nx=n, ny=n, dx=dx), TruthPhysicsConfig(thermo_on=False), seed=5)
    m.set_state(_initial(n))
    v0 = m.state_views()["sivol"].sum()
    s0 = m.state_views()["snvol"].sum()
    for k in range(2):
        m.step(_cyclone(n, k * 43200.0, dx), _cyclone(n, (k + 1) * 43200.0, dx))
        s = m.state_views()
        assert abs(s["sivol"].sum() / v0 - 1) < 1e-12
        assert abs(s["snvol"].sum() / s0 - 1) < 1e-12
        assert s["sic"].min() >= 0.0 and s["sic"].max() <= 1.0 and s["sivol"].min() >= 0.0
    assert m.last_step_info["max_speed"] > 0.02  # the ice really moved
    assert m.time_seconds == 86400.0


@pytest.mark.parametrize("n,dx", [(32, 16e3), (64, 8e3)])
def test_cyclone_with_thermodynamics_has_no_nan(n, dx):
    m = _run(n, dx, 2)
    ds = m.get_state()
    for name in ds.data_vars:
        assert np.all(np.isfinite(ds[name].values)), name
    assert 0.0 < ds.damage.min() and ds.damage.max() <= 1.0
    assert ds.damage.min() < 0.9  # the storm broke some ice
    assert m.last_step_info["elastic_substeps"] >= 1


def test_get_state_is_a_cf_dataset_and_set_state_round_trips():
    n = 16
    m = TruthModel(GridConfig(nx=n, ny=n, dx=16e3), seed=1)
    m.set_state(_initial(n))
    ds = m.get_state()
    assert isinstance(ds, xr.Dataset) and ds.sizes == {"y": n, "x": n, "wall_corner": 2 * n + 1}
    for name in ("sic", "sit", "snt", "siu", "siv", "damage", "sivol", "snvol", "tsi", "tos",
                 "sig11", "sig22", "sig12", "cohesion"):
        assert "units" in ds[name].attrs, name
    assert ds.sic.attrs["standard_name"] == "sea_ice_area_fraction"
    np.testing.assert_allclose(ds.sit * ds.sic, ds.sivol, rtol=1e-14)
    m2 = TruthModel(GridConfig(nx=n, ny=n, dx=16e3), seed=1)
    m2.set_state(ds.drop_vars(["sit", "snt"]))
    xr.testing.assert_allclose(m2.get_state(), ds)
    # views are zero-copy
    m.state_views()["damage"][0, 0] = 0.5
    assert m.get_state().damage.values[0, 0] == 0.5


def test_round_trip_of_a_stormy_state_continues_bit_for_bit():
    """set_state(get_state()) on a fresh model (same cohesion seed) after a storm has loaded the wall corners: the
    next 12 h are identical to the original model's, bit for bit. Without the wall-corner shear stress
    (`sig12_walls`) the round trip lost it and the next step differed."""
    n, dx = 16, 16e3
    m = _run(n, dx, 2)
    state = m.get_state()
    assert np.abs(state["sig12_walls"].values).max() > 0  # the storm stressed the wall corners
    m2 = TruthModel(GridConfig(nx=n, ny=n, dx=dx), TruthPhysicsConfig(), seed=5)
    m2.set_state(state.drop_vars(["sit", "snt"]))
    f0, f1 = _cyclone(n, 2 * 43200.0, dx), _cyclone(n, 3 * 43200.0, dx)
    m.step(f0, f1)
    m2.step(f0, f1)
    a, b = m.get_state(), m2.get_state()
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_wall_corner_stress_of_the_wrong_length_is_refused():
    n = 16
    m = TruthModel(GridConfig(nx=n, ny=n, dx=16e3))
    with pytest.raises(InputError, match="sig12_walls.*expected 33 finite values"):
        m.set_state({"sig12_walls": np.zeros(32)})


def test_set_state_sit_uses_new_sic_and_walls_are_zero():
    n = 16
    m = TruthModel(GridConfig(nx=n, ny=n, dx=16e3))
    m.set_state({"sic": np.full((n, n), 0.5), "sit": np.full((n, n), 2.0), "siu": np.ones((n, n)),
                 "siv": np.ones((n, n))})
    s = m.state_views()
    np.testing.assert_allclose(s["sivol"], 1.0)
    assert np.all(s["siu"][:, -1] == 0) and np.all(s["siv"][-1, :] == 0)


@pytest.mark.parametrize("bad,field", [
    ({"sic": np.zeros((4, 4))}, "sic"),
    ({"sit": np.full((16, 16), np.nan)}, "sit"),
    ({"damage": np.ones((16, 16), dtype=int)}, "damage"),
    ({"wibble": np.ones((16, 16))}, "wibble"),
])
def test_bad_state_names_the_field(bad, field):
    m = TruthModel(GridConfig(nx=16, ny=16, dx=16e3))
    with pytest.raises(InputError, match=f"'{field}'"):
        m.set_state(bad)


def test_bad_forcing_names_the_field():
    n = 16
    m = TruthModel(GridConfig(nx=n, ny=n, dx=16e3))
    f = _cyclone(n, 0.0, 16e3)
    g = dict(f)
    del g["huss"]
    with pytest.raises(InputError, match="'huss'"):
        m.step(f, g)
    g = dict(f, tas=np.full((n, n), np.inf))
    with pytest.raises(InputError, match="'tas'"):
        m.step(g, f)


def test_cohesion_is_seeded_and_scaled():
    g = GridConfig(nx=16, ny=16, dx=8e3)
    c1 = TruthModel(g, seed=7).state_views()["cohesion"].copy()
    c2 = TruthModel(g, seed=7).state_views()["cohesion"]
    c3 = TruthModel(g, seed=8).state_views()["cohesion"]
    np.testing.assert_array_equal(c1, c2)
    assert not np.array_equal(c1, c3)
    c_grid = 2e6 * (0.1 / 8e3) ** 0.5  # ≈ 7.1 kPa at 8 km (physics.md §2.2)
    assert c1.min() >= c_grid and c1.max() <= 2 * c_grid


def test_elastic_substep_follows_the_knob():
    p1, p16 = TruthPhysicsConfig(e_reduction=1), TruthPhysicsConfig(e_reduction=16)
    assert p16.elastic_substep(8e3) == pytest.approx(4 * p1.elastic_substep(8e3))
    assert 4.0 < p1.elastic_substep(8e3) < 8.0  # ≈ 0.6 dx / 863 m s-1


def test_truth_from_refined_coarse_state_coarse_grains_back():
    """A fine initial state built with `refine` from a coarse one is coarse-grained back exactly.

    The coarse fields are non-uniform and asymmetric (different patterns in x and y, a non-square grid), so a
    transpose, a flipped axis or a one-block shift between refine, the TruthModel state and coarsen would show."""
    ny, nx = 12, 16
    y, x = np.mgrid[0:ny, 0:nx]
    coarse = {"sic": 0.5 + 0.4 * (x / nx) ** 2 + 0.05 * np.sin(y),
              "sit": 0.5 + 2.0 * (y / ny) + 0.3 * (x / nx),
              "snt": 0.02 + 0.2 * ((x + 2 * y) % 7) / 7,
              "damage": 0.3 + 0.6 * ((3 * x + y) % 11) / 11}
    m = TruthModel(GridConfig(nx=2 * nx, ny=2 * ny, dx=8e3))
    m.set_state(refine_state(coarse, 2))
    fine = m.get_state()
    # the fine grid holds each coarse value on its own 2x2 block (the state is (y, x): row j is coarse row j // 2)
    np.testing.assert_allclose(fine["sic"].values[5, 9], coarse["sic"][2, 4], rtol=1e-14)
    np.testing.assert_allclose(fine["sit"].values[::2, ::2], coarse["sit"], rtol=1e-14)
    back = coarsen_state(fine[["sic", "sivol", "snvol", "damage"]], 2)
    for k in ("sic", "sit", "snt", "damage"):
        np.testing.assert_allclose(back[k].values, coarse[k], rtol=1e-14, err_msg=k)