"""`corrector.loss_bounded`: a deterministic emulator's loss on the bounded next state — a predicted tendency is
clamped so that initial + tendency stays in 0 ≤ sic ≤ 1, sit, snt ≥ 0 (what the bounds of a rollout leave), so a
positive sic tendency over compact ice is neither rewarded nor punished (docs/arctic.md)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from corrector.config import CorrectorConfig
from corrector.model import CorrectorModel
from corrector.normalization import Normalization

TINY = {"base_channels": 4, "channel_mults": [1], "attention_bottleneck": False, "embedding_dim": 8, "norm_groups": 1}


def emulator(**kw) -> CorrectorConfig:
    return CorrectorConfig(kind="deterministic", mode="emulator", network=TINY, loss_bounded=True, **kw)


def normalization(cfg: CorrectorConfig) -> Normalization:
    """Non-trivial scales: initial_sic mean 0.9, std 0.2; sic tendency mean 0.01, std 0.05; sit tendency std 0.1."""
    cond = list(cfg.conditioning)
    cm, cs = np.zeros(len(cond)), np.ones(len(cond))
    cm[cond.index("initial_sic")], cs[cond.index("initial_sic")] = 0.9, 0.2
    cm[cond.index("initial_sit")], cs[cond.index("initial_sit")] = 1.5, 0.5
    tm, ts = np.zeros(len(cfg.variables)), np.ones(len(cfg.variables))
    tm[cfg.variables.index("sic")], ts[cfg.variables.index("sic")] = 0.01, 0.05
    ts[cfg.variables.index("sit")] = 0.1
    return Normalization(cond, cm, cs, list(cfg.variables), tm, ts)


def test_bounded_prediction_keeps_the_next_state_in_range():
    cfg = emulator()
    norm = normalization(cfg)
    model = CorrectorModel(cfg, len(cfg.conditioning))
    model.set_normalization(norm)
    cond = torch.zeros(1, len(cfg.conditioning), 2, 2)
    initial_sic = torch.tensor([[1.0, 1.0], [0.5, 0.0]])
    initial_sit = torch.tensor([[2.0, 0.2], [1.0, 0.0]])
    cond[0, cfg.conditioning.index("initial_sic")] = (initial_sic - 0.9) / 0.2
    cond[0, cfg.conditioning.index("initial_sit")] = (initial_sit - 1.5) / 0.5
    pred = torch.randn(1, len(cfg.variables), 2, 2, generator=torch.Generator().manual_seed(0)) * 20
    out = model.bounded(pred, cond)
    i, j = cfg.variables.index("sic"), cfg.variables.index("sit")
    next_sic = initial_sic + out[0, i] * 0.05 + 0.01
    next_sit = initial_sit + out[0, j] * 0.1
    assert torch.all(next_sic >= -1e-6) and torch.all(next_sic <= 1 + 1e-6) and torch.all(next_sit >= -1e-6)
    inside = (initial_sic + pred[0, i] * 0.05 + 0.01 >= 0) & (initial_sic + pred[0, i] * 0.05 + 0.01 <= 1)
    assert torch.equal(out[0, i][inside], pred[0, i][inside])  # a tendency within range is untouched
    for v in cfg.emulator_state_variables:  # velocities are states: no bound
        assert torch.equal(out[0, cfg.variables.index(v)], pred[0, cfg.variables.index(v)])


def test_positive_sic_tendency_on_compact_ice_costs_nothing_and_gets_no_gradient():
    cfg = emulator()
    model = CorrectorModel(cfg, len(cfg.conditioning))
    model.set_normalization(Normalization.identity(cfg.conditioning, cfg.variables))
    cond = torch.zeros(1, len(cfg.conditioning), 2, 2)
    cond[0, cfg.conditioning.index("initial_sic")] = 1.0           # compact ice (identity scales: physical)
    pred = torch.zeros(1, len(cfg.variables), 2, 2)
    pred[0, cfg.variables.index("sic")] = torch.tensor([[0.3, -0.3], [0.0, 0.1]])
    pred.requires_grad_(True)
    out = model.bounded(pred, cond)
    (out ** 2).sum().backward()  # the target tendency is 0
    g = pred.grad[0, cfg.variables.index("sic")]
    np.testing.assert_allclose(out[0, cfg.variables.index("sic")].detach().numpy(), [[0.0, -0.3], [0.0, 0.0]],
                               atol=1e-7)
    assert g[0, 0] == 0 and g[1, 1] == 0 and g[0, 1] < 0  # clipped: no gradient; a loss of area is punished


def test_loss_bounded_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="loss_bounded"):
        CorrectorConfig(kind="deterministic", mode="residual", network=TINY, loss_bounded=True)
    with pytest.raises(ValueError, match="loss_bounded"):
        CorrectorConfig(kind="diffusion", mode="emulator", network=TINY, loss_bounded=True)
    cfg = emulator()
    model = CorrectorModel(cfg, len(cfg.conditioning))
    with pytest.raises(RuntimeError, match="set_normalization"):
        model.loss(torch.zeros(1, len(cfg.variables), 4, 4), torch.zeros(1, len(cfg.conditioning), 4, 4))


def test_off_by_default_the_loss_is_the_raw_tendency_mse():
    cfg = CorrectorConfig(kind="deterministic", mode="emulator", network=TINY)
    model = CorrectorModel(cfg, len(cfg.conditioning))
    pred = torch.randn(1, len(cfg.variables), 2, 2)
    assert torch.equal(model.bounded(pred, torch.zeros(1, len(cfg.conditioning), 2, 2)), pred)
