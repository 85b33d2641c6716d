"""`diffusion.remainder_scale_cells`: the diffusion stage learns (target − regression stage) / s with s the local
rms of the stage's prediction — an exact change of variables, local, floored, masked."""
from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from corrector.config import DiffusionConfig, SamplerConfig
from corrector.model import CorrectorModel
from corrector.remainder_scale import remainder_scale
from tests.corrector.test_model import TINY, random_model, tiny_cfg

N = 16


def test_scale_is_the_local_rms_over_ocean_cells_floored():
    base = torch.zeros(1, 2, N, N)
    base[:, 0, :, : N // 2] = 3.0  # variable 0 active in the west half only
    base[:, 1] = -2.0
    ocean = torch.ones(1, 1, N, N)
    ocean[..., :4, :] = 0  # land in the south: the stage predicts 0 there
    base = base * ocean
    s = remainder_scale(base, ocean, cells=3, floor=0.01)
    assert torch.allclose(s[0, 0, 8, 2], torch.tensor((9.0 + 1e-4) ** 0.5))  # deep in the west half
    assert torch.allclose(s[0, 0, 8, 13], torch.tensor(0.01))  # calm east: the floor
    assert torch.allclose(s[0, 1, 4, 8], torch.tensor((4.0 + 1e-4) ** 0.5))  # at the coast: land cells do not dilute
    assert 0.01 < s[0, 0, 8, N // 2] < 3.0  # the transition is local (within the window)


def _pair(cells, variables=None):
    cfg = tiny_cfg(kind="diffusion", mode="emulator", base_network=TINY)
    scaled = cfg.model_copy(update={"diffusion": DiffusionConfig(remainder_scale_cells=cells,
                                                                 remainder_scale_variables=variables)})
    plain = random_model(cfg)
    model = CorrectorModel(scaled, len(cfg.conditioning))
    model.load_state_dict(plain.state_dict())
    return plain, model.eval()


@pytest.mark.parametrize("variables", [None, ["sic", "snt"]])
def test_loss_is_the_plain_loss_of_the_scaled_remainder(variables):
    plain, scaled = _pair(5, variables)
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(3, plain.n_cond, N, N, generator=g)
    z = torch.randn(3, plain.n_vars, N, N, generator=g)
    labels = torch.zeros(3, 3)
    base = plain.base_prediction(cond, labels)
    s = remainder_scale(base, plain.ocean(cond), 5, scaled.cfg.diffusion.remainder_scale_floor)
    assert s.std() > 0.1 * s.mean()  # a scale that varies, so the test can fail
    if variables is not None:  # only the named variables are scaled
        keep = torch.tensor([v not in variables for v in plain.cfg.variables]).view(1, -1, 1, 1)
        s = torch.where(keep, torch.ones_like(s), s)
    got = scaled.loss(base + s * z, cond, labels, generator=torch.Generator().manual_seed(1))
    want = plain.loss(base + z, cond, labels, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(got, want, rtol=1e-5)


def test_samples_carry_the_scale():
    """With the generative head off the denoiser is exact for unit-normal z: samples = stage + s · N(0, 1)."""
    plain, scaled = _pair(5)
    with torch.no_grad():
        scaled.network.head.weight.zero_()
        scaled.network.head.bias.zero_()
    members = 256
    cond = torch.randn(1, plain.n_cond, N, N, generator=torch.Generator().manual_seed(2))
    cond[:, plain.mask_index] = 1.0  # all ocean
    cond = cond.expand(members, -1, -1, -1)
    labels = torch.zeros(members, 3)
    noise = torch.randn(members, plain.n_vars, N, N, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = scaled.sample_normalised(cond, labels, noise, sampler=SamplerConfig(name="heun", steps=18))
        base = scaled.base_prediction(cond[:1], labels[:1])
    s = remainder_scale(base, None, 5, scaled.cfg.diffusion.remainder_scale_floor)
    z = (out - base) / s
    assert abs(z.mean()) < 0.02 and 0.95 < z.std(0).mean() < 1.05
    spread = (out - base).std(0)
    assert torch.corrcoef(torch.stack([spread.flatten(), s[0].flatten()]))[0, 1] > 0.95


def test_the_option_needs_a_regression_stage_and_an_odd_window():
    with pytest.raises(ValidationError, match="odd"):
        DiffusionConfig(remainder_scale_cells=4)
    cfg = tiny_cfg(kind="diffusion", diffusion=DiffusionConfig(remainder_scale_cells=3))
    with pytest.raises(ValueError, match="regression stage"):
        CorrectorModel(cfg, len(cfg.conditioning))
    with pytest.raises(ValidationError, match="sea_ice_age"):
        tiny_cfg(kind="diffusion", diffusion=DiffusionConfig(remainder_scale_cells=3,
                                                             remainder_scale_variables=["sic", "sea_ice_age"]))

