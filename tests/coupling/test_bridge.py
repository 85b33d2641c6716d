"""The Python bridge of the coarse model: exact Fortran <-> Python round trips, zero-copy views updated in place,
clear errors for bad input, every config field reaching Fortran, Fortran errors as exceptions."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from fortran_stub.config import CoarsePhysicsConfig, GridConfig, ThermoConfig
from coupling.bridge import CoarseModel, ModelError, fortran_params
from icecorr.base.errors import InputError
from icecorr.base.variables import FORCING_VARIABLES, VARIABLES
from tests.helpers.physics import uniform_forcing

NY, NX = 12, 16


@pytest.fixture(scope="module")
def model():
    return CoarseModel(GridConfig(nx=NX, ny=NY, dx=10_000.0), CoarsePhysicsConfig(n_evp=50))


def _random_state(rng):
    st = {"sic": rng.uniform(0.1, 1.0, (NY, NX)), "sivol": rng.uniform(0.1, 3.0, (NY, NX)),
          "snvol": rng.uniform(0.0, 0.3, (NY, NX)), "tsi": rng.uniform(-30, 0, (NY, NX)),
          "tos": rng.uniform(-1.8, 1, (NY, NX)), "siu": rng.normal(0, 0.1, (NY, NX)),
          "siv": rng.normal(0, 0.1, (NY, NX)), "sig1": -rng.uniform(0, 5e4, (NY, NX)),
          "sig2": rng.normal(0, 1e4, (NY, NX)), "sig12": rng.normal(0, 1e4, (NY, NX))}
    st["siu"][:, -1] = 0.0
    st["siv"][-1, :] = 0.0
    return st


def test_round_trip_is_exact(model):
    st = _random_state(np.random.default_rng(0))
    model.set_state(st)
    out = model.get_state()
    for name, arr in st.items():
        np.testing.assert_array_equal(out[name].values, arr, err_msg=name)
    np.testing.assert_allclose(out["sit"].values, st["sivol"] / st["sic"], rtol=1e-15)
    # the derived thicknesses round-trip too (V = h A then h = V / A, to the last bit or one ulp)
    model.set_state({"sit": out["sit"].values, "snt": out["snt"].values})
    again = model.get_state()
    np.testing.assert_allclose(again["sit"].values, out["sit"].values, rtol=2e-16)
    np.testing.assert_allclose(again["snt"].values, out["snt"].values, rtol=2e-16)
    # a Dataset is accepted as well, and every variable carries CF metadata
    model.set_state(out[["sic", "siu"]])
    for name in out.data_vars:
        assert out[name].attrs["units"] == VARIABLES[name]["units"]
        assert out[name].attrs["long_name"]
    assert out["sic"].attrs["standard_name"] == "sea_ice_area_fraction"
    assert out["x"].attrs["units"] == "m" and out.sizes == {"y": NY, "x": NX}


def test_views_are_zero_copy_and_updated_in_place(model):
    model.set_state({"sic": np.ones((NY, NX)), "sit": np.ones((NY, NX)), "siu": np.zeros((NY, NX)),
                     "siv": np.zeros((NY, NX)), "sig1": np.zeros((NY, NX)), "sig2": np.zeros((NY, NX)),
                     "sig12": np.zeros((NY, NX))})
    views = model.state_views()
    for name, view in views.items():
        assert view.shape == (NY, NX) and view.dtype == np.float64
        assert np.shares_memory(view, model.state_views()[name])
        assert view.base is not None  # a view of the Fortran-ordered array, not a copy
    assert views["sic"].flags.c_contiguous and views["sic"].T.flags.f_contiguous
    before = views["siu"].copy()
    model.step(uniform_forcing(NY, NX, uas=15.0), uniform_forcing(NY, NX, uas=15.0))
    assert not np.array_equal(views["siu"], before)  # the view taken before the step sees the new state
    views["tos"][0, 0] = 0.5
    assert model.get_state()["tos"].values[0, 0] == 0.5
    info = model.last_step_info
    assert info["dynamics_steps"] == 12 and info["transport_substeps"] >= 12 and info["wall_time"] > 0
    assert model.time_seconds == 43200.0 * 1


@pytest.mark.parametrize("value, match", [
    (np.ones((NX, NY)), "shape"),
    (np.ones((NY, NX), dtype=np.int64), "dtype"),
    (np.full((NY, NX), np.nan), "NaN"),
])
def test_set_state_rejects_bad_arrays(model, value, match):
    before = model.get_state()
    with pytest.raises(InputError, match=f"'sivol'.*{match}"):
        model.set_state({"sic": np.ones((NY, NX)), "sivol": value})
    xr.testing.assert_identical(model.get_state(), before)  # nothing was written


def test_set_state_rejects_unknown_and_unphysical(model):
    with pytest.raises(ValueError, match="'damage'"):
        model.set_state({"damage": np.ones((NY, NX))})
    with pytest.raises(ValueError, match="'sic'.*outside"):
        model.set_state({"sic": np.full((NY, NX), 1.2)})
    with pytest.raises(ValueError, match="'sit'.*negative"):
        model.set_state({"sit": np.full((NY, NX), -1.0)})
    model.set_state({"sic": np.ones((NY, NX), dtype=np.float32)})  # float32 (e.g. from the network) is fine


def test_step_rejects_bad_forcing(model):
    good = uniform_forcing(NY, NX)
    bad = dict(good, tas=np.full((NY, NX), np.nan))
    with pytest.raises(InputError, match="'tas'.*NaN"):
        model.step(good, bad)
    missing = {k: v for k, v in good.items() if k != "prsn"}
    with pytest.raises(InputError, match="'prsn'"):
        model.step(missing, good)
    with pytest.raises(InputError, match="'uo'.*shape"):
        model.step(dict(good, uo=np.zeros((3, 3))), good)


def _distinct_values(cfg_cls, start: float):
    """A non-default, distinct, valid value for every field of a config class."""
    values, k = {}, start
    for name, field in cfg_cls.model_fields.items():
        default = field.default
        if name == "thermo":
            continue
        if isinstance(default, bool):
            values[name] = not default
        elif name == "limiter":
            values[name] = "vanleer"
        elif isinstance(default, int):
            values[name] = default + 7
        else:
            k += 1
            values[name] = default * (1 - 0.001 * k) if default else 0.001 * k
    return values


def test_every_config_field_reaches_fortran():
    thermo_vals = _distinct_values(ThermoConfig, 0)
    coarse_vals = _distinct_values(CoarsePhysicsConfig, 100)
    phys = CoarsePhysicsConfig(**coarse_vals, thermo=ThermoConfig(**thermo_vals))
    pd, tp = fortran_params(phys)
    for name, value in phys.fortran_values().items():
        assert getattr(pd, name) == value, name
    assert pd.limiter == 2
    for name, value in thermo_vals.items():
        assert getattr(tp, name) == value, name
    # and the Fortran type has no component the config forgets
    from fortran_stub import seaice
    fresh = seaice.seaice_params.coarse_params()
    fortran_names = {n for n in dir(fresh) if not n.startswith("_") and not callable(getattr(fresh, n))}
    assert fortran_names <= set(phys.fortran_values()), fortran_names - set(phys.fortran_values())


def test_fortran_error_becomes_exception():
    m = CoarseModel(GridConfig(nx=8, ny=8), CoarsePhysicsConfig(n_evp=10))
    m._pd.n_evp = 0  # bypass the pydantic validation: Fortran must refuse, not stop
    f = uniform_forcing(8, 8)
    with pytest.raises(ModelError, match="error 2"):
        m.step(f, f)
    assert m.time_seconds == 0.0


def test_overflow_in_fortran_is_reported_not_fatal():
    """Finite but absurd forcing overflows inside Fortran; the step returns an error code instead of stopping."""
    ny = nx = 8
    m = CoarseModel(GridConfig(nx=nx, ny=ny), CoarsePhysicsConfig(n_evp=20))
    m.set_state({"sic": np.ones((ny, nx)), "sit": np.ones((ny, nx))})
    f = uniform_forcing(ny, nx, uas=1e200)
    with pytest.raises(ModelError, match="error 3.*non-finite velocity"):
        m.step(f, f)


def test_small_fixed_alpha_does_not_converge():
    """physics.md §4.4 negative test: fixed alpha = beta far below (gamma)^1/2 leaves rigid ice noisy (the
    residual stalls), while aEVP converges on the same problem."""
    ny = nx = 16
    final = {}
    for aevp in (True, False):
        m = CoarseModel(GridConfig(nx=nx, ny=ny), CoarsePhysicsConfig(aevp=aevp, alpha_fixed=20.0, thermo_on=False))
        m.set_state({"sic": np.ones((ny, nx)), "sit": np.full((ny, nx), 2.0)})
        f = uniform_forcing(ny, nx, uas=12.0, vas=5.0)
        m.step(f, f)
        final[aevp] = m.last_step_info["mevp_residual"]
    assert final[True] < 1e-3 * final[False]


def test_duration_and_forcing_interpolation():
    """A 1 h window takes one dynamics step; wind ramping from 0 to U acts like its mid-window value."""
    ny = nx = 8
    phys = CoarsePhysicsConfig(rheology_on=False, transport_on=False, thermo_on=False, dt_dyn=3600.0)
    a = CoarseModel(GridConfig(nx=nx, ny=ny), phys)
    b = CoarseModel(GridConfig(nx=nx, ny=ny), phys)
    for m in (a, b):
        m.set_state({"sic": np.ones((ny, nx)), "sit": np.ones((ny, nx))})
    a.step(uniform_forcing(ny, nx, uas=0.0), uniform_forcing(ny, nx, uas=10.0), duration_seconds=3600.0)
    b.step(uniform_forcing(ny, nx, uas=5.0), uniform_forcing(ny, nx, uas=5.0), duration_seconds=3600.0)
    assert a.last_step_info["dynamics_steps"] == 1 and a.time_seconds == 3600.0
    np.testing.assert_array_equal(a.state_views()["siu"], b.state_views()["siu"])
    assert len(FORCING_VARIABLES) == 9
