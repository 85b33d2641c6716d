"""CorrectorModel and Corrector on tiny networks, 16² grids: shapes, masking, determinism, learning."""
import numpy as np
import pytest
import torch

from corrector.config import CorrectorConfig
from corrector.inference import Corrector
from corrector.model import CorrectorModel
from corrector.normalization import Normalization
from corrector.seeding import member_seeds

TINY = dict(base_channels=8, channel_mults=[1, 2], embedding_dim=16, heads=2, norm_groups=4)
N = 16


def tiny_cfg(**kw) -> CorrectorConfig:
    return CorrectorConfig(**{"network": TINY, **kw})


def random_model(cfg, seed=0):
    torch.manual_seed(seed)
    m = CorrectorModel(cfg, len(cfg.conditioning))
    # a fresh network outputs exactly 0 (zero-initialised head): perturb every weight to exercise the whole path
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def conditioning(cfg, b=2, seed=0, land=True):
    rng = np.random.default_rng(seed)
    cond = {n: rng.normal(size=(b, N, N)).astype(np.float32) for n in cfg.conditioning}
    mask = np.ones((N, N), np.float32)
    if land:
        mask[:3, :4] = 0
    cond["mask"] = mask
    return cond, mask


def corrector_for(cfg, seed=0):
    norm = Normalization(list(cfg.conditioning), np.zeros(len(cfg.conditioning)), np.ones(len(cfg.conditioning)),
                         list(cfg.variables), np.full(len(cfg.variables), 0.01), np.full(len(cfg.variables), 0.1))
    return Corrector.from_model(random_model(cfg, seed), norm, cfg, grid=dict(nx=N, ny=N))


@pytest.mark.parametrize("kind", ["diffusion", "deterministic"])
@pytest.mark.parametrize("mode", ["residual", "emulator"])
def test_sample_shapes_land_and_members(kind, mode):
    cfg = tiny_cfg(kind=kind, mode=mode)
    c = corrector_for(cfg)
    assert c.kind == kind and c.mode == mode and c.variables == ["sic", "sit", "snt", "siu", "siv"]
    cond, mask = conditioning(cfg, b=2)
    out = c.sample(cond, members=3, steps=3, seeds=member_seeds(0, np.array([0, 1]), 0, 3))
    assert out.shape == (2, 3, 5, N, N) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert np.all(out[..., mask == 0] == 0)  # land gets no correction
    assert np.abs(out[..., mask == 1]).max() > 0
    if kind == "deterministic":
        assert np.array_equal(out[:, 0], out[:, 2])
    else:
        assert not np.allclose(out[:, 0], out[:, 2])


def test_seeds_determine_members_exactly():
    cfg = tiny_cfg(sampler={"s_churn": 2.0})
    c = corrector_for(cfg)
    cond, _ = conditioning(cfg, b=2)
    s4 = member_seeds(5, np.array([10, 11]), 3, 4)
    s8 = member_seeds(5, np.array([10, 11]), 3, 8)
    a = c.sample(cond, 4, steps=4, seeds=s4)
    assert np.array_equal(a, c.sample(cond, 4, steps=4, seeds=s4))
    b = c.sample(cond, 8, steps=4, seeds=s8)
    assert np.array_equal(b[:, :4], a)
    # batch composition: item 1 alone gives the same members
    one = {k: (v[1:] if v.ndim == 3 else v) for k, v in cond.items()}
    single = c.sample(one, 4, steps=4, seeds=s4[1:])
    assert np.array_equal(single[0], a[1])
    assert not np.allclose(c.sample(cond, 4, steps=4, seeds=s4 + 1), a)
    # chunking: with network batches of 3 the (item, member) pairs are cut across items and members (the last
    # batch padded); a member is then the same sample whatever the member count or batch composition, and as with
    # batches of 8, to float32 round-off: a member's place in a network batch changes with them, and vectorised
    # CPU kernels (AVX-512 here) treat the tail of a tensor apart, so bitwise equality holds only for the same run
    for q in (3, 5):
        sampler = cfg.sampler.model_copy(update={"network_batch": q})
        aq = c.sample(cond, 4, steps=4, seeds=s4, sampler=sampler)
        assert np.array_equal(c.sample(cond, 4, steps=4, seeds=s4, sampler=sampler), aq), q
        tol = {"rtol": 1e-4, "atol": 1e-5 * np.abs(a).max()}
        np.testing.assert_allclose(c.sample(cond, 8, steps=4, seeds=s8, sampler=sampler)[:, :4], aq, **tol)
        np.testing.assert_allclose(c.sample(one, 4, steps=4, seeds=s4[1:], sampler=sampler)[0], aq[1], **tol)
        np.testing.assert_allclose(aq, a, **tol, err_msg=f"network_batch {q}")


def test_grid_not_divisible_and_bad_inputs():
    cfg = tiny_cfg(network=dict(TINY, channel_mults=[1, 2, 2]))
    m = CorrectorModel(cfg, len(cfg.conditioning))
    cond = torch.zeros(1, len(cfg.conditioning), 18, 16)
    with pytest.raises(ValueError, match=r"18×16 is not divisible by 2\*\*2 = 4"):
        m.loss(torch.zeros(1, 5, 18, 16), cond)
    with pytest.raises(ValueError, match="conditioning channels"):
        CorrectorModel(cfg, 3)
    c = corrector_for(tiny_cfg())
    good, _ = conditioning(c.config)
    with pytest.raises(KeyError, match="uas_t1"):
        c.sample({k: v for k, v in good.items() if k != "uas_t1"}, 2, seeds=member_seeds(0, np.array([0, 1]), 0, 2))
    with pytest.raises(ValueError, match="seeds"):
        c.sample(good, 2)
    bad = dict(good, tas_t0=good["tas_t0"].copy())
    bad["tas_t0"][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="tas_t0"):
        c.sample(bad, 2, seeds=member_seeds(0, np.array([0, 1]), 0, 2))


def _synthetic(cfg, n=16, seed=0):
    """Target = smooth function of two conditioning channels (+ noise for diffusion), masked land."""
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(n, len(cfg.conditioning), N, N, generator=g)
    mask = torch.ones(N, N)
    mask[:3, :4] = 0
    cond[:, -1] = mask
    a, b = cond[:, 0], cond[:, 1]
    y = torch.stack([a + 0.5 * b, torch.tanh(a), -b, 0.5 * a * b, a - b], dim=1)[:, :len(cfg.variables)]
    return y * mask, cond


@pytest.mark.parametrize("kind", ["diffusion", "deterministic"])
def test_loss_decreases(kind):
    cfg = tiny_cfg(kind=kind)
    torch.manual_seed(0)
    m = CorrectorModel(cfg, len(cfg.conditioning))
    y, cond = _synthetic(cfg)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    eval_g = lambda: torch.Generator().manual_seed(123)  # same σ/noise draws before and after
    with torch.no_grad():
        before = float(m.loss(y, cond, generator=eval_g()))
    for _ in range(40):
        opt.zero_grad()
        loss = m.loss(y, cond, torch.zeros(len(y), 3), generator=g)
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(m.loss(y, cond, generator=eval_g()))
    assert after < 0.6 * before, (before, after)


def test_masked_loss_ignores_gaps_and_reports_coverage():
    cfg = tiny_cfg()
    m = random_model(cfg)
    y, cond = _synthetic(cfg, n=4)
    tmask = torch.ones(4, 1, N, N)
    tmask[:, :, 8:] = 0
    y_gappy = y.clone()
    y_gappy[:, :, 8:] = float("nan")
    y_other = y.clone()
    y_other[:, :, 8:] = 1e3
    l1, stats = m.loss(y_gappy, cond, target_mask=tmask, generator=torch.Generator().manual_seed(0),
                       return_stats=True)
    l2 = m.loss(y_other, cond, target_mask=tmask, generator=torch.Generator().manual_seed(0)).detach()
    assert torch.isfinite(l1) and float(l1.detach()) == pytest.approx(float(l2), rel=1e-5)
    ocean_rows = (cond[0, -1, :8] > 0.5).float().mean() * 0.5  # half the rows, of which this share is ocean
    assert stats["coverage"] == pytest.approx(float(ocean_rows), rel=1e-6)
    l1.backward()  # differentiable through the masking


def test_apply_bounds_and_walls():
    cfg = tiny_cfg()
    c = corrector_for(cfg)
    rng = np.random.default_rng(0)
    base = {"sic": rng.uniform(0, 1, (2, N, N)), "sit": rng.uniform(0, 2, (2, N, N)),
            "snt": rng.uniform(0, 0.3, (2, N, N)), "siu": rng.normal(0, 0.1, (2, N, N)),
            "siv": rng.normal(0, 0.1, (2, N, N)), "tsi": np.zeros((2, N, N))}
    sample = rng.normal(0, 0.5, (2, 3, 5, N, N))
    out = c.apply(base, sample)
    assert out["sic"].shape == (2, 3, N, N) and "tsi" in out
    assert out["sic"].min() >= 0 and out["sic"].max() <= 1 and out["sit"].min() >= 0
    assert np.all(out["siu"][..., -1] == 0) and np.all(out["siv"][..., -1, :] == 0)
    assert c.last_bounds_counts["sic"] > 0
    no_ice = out["sic"] <= 0
    iced_face = ~(no_ice[..., :, :-1] & no_ice[..., :, 1:])  # east faces with ice on at least one side
    want = np.where(iced_face, (base["siu"][:, None] + sample[:, :, 3])[..., :-1], 0.0)
    np.testing.assert_allclose(out["siu"][..., :-1], want)
    assert c.last_bounds_counts["siu_without_ice"] > 0


def test_bounds_no_area_without_volume_no_velocity_without_ice():
    """sic = 0 where sit = 0; sit = snt = 0 where sic = 0; a face with no ice on either side has no velocity."""
    from corrector.bounds import apply_bounds

    sic = np.array([[0.5, 0.3, 0.0], [0.0, 0.0, 0.8], [0.2, 0.0, 0.0]])
    sit = np.array([[1.0, -0.1, 2.0], [0.0, 0.5, 1.0], [0.0, 0.0, 0.0]])
    ones = np.ones((3, 3))
    out, counts = apply_bounds({"sic": sic, "sit": sit, "snt": 0.1 * ones, "siu": ones, "siv": ones})
    np.testing.assert_array_equal(out["sic"], [[0.5, 0, 0], [0, 0, 0.8], [0, 0, 0]])  # (0,1): sit < 0; (2,0): sit 0
    np.testing.assert_array_equal(out["sit"], [[1, 0, 0], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(out["snt"], 0.1 * (out["sic"] > 0))
    # east faces: ice on either side of (j, i)|(j, i+1); the last column has one side only
    np.testing.assert_array_equal(out["siu"], [[1, 0, 0], [0, 1, 1], [0, 0, 0]])
    # north faces: ice on either side of (j, i)|(j+1, i)
    np.testing.assert_array_equal(out["siv"], [[1, 0, 1], [0, 0, 1], [0, 0, 0]])
    assert counts["sic_without_volume"] == 2 and counts["siu_without_ice"] == 6 and counts["siv_without_ice"] == 6


def test_apply_emulator_state_variables_replace_the_base():
    """Emulator mode: state variables (siu, siv by default) are set to the sample, the others advance the base."""
    c = corrector_for(tiny_cfg(mode="emulator"))
    assert c.state_variables == ["siu", "siv"]
    rng = np.random.default_rng(1)
    base = {v: rng.uniform(0.2, 0.8, (2, N, N)) for v in c.variables}
    sample = rng.normal(0, 0.01, (2, 3, 5, N, N)).astype(np.float32)
    out = c.apply(base, sample)
    inner = np.s_[..., :-1, :-1]
    np.testing.assert_allclose(out["sit"], base["sit"][:, None] + sample[:, :, 1])
    np.testing.assert_array_equal(out["siu"][inner], sample[:, :, 3][inner])
    np.testing.assert_array_equal(out["siv"][inner], sample[:, :, 4][inner])
    assert out["siu"].dtype == np.float64 and np.all(out["siu"][..., -1] == 0)
    tendency = corrector_for(tiny_cfg(mode="emulator", emulator_state_variables=[]))
    np.testing.assert_allclose(tendency.apply(base, sample)["siu"][inner], (base["siu"][:, None] +
                                                                           sample[:, :, 3])[inner])


def test_zero_corrector():
    c = Corrector.zero(grid=dict(nx=N, ny=N))
    cond, _ = conditioning(c.config, b=2)
    out = c.sample(cond, members=4)
    assert out.shape == (2, 4, 5, N, N) and not out.any()
    base = {v: np.full((2, N, N), 0.5) for v in c.variables}
    new = c.apply(base, out)
    assert np.all(new["sic"] == 0.5) and new["sic"].shape == (2, 4, N, N)
    emulator = Corrector.zero(grid=dict(nx=N, ny=N), mode="emulator")  # persistence: all targets tendencies
    assert emulator.state_variables == [] and np.all(emulator.apply(base, out)["siu"][..., :-1] == 0.5)


def test_per_variable_loss_balance_weights_sparsely_observed_variables_equally():
    """With gaps, `per_variable` gives each variable's own masked mean equal weight; on complete data both agree."""
    from corrector.loss import masked_mean, variable_balanced_mean

    err = torch.zeros(2, 2, 4, 4)
    err[:, 0] = 1.0  # variable 0 (e.g. concentration) errs everywhere it is observed
    mask = torch.ones_like(err)
    mask[:, 0, :, :3] = 0.0  # observed on a quarter of the cells; variable 1 everywhere
    assert float(variable_balanced_mean(err, mask)) == pytest.approx(0.5)
    assert float(masked_mean(err, mask)) == pytest.approx(8 / (8 + 32))  # drowned by the well-observed variable
    full = torch.ones_like(err)
    assert float(variable_balanced_mean(err, full)) == pytest.approx(float(masked_mean(err, full)))


def test_window_floor_weights_calm_windows_up_and_storms_down():
    """`loss_window_floor` f: each window's and variable's squared error counts (1 + f) / (v + f) times, v its mean
    square target; without it the plain mean. Checked on the deterministic loss with a known prediction (0)."""
    cfg = tiny_cfg(kind="deterministic", mode="residual")
    model = CorrectorModel(cfg, len(cfg.conditioning)).eval()  # zero-initialised head: predicts exactly 0
    cond = torch.zeros(2, len(cfg.conditioning), N, N)
    cond[:, list(cfg.conditioning).index("mask")] = 1.0
    target = torch.full((2, len(cfg.variables), N, N), 0.1)  # window 0 calm (v = 0.01) …
    target[1] = 3.0                                           # … window 1 a storm (v = 9)
    with torch.no_grad():
        plain = float(model.loss(target, cond))
        weighted_model = CorrectorModel(tiny_cfg(kind="deterministic", mode="residual", loss_window_floor=0.1),
                                        len(cfg.conditioning)).eval()
        weighted = float(weighted_model.loss(target, cond))
    assert plain == pytest.approx((0.01 + 9.0) / 2, rel=1e-5)
    assert weighted == pytest.approx((0.01 * 1.1 / 0.11 + 9.0 * 1.1 / 9.1) / 2, rel=1e-5)  # 0.1 + 1.088
    with pytest.raises(ValueError):
        tiny_cfg(loss_window_floor=0.0)
