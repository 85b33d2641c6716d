"""Diffusion on a frozen deterministic regression stage (CorrDiff-style): training, checkpoint, sampling, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from corrector.checkpoint import load_checkpoint
from corrector.config import SamplerConfig
from corrector.inference import Corrector
from icecorr.base.errors import InputError
from training.fit.loop import run_train
from tests.training.fit.test_fit import files, tiny  # noqa: F401  (module fixture reused)
from tests.training.fit.test_dataset_synthetic import write_pair_file


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


def test_stage_from_other_data_predicts_what_it_predicted_alone(stages, files, tmp_path):  # noqa: F811
    """A stage trained on other windows (other normalisation statistics) and without the diffusion model's
    `drift_steps` channel gives, inside the diffusion model, exactly its own physical prediction: the adapter maps
    the two normalisations and channel lists onto each other."""
    import xarray as xr

    det, _ = stages
    other = (write_pair_file(tmp_path / "other.nc", n_time=32, runs=1, seed=7), files[1])
    diff = run_train(tiny(other, tmp_path / "x", "train.max_steps=2", f"train.base_checkpoint={det}",
                          "corrector.max_drift_steps=3"), verbose=False)
    c, alone = Corrector.load(diff), Corrector.load(det)
    assert not np.allclose(c.normalization.target_std, alone.normalization.target_std)
    assert "drift_steps" in c.conditioning_names and c.config.base_conditioning == alone.conditioning_names
    with xr.open_dataset(files[1]) as ds:
        cond = {n: ds[n].values[:2] if n != "mask" else ds[n].values for n in alone.conditioning_names}
    cond["drift_steps"] = np.full((2, *cond["mask"].shape), 2.0)
    raw = c._stack_conditioning(cond)
    cond_n = c.normalization.normalise_cond(raw)
    k = c.conditioning_names.index("mask")
    cond_n[:, k] = raw[:, k]
    inside = c.normalization.denormalise_target(c.model.base_prediction(cond_n, cond_n.new_zeros(2, 3)))
    expected = alone.sample(cond, members=1)[:, 0]
    ocean = raw[:, k:k + 1].numpy() > 0.5
    scale = np.abs(expected).max()
    np.testing.assert_allclose(inside.numpy() * ocean, expected * ocean, atol=1e-5 * scale, rtol=1e-4)


def test_mismatched_stage_is_rejected_naming_the_field(stages, files, tmp_path):  # noqa: F811
    det, _ = stages
    with pytest.raises(InputError, match="conditioning"):
        run_train(tiny(files, tmp_path / "y", "train.max_steps=2", f"train.base_checkpoint={det}",
                       "corrector.conditioning=[initial_sic,forecast_sic,mask]"), verbose=False)


def test_a_two_stage_run_resumes(stages, files, tmp_path):  # noqa: F811
    """Was: the resume state holds the corrector with the stage's network filled in, the new invocation's config not
    yet, so every interrupted two-stage run was refused as 'differs'; the stage is resolved before the check now."""
    det, _ = stages
    args = ["train.max_steps=6", "train.val_every=3", "train.checkpoint_every=3", f"train.base_checkpoint={det}"]
    run_train(tiny(files, tmp_path / "r", *args), verbose=False, stop_after_steps=3)
    run_train(tiny(files, tmp_path / "r", *args), verbose=False)
    assert torch.load(tmp_path / "r" / "resume.pt", weights_only=True)["step"] == 6
    with pytest.raises(InputError, match=r"differs .*at corrector\.network\.base_channels"):
        run_train(tiny(files, tmp_path / "r", *args, "corrector.network.base_channels=4"), verbose=False)
