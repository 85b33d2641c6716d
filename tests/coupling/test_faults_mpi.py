"""Faults on a *physics* rank of a coupled MPI job (tests/coupling/test_coupler_mpi.py covers the ML rank), and an emulator
run resumed from its restart file through the command line.

A failing physics rank (exception or SIGKILL) must end the whole job with a message naming the rank — not by the
exchange deadline of the surviving ranks (30 s here) and not by hanging (run_mpi's hard timeout) — and the output
file written so far must stay readable with every completed step.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.helpers.mpirun import run_mpi
from tests.helpers.paths import MPI_SCRIPTS

pytestmark = pytest.mark.mpi

SCRIPTS = MPI_SCRIPTS
JOB = str(SCRIPTS / "couple_job.py")
VARS = ["sic", "sit", "snt", "siu", "siv"]
HANG_GUARD = 240.0  # only a hang guard on the shared cores; the job must end through MPI_Abort / mpiexec


def _physics_fault(tmp: Path, fault: str, at: int):
    out = tmp / f"{fault}.nc"
    res = run_mpi(3, [JOB, "--out", str(out), "--members", "4", "--steps", "4", "--corrector", "zero",
                      "--timeout", "30", "--physics-fault", fault, "--physics-fault-rank", "0", "--fault-at", str(at)],
                  timeout=HANG_GUARD, cwd=str(tmp))
    end = time.time()
    fault_at = re.search(r"physics process \(rank 0\) at t=([0-9.]+)", res.stderr)
    assert fault_at, res.stderr[-3000:]
    # reported, not asserted (shared cores): seconds from the fault to the end of mpiexec
    print(f"physics {fault}: job ended {end - float(fault_at.group(1)):.1f} s after the fault, rc={res.returncode}")
    assert res.returncode != 0, res.stdout
    # ended by the abort / mpiexec, not by the surviving ranks' exchange deadline
    assert "timed out" not in res.stderr, res.stderr[-3000:]
    return out, res


def _completed_records_are_readable(out: Path, at_least: int) -> None:
    from coupling.output import open_trajectory

    assert not out.exists()  # the output appears only when the run completes; its records are in <name>.partial
    ds = open_trajectory(f"{out}.partial")
    assert ds.sizes["time"] >= at_least, ds.sizes
    for v in VARS:
        assert np.isfinite(ds[v].values).all(), v
    np.testing.assert_array_equal(ds["step"].values, np.arange(ds.sizes["time"]))


def test_raising_physics_rank_aborts_the_job_naming_the_rank(tmp_path):
    # rank 0 holds slots 0 and 1: its third step call is slot 0 of the second step
    out, res = _physics_fault(tmp_path, "raise", at=2)
    assert "rank 0 (physics) failed: RuntimeError: injected failure in the physics at step call 2" in res.stderr, \
        res.stderr[-3000:]
    _completed_records_are_readable(out, at_least=2)  # the initial state and step 1


def test_sigkilled_physics_rank_ends_the_job_naming_the_rank(tmp_path):
    out, res = _physics_fault(tmp_path, "kill", at=2)
    assert "killing physics process (rank 0)" in res.stderr
    assert re.search(r"rank 0 .*(signal 9|Killed)", res.stderr + res.stdout), res.stderr[-3000:]
    _completed_records_are_readable(out, at_least=1)


# ---------------------------------------------------------------------------------------- emulator restart (CLI)
@pytest.fixture(scope="module")
def emulator_case(tmp_path_factory):
    from tests.mpi_scripts.pairs import make_pair_file
    from tests.mpi_scripts.tiny import tiny_checkpoint

    tmp = tmp_path_factory.mktemp("emulate_restart")
    pairs = make_pair_file(tmp / "pairs.nc", n_time=8)
    ck = tiny_checkpoint(tmp / "emu.pt", mode="emulator")
    return tmp, pairs, ck


def _emulate_config(tmp: Path, pairs: Path, ck: Path, name: str, restart_interval: int) -> Path:
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(f"grid: {{nx: 16, ny: 16, dx: 16000.0}}\ninitial: {pairs}\n"
                   f"couple: {{members: 3, n_steps: 6, start_indices: [0, 1], seed: 7, checkpoint: {ck}, "
                   f"restart_interval: {restart_interval}, initial_perturbation: 0.02, "
                   f"output: {tmp / name / 'e.nc'}}}\n")
    return cfg


def test_emulator_restart_through_the_cli_is_bit_identical(emulator_case, capsys):
    from icecorr.cli import main

    tmp, pairs, ck = emulator_case
    assert main(["emulate", str(_emulate_config(tmp, pairs, ck, "full", 2))]) == 0
    full = [xr.load_dataset(tmp / "full" / f"e_w{s:05d}.nc") for s in (0, 1)]
    restart = tmp / "full" / "e.restart.step00002.nc"
    assert restart.exists()
    # continue in a fresh folder (the interrupted run's outputs are read from the paths in the restart file)
    assert main(["emulate", str(_emulate_config(tmp, pairs, ck, "cont", 0)), "--restart", str(restart)]) == 0
    for w, s in enumerate((0, 1)):
        cont = xr.load_dataset(tmp / "cont" / f"e_w{s:05d}.nc")
        assert cont.sizes == full[w].sizes
        for v in VARS:
            np.testing.assert_array_equal(cont[v].values, full[w][v].values, err_msg=f"{v} window {s}")
        np.testing.assert_array_equal(cont["time"].values, full[w]["time"].values)
        assert cont.attrs["status"] == "complete"
