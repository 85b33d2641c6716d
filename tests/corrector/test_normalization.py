"""Normalisation fitted from gappy arrays on ocean cells; dict round trip; inverse."""
import numpy as np
import pytest
import torch

from corrector.normalization import Normalization, NormalizationAccumulator


def _data(rng):
    cond = {"a": rng.normal(3.0, 2.0, (50, 8, 8)), "b": np.full((50, 8, 8), 5.0)}
    target = {"sic": rng.normal(-0.1, 0.05, (50, 8, 8))}
    return cond, target


def test_fit_ignores_nan_and_land():
    rng = np.random.default_rng(0)
    cond, target = _data(rng)
    mask = np.ones((8, 8))
    mask[:, :2] = 0
    cond["a"][:, :, :2] = 1e6  # land values must not count
    target["sic"][::3, 4, 4] = np.nan  # gaps
    n = Normalization.fit(cond, target, ["a", "b", "mask"], ["sic"], mask=mask)
    assert abs(n.cond_mean[0] - 3.0) < 0.1 and abs(n.cond_std[0] - 2.0) < 0.1
    assert n.cond_mean[1] == pytest.approx(5.0) and n.cond_std[1] == 1.0  # constant channel: centred only
    assert n.cond_mean[2] == 0.0 and n.cond_std[2] == 1.0  # the mask is never rescaled
    assert abs(n.target_mean[0] + 0.1) < 0.01 and abs(n.target_std[0] - 0.05) < 0.005


def test_streaming_equals_in_memory_and_round_trip():
    rng = np.random.default_rng(1)
    cond, target = _data(rng)
    whole = Normalization.fit(cond, target, ["a", "b"], ["sic"])
    acc = NormalizationAccumulator(["a", "b"], ["sic"])
    for lo in range(0, 50, 7):
        acc.update({k: v[lo:lo + 7] for k, v in cond.items()}, {k: v[lo:lo + 7] for k, v in target.items()})
    part = acc.result()
    np.testing.assert_allclose(part.cond_std, whole.cond_std, rtol=1e-10)
    np.testing.assert_allclose(part.target_mean, whole.target_mean, rtol=1e-10)
    back = Normalization.from_dict(whole.to_dict())
    y = torch.randn(2, 1, 8, 8)
    assert torch.allclose(back.denormalise_target(back.normalise_target(y)), y, atol=1e-6)
    assert back.cond_names == ["a", "b"]


def test_fit_errors():
    with pytest.raises(ValueError, match="field 'a'"):
        Normalization.fit({"a": np.full((2, 4, 4), np.nan)}, {"sic": np.ones((2, 4, 4))}, ["a"], ["sic"])
    with pytest.raises(KeyError, match="'b'"):
        Normalization.fit({"a": np.ones((2, 4, 4))}, {"sic": np.ones((2, 4, 4))}, ["a", "b"], ["sic"])
