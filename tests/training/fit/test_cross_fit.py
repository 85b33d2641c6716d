"""Cross-fitted regression stages (`train.cross_fit`): each training window learns on the residual of a stage that
never saw its run; fold training by `train.data.runs`; the errors that keep a fold honest."""
from __future__ import annotations

import pytest
import torch
from icecorr.base.config import ConfigError

from icecorr.base.errors import InputError
from training.fit.config import TrainRunConfig
from training.fit.cross_fit import CrossFittedStages, fold_training_runs
from training.fit.inputs import build_data
from training.fit.loop import default_model, run_train
from training.fit.runtime import Env
from tests.training.fit.test_fit import files, tiny  # noqa: F401  (module fixture reused)


@pytest.fixture(scope="module")
def folds(files, tmp_path_factory):  # noqa: F811
    d = tmp_path_factory.mktemp("folds")
    det = lambda name, *o: run_train(tiny(files, d / name, "corrector.kind=deterministic",  # noqa: E731
                                          "train.max_steps=30", "train.val_every=30", *o), verbose=False)
    return {"full": det("full"), "without0": det("without0", "train.data.runs=[1]"),
            "without1": det("without1", "train.data.runs=[0]")}


def _cfg(files, out, folds, *extra) -> TrainRunConfig:  # noqa: F811
    return tiny(files, out, "train.max_steps=4", "train.val_every=4", f"train.base_checkpoint={folds['full']}",
                f"train.cross_fit={{0: {folds['without0']}, 1: {folds['without1']}}}", *extra)


def test_fold_trains_only_on_its_runs(files, folds, tmp_path):  # noqa: F811
    assert fold_training_runs(folds["without0"]) == [1] and fold_training_runs(folds["full"]) is None
    cfg = tiny(files, tmp_path, "train.data.runs=[1]")
    data = build_data(cfg, Env())
    assert set(data.train.runs[data.train.indices].tolist()) == {1} and 0 < len(data.train) < 64
    with pytest.raises(InputError, match="train.data.runs"):
        build_data(tiny(files, tmp_path, "train.data.runs=[7]"), Env())


def test_each_window_gets_the_stage_that_never_saw_it(files, folds, tmp_path):  # noqa: F811
    cfg = _cfg(files, tmp_path, folds)
    data = build_data(cfg, Env())
    from training.fit.checkpoints import load_base_stage

    full_cfg, _ = load_base_stage(cfg, data.normalization)
    stages = CrossFittedStages(full_cfg, data.normalization, default_model, torch.device("cpu"),
                               data.train.runs[data.train.indices])
    # a batch mixing both runs: windows 0..3 are run 0, the last ones run 1 (write_pair_file's layout)
    items = [data.train[i] for i in (0, 1, len(data.train) - 1)]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    assert batch["run"].tolist() == [0, 0, 1]
    base = stages(batch)
    for i, run in enumerate(batch["run"].tolist()):
        alone = stages.stages[run].base_prediction(batch["cond"][i:i + 1], batch["labels"][i:i + 1])
        assert torch.allclose(base[i:i + 1], alone, atol=1e-5)  # batched vs alone: float rounding
    # the two folds differ, so the choice matters
    other = stages.stages[1].base_prediction(batch["cond"][:1], batch["labels"][:1])
    assert not torch.allclose(base[:1], other)


def test_cross_fitted_training_runs_and_records_its_stages(files, folds, tmp_path):  # noqa: F811
    out = run_train(_cfg(files, tmp_path / "cf", folds), verbose=False)
    from corrector.checkpoint import load_checkpoint

    assert "cross_fit" in load_checkpoint(out).extra["train_config"]


def test_a_fold_that_saw_its_run_or_a_missing_run_is_refused(files, folds, tmp_path):  # noqa: F811
    wrong = tiny(files, tmp_path / "w", "train.max_steps=2", f"train.base_checkpoint={folds['full']}",
                 f"train.cross_fit={{0: {folds['without1']}, 1: {folds['without0']}}}")
    with pytest.raises(InputError, match="must be trained without it"):
        run_train(wrong, verbose=False)
    missing = tiny(files, tmp_path / "m", "train.max_steps=2", f"train.base_checkpoint={folds['full']}",
                   f"train.cross_fit={{0: {folds['without0']}}}")
    with pytest.raises(InputError, match=r"no stage for run\(s\) \[1\]"):
        run_train(missing, verbose=False)
    with pytest.raises(ConfigError, match="needs train.base_checkpoint"):
        tiny(files, tmp_path, f"train.cross_fit={{0: {folds['without0']}}}")
