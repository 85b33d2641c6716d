"""Coarse-graining operator checks (physics.md §4.9)."""
import numpy as np
import pytest
import xarray as xr

from training.data.coarsegrain import (block_mean, cgrid_divergence, coarsen_forcing, coarsen_state, coarsen_u,
                                  coarsen_v, refine_state, refine_u, refine_v)

RNG = np.random.default_rng(3)


def _closed_uv(ny, nx, lead=()):
    u = RNG.normal(size=lead + (ny, nx))
    v = RNG.normal(size=lead + (ny, nx))
    u[..., :, -1] = 0.0  # east wall
    v[..., -1, :] = 0.0  # north wall
    return u, v


def _fine_state(n=16, lead=()):
    a = RNG.uniform(0.0, 1.0, lead + (n, n))
    a[..., :2, :3] = 0.0  # a few ice-free cells
    h = RNG.uniform(0.1, 3.0, lead + (n, n))
    u, v = _closed_uv(n, n, lead)
    return {"sic": a, "sit": np.where(a > 0, h, 0.0), "snt": np.where(a > 0, 0.1 * h, 0.0), "siu": u, "siv": v,
            "damage": RNG.uniform(0.0, 1.0, lead + (n, n))}


@pytest.mark.parametrize("r", [2, 4])
def test_constant_fields_stay_constant(r):
    n = 16
    s = {"sic": np.full((n, n), 0.9), "sit": np.full((n, n), 1.7), "snt": np.full((n, n), 0.2),
         "damage": np.full((n, n), 0.4), "siu": np.full((n, n), 0.1), "siv": np.full((n, n), -0.2)}
    c = coarsen_state(s, r)
    for name in ("sic", "sit", "snt", "damage", "siu", "siv"):
        np.testing.assert_allclose(c[name], s[name][: n // r, : n // r], rtol=1e-14, err_msg=name)
    f = coarsen_forcing({"uas": np.full((3, n, n), 7.0)}, r)
    np.testing.assert_allclose(f["uas"], 7.0)


@pytest.mark.parametrize("r", [2, 4])
def test_volume_is_conserved_exactly(r):
    s = _fine_state(16, lead=(3,))
    c = coarsen_state(s, r)
    fine_vol = (s["sit"] * s["sic"]).sum(axis=(-2, -1))
    coarse_vol = c["sivol"].sum(axis=(-2, -1)) * r * r
    np.testing.assert_allclose(coarse_vol, fine_vol, rtol=1e-14)
    np.testing.assert_allclose((c["sit"] * c["sic"]).sum(axis=(-2, -1)) * r * r, fine_vol, rtol=1e-13)
    np.testing.assert_allclose(c["snvol"].sum(axis=(-2, -1)) * r * r, (s["snt"] * s["sic"]).sum(axis=(-2, -1)),
                               rtol=1e-14)


@pytest.mark.parametrize("r", [2, 4])
def test_coarse_divergence_is_block_mean_of_fine_divergence(r):
    dx = 8000.0
    u, v = _closed_uv(32, 32, lead=(2,))
    div_fine = cgrid_divergence(u, v, dx)
    div_coarse = cgrid_divergence(coarsen_u(u, r), coarsen_v(v, r), dx * r)
    np.testing.assert_allclose(div_coarse, block_mean(div_fine, r), atol=1e-18, rtol=1e-12)
    # closed walls survive the coarse-graining
    assert np.all(coarsen_u(u, r)[..., :, -1] == 0) and np.all(coarsen_v(v, r)[..., -1, :] == 0)


@pytest.mark.parametrize("r", [2, 4])
def test_coarsen_of_refine_is_identity(r):
    c = coarsen_state(_fine_state(16), 2)  # any coarse state
    c.pop("sit"), c.pop("snt")
    back = coarsen_state(refine_state(c, r), r)
    for name, val in c.items():
        np.testing.assert_allclose(back[name], val, rtol=1e-13, atol=1e-15, err_msg=name)


def test_refined_velocity_has_uniform_divergence_in_blocks_and_walls():
    r, dx = 4, 16000.0
    u, v = _closed_uv(8, 8)
    uf, vf = refine_u(u, r), refine_v(v, r)
    assert np.all(uf[:, -1] == 0) and np.all(vf[-1, :] == 0)
    div_f = cgrid_divergence(uf, vf, dx / r)
    div_c = cgrid_divergence(u, v, dx)
    np.testing.assert_allclose(div_f, np.repeat(np.repeat(div_c, r, 0), r, 1), atol=1e-16)


def test_damage_is_concentration_weighted():
    a = np.array([[1.0, 0.0], [0.5, 0.5]])
    d = np.array([[0.2, 1.0], [0.6, 1.0]])
    c = coarsen_state({"sic": a, "damage": d}, 2)
    np.testing.assert_allclose(c["damage"], [[(0.2 + 0.3 + 0.5) / 2.0]])


def test_dataset_roundtrip_keeps_coords_and_attrs():
    n, dx = 16, 8000.0
    s = _fine_state(n, lead=(2,))
    x = (np.arange(n) + 0.5) * dx
    ds = xr.Dataset({k: (("time", "y", "x"), v, {"units": "1"}) for k, v in s.items()},
                    coords={"time": [0, 1], "x": x, "y": x})
    c = coarsen_state(ds, 2)
    assert isinstance(c, xr.Dataset) and c.sizes == {"time": 2, "y": 8, "x": 8}
    np.testing.assert_allclose(c["x"].values, (np.arange(8) + 0.5) * 2 * dx)
    assert c["sic"].attrs["units"] == "1"
    f = refine_state(c[["sic", "sit", "siu", "siv"]], 2)
    np.testing.assert_allclose(f["x"].values, x)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="not divisible"):
        block_mean(np.zeros((5, 6)), 2)
    with pytest.raises(ValueError, match="no coarse-graining rule.*wibble"):
        coarsen_state({"sic": np.zeros((4, 4)), "wibble": np.zeros((4, 4))}, 2)
