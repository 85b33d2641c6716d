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


def test_the_emulator_learns_on_its_own_pairs_of_more_winters(tmp_path, monkeypatch):
    """The emulator's pairs: the correctors' training seeds and the plan's extra ones, the truth alone (no coarse
    model); only the emulator's stages train on them; a held-out seed among the extra ones is refused."""
    import json

    import pytest

    from icecorr.cli.demo import EMULATOR_STAGES

    demo = Demo(tmp_path, quick=True, progress=False, reuse=False)
    calls = []
    monkeypatch.setattr(Demo, "icecorr", lambda self, *args, **kw: calls.append(args))
    demo.data.mkdir(parents=True)
    manifest = {"splits": {"train": {"seeds": [1]}, "val": {"seeds": [2]}, "test": {"seeds": [3]}}}
    (demo.data / "manifest.json").write_text(json.dumps(manifest))
    demo.generate_emulator_pairs()
    args = calls[-1]
    assert args[0] == "generate" and "generate.forecast=persistence" in args
    assert "generate.seeds.train=[1, 4]" in args and "generate.seeds.val=[]" in args and "generate.seeds.test=[]" in args
    assert args.index("generate.seeds.train=[1, 4]") > args.index("generate.seeds.train=[1]")  # after the plan's
    assert args[args.index("--out") + 1] == str(tmp_path / "data" / "emulator")
    for name in EMULATOR_STAGES:
        assert f"train.data.train_file={tmp_path / 'data' / 'emulator' / 'train.nc'}" in demo.train_args(name, 1)
    for name in ("deterministic", "diffusion"):
        assert f"train.data.train_file={tmp_path / 'data' / 'train.nc'}" in demo.train_args(name, 1)
    manifest["splits"]["test"]["seeds"] = [4]
    (demo.data / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RuntimeError, match=r"emulator_extra_seeds \[4\] are validation or test seeds"):
        demo.generate_emulator_pairs()
