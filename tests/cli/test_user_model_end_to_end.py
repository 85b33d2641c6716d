"""Bring your own model, end to end through the command line (issue 16): files in a FOREIGN model's conventions
(`tests/helpers/foreign_model.py`: a neXtSIM-like moorings file as the reference, 6-hourly forcing with its own names
and units, and CICE-like `init_time × lead_time` forecasts of "the user's model" — the built-in model with other
drag, ice strength, mixed-layer heat and snowfall — on a 14 × 18 polar-stereographic grid with land as fill values)

    icecorr prepare (prepare.forecasts = the CICE-like files) → icecorr train (tiny deterministic corrector) →
    icecorr correct --config (correct.inputs = the HELD-OUT CICE-like file) [and --no-correction] →
    icecorr evaluate corrected=… uncorrected=… --reference <prepare out>/reference.nc

The held-out forecasts are initialised after every window of the train and val splits. The assertion: evaluate's
RMSE of the corrected forecasts is below that of the uncorrected ones for every variable (pooled over the leads the
12-hourly reference has). About 1.5–2 min on one core.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from icecorr.base.variables import ML_VARIABLES
from tests.helpers.foreign_model import (FORCING_MAPPING, STATE_MAPPING, ForeignSetup, forecast_mapping,
                                         write_foreign_files)
from tests.helpers.mpirun import MPI_ENV
from tests.helpers.paths import CONFIGS

pytestmark = pytest.mark.slow

#: 48 inits every 12 h from 5 October; the last 12 (from 23 October) are held out
SETUP = ForeignSetup(seed=11)
HELD_OUT_FROM = 36
SPLITS = {"train": ["2000-10-05T00:00", "2000-10-20T00:00"], "val": ["2000-10-20T12:00", "2000-10-23T00:00"],
          "test": ["2000-10-23T12:00", "2000-11-01T00:00"]}
TRAIN = ["corrector.kind=deterministic", "train.max_steps=300", "train.val_every=100", "train.checkpoint_every=100",
         "train.batch_size=8", "train.threads=1", "train.log_every=100", "train.seed=0"]
#: uncorrected RMSE well above zero: the user's model has errors to correct in every variable (model units)
FLOOR = {"sic": 0.01, "sit": 0.01, "snt": 0.002, "siu": 0.005, "siv": 0.005}


def icecorr(*args, cwd: Path, timeout: float = 300.0) -> subprocess.CompletedProcess:
    """Run one `icecorr` command in `cwd`; fail the test with its output if it fails."""
    cmd = [sys.executable, "-m", "icecorr.cli", *map(str, args)]
    env = {**os.environ, **MPI_ENV, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    assert res.returncode == 0, f"{' '.join(cmd)}\nexit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def write_configs(root: Path, files: dict) -> None:
    """prepare.yaml (reference = the moorings file, forecasts = both CICE-like files) and correct.yaml (the held-out
    file only); file names relative to `root`."""
    names = [Path(p).name for p in files["forecasts"]]
    prepare = {"grid": {"nx": SETUP.nx, "ny": SETUP.ny, "dx": SETUP.dx}, "prepare": {
        "state_files": [Path(files["reference"]).name], "forcing_files": [Path(files["forcing"]).name],
        "velocity_points": "centre",
        "state": STATE_MAPPING, "forcing": FORCING_MAPPING, "forecasts": forecast_mapping(names), "splits": SPLITS}}
    (root / "prepare.yaml").write_text(yaml.safe_dump(prepare, sort_keys=False))
    correct = {"correct": {"members": 2, "inputs": {"forecasts": forecast_mapping(names[1:]),
                                      "forcing_files": [Path(files["forcing"]).name], "forcing": FORCING_MAPPING}}}
    (root / "correct.yaml").write_text(yaml.safe_dump(correct, sort_keys=False))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The whole path: foreign files, prepare, train, correct (corrected and uncorrected), evaluate."""
    root = tmp_path_factory.mktemp("user_model")
    files = write_foreign_files(root, SETUP, split_init=HELD_OUT_FROM)
    write_configs(root, files)
    icecorr("prepare", "prepare.yaml", "--out", "data", cwd=root)
    icecorr("train", CONFIGS / "train_tiny.yaml", *TRAIN, "train.data.train_file=data/train.nc",
            "train.data.val_file=data/val.nc", "train.out_dir=corrector", "--no-progress", cwd=root)
    # the user's own forecast files through correct.inputs
    icecorr("correct", "--config", "correct.yaml", "--checkpoint", "corrector/best.pt", "-o", "corrected.nc",
            cwd=root)
    icecorr("correct", "--config", "correct.yaml", "--no-correction", "-o", "uncorrected.nc", cwd=root)
    icecorr("evaluate", "corrected=corrected.nc", "uncorrected=uncorrected.nc", "--reference",
            "data/reference.nc", "-o", "report", cwd=root)
    return root, files


def pooled_rmse(path: Path) -> dict[str, dict[str, float]]:
    """model -> variable -> RMSE pooled over the scored leads (equal samples per lead: √ of the mean MSE)."""
    mse: dict[str, dict[str, list[float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["metric"] == "rmse":
                mse.setdefault(row["model"], {}).setdefault(row["variable"], []).append(float(row["value"]) ** 2)
    return {m: {v: float(np.sqrt(np.mean(x))) for v, x in by_v.items()} for m, by_v in mse.items()}


def test_forecasts_are_held_out(run):
    """Every corrected forecast starts after the last window the corrector trained or was selected on."""
    root, files = run
    seen = []
    for split in ("train", "val"):
        with xr.open_dataset(root / "data" / f"{split}.nc") as ds:
            seen.append(ds["time"].values.max() + np.timedelta64(12, "h"))
    with xr.open_dataset(root / "corrected.nc") as ds:
        inits = ds["init_time"].values
        assert ds["sic"].dims == ("init_time", "lead_time", "member", "y", "x")
        np.testing.assert_array_equal(inits, files["inits"][HELD_OUT_FROM:])
        land = files["ocean"] == 0
        assert np.isnan(ds["sic"].values[..., land]).all() and np.isfinite(ds["sic"].values[..., ~land]).all()
    assert inits.min() >= max(seen)


def test_reference_file_is_in_model_conventions(run):
    """prepare's reference.nc: the moorings file in model units on the model grid, land as fill, mask, geography."""
    root, files = run
    with xr.open_dataset(root / "data" / "reference.nc") as ref, xr.open_dataset(files["reference"]) as raw:
        assert set(ML_VARIABLES) <= set(ref.data_vars) and ref["sic"].attrs["units"] == "1"
        t = ref["time"].values[0]
        np.testing.assert_allclose(ref["sic"].sel(time=t).values, raw["sic"].sel(time=t).values / 100.0, rtol=1e-6)
        np.testing.assert_array_equal(ref["mask"].values, files["ocean"])
        assert ref["sic"].attrs["grid_mapping"] in ref.variables and ref["lat"].dims == ("y", "x")
        np.testing.assert_allclose(ref["x"].values, raw["x"].values)


def test_pairs_and_checkpoint_record_grid_projection_and_provenance(run):
    """The pair files keep the moorings file's geography; the checkpoint trained on them records its grid, land
    mask, projection and where its pairs came from."""
    from corrector.checkpoint import load_checkpoint, mask_hash

    root, files = run
    with xr.open_dataset(root / "data" / "train.nc") as pairs:
        assert pairs["lat"].dims == ("y", "x") and pairs["reference_sic"].attrs["grid_mapping"] in pairs.variables
    ck = load_checkpoint(root / "corrector" / "best.pt")
    assert (ck.grid["ny"], ck.grid["nx"], ck.grid["dx"]) == (SETUP.ny, SETUP.nx, SETUP.dx)
    assert ck.grid["mask_hash"] == mask_hash(files["ocean"].astype(bool))
    assert ck.grid["projection"]["grid_mapping_name"] == "polar_stereographic"
    assert str(files["reference"].name) in ck.extra["train_pairs"]["source_files"]


def test_corrected_forecasts_beat_the_uncorrected_ones_for_every_variable(run):
    root, _ = run
    rmse = pooled_rmse(root / "report" / "metrics.csv")
    print("pooled RMSE, uncorrected -> corrected: " + ", ".join(
        f"{v} {rmse['uncorrected'][v]:.4f} -> {rmse['corrected'][v]:.4f}" for v in ML_VARIABLES))
    for v in ML_VARIABLES:
        assert rmse["uncorrected"][v] > FLOOR[v], (v, rmse)
        assert rmse["corrected"][v] < rmse["uncorrected"][v], (v, rmse)
