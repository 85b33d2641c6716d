"""Per-member latent noise correlated over coupled steps (AR(1), `SamplerConfig.noise_decorrelation_days`)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from corrector.seeding import (ar1_coefficient, ar1_weights, filtered_noise, generators, lagged_member_seeds,
                               member_seeds, randn_per_generator)


def test_ar1_weights_have_unit_variance_and_reduce_to_white_noise():
    assert ar1_coefficient(0.0) == 0.0
    assert ar1_coefficient(2.0) == pytest.approx(math.exp(-0.25))
    assert list(ar1_weights(0.0, 7)) == [1.0]
    assert list(ar1_weights(0.9, 0)) == [1.0]
    for rho, step in ((0.5, 1), (0.9, 5), (0.97, 40), (0.3, 200)):
        w = ar1_weights(rho, step)
        assert float((w ** 2).sum()) == pytest.approx(1.0, abs=1e-12)
        assert len(w) <= step + 1
    with pytest.raises(ValueError):
        ar1_weights(1.0, 3)


def test_white_noise_is_the_old_draw_bit_for_bit():
    seeds = member_seeds(3, 5, 4, 6)
    old = randn_per_generator((5, 8, 8), generators(seeds))
    for weights in (None, np.ones(1)):
        new = filtered_noise((5, 8, 8), generators(seeds), None, weights)
        assert torch.equal(new, old)


def test_member_noise_follows_the_configured_ar1_correlation():
    """Lag-1 (and lag-3) correlation over steps of the noise of a member ≈ ρ (ρ³) within sampling error; unit
    variance at every step; members stay independent of each other."""
    tau = 2.0
    rho = ar1_coefficient(tau)
    shape, steps, members = (5, 16, 16), 12, 3
    z = []
    for n in range(steps):
        w = ar1_weights(rho, n)
        lagged = lagged_member_seeds(11, 7, n, members, len(w))
        z.append(filtered_noise(shape, generators(lagged[:, 0]), lagged[:, 1:], w).double().numpy())
    z = np.stack(z)  # (step, member, …)
    cells = z[0, 0].size
    tol = 4 / math.sqrt(cells)
    lag1 = [np.corrcoef(z[n, k].ravel(), z[n + 1, k].ravel())[0, 1] for n in range(steps - 1) for k in range(members)]
    lag3 = [np.corrcoef(z[n, k].ravel(), z[n + 3, k].ravel())[0, 1] for n in range(steps - 3) for k in range(members)]
    assert abs(np.mean(lag1) - rho) < tol / math.sqrt(len(lag1)) * 2 + 0.01
    assert abs(np.mean(lag3) - rho ** 3) < 0.03
    assert all(abs(c - rho) < tol for c in lag1)
    assert np.allclose(z.reshape(steps, members, -1).std(-1), 1.0, atol=tol)
    between = np.corrcoef(z[5, 0].ravel(), z[5, 1].ravel())[0, 1]
    assert abs(between) < tol


def test_step_zero_and_each_member_do_not_depend_on_the_rest():
    """Step 0 is the white draw; a member's correlated noise is the same whatever the other items of the batch."""
    rho = ar1_coefficient(3.0)
    lag0 = lagged_member_seeds(2, 4, 0, 4, 1)
    assert torch.equal(filtered_noise((5, 4, 4), generators(lag0[:, 0]), lag0[:, 1:], ar1_weights(rho, 0)),
                       randn_per_generator((5, 4, 4), generators(lag0[:, 0])))
    w = ar1_weights(rho, 6)
    lagged = lagged_member_seeds(2, 4, 6, 4, len(w))
    all4 = filtered_noise((5, 4, 4), generators(lagged[:, 0]), lagged[:, 1:], w)
    one = filtered_noise((5, 4, 4), generators(lagged[2:3, 0]), lagged[2:3, 1:], w)
    assert torch.equal(all4[2], one[0])
