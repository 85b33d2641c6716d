"""Fair CRPS in validation (`val_crps`) and best.pt chosen by it."""
from __future__ import annotations

import itertools

import numpy as np
import torch

from corrector.checkpoint import load_checkpoint
from training.fit.loop import run_train
from training.fit.validation import fair_crps
from tests.training.fit.test_fit import files, tiny  # noqa: F401 - the module fixture `files`


def test_fair_crps_matches_the_pairwise_formula():
    g = torch.Generator().manual_seed(0)
    ens, truth = torch.randn(2, 4, 3, 5, 5, generator=g), torch.randn(2, 3, 5, 5, generator=g)
    e, y = ens.double().numpy(), truth.double().numpy()
    m = e.shape[1]
    want = np.abs(e - y[:, None]).mean(1) - sum(np.abs(e[:, i] - e[:, j]) for i, j in itertools.permutations(
        range(m), 2)) / (2 * m * (m - 1))
    np.testing.assert_allclose(fair_crps(ens, truth).numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(fair_crps(ens[:, :1], truth).numpy(), np.abs(e[:, 0] - y).astype(np.float32))


def test_best_checkpoint_by_fair_crps(files, tmp_path):  # noqa: F811 - pytest fixture
    cfg = tiny(files, tmp_path / "crps", "train.max_steps=40", "train.val_every=20", "train.log_every=20",
               "train.best_metric=val_crps", "train.skill_members=3")
    best = run_train(cfg, verbose=False)
    ck = load_checkpoint(best)
    assert np.isfinite(ck.extra["val_crps"]) and ck.extra["val_crps"] > 0
    assert {f"val_crps_{v}" for v in cfg.corrector.variables} <= set(ck.extra)
    last = load_checkpoint(tmp_path / "crps" / "last.pt")
    assert ck.extra["step"] in (20, 40) and last.config.kind == "diffusion"
