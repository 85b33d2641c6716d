"""Data parallelism with torchrun (gloo, 2 CPU processes): first-step gradients equal the single-process ones on the
same global batch (with land, so the ranks' valid-cell counts differ), and a full `training.fit.loop` run works on 2 ranks.

This file is also the worker script: `python -m torch.distributed.run --nproc_per_node 2 tests/training/fit/test_ddp.py TRAIN.nc
GRADS.pt RUN_DIR` writes rank 0's DDP-averaged first-step gradients, then trains 6 steps into RUN_DIR.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.paths import REPO as ROOT
if str(ROOT) not in sys.path:  # run as a script by torchrun: make `tests.` importable
    sys.path.insert(0, str(ROOT))

from icecorr.base.config import load_config  # noqa: E402
from training.fit.config import TrainRunConfig  # noqa: E402

GLOBAL_BATCH = 8


def _config(train_file, out="unused", *overrides) -> TrainRunConfig:
    return load_config(TrainRunConfig, ROOT / "configs" / "train_tiny.yaml",
                       [f"train.data.train_file={train_file}", "train.data.val_file=null", f"train.out_dir={out}",
                        "corrector.kind=deterministic", *overrides])


def first_step_gradients(train_file, rank: int, world: int) -> dict[str, torch.Tensor]:
    """Gradients of the first optimiser step on the first global batch (rank's share), DDP-averaged if world > 1."""
    from corrector.model import CorrectorModel
    from training.fit.dataset import PairDataset, collate, epoch_batches
    from training.fit.optim import batch_loss

    c = _config(train_file).corrector
    ds = PairDataset(train_file, c.variables, c.conditioning, c.mode)
    ds = ds.with_normalization(ds.fit_normalization()[0])
    keys = epoch_batches(len(ds), GLOBAL_BATCH // world, seed=0, epoch=0, rank=rank, world=world)[0]
    batch = collate(ds.__getitems__(keys))
    torch.manual_seed(0)
    model = CorrectorModel(c, len(c.conditioning))
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        net = DDP(model)
    scaled, _ = batch_loss(net, batch, world)
    scaled.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], timeout: float = 240.0) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --nproc_per_node 2 …` with a hard timeout (a hang fails the test)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"torchrun hung for more than {timeout} s: {' '.join(cmd)}\n{exc.stderr}") from exc
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One torchrun launch (process start-up dominates the cost): first-step gradients, then a 6-step training run."""
    from tests.training.fit.test_dataset_synthetic import write_pair_file

    d = tmp_path_factory.mktemp("ddp")
    train_file = write_pair_file(d / "train.nc", n_time=32, runs=2)
    proc = torchrun([str(Path(__file__)), str(train_file), str(d / "grads.pt"), str(d / "run")])
    return train_file, d, proc


def test_ddp_first_step_gradients_equal_single_process(ddp_run):
    train_file, d, _ = ddp_run
    ddp = torch.load(d / "grads.pt", weights_only=True)
    single = first_step_gradients(train_file, 0, 1)
    assert ddp.keys() == single.keys()
    for name, g in single.items():
        # same mathematics, different summation order: equal to float32 rounding (without the valid-count
        # rescaling of training.fit.optim.batch_loss the head gradients differ by ~1e-3 relative here)
        scale = float(g.abs().max())
        torch.testing.assert_close(ddp[name], g, rtol=1e-5, atol=1e-5 * scale + 1e-12, msg=f"gradient of {name}")
    assert sum(int((g != 0).any()) for g in single.values()) >= 2


def test_training_runs_on_two_ranks(ddp_run):
    _, d, proc = ddp_run
    out = d / "run"
    assert proc.stdout.count("checkpoint:") == 1  # only rank 0 reports
    state = torch.load(out / "resume.pt", weights_only=True)
    assert state["world"] == 2 and len(state["rng"]) == 2 and state["step"] == 6
    assert not torch.equal(state["rng"][0]["loss_gen"], state["rng"][1]["loss_gen"])  # independent noise per rank
    lines = (out / "metrics.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("6,")
    from corrector.checkpoint import load_checkpoint
    assert load_checkpoint(out / "last.pt").extra["step"] == 6


if __name__ == "__main__":
    import torch.distributed as dist

    from training.fit.loop import run_train

    _, train, grads_path, out_dir = sys.argv
    dist.init_process_group("gloo")
    grads = first_step_gradients(train, dist.get_rank(), dist.get_world_size())
    if dist.get_rank() == 0:
        torch.save(grads, grads_path)
    # a short diffusion run through the real entry point (the process group is reused)
    cfg = _config(train, out_dir, "corrector.kind=diffusion", "train.data.val_fraction=0.25", "train.max_steps=6",
                  "train.val_every=3", "train.log_every=3", "train.checkpoint_every=3", "train.progress=false")
    path = run_train(cfg)
    if dist.get_rank() == 0:
        print(f"checkpoint: {path}")
    dist.barrier()
    dist.destroy_process_group()
