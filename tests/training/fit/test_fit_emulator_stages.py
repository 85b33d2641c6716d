"""The two-stage emulator of the demo (issue 20): a deterministic emulator as the frozen regression stage of a
diffusion emulator — training, checkpoint, sampling of next-state velocities and tendencies, and mismatches."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from corrector.checkpoint import load_checkpoint
from corrector.inference import Corrector
from icecorr.base.errors import InputError
from training.fit.loop import run_train
from tests.training.fit.test_fit import files, tiny  # noqa: F401  (module fixture reused)

EMULATOR = ("corrector.mode=emulator", "corrector.emulator_state_variables=[siu, siv]")


@pytest.fixture(scope="module")
def emulator_stages(files, tmp_path_factory):  # noqa: F811
    d = tmp_path_factory.mktemp("emulator_stages")
    det = run_train(tiny(files, d / "det", *EMULATOR, "corrector.kind=deterministic", "train.max_steps=40",
                         "train.val_every=20"), verbose=False)
    diff = run_train(tiny(files, d / "diff", *EMULATOR, "train.max_steps=10", "train.val_every=10",
                          f"train.base_checkpoint={det}"), verbose=False)
    return det, diff


def test_diffusion_emulator_samples_around_its_regression_stage(emulator_stages, files):  # noqa: F811
    det, diff = emulator_stages
    ck = load_checkpoint(diff)
    assert ck.config.mode == "emulator" and ck.config.base_network == load_checkpoint(det).config.network
    with xr.open_dataset(files[1]) as ds:
        cond = {n: ds[n].values[:2] if n != "mask" else np.broadcast_to(ds[n].values, (2, *ds[n].shape))
                for n in ck.config.conditioning}
        initial = {v: ds[f"initial_{v}"].values[:2] for v in ck.config.variables}
    emulator = Corrector.load(diff)
    assert emulator.state_variables == ["siu", "siv"]
    sample = emulator.sample(cond, members=4, seeds=np.arange(8).reshape(2, 4))
    assert np.isfinite(sample).all() and sample.std(axis=1).mean() > 0
    regression = Corrector.load(det).sample(cond, members=1)
    std = np.asarray(emulator.normalization.target_std)[None, None, :, None, None]
    # the ensemble is spread about the regression estimate (a few target stds at most after 10 steps)
    assert np.abs((sample.mean(axis=1, keepdims=True) - regression) / std).mean() < 3.0
    state = emulator.apply(initial, sample)
    k = emulator.variables.index("siu")
    inside = np.abs(state["siu"]) > 0  # closed-wall faces are 0
    np.testing.assert_allclose(state["siu"][inside], sample[:, :, k][inside], rtol=1e-6)  # the next state itself


def test_regression_stage_must_predict_the_same_targets(emulator_stages, files, tmp_path):  # noqa: F811
    det, _ = emulator_stages
    with pytest.raises(InputError, match="emulator_state_variables"):
        run_train(tiny(files, tmp_path / "x", "corrector.mode=emulator", "corrector.emulator_state_variables=[]",
                       "train.max_steps=2", f"train.base_checkpoint={det}"), verbose=False)
    with pytest.raises(InputError, match="mode"):
        run_train(tiny(files, tmp_path / "y", "train.max_steps=2", f"train.base_checkpoint={det}"), verbose=False)
