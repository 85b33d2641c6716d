"""The bounding modes beside plain clipping: `conserve` (states stay within the bounds, and symmetric noise around a
state at the bound gives no mean gain of area or volume, where plain clipping turns it into a gain) and `ridge` (a
concentration clipped at 1 keeps its volume: no mean volume loss from symmetric noise around compact ice)."""
from __future__ import annotations

import numpy as np

from corrector.bounds import RANGES, apply_bounds, conserve_totals, ridge_excess


def antithetic(rng, shape):
    """Noise for sic and sit in 4 members: (ds, dh), (−ds, dh), (ds, −dh), (−ds, −dh) — symmetric, and the products
    ds·dh cancel too."""
    ds, dh = rng.normal(size=shape), rng.normal(size=shape)
    return np.stack([ds, -ds, ds, -ds]), np.stack([dh, dh, -dh, -dh])


def state_half_at_the_bound(n=16):
    """Open water (sic = sit = snt = 0, at the lower bound) in the left half, pack ice in the right half."""
    sic, sit, snt = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
    sic[:, n // 2:], sit[:, n // 2:], snt[:, n // 2:] = 0.7, 1.5, 0.2
    return {"sic": sic, "sit": sit, "snt": snt}


def corrected(state, ds, dh):
    """The unbounded corrected members (4, n, n) and their bounded copies."""
    raw = {"sic": state["sic"] + 0.05 * ds, "sit": state["sit"] + 0.3 * dh,
           "snt": np.broadcast_to(state["snt"], ds.shape).copy()}
    return raw, apply_bounds(raw)[0]


def totals(f):
    """Domain totals of area, ice volume and snow volume per member."""
    return np.stack([f["sic"].sum((-2, -1)), (f["sic"] * f["sit"]).sum((-2, -1)), (f["sic"] * f["snt"]).sum((-2, -1))])


def test_conserve_keeps_the_bounds_and_the_rules():
    rng = np.random.default_rng(0)
    state = state_half_at_the_bound()
    raw, clipped = corrected(state, *antithetic(rng, (16, 16)))
    raw["sic"][0, :, 10] += 0.5                              # pushes pack cells above 1: a loss to give back
    clipped = apply_bounds(raw)[0]
    out = conserve_totals(raw, clipped)
    for v, (lo, hi) in RANGES.items():
        if v in out:
            assert out[v].min() >= lo and (hi is None or out[v].max() <= hi)
    no_area = out["sic"] <= 0
    assert np.all(out["sit"][no_area] == 0) and np.all(out["sic"][~(out["sit"] > 0)] == 0)
    _, counts = apply_bounds(out)                            # nothing left for the bounds to change
    assert sum(counts.values()) == 0


def test_symmetric_noise_at_the_bound_gives_no_mean_gain_with_conserve_but_a_gain_with_clip():
    rng = np.random.default_rng(1)
    state = state_half_at_the_bound()
    gains_clip, gains_conserve = [], []
    for _ in range(5):
        raw, clipped = corrected(state, *antithetic(rng, (16, 16)))
        before = totals({k: v[None] for k, v in state.items()})[:, 0]
        np.testing.assert_allclose(totals(raw).mean(axis=1), before, rtol=1e-12)   # the noise itself: no gain
        gains_clip.append(totals(clipped).mean(axis=1) - before)
        gains_conserve.append(totals(conserve_totals(raw, clipped)).mean(axis=1) - before)
    np.testing.assert_allclose(np.mean(gains_conserve, axis=0), 0.0, atol=1e-9)
    assert np.mean(gains_clip, axis=0)[0] > 0.5              # area gained in open water: ~ n²/2 · 0.05 · E|N|/2


def test_land_and_items_stay_separate():
    rng = np.random.default_rng(2)
    state = state_half_at_the_bound(8)
    mask = np.ones((8, 8))
    mask[:, 7] = 0
    raw, clipped = corrected(state, *antithetic(rng, (8, 8)))
    raw = {k: v * mask for k, v in raw.items()}
    clipped = apply_bounds(raw)[0]
    out = conserve_totals(raw, clipped, mask)
    assert np.all(out["sic"][..., 7] == 0)
    np.testing.assert_allclose(out["sic"].sum((-2, -1)), raw["sic"].sum((-2, -1)), rtol=1e-12)  # member by member


def test_ridge_keeps_the_volume_of_compact_ice_under_symmetric_noise():
    rng = np.random.default_rng(3)
    n = 12
    ds = rng.normal(scale=0.03, size=(n, n))
    sit = rng.uniform(0.5, 2.0, size=(n, n))
    raw = {"sic": np.stack([1.0 + ds, 1.0 - ds]), "sit": np.stack([sit, sit]), "snt": np.stack([0.1 * sit] * 2)}
    clipped = apply_bounds(raw)[0]
    out = ridge_excess(raw, clipped)
    volume = {k: (f["sic"] * f["sit"]).mean(axis=0) for k, f in (("raw", raw), ("clip", clipped), ("ridge", out))}
    np.testing.assert_allclose(volume["ridge"], sit, rtol=1e-12)            # the members' mean volume: unchanged
    assert (volume["clip"] - sit).mean() < -0.005                          # clipping alone loses volume
    assert out["sic"].max() <= 1.0 and out["sit"].min() >= 0.0
    under = raw["sic"] <= 1.0                                              # cells not clipped: untouched
    np.testing.assert_array_equal(out["sit"][under], clipped["sit"][under])


def test_rebound_dispatches_on_the_mode():
    from corrector.bounds import rebound

    rng = np.random.default_rng(4)
    raw, clipped = corrected(state_half_at_the_bound(8), *antithetic(rng, (8, 8)))
    assert rebound("clip", raw, clipped) == clipped
    np.testing.assert_array_equal(rebound("ridge", raw, clipped)["sit"], ridge_excess(raw, clipped)["sit"])
    np.testing.assert_array_equal(rebound("conserve", raw, clipped)["sic"], conserve_totals(raw, clipped)["sic"])
    try:
        rebound("reflect", raw, clipped)
    except ValueError as exc:
        assert "clip" in str(exc)
    else:
        raise AssertionError("an unknown mode must raise")


def test_corrector_apply_bounds_in_the_configured_mode():
    from corrector.config import SamplerConfig
    from corrector.inference import Corrector

    rng = np.random.default_rng(5)
    names = ["sic", "sit", "snt"]
    state = state_half_at_the_bound(8)
    base = {v: state[v][None] for v in names}                         # (B=1, ny, nx)
    sample = np.zeros((1, 4, 3, 8, 8))
    ds, dh = antithetic(rng, (8, 8))
    sample[0, :, 0], sample[0, :, 1] = 0.05 * ds, 0.3 * dh
    c = Corrector.zero(variables=names)
    clipped = c.apply(base, sample)
    assert c.config.sampler.bounds == "clip"                            # the default: unchanged behaviour
    c.config = c.config.model_copy(update={"sampler": SamplerConfig(bounds="conserve_area")})
    out = c.apply(base, sample)
    raw_area = base["sic"][:, None] + sample[:, :, 0]
    np.testing.assert_allclose(out["sic"].sum((-2, -1)), raw_area.sum((-2, -1)), rtol=1e-12)
    assert clipped["sic"].sum() > out["sic"].sum()                     # clipping gained area in open water
    assert out["sic"].min() >= 0 and out["sic"].max() <= 1 and out["sit"].min() >= 0


def test_conserve_physics_keeps_the_forecast_totals_through_apply():
    """`conserve_physics`: every member's corrected state has the area, ice- and snow-volume totals of the physics
    forecast (the correction moves ice, it does not make it), within the bounds; `conserve` keeps those of the
    unbounded corrected state instead, which a biased correction changes."""
    import pytest

    from corrector.config import CorrectorConfig
    from tests.mpi_scripts.tiny import tiny_corrector

    rng = np.random.default_rng(3)
    n = 16
    forecast = {k: v[None] for k, v in state_half_at_the_bound(n).items()}          # (B=1, ny, nx)
    forecast.update(siu=np.zeros((1, n, n)), siv=np.zeros((1, n, n)))
    sample = np.zeros((1, 4, 5, n, n))
    sample[:, :, 0] = 0.05 * rng.normal(size=(4, n, n)) + 0.02                    # a biased correction: adds area
    sample[:, :, 1] = 0.3 * rng.normal(size=(4, n, n)) + 0.1                      # … and thickness
    c = tiny_corrector(n, n)
    for mode in ("conserve", "conserve_physics"):
        c.config = c.config.model_copy(update={"sampler": c.config.sampler.model_copy(update={"bounds": mode})})
        out = c.apply(forecast, sample)
        assert out["sic"].min() >= 0 and out["sic"].max() <= 1 and out["sit"].min() >= 0
        kept = totals(out)[:2]                                 # (area, volume) × (B = 1) × 4 members
        physics = totals(forecast)[:2, :, None]                # (area, volume) × (B = 1) × 1
        if mode == "conserve_physics":
            np.testing.assert_allclose(kept, np.broadcast_to(physics, kept.shape), rtol=1e-9)
        else:
            assert np.all(kept[1] > physics[1] * 1.05)         # the bias made ice
    with pytest.raises(ValueError, match="residual mode only"):
        CorrectorConfig(mode="emulator", sampler={"bounds": "conserve_physics"})


def test_conserve_physics_gives_a_deficit_back_where_the_physics_had_it():
    """A correction that removes the ice of half the pack (thickness clipped at 0): the volume goes back to those
    cells, up to the physics' own thickness, not onto the ice that is left (which would pile it up summer after
    summer in a coupled year)."""
    from corrector.bounds import rebound

    n = 8
    physics = {"sic": np.full((1, n, n), 0.8), "sit": np.full((1, n, n), 1.0), "snt": np.full((1, n, n), 0.1)}
    raw = {k: v.copy() for k, v in physics.items()}
    raw["sit"][:, :, : n // 2] -= 1.5                                      # removes the ice of the west half
    bounded = apply_bounds(raw)[0]
    out = rebound("conserve_physics", raw, bounded, physics=physics)
    np.testing.assert_allclose(totals(out), totals(physics), rtol=1e-12)
    assert out["sit"].max() <= 1.0 + 1e-12                                 # nothing thicker than the physics made
    piled = rebound("conserve", physics, bounded)                          # the old rule: onto the ice that is left
    assert piled["sit"].max() > 1.5
