"""The product's main path through the command line, as a user runs it, on a tiny twin experiment:

    mpiexec -n 2 icecorr generate → icecorr train (corrector, emulator) → icecorr checkpoint validate →
    mpiexec -n 3 icecorr couple → icecorr emulate → mpiexec -n 3 icecorr correct → icecorr evaluate

Every stage is a separate `python -m icecorr.cli` process (under mpiexec where the product uses MPI) with a hard
timeout, so the CLI's MPI world handling, config loading and file hand-over between verbs are what is tested. The
assertions: every output is readable CF NetCDF of the documented layout, the report exists, and the trained corrector
beats the uncorrected coarse model on the held-out test split.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from icecorr.base.variables import ML_VARIABLES
from tests.helpers.mpirun import MPI_ENV, mpiexec
from tests.helpers.paths import CONFIGS

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

GRID = ["grid.nx=16", "grid.ny=16"]
#: seeds whose 12-day runs carry storms in every split (a calm test split has almost no model error to correct)
GENERATE = [*GRID, "generate.run_days=10", "generate.spinup_days=4", "generate.seeds.train=[2,5]",
            "generate.seeds.val=[6]", "generate.seeds.test=[7]"]
TINY = ["train.batch_size=8", "train.threads=1", "train.time_budget_minutes=5", "train.log_every=50"]


def icecorr(*args: str, ranks: int = 1, timeout: float = 240.0) -> subprocess.CompletedProcess:
    """Run one `icecorr` command (under mpiexec for ranks > 1); fail the test with its output if it fails."""
    cmd = [sys.executable, "-m", "icecorr.cli", *map(str, args)]
    if ranks > 1:
        cmd = [mpiexec(), "-n", str(ranks), *cmd]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **MPI_ENV})
    assert res.returncode == 0, f"{' '.join(cmd)}\nexit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square difference over every value."""
    return float(np.sqrt(np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)))


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """Tiny twin data and two tiny trained models (a deterministic residual corrector and an emulator)."""
    root = tmp_path_factory.mktemp("e2e")
    data = root / "data"
    icecorr("generate", CONFIGS / "demo" / "generate.yaml", *GENERATE, "--out", data, "--no-progress", ranks=2)
    common = [f"train.data.train_file={data / 'train.nc'}", f"train.data.val_file={data / 'val.nc'}", *TINY]
    icecorr("train", CONFIGS / "train_tiny.yaml", *common, "corrector.kind=deterministic", "train.max_steps=300",
            "train.val_every=100", "train.checkpoint_every=100", f"train.out_dir={root / 'corrector'}", "--no-progress")
    icecorr("train", CONFIGS / "train_tiny.yaml", *common, "corrector.mode=emulator", "train.max_steps=20",
            "train.val_every=10", "train.checkpoint_every=10", f"train.out_dir={root / 'emulator'}", "--no-progress")
    return root


def test_generate_writes_the_three_splits(twin):
    for split in ("train", "val", "test"):
        with xr.open_dataset(twin / "data" / f"{split}.nc") as ds:
            assert {f"residual_{v}" for v in ML_VARIABLES} <= set(ds.data_vars)
            assert ds.sizes["y"] == ds.sizes["x"] == 16 and ds.sizes["time"] > 10


def test_trained_checkpoints_validate(twin):
    for name in ("corrector", "emulator"):
        res = icecorr("checkpoint", "validate", twin / name / "best.pt")
        assert "valid" in res.stdout.lower()


def test_the_corrector_couples_only_with_the_physics_it_learned(twin):
    """The residual checkpoint records the tuned physics of its pairs (configs/demo/generate.yaml); `icecorr couple`
    with Hibler's P* instead exits with one error naming the checkpoint and physics.p_star, and writes nothing."""
    from corrector.checkpoint import load_checkpoint

    with xr.open_dataset(twin / "data" / "train.nc") as ds:
        assert "p_star: 68750.0" in ds.attrs["config"]
    assert load_checkpoint(twin / "corrector" / "best.pt").extra["coarse_physics"]["p_star"] == 68750.0
    assert load_checkpoint(twin / "emulator" / "best.pt").extra["coarse_physics"] is None  # runs no physics
    out = twin / "refused"
    cmd = [sys.executable, "-m", "icecorr.cli", "couple", str(CONFIGS / "demo" / "couple.yaml"),
           f"initial={twin / 'data' / 'test.nc'}", *GRID, "couple.days=1", "couple.start_indices=[0]",
           "physics.p_star=27500.0", f"couple.checkpoint={twin / 'corrector' / 'best.pt'}", f"couple.output={out / 'r.nc'}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **MPI_ENV})
    assert res.returncode != 0
    assert "best.pt, field 'physics.p_star': the corrector learned the residual" in res.stderr, res.stderr[-2000:]
    assert not out.exists() or not list(out.iterdir())


def test_trained_corrector_beats_the_uncorrected_model_offline(twin):
    """`mpiexec -n 3 icecorr correct` on the held-out test split: the corrected forecast is closer to the reference
    than the coarse forecast, summed over the variables in units of each variable's coarse error."""
    out = twin / "corrected.nc"
    icecorr("correct", twin / "data" / "test.nc", "--checkpoint", twin / "corrector" / "best.pt", "-o", out,
            "--members", "2", ranks=3)
    with xr.open_dataset(out) as ds, xr.open_dataset(twin / "data" / "test.nc") as ref:
        assert ds.sizes["member"] == 2
        ratios = {}
        for v in ML_VARIABLES:
            corrected = ds[v].mean("member").values
            assert np.isfinite(corrected).all()
            ratios[v] = rmse(corrected, ref[f"reference_{v}"].values) / rmse(ref[f"forecast_{v}"].values,
                                                                           ref[f"reference_{v}"].values)
    assert np.mean(list(ratios.values())) < 0.9, ratios


def stormy_windows(pairs, steps: int, count: int = 2) -> list[int]:
    """The `count` window starts (room for `steps` steps in the split) with the largest coarse 12 h error: where a
    coupled run has something to correct (the calm windows of a 10-day split have almost no model error)."""
    with xr.open_dataset(pairs) as ds:
        error = sum(((ds[f"forecast_{v}"] - ds[f"reference_{v}"]) ** 2).mean(("y", "x")) /
                    float(((ds[f"forecast_{v}"] - ds[f"reference_{v}"]) ** 2).mean()) for v in ML_VARIABLES)
        error = error.values[: ds.sizes["time"] - steps]
    return sorted(int(i) for i in np.argsort(error)[-count:])


def test_coupled_run_under_mpiexec_through_the_cli(twin):
    """`mpiexec -n 3 icecorr couple` (2 physics ranks + 1 ML rank) with the trained corrector: readable CF
    trajectories (time, member, y, x) of bounded states, closer to the truth at 12 h than the uncorrected runs
    (errors of each variable in units of its coarse 12 h RMSE over the whole test split)."""
    runs, pairs = twin / "runs", twin / "data" / "test.nc"
    starts = stormy_windows(pairs, steps=4)
    base = [CONFIGS / "demo" / "couple.yaml", f"initial={pairs}", *GRID, "couple.days=2",
            f"couple.start_indices={starts}"]
    icecorr("couple", *base, "couple.members=2", f"couple.checkpoint={twin / 'corrector' / 'best.pt'}",
            f"couple.output={runs / 'hybrid.nc'}", ranks=3)
    icecorr("couple", *base, "couple.members=1", "couple.checkpoint=null", f"couple.output={runs / 'coarse.nc'}")
    errs = {"hybrid": 0.0, "coarse": 0.0}
    with xr.open_dataset(pairs) as ref:
        scale = {v: rmse(ref[f"forecast_{v}"], ref[f"reference_{v}"]) for v in ML_VARIABLES}
        for s in starts:
            for name in errs:
                with xr.open_dataset(runs / f"{name}_w{s:05d}.nc") as run:
                    assert run["sic"].dims == ("time", "member", "y", "x")
                    assert run.sizes["time"] == 5  # the initial state and 4 steps of 12 h
                    assert run.sizes["member"] == (2 if name == "hybrid" else 1)
                    assert 0 <= float(run["sic"].min()) and float(run["sic"].max()) <= 1
                    assert float(run["sit"].min()) >= 0
                    # lead 12 h of the run started at window s is the reference of window s
                    errs[name] += sum(rmse(run[v].isel(time=1).mean("member"), ref[f"reference_{v}"].isel(time=s))
                                      / scale[v] for v in ML_VARIABLES)
    assert errs["hybrid"] < errs["coarse"], errs


def test_emulator_and_evaluate_through_the_cli(twin):
    """`icecorr emulate` with the trained emulator, then `icecorr evaluate` of both runs: metrics and report."""
    runs = twin / "runs"
    icecorr("emulate", CONFIGS / "demo" / "couple.yaml", f"initial={twin / 'data' / 'test.nc'}", *GRID,
            "couple.days=2", "couple.start_indices=[0]", "couple.members=2",
            f"couple.checkpoint={twin / 'emulator' / 'best.pt'}", f"couple.output={runs / 'emulator.nc'}")
    with xr.open_dataset(runs / "emulator.nc") as ds:
        assert ds.sizes["member"] == 2 and np.isfinite(ds["sic"].values).all()
    report = twin / "report"
    icecorr("evaluate", f"emulator={runs / 'emulator.nc'}", "--reference", twin / "data" / "test.nc", "-o", report)
    assert (report / "report.md").stat().st_size > 0
    with xr.open_dataset(report / "metrics.nc") as metrics:
        assert metrics.sizes  # readable
