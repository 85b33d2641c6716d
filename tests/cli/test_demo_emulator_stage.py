"""The demo's emulator: a deterministic regression stage trained beside the deterministic corrector, fine-tuned on
its own rollouts, then the diffusion emulator on top of it in its own stage, both with a fixed number of steps (the time budget only guards)."""
from __future__ import annotations

import yaml

from icecorr.cli.demo import TRAIN_CONFIGS, Demo


def test_emulator_stages_train_a_fixed_number_of_steps():
    for name in ("emulator_base", "emulator"):
        train = yaml.safe_load(TRAIN_CONFIGS[name].read_text())["train"]
        assert train["fit_schedule_to_budget"] is False and train["max_steps"] > 0, name
    base = yaml.safe_load(TRAIN_CONFIGS["emulator_base"].read_text())["corrector"]
    emu = yaml.safe_load(TRAIN_CONFIGS["emulator"].read_text())["corrector"]
    assert (base["kind"], base["mode"], emu["kind"], emu["mode"]) == ("deterministic", "emulator", "diffusion",
                                                                      "emulator")
    assert base["emulator_state_variables"] == emu["emulator_state_variables"]


def test_emulator_trains_on_its_regression_stage(tmp_path, monkeypatch):
    demo = Demo(tmp_path, quick=True, progress=False, reuse=False)
    calls, parallel = [], []
    monkeypatch.setattr(Demo, "icecorr", lambda self, *args, **kw: calls.append((args, kw)))
    monkeypatch.setattr(Demo, "parallel", lambda self, *jobs: parallel.extend(jobs))
    demo.train_first_stage()
    assert [a[1] for a, _ in parallel] == [str(TRAIN_CONFIGS["deterministic"]), str(TRAIN_CONFIGS["emulator_base"])]
    one_step = tmp_path / "train" / "emulator_base" / "best.pt"
    one_step.parent.mkdir(parents=True)
    one_step.write_bytes(b"")
    # the regression stage fine-tuned on its own rollouts, from the one-step checkpoint
    demo.tune_emulator(threads=2)
    args, kw = calls[-1]
    assert args[1] == str(TRAIN_CONFIGS["emulator_tuned"]) and f"train.init_checkpoint={one_step}" in args
    assert "train.rollout_steps=4" in args and f"train.out_dir={tmp_path / 'train' / 'emulator_tuned'}" in args
    assert args.index("train.max_steps=30") > args.index("train.max_steps=500")  # the quick plan's count wins
    demo.train_emulator(threads=2)
    args, kw = calls[-1]
    tuned = tmp_path / "train" / "emulator_tuned" / "last.pt"  # not best.pt, chosen by one-step skill
    assert args[1] == str(TRAIN_CONFIGS["emulator"]) and f"train.base_checkpoint={tuned}" in args
    assert f"train.out_dir={tmp_path / 'train' / 'emulator'}" in args and kw["threads"] == 2
    assert "train.max_steps=30" in args   # the quick plan shrinks every stage
