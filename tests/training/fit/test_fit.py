"""Training loop: learning, exact resume, gappy targets, time budget, schedule, configs, errors."""
from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from corrector.checkpoint import load_checkpoint
from corrector.model import CorrectorModel
from icecorr.base.config import ConfigError, load_config
from training.fit.dataset import PairDataset, collate, epoch_batches
from training.fit.inputs import build_data
from training.fit.loop import main, run_train
from training.fit.optim import EMA, learning_rate
from training.fit.runtime import setup_env
from training.fit.validation import validate
from training.fit.config import TrainConfig, TrainRunConfig
from tests.training.fit.test_dataset_synthetic import write_pair_file

from tests.helpers.paths import CONFIGS


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fit")
    return (write_pair_file(d / "train.nc", n_time=64, runs=2, seed=0),
            write_pair_file(d / "val.nc", n_time=16, runs=1, seed=1))


def tiny(files, out, *overrides) -> TrainRunConfig:
    train, val = files
    return load_config(TrainRunConfig, CONFIGS / "train_tiny.yaml",
                       [f"train.data.train_file={train}", f"train.data.val_file={val}", f"train.out_dir={out}",
                        "train.progress=false", *overrides])


def rows(out) -> list[dict]:
    with open(Path(out) / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_deterministic_corrector_learns_and_beats_uncorrected_forecast(files, tmp_path):
    cfg = tiny(files, tmp_path / "det", "corrector.kind=deterministic", "train.max_steps=120", "train.val_every=40",
               "train.log_every=10", "train.skill_batches=2")
    best = run_train(cfg, verbose=False)
    assert best.name == "best.pt"
    r = rows(tmp_path / "det")
    assert [int(x["step"]) for x in r] == list(range(10, 121, 10))
    losses = [float(x["train_loss"]) for x in r]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:2])
    skills = [float(x["val_skill"]) for x in r if x["val_skill"]]
    assert len(skills) == 3 and skills[-1] > 0.1  # corrected forecast has a clearly lower RMSE
    ck = load_checkpoint(best)
    assert ck.config.kind == "deterministic" and ck.ema_state is not None
    assert ck.extra["val_skill"] == pytest.approx(max(skills), rel=1e-5)
    assert ck.grid["nx"] == 16 and ck.grid["dx"] == 16000.0
    assert ck.variables_units["siu"] == "m s-1"
    assert (tmp_path / "det" / "config.yaml").read_text().startswith("corrector:")



def test_emulator_trained_on_the_bounded_state(files, tmp_path):
    """`corrector.loss_bounded`: the trainer hands the normalisation to the model (else the loss refuses), the run
    learns, and the checkpoint records the option (corrector/model.py `bounded`; tests/corrector/test_loss_bounded.py)."""
    cfg = tiny(files, tmp_path / "emu", "corrector.mode=emulator", "corrector.kind=deterministic",
               "corrector.loss_bounded=true", "train.max_steps=60", "train.val_every=30", "train.log_every=10",
               "train.skill_batches=2")
    best = run_train(cfg, verbose=False)
    losses = [float(x["train_loss"]) for x in rows(tmp_path / "emu")]
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    skills = [float(x["val_skill"]) for x in rows(tmp_path / "emu") if x["val_skill"]]
    assert len(skills) == 2 and all(np.isfinite(skills))
    assert load_checkpoint(best).config.loss_bounded is True

def test_diffusion_loss_decreases(files, tmp_path):
    cfg = tiny(files, tmp_path / "dif", "train.max_steps=60", "train.log_every=20", "train.val_every=60")
    run_train(cfg, verbose=False)
    r = rows(tmp_path / "dif")
    assert float(r[-1]["train_loss"]) < float(r[0]["train_loss"])
    assert r[-1]["val_skill"] != "" and np.isfinite(float(r[-1]["val_loss"]))
    assert load_checkpoint(tmp_path / "dif" / "last.pt").config.kind == "diffusion"


def _resume_state(out):
    return torch.load(Path(out) / "resume.pt", weights_only=True)


def test_resume_is_bit_identical(files, tmp_path):
    """Interrupt at step 7 (mid-epoch, between validations; diffusion loss noise, dropout and augmentation all
    active), resume, and compare every weight of the raw model, the EMA, the optimiser moments, the loss-noise
    generator and the metrics log with an uninterrupted run."""
    common = ["train.max_steps=14", "train.val_every=4", "train.checkpoint_every=5", "train.log_every=2",
              "corrector.network.dropout=0.1"]
    run_train(tiny(files, tmp_path / "a", *common), verbose=False)
    # the interrupted run also reads its data through a DataLoader worker process: items must not depend on it
    run_train(tiny(files, tmp_path / "b", *common, "train.num_workers=1"), verbose=False, stop_after_steps=7)
    assert _resume_state(tmp_path / "b")["step"] == 7
    assert (tmp_path / "b" / "last.pt").exists()
    run_train(tiny(files, tmp_path / "b", *common, "train.num_workers=1"), verbose=False)
    a, b = _resume_state(tmp_path / "a"), _resume_state(tmp_path / "b")
    assert a["step"] == b["step"] == 14 and a["epoch"] == b["epoch"]
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(pa["exp_avg"], pb["exp_avg"]) and torch.equal(pa["exp_avg_sq"], pb["exp_avg_sq"])
    assert torch.equal(a["rng"][0]["loss_gen"], b["rng"][0]["loss_gen"])
    # the metrics log of the resumed run is that of the uninterrupted one (apart from wall-clock time)
    ra, rb = rows(tmp_path / "a"), rows(tmp_path / "b")
    assert [{k: v for k, v in x.items() if k != "time_s"} for x in ra] == \
           [{k: v for k, v in x.items() if k != "time_s"} for x in rb]


def test_resume_rejects_a_different_corrector(files, tmp_path):
    run_train(tiny(files, tmp_path / "c", "train.max_steps=2"), verbose=False)
    with pytest.raises(ValueError, match=r"resume\.pt.*'corrector'.*differs.*at corrector\.network\.base_channels \(8 there, 4 now\)"):
        run_train(tiny(files, tmp_path / "c", "train.max_steps=4", "corrector.network.base_channels=4"),
                  verbose=False)


def test_resume_of_a_run_saved_before_a_config_field_existed(files, tmp_path):
    """Was: a corrector field added with a default (here loss_window_floor) refused every older resume state."""
    run_train(tiny(files, tmp_path / "o", "train.max_steps=2"), verbose=False)
    state = _resume_state(tmp_path / "o")
    old = json.loads(state["corrector_config"])
    del old["loss_window_floor"]
    state["corrector_config"] = json.dumps(old)
    torch.save(state, tmp_path / "o" / "resume.pt")
    run_train(tiny(files, tmp_path / "o", "train.max_steps=4"), verbose=False)
    assert _resume_state(tmp_path / "o")["step"] == 4


def test_gappy_targets_are_excluded_from_the_loss_and_coverage_is_reported(tmp_path):
    train = write_pair_file(tmp_path / "gappy.nc", n_time=32, nan_fraction=0.3, seed=4)
    val = write_pair_file(tmp_path / "gappy_val.nc", n_time=8, nan_fraction=0.3, seed=5)
    cfg = tiny((train, val), tmp_path / "g", "train.max_steps=8", "train.log_every=4", "train.val_every=8")
    run_train(cfg, verbose=False)
    r = rows(tmp_path / "g")
    assert all(0.65 < float(x["train_coverage"]) < 0.75 for x in r)
    assert all(np.isfinite(float(x["train_loss"])) for x in r) and np.isfinite(float(r[-1]["val_skill"]))
    assert load_checkpoint(tmp_path / "g" / "last.pt").extra["coverage"][0] == pytest.approx(0.7, abs=0.03)
    # what the loss sees: changing the target where it is unobserved changes nothing
    c = cfg.corrector
    ds = PairDataset(train, c.variables, c.conditioning, c.mode)
    norm, _ = ds.fit_normalization()
    batch = collate(ds.with_normalization(norm).__getitems__([(i, i % 2, 0, 1) for i in range(6)]))
    assert 0 < float(batch["target_mask"].mean()) < 1
    torch.manual_seed(0)
    model = CorrectorModel(c, len(c.conditioning))
    garbage = torch.where(batch["target_mask"] > 0, batch["target"], torch.full_like(batch["target"], 1e3))
    l1 = model.loss(batch["target"], batch["cond"], batch["labels"], batch["target_mask"],
                    torch.Generator().manual_seed(1))
    l2 = model.loss(garbage, batch["cond"], batch["labels"], batch["target_mask"], torch.Generator().manual_seed(1))
    assert torch.equal(l1, l2)


def test_time_budget_stops_cleanly(files, tmp_path):
    cfg = tiny(files, tmp_path / "t", "train.max_steps=1000", "train.time_budget_minutes=1e-6")
    path = run_train(cfg, verbose=False)
    state = _resume_state(tmp_path / "t")
    assert state["step"] == 1 and path.exists()
    # validation ran at the stop, so best.pt exists
    assert path.name == "best.pt" and (tmp_path / "t" / "last.pt").exists()


def test_fit_schedule_to_budget_shortens_the_horizon(files, tmp_path):
    cfg = tiny(files, tmp_path / "s", "train.max_steps=100000", "train.time_budget_minutes=0.04",
               "train.fit_schedule_to_budget=true", "train.val_every=100000", "train.log_every=1000")
    run_train(cfg, verbose=False)
    state = _resume_state(tmp_path / "s")
    assert 12 < state["horizon"] < 100000 and state["step"] < 100000


def test_learning_rate_schedule_and_ema_warmup():
    t = TrainConfig(max_steps=100, optim={"lr": 1e-3, "min_lr": 1e-5, "warmup_steps": 10})
    lrs = [learning_rate(s, t, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert max(lrs) == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5, rel=0.05)
    assert all(b <= a for a, b in zip(lrs[9:], lrs[10:]))  # monotone decay after warm-up
    assert learning_rate(500, t, 100) == pytest.approx(1e-5)
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, 0.99)
    with torch.no_grad():
        model.weight.fill_(1.0)
    w0 = ema.module.weight.clone()
    ema.update(model, 0)  # decay min(0.99, 1/10) = 0.1: mostly the new weights
    torch.testing.assert_close(ema.module.weight, 0.1 * w0 + 0.9)


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("train_*.yaml")))
def test_shipped_configs_validate(name):
    cfg = load_config(TrainRunConfig, CONFIGS / name)
    assert cfg.train.batch_size >= 1 and cfg.corrector.conditioning


def test_config_errors_name_the_key(files, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'train\.optim\.lrr'"):
        tiny(files, tmp_path, "train.optim.lrr=1")
    with pytest.raises(ConfigError, match=r"'train\.optim'.*min_lr"):
        tiny(files, tmp_path, "train.optim.min_lr=1")
    with pytest.raises(ValueError, match=r"fewer than train\.batch_size"):
        run_train(tiny(files, tmp_path / "e", "train.batch_size=128"), verbose=False)


def test_cli_dry_run_and_missing_file(files, tmp_path, capsys):
    train, val = files
    args = [str(CONFIGS / "train_tiny.yaml"), f"train.data.train_file={train}", f"train.data.val_file={val}"]
    assert main([*args, "--dry-run"]) == 0
    assert "train_file" in capsys.readouterr().out
    assert main([*args, "train.nope=1"]) == 2
    capsys.readouterr()
    assert main([str(CONFIGS / "train_tiny.yaml"), f"train.data.train_file={tmp_path / 'missing.nc'}",
                 "--dry-run"]) == 2
    assert "missing.nc" in capsys.readouterr().err


def test_emulator_validation_skill_is_measured_against_persistence(files, tmp_path):
    """Persistence scores skill 0 on every variable — zero tendency for sic/sit/snt, the initial state for the
    velocities, which are predicted as the next state — and a perfect prediction scores 1."""
    cfg = tiny(files, tmp_path / "emu", "corrector.mode=emulator", "corrector.kind=deterministic",
               "train.skill_batches=2")
    c = cfg.corrector
    assert c.emulator_state_variables == ["siu", "siv"]
    env = setup_env(cfg.train, "cpu")
    data = build_data(cfg, env)
    n = data.normalization
    assert data.val.target_names[3:] == ["next_siu", "next_siv"]

    class Fixed(torch.nn.Module):
        """sample_normalised returns persistence (or, with `perfect`, the validation targets in order)."""

        def __init__(self, perfect=None):
            super().__init__()
            self.perfect = perfect

        def loss(self, target, *args, **kwargs):
            return target.sum() * 0.0

        def sample_normalised(self, cond, labels, noise, steps):
            if self.perfect is not None:
                return self.perfect.pop(0)
            out = torch.empty(cond.shape[0], len(c.variables), *cond.shape[-2:])
            for k, v in enumerate(c.variables):
                j = c.conditioning.index(f"initial_{v}")
                phys = cond[:, j] * n.cond_std[j] + n.cond_mean[j] if v in c.emulator_state_variables else 0.0
                out[:, k] = (phys - n.target_mean[k]) / n.target_std[k]
            return out

    skill = validate(Fixed(), data, cfg, env, contextlib.nullcontext)
    for v in c.variables:
        assert skill[f"val_skill_{v}"] == pytest.approx(0.0, abs=1e-5), v
    batches = epoch_batches(len(data.val), cfg.train.batch_size, 0, 0, augment=False, shuffle=False,
                            drop_last=False)[:2]
    targets = [collate(data.val.__getitems__(b))["target"] for b in batches]
    assert validate(Fixed(targets), data, cfg, env, contextlib.nullcontext)["val_skill"] == pytest.approx(1.0)


def test_diverging_training_stops_with_one_line_and_no_non_finite_checkpoint(files, tmp_path, capsys):
    """lr = 1e6 used to end with exit 0 and NaN weights in best.pt; now the run stops at the first non-finite loss,
    before that step is applied, and every checkpoint it left holds finite weights."""
    out = tmp_path / "diverged"
    overrides = [f"train.data.train_file={files[0]}", f"train.data.val_file={files[1]}", f"train.out_dir={out}",
                 "train.progress=false", "corrector.kind=deterministic", "train.optim.lr=1e6",
                 "train.optim.warmup_steps=0", "train.max_steps=60", "train.val_every=2", "train.checkpoint_every=2"]
    assert main([str(CONFIGS / "train_tiny.yaml"), *overrides, "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the training diverged at step" in err[0] and "train.optim.lr" in err[0], err
    step = int(err[0].split("diverged at step ")[1].split(":")[0])
    assert step < 60
    for name in ("best.pt", "last.pt"):
        if (out / name).exists():
            ck = load_checkpoint(out / name)  # refuses non-finite weights
            assert all(torch.isfinite(v).all() for v in ck.model_state.values())


def test_full_disk_while_writing_the_resume_state_is_one_error_and_leaves_nothing(files, tmp_path, monkeypatch):
    """A failed torch.save of resume.pt (disk full: "[enforce fail at inline_container.cc]") used to end in that
    traceback with resume.pt.tmp-PID left behind."""
    from icecorr.base.errors import RunError
    from training.fit import state

    def full_disk(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    class TorchWithFullDisk:  # torch as the resume writer sees it; last.pt is still saved by the real torch.save
        save = staticmethod(full_disk)

        def __getattr__(self, name):
            return getattr(torch, name)

    monkeypatch.setattr(state, "torch", TorchWithFullDisk())
    cfg = tiny(files, tmp_path / "full", "corrector.kind=deterministic", "train.max_steps=4",
               "train.checkpoint_every=2", "train.val_every=100")
    with pytest.raises(RunError, match="resume state cannot be written .disk full") as info:
        run_train(cfg, verbose=False)
    assert len(str(info.value).splitlines()) == 1
    assert not [p.name for p in (tmp_path / "full").iterdir() if ".tmp-" in p.name]
