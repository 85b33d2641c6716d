"""Multi-step training of a deterministic emulator (`train.rollout_steps`, `corrector.state_feedback`) and
fine-tuning from a checkpoint (`train.init_checkpoint`)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from corrector.checkpoint import load_checkpoint
from corrector.config import CorrectorConfig
from corrector.normalization import Normalization
from corrector.state_feedback import StateFeedback
from icecorr.base.config import ConfigError, load_config
from icecorr.base.errors import InputError
from training.fit.config import TrainRunConfig
from training.fit.dataset import PairDataset, collate
from training.fit.loop import run_train
from tests.helpers.paths import CONFIGS
from tests.training.fit.test_dataset_synthetic import FORCING, FORCING_MEAN, FORCING_SCALE, smooth_fields, write_pair_file

EMULATOR = ["corrector.kind=deterministic", "corrector.mode=emulator"]


def write_trajectory_file(path: Path, n_time: int = 40, runs: int = 2, ny: int = 16, nx: int = 16,
                          seed: int = 0) -> Path:
    """Pair file of `runs` trajectories of a simple learnable 12 h map (window t + 1 starts from window t's
    reference; persistence forecast): ice grows or melts with the air temperature and drifts with the wind."""
    rng = np.random.default_rng(seed)
    dims = ("time", "y", "x")
    forcing = {f"{f}_{t}": FORCING_MEAN.get(f, 0.0) + FORCING_SCALE[f] * smooth_fields(rng, n_time, ny, nx)
               for f in FORCING for t in ("t0", "t1")}
    per_run = n_time // runs
    states = {v: np.zeros((n_time + 1, ny, nx)) for v in ("sic", "sit", "snt", "siu", "siv")}
    reference = {v: np.zeros((n_time, ny, nx)) for v in states}
    for t in range(n_time):
        if t % per_run == 0:  # a new run: a new initial state near compact ice
            states["sic"][t] = np.clip(0.9 + 0.1 * smooth_fields(rng, 1, ny, nx)[0], 0, 1)
            states["sit"][t] = 1.0 + 0.3 * smooth_fields(rng, 1, ny, nx)[0]
            states["snt"][t] = 0.2 + 0.05 * smooth_fields(rng, 1, ny, nx)[0]
            states["siu"][t] = states["siv"][t] = 0.0
        cold = -(forcing["tas_t1"][t] - 260.0) / 5.0  # about N(0, 1)
        nxt = {"sic": np.clip(states["sic"][t] + 0.02 * cold, 0, 1),
               "sit": np.maximum(states["sit"][t] + 0.03 * cold, 0),
               "snt": np.maximum(states["snt"][t] + 0.005 * cold, 0),
               "siu": 0.02 * forcing["uas_t1"][t], "siv": 0.02 * forcing["vas_t1"][t]}
        nxt["siu"][..., -1] = 0.0
        nxt["siv"][..., -1, :] = 0.0
        for v in states:
            reference[v][t] = nxt[v]
            states[v][t + 1] = nxt[v]
    data = {}
    for v in states:
        data[f"initial_{v}"] = (dims, states[v][:n_time].astype(np.float32))
        data[f"forecast_{v}"] = data[f"initial_{v}"]
        data[f"reference_{v}"] = (dims, reference[v].astype(np.float32))
    data.update({k: (dims, a.astype(np.float32)) for k, a in forcing.items()})
    data["mask"] = (("y", "x"), np.ones((ny, nx), np.float32))
    data["run"] = (("time",), (np.arange(n_time) // per_run).astype(np.int32))
    coords = {"time": np.datetime64("2000-10-01T00:00") + np.arange(n_time) * np.timedelta64(12, "h"),
              "y": (np.arange(ny) + 0.5) * 16000.0, "x": (np.arange(nx) + 0.5) * 16000.0}
    xr.Dataset(data, coords=coords, attrs={"grid_dx": 16000.0, "producer": "test_rollout"}).to_netcdf(path)
    return path


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    d = tmp_path_factory.mktemp("rollout")
    return write_trajectory_file(d / "train.nc", seed=0), write_trajectory_file(d / "val.nc", n_time=16, seed=1)


def emulator_cfg() -> CorrectorConfig:
    return load_config(TrainRunConfig, CONFIGS / "train_tiny.yaml", EMULATOR).corrector


def test_chains_stay_in_one_run_and_items_carry_the_following_windows(trajectories):
    cfg = emulator_cfg()
    ds = PairDataset.for_config(cfg, trajectories[0], rollout_steps=3)
    # 2 runs of 20 windows: 18 chains of 3 in each, none across the run boundary
    assert len(ds) == 36 and ds.chains.shape == (36, 3)
    assert np.all(ds.runs[ds.chains[:, 0]] == ds.runs[ds.chains[:, 2]])
    batch = collate(ds.__getitems__([(0, 1, 0, 1), (5, 0, 1, 0)]))
    v, c = len(cfg.variables), len(cfg.conditioning)
    assert batch["rollout_target"].shape == (2, 2, v, 16, 16) and batch["rollout_cond"].shape == (2, 2, c, 16, 16)
    assert batch["rollout_target_mask"].shape == (2, 2, v, 16, 16)
    one = PairDataset.for_config(cfg, trajectories[0])  # one step: every window is an item
    assert len(one) == 40
    second = collate(one.__getitems__([(1, 1, 0, 1)]))
    assert torch.equal(batch["rollout_cond"][0, 0], second["cond"][0])  # same window, same augmentation
    assert torch.equal(batch["rollout_target"][0, 0], second["target"][0])


def test_windows_that_are_not_one_trajectory_are_refused(tmp_path):
    path = write_pair_file(tmp_path / "pairs.nc", n_time=12, runs=1)  # independent random windows
    with pytest.raises(InputError, match=r"initial_sic.*does not start from window 0's reference_sic"):
        PairDataset.for_config(emulator_cfg(), path, rollout_steps=2)
    with pytest.raises(InputError, match="no run has 8 consecutive"):
        PairDataset.for_config(emulator_cfg(), write_trajectory_file(tmp_path / "t.nc", n_time=12, runs=2),
                               rollout_steps=8)


def test_an_exact_prediction_feeds_the_true_next_window(trajectories):
    """Predicting the true tendency, the next window's conditioning and target come out unchanged; a sic tendency
    too large by δ (inside the bounds) starts the next step δ higher and asks it to take δ back."""
    cfg = emulator_cfg()
    ds = PairDataset.for_config(cfg, trajectories[0], rollout_steps=2)
    norm, _ = ds.fit_normalization()
    ds = ds.with_normalization(norm)
    batch = collate(ds.__getitems__(list(range(8))))
    feedback = StateFeedback(cfg, norm)
    cond, target = feedback.step(batch["target"], batch["cond"], batch["rollout_cond"][:, 0],
                                 batch["rollout_target"][:, 0])
    torch.testing.assert_close(cond, batch["rollout_cond"][:, 0], atol=2e-5, rtol=0)
    torch.testing.assert_close(target, batch["rollout_target"][:, 0], atol=2e-4, rtol=0)
    k, c = cfg.variables.index("sit"), cfg.conditioning.index("initial_sit")
    delta = 0.01  # m: sit has no upper bound and stays positive here
    pred = batch["target"].clone()
    pred[:, k] += delta / norm.target_std[k]
    cond2, target2 = feedback.step(pred, batch["cond"], batch["rollout_cond"][:, 0], batch["rollout_target"][:, 0])
    shift_cond = (cond2[:, c] - batch["rollout_cond"][:, 0, c]) * norm.cond_std[c]
    shift_target = (target2[:, k] - batch["rollout_target"][:, 0, k]) * norm.target_std[k]
    np.testing.assert_allclose(shift_cond.numpy(), delta, atol=1e-5)
    np.testing.assert_allclose(shift_target.numpy(), -delta, atol=1e-5)


def test_the_fed_state_is_bounded_like_a_rollout():
    cfg = emulator_cfg()
    norm = Normalization.identity(cfg.conditioning, cfg.variables)
    feedback = StateFeedback(cfg, norm)
    cond = torch.zeros(1, len(cfg.conditioning), 2, 2)
    cond[0, cfg.conditioning.index("initial_sic")] = torch.tensor([[1.0, 0.5], [0.9, 0.1]])
    cond[0, cfg.conditioning.index("initial_sit")] = 1.0
    pred = torch.zeros(1, len(cfg.variables), 2, 2)
    pred[0, cfg.variables.index("sic")] = torch.tensor([[0.2, 0.0], [0.0, -0.3]])
    pred[0, cfg.variables.index("siu")] = 0.1
    state = feedback.next_state(pred, cond)
    np.testing.assert_allclose(state["sic"][0].numpy(), [[1.0, 0.5], [0.9, 0.0]], atol=1e-7)
    assert state["sit"][0, 1, 1] == 0 and state["sit"][0, 0, 0] == 1  # no thickness without ice
    # nor drift on a face with no ice on either side (the east edge face of the ice-free cell has one side)
    assert state["siu"][0, 1, 1] == 0 and state["siu"][0, 1, 0] == pytest.approx(0.1)


def metrics(out: Path, column: str) -> list[float]:
    with open(out / "metrics.csv") as f:
        return [float(r[column]) for r in csv.DictReader(f) if r[column]]


def test_rollout_training_learns_and_fine_tunes_from_a_checkpoint(trajectories, tmp_path):
    train, val = trajectories
    common = [f"train.data.train_file={train}", f"train.data.val_file={val}", "train.progress=false",
              "train.val_every=30", "train.log_every=10", "train.skill_batches=2", *EMULATOR]

    def run(name: str, *overrides: str) -> Path:
        cfg = load_config(TrainRunConfig, CONFIGS / "train_tiny.yaml",
                          [*common, f"train.out_dir={tmp_path / name}", *overrides])
        return run_train(cfg, verbose=False)

    run("fresh", "train.max_steps=60", "train.rollout_steps=3")
    losses = metrics(tmp_path / "fresh", "train_loss")
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2])
    assert metrics(tmp_path / "fresh", "val_skill")[-1] > 0  # one-step validation beats persistence
    first = run("one", "train.max_steps=60")
    other = write_trajectory_file(tmp_path / "other.nc", seed=2)  # its own statistics differ from train's
    best = run("tuned", "train.max_steps=20", "train.rollout_steps=3", f"train.init_checkpoint={first}",
               "train.optim.warmup_steps=0", "train.optim.lr=1e-4", f"train.data.train_file={other}")
    # fine-tuning starts where the one-step run ended, with its statistics, not from random weights
    assert metrics(tmp_path / "tuned", "train_loss")[0] < 0.5 * losses[0]
    mine, theirs = load_checkpoint(best).normalization, load_checkpoint(first).normalization
    np.testing.assert_array_equal(mine.cond_std, theirs.cond_std)
    np.testing.assert_array_equal(mine.target_mean, theirs.target_mean)
    refitted, _ = PairDataset.for_config(emulator_cfg(), other).fit_normalization()
    assert not np.allclose(refitted.target_mean, theirs.target_mean)


def test_refusals(trajectories, tmp_path):
    with pytest.raises(ConfigError, match="rollout_steps=2: needs a deterministic emulator"):
        load_config(TrainRunConfig, CONFIGS / "train_tiny.yaml", ["train.rollout_steps=2"])
    train, val = trajectories
    first = run_train(load_config(TrainRunConfig, CONFIGS / "train_tiny.yaml", [
        f"train.data.train_file={train}", f"train.data.val_file={val}", "train.progress=false", *EMULATOR,
        f"train.out_dir={tmp_path / 'a'}", "train.max_steps=2", "train.val_every=2"]), verbose=False)
    other = load_config(TrainRunConfig, CONFIGS / "train_tiny.yaml", [
        f"train.data.train_file={train}", f"train.data.val_file={val}", "train.progress=false", *EMULATOR,
        f"train.out_dir={tmp_path / 'b'}", "train.max_steps=2", "corrector.network.base_channels=4",
        f"train.init_checkpoint={first}"])
    with pytest.raises(InputError, match="network.*same network"):
        run_train(other, verbose=False)
    assert not (tmp_path / "b" / "last.pt").exists()
