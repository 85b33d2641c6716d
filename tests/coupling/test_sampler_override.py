"""`couple.sampler`: a run's overrides of the checkpoint's sampler section (e.g. AR(1) noise and spread inflation
chosen on validation windows after training), validated, without touching the checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from corrector.seeding import member_seeds
from coupling.config import CoupleConfig
from coupling.ensemble import EnsembleCorrection, with_sampler
from tests.corrector.test_model import conditioning, corrector_for, tiny_cfg


def test_overrides_change_the_samples_not_the_checkpoint():
    cfg = tiny_cfg(network={"base_channels": 8, "channel_mults": [1, 2], "embedding_dim": 16, "heads": 2,
                            "norm_groups": 4, "attention_bottleneck": False}, base_network=None)
    c = corrector_for(cfg)
    tuned = with_sampler(c, {"noise_decorrelation_days": 0.5, "steps": 3})
    assert tuned.config.sampler.noise_decorrelation_days == 0.5 and tuned.config.sampler.steps == 3
    assert c.config.sampler.noise_decorrelation_days == 0.0 and c.config.sampler.steps != 3  # the original kept
    assert with_sampler(c, {}) is c
    cond, _ = conditioning(cfg, b=1)
    seeds = member_seeds(0, np.array([0]), 0, 2)
    assert not np.allclose(tuned.sample(cond, 2, seeds=seeds), c.sample(cond, 2, seeds=seeds))
    # the ensemble driver reads the run's τ, not the checkpoint's
    class Forcing:
        mask = None
    assert EnsembleCorrection(tuned, Forcing(), [0], 2, 0, None).rho > 0
    assert EnsembleCorrection(c, Forcing(), [0], 2, 0, None).rho == 0


def test_unknown_or_bad_settings_are_refused():
    with pytest.raises(ValidationError, match=r"\['noise_days'\] are not sampler settings"):
        CoupleConfig(sampler={"noise_days": 1.0})
    c = corrector_for(tiny_cfg())
    with pytest.raises(ValidationError, match="noise_decorrelation_days"):
        with_sampler(c, {"noise_decorrelation_days": -1.0})
