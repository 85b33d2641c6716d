"""Diffusion on a frozen deterministic regression stage (CorrDiff-style): training, checkpoint, sampling, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from corrector.checkpoint import load_checkpoint
from corrector.config import SamplerConfig
from corrector.inference import Corrector
from coupling.errors import InputError
from training.fit import run_train
from tests.test_fit import files, tiny  # noqa: F401  (module fixture reused)
from tests.test_dataset_synthetic import write_pair_file


@pytest.fixture(scope="module")
def stages(files, tmp_path_factory):  # noqa: F811
    d = tmp_path_factory.mktemp("stages")
    det = run_train(tiny(files, d / "det", "corrector.kind=deterministic", "train.max_steps=80",
                         "train.val_every=40"), verbose=False)
    diff = run_train(tiny(files, d / "diff", "train.max_steps=20", "train.val_every=20",
                          f"train.base_checkpoint={det}"), verbose=False)
    return det, diff


def test_checkpoint_carries_the_frozen_stage(stages):
    det, diff = stages
    base = load_checkpoint(det)
    ck = load_checkpoint(diff)
    assert ck.config.base_network == base.config.network
    for key, value in base.state(use_ema=True).items():
        assert torch.equal(ck.model_state["base." + key[len("network."):]], value)  # trained weights untouched


def test_samples_are_the_regression_estimate_plus_the_generated_part(stages, files):  # noqa: F811
    det, diff = stages
    import xarray as xr

    with xr.open_dataset(files[1]) as ds:
        cond = {n: ds[n].values[:2] if n != "mask" else np.broadcast_to(ds[n].values, (2, *ds[n].shape))
                for n in load_checkpoint(det).config.conditioning}
    seeds = np.arange(8).reshape(2, 4)
    regression = Corrector.load(det).sample(cond, members=1, seeds=seeds[:, :1])
    corrector = Corrector.load(diff)
    trained = corrector.sample(cond, members=4, seeds=seeds)
    assert trained.std(axis=1).mean() > 0  # a real ensemble
    # with the generative head switched off (F = 0, its initial state) the denoiser is c_skip·x, the exact denoiser
    # of N(0, σ_data²) data: samples are then the regression stage plus unit normal noise (normalised units)
    with torch.no_grad():
        corrector.model.network.head.weight.zero_()
        corrector.model.network.head.bias.zero_()
    members = 64
    heun = SamplerConfig(name="heun", steps=18)  # accurate ODE solve, so that the noise keeps unit std
    quiet = corrector.sample(cond, members=members, seeds=np.arange(2 * members).reshape(2, members), sampler=heun)
    std = np.asarray(corrector.normalization.target_std, dtype=np.float64)[None, None, :, None, None]
    z = (quiet - regression) / std
    ocean = np.broadcast_to(cond["mask"][:, None, None] > 0.5, z.shape)
    ocean = ocean & (np.abs(z) > 0)  # closed-wall faces of siu/siv are exactly 0 in both
    assert abs(z[ocean].mean()) < 0.05
    assert 0.9 < z.std(axis=1)[ocean[:, 0]].mean() < 1.1
    assert np.abs(z.mean(axis=1))[ocean[:, 0]].mean() < 2.0 / np.sqrt(members)  # centred on the regression


def test_mismatched_stage_is_rejected_naming_the_field(stages, files, tmp_path):  # noqa: F811
    det, _ = stages
    other = (write_pair_file(tmp_path / "other.nc", n_time=32, runs=1, seed=7), files[1])
    with pytest.raises(InputError, match="cond_mean|target_mean|cond_std|target_std"):
        run_train(tiny(other, tmp_path / "x", "train.max_steps=2", f"train.base_checkpoint={det}"), verbose=False)
    with pytest.raises(InputError, match="conditioning"):
        run_train(tiny(files, tmp_path / "y", "train.max_steps=2", f"train.base_checkpoint={det}",
                       "corrector.conditioning=[initial_sic,forecast_sic,mask]"), verbose=False)
