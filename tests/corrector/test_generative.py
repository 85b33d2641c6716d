"""A real generative test: a tiny diffusion model learns a known conditional Gaussian and its samples reproduce the
conditional mean and the conditional (input-dependent) spread; the deterministic baseline learns the mean.

Problem (per cell, 16² fields): a, b ~ N(0, 1); target y = 0.8 a + s(b) ε, s(b) = 0.2 + 0.6 sigmoid(2b), ε ~ N(0, 1)
white in space. Fresh data every step (no over-fitting), ~400 Adam steps of a 0.1 M-parameter U-Net.
"""
import copy

import numpy as np
import pytest
import torch

from corrector.config import CorrectorConfig, SamplerConfig
from corrector.inference import Corrector
from corrector.model import CorrectorModel
from corrector.normalization import Normalization
from corrector.seeding import member_seeds

N = 16
NET = dict(base_channels=16, channel_mults=[1, 2], embedding_dim=32, heads=2, attention_bottleneck=False)


def draw(n, g):
    a, b = torch.randn(n, N, N, generator=g), torch.randn(n, N, N, generator=g)
    mu, s = 0.8 * a, 0.2 + 0.6 * torch.sigmoid(2 * b)
    return a, b, mu, s, mu + s * torch.randn(n, N, N, generator=g)


def train(kind, steps, seed=0):
    cfg = CorrectorConfig(kind=kind, variables=["siu"], conditioning=["forecast_siu", "uas_t0", "mask"], network=NET)
    torch.manual_seed(seed)
    model = CorrectorModel(cfg, 3)
    g = torch.Generator().manual_seed(seed)
    a, b, _, _, y = draw(256, g)
    norm = Normalization.fit({"forecast_siu": a.numpy(), "uas_t0": b.numpy()}, {"siu": y.numpy()},
                             cfg.conditioning, ["siu"])
    ema = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    ones = torch.ones(16, 1, N, N)
    for it in range(steps):
        a, b, _, _, y = draw(16, g)
        cond = norm.normalise_cond(torch.stack([a, b, ones[:, 0]], 1))
        for pg in opt.param_groups:  # linear decay over the last 30 %: a cheap stand-in for cosine
            pg["lr"] = 2e-3 * min(1.0, (steps - it) / (0.3 * steps))
        loss = model.loss(norm.normalise_target(y[:, None]), cond, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(0.99, (1 + it) / (10 + it))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
    return Corrector.from_model(ema, norm, cfg, dict(nx=N, ny=N))


@pytest.fixture(scope="module")
def diffusion():
    return train("diffusion", 400)


def _test_fields():
    a, b, mu, s, _ = draw(4, torch.Generator().manual_seed(99))
    cond = {"forecast_siu": a.numpy(), "uas_t0": b.numpy(), "mask": np.ones((N, N))}
    return cond, mu.numpy(), s.numpy()


@pytest.mark.parametrize("sampler", [SamplerConfig(steps=18), SamplerConfig.few_step()], ids=["heun18", "dpmpp2m-4"])
def test_diffusion_reproduces_conditional_mean_and_spread(diffusion, sampler):
    cond, mu, s = _test_fields()
    members = 32
    out = diffusion.sample(cond, members, seeds=member_seeds(1, np.arange(4), 0, members), sampler=sampler)[:, :, 0]
    ens_mean, ens_std = out.mean(1), out.std(1, ddof=1)
    # the ensemble mean is within sampling error of the true conditional mean (expected ≈ rms(s)/√members)
    expected = np.sqrt((s ** 2).mean() / members)
    assert np.sqrt(((ens_mean - mu) ** 2).mean()) < 1.6 * expected
    # the spread matches the true conditional std overall and follows it cell by cell
    assert 0.8 < ens_std.mean() / s.mean() < 1.25
    assert np.corrcoef(ens_std.ravel(), s.ravel())[0, 1] > 0.7
    low = s < np.median(s)
    assert ens_std[~low].mean() > 1.5 * ens_std[low].mean()  # true ratio ≈ 1.9


def test_deterministic_learns_conditional_mean():
    det = train("deterministic", 120)
    cond, mu, s = _test_fields()
    out = det.sample(cond, 1)[:, 0, 0]
    # far better than the climatological mean (0) and close to the true conditional mean
    assert np.sqrt(((out - mu) ** 2).mean()) < 0.2 * np.sqrt((mu ** 2).mean())  # measured ≈ 0.09
