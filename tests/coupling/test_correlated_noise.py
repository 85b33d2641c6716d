"""Coupled runs whose member noise persists over steps (`sampler.noise_decorrelation_days` > 0): the first step is
the white-noise run's, restarts stay bit-identical, and an MPI layout with two ML ranks equals one process."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from corrector.checkpoint import load_checkpoint, save_checkpoint
from corrector.seeding import member_seeds
from coupling.config import CoupleConfig
from coupling.couple import run_couple
from coupling.ensemble import EnsembleCorrection
from tests.helpers.mpirun import run_mpi
from tests.helpers.paths import MPI_SCRIPTS
from tests.mpi_scripts import case
from tests.mpi_scripts.tiny import tiny_checkpoint, tiny_corrector

VARS = ["sic", "sit", "snt", "siu", "siv"]
FORCING = case.forcing(16, 12)
TAU = 1.5  # days: ρ = exp(−1/3) ≈ 0.72 per 12 h step


def persistent(c, tau=TAU):
    """`c` with its sampler's noise decorrelation time set to `tau` days."""
    c.config = c.config.model_copy(update={"sampler": c.config.sampler.model_copy(
        update={"noise_decorrelation_days": tau})})
    return c


def couple(tmp_path, name, corrector, restart=None, **cfg):
    cfg = CoupleConfig(**{"members": 3, "n_steps": 3, "output_options": {"precision": "float64",
                                                                         "write_correction": True}, **cfg})
    return run_couple(cfg, case.initial_state(), FORCING, tmp_path / f"{name}.nc", restart=restart, comm=None,
                      grid=case.grid(), corrector=corrector)[0]


def test_white_noise_seeds_are_the_member_seeds():
    corr = EnsembleCorrection(tiny_corrector(), FORCING, [0, 5], 3, 9, None)
    assert corr.rho == 0.0 and corr.noise_weights(4) is None
    seeds = corr.seeds(range(1, 6), 4)
    assert seeds.shape == (5, 1)
    expected = [member_seeds(9, 0, 4, 3)[1], member_seeds(9, 0, 4, 3)[2]] + list(member_seeds(9, 5, 4, 3))
    assert seeds[:, 0].tolist() == [int(s) for s in expected]
    lagged = EnsembleCorrection(persistent(tiny_corrector()), FORCING, [0, 5], 3, 9, None).seeds(range(1, 6), 4)
    assert lagged.shape[:2] == (5, 1) and np.array_equal(lagged[..., 0], seeds)


def test_persistent_noise_starts_as_white_noise_and_correlates_corrections(tmp_path):
    white = xr.load_dataset(couple(tmp_path, "white", tiny_corrector()))
    red = xr.load_dataset(couple(tmp_path, "red", persistent(tiny_corrector())))
    for v in VARS:  # step 0 (record 1) draws ε_0 alone
        np.testing.assert_array_equal(red[v].values[:2], white[v].values[:2], err_msg=v)
    assert not np.array_equal(red["sic"].values[2], white["sic"].values[2])
    # corrections of a member at successive steps are more alike than with white noise
    def lag1(ds):
        c = ds["correction_sit"].values  # (time, member, y, x)
        anomalies = c - c.mean(1, keepdims=True)
        return np.mean([np.corrcoef(anomalies[t].ravel(), anomalies[t + 1].ravel())[0, 1] for t in (1, 2)])
    assert lag1(red) > lag1(white) + 0.2


def test_restart_with_persistent_noise_is_exact(tmp_path):
    full = xr.load_dataset(couple(tmp_path, "r", persistent(tiny_corrector()), n_steps=4, restart_interval=1))
    again = xr.load_dataset(couple(tmp_path, "r2", persistent(tiny_corrector()), n_steps=4,
                                   restart=tmp_path / "r.restart.step00002.nc"))
    for v in VARS:
        np.testing.assert_array_equal(again[v].values, full[v].values, err_msg=v)


@pytest.mark.mpi
def test_two_ml_ranks_equal_one_process(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    data = load_checkpoint(ckpt)
    cfg = data.config.model_copy(update={"sampler": data.config.sampler.model_copy(
        update={"noise_decorrelation_days": TAU})})
    save_checkpoint(ckpt, model_state=data.model_state, ema_state=data.ema_state, config=cfg,
                    normalization=data.normalization, grid=data.grid, variables_units=data.variables_units)
    job = str(MPI_SCRIPTS / "couple_job.py")
    args = ["--members", "3", "--steps", "3", "--checkpoint", str(ckpt)]
    res = run_mpi(4, [job, "--out", str(tmp_path / "mpi.nc"), "--ml-ranks", "2", *args], timeout=240.0,
                  cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    one = subprocess.run([sys.executable, job, "--out", str(tmp_path / "one.nc"), "--no-mpi", *args],
                         capture_output=True, text=True, timeout=240.0, cwd=str(tmp_path))
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = xr.load_dataset(tmp_path / "mpi.nc"), xr.load_dataset(tmp_path / "one.nc")
    for v in VARS:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
