"""MPMD runs of `icecorr serve` with physics ranks written only against the protocol client
(tests/mpi_scripts/tile_client.py): tiles and members spread over physics ranks give the undecomposed run bit for
bit (and `icecorr couple`'s); a handshake mismatch stops both sides before any output; a killed rank ends the job.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.helpers.mpirun import MPI_ENV, mpiexec
from tests.helpers.paths import MPI_SCRIPTS

pytestmark = pytest.mark.mpi

CLIENT = str(MPI_SCRIPTS / "tile_client.py")
HANG_GUARD = 240.0
VARS = ["sic", "sit", "snt", "siu", "siv"]


def mpmd(tmp: Path, n_physics: int, client_args: list[str], out: str, server: list[str] | None = None,
         n_ml: int = 1):
    """`mpiexec -n n_physics tile_client.py … : -n n_ml icecorr serve run.yaml -o out`; (returncode, stdout, stderr,
    seconds)."""
    py = [sys.executable, "-m", "mpi4py"]
    server = server or [sys.executable, "-m", "icecorr.cli", "serve", "run.yaml", "-o", out]
    cmd = [mpiexec(), "-n", str(n_physics), *py, CLIENT, "run.yaml", *client_args, ":", "-n", str(n_ml), *server]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD, cwd=str(tmp),
                          env={**os.environ, **MPI_ENV})
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from tests.mpi_scripts.pairs import make_pair_file
    from tests.mpi_scripts.tiny import tiny_checkpoint

    tmp = tmp_path_factory.mktemp("serve")
    make_pair_file(tmp / "pairs.nc", n_time=6)
    tiny_checkpoint(tmp / "tiny.pt")
    (tmp / "run.yaml").write_text(
        "grid: {nx: 16, ny: 16, dx: 16000.0}\ninitial: pairs.nc\n"
        "couple: {members: 4, n_steps: 3, checkpoint: tiny.pt, output: out.nc, seed: 3, initial_perturbation: 0.01,"
        " output_options: {write_forecast: true}, timeouts: {handshake: 60, step: 60}}\n")
    return tmp


@pytest.fixture(scope="module")
def untiled(case):
    rc, out, err, _ = mpmd(case, 1, [], "untiled.nc")
    assert rc == 0, err[-3000:]
    assert "wrote untiled.nc" in out
    return xr.load_dataset(case / "untiled.nc")


def _same(ds: xr.Dataset, ref: xr.Dataset) -> None:
    for v in [*VARS, *(f"forecast_{v}" for v in VARS)]:
        np.testing.assert_array_equal(ds[v].values, ref[v].values, err_msg=v)


def test_untiled_mpmd_equals_icecorr_couple(case, untiled, monkeypatch):
    from icecorr.cli.main import main

    monkeypatch.chdir(case)   # the config's paths are relative
    assert main(["couple", "run.yaml", "-o", "couple.nc"]) == 0
    _same(untiled, xr.load_dataset(case / "couple.nc"))
    assert untiled.attrs["producer"] == "icecorr serve" and untiled.attrs["status"] == "complete"
    assert float(untiled["sic"].isel(time=-1).std("member").max()) > 1e-4  # the corrector does act


@pytest.mark.parametrize("name, n, args, n_ml", [
    ("2x2", 4, ["--rows", "8,8", "--cols", "8,8"], 1),
    ("unequal", 4, ["--rows", "5,11", "--cols", "3,13"], 1),
    # members 0-1 on ranks 0-1, members 2-3 on ranks 2-3, each pair tiled 6 + 10 columns; one or two ML ranks
    ("spread", 4, ["--groups", "2", "--cols", "6,10"], 1),
    ("two_ml", 4, ["--groups", "2", "--cols", "6,10"], 2),
])
def test_tiles_and_spread_members_equal_the_undecomposed_run(case, untiled, name, n, args, n_ml):
    rc, out, err, _ = mpmd(case, n, args, f"{name}.nc", n_ml=n_ml)
    assert rc == 0, err[-3000:]
    assert out.count(" ok") == n
    _same(xr.load_dataset(case / f"{name}.nc"), untiled)


@pytest.mark.parametrize("fault, text", [
    ("units", r"physics rank 1: variable 'sit' has units 'cm' \(code 12\) but the corrector expects 'm'"),
    ("version", r"physics rank 1: protocol version 2 but the server speaks version 1"),
    ("grid", r"physics rank 1 has grid \(ny, nx\)=\(16, 16\), dx=32000.0 m but physics rank 0 has \(16, 16\), "
             r"dx=16000.0 m"),
])
def test_handshake_mismatch_stops_both_sides_before_any_output(case, fault, text):
    rc, out, err, _ = mpmd(case, 2, ["--cols", "8,8", "--fault", fault, "--fault-rank", "1"], f"bad_{fault}.nc")
    assert rc != 0
    assert re.search(r"icecorr serve: ML rank 2 refused the handshake: .*" + text, err), err[-3000:]
    for p in (0, 1):   # every physics rank prints the server's reason
        assert re.search(rf"physics rank {p}: ML rank 2 refused the handshake \(status 1\): .*" + text, err), \
            err[-3000:]
    assert not list(case.glob(f"bad_{fault}.nc*"))


def _ended_soon_after_the_kill(rc: int, out: str, err: str, end: float, kill_line: str, rank: int) -> None:
    """The job failed, mpiexec named the killed `rank`, and it ended within 10 s of the kill (time in `kill_line`)."""
    assert rc != 0
    killed = re.search(kill_line, err)
    assert killed, err[-3000:]
    assert re.search(rf"rank {rank} .*(signal 9|Killed)", err + out), err[-3000:]
    assert end - float(killed.group(1)) < 10.0, f"the job ended {end - float(killed.group(1)):.1f} s after the kill"


def test_killed_physics_rank_ends_the_job(case):
    rc, out, err, _ = mpmd(case, 2, ["--cols", "8,8", "--fault", "kill", "--fault-rank", "1", "--fault-at", "1"],
                           "killp.nc")
    _ended_soon_after_the_kill(rc, out, err, time.time(), r"killing physics process \(rank 1\) at t=([0-9.]+)", 1)


def test_killed_ml_rank_ends_the_job(case):
    server = [sys.executable, "-m", "mpi4py", str(MPI_SCRIPTS / "serve_job.py"), "run.yaml", "killml.nc", "kill", "1"]
    rc, out, err, _ = mpmd(case, 2, ["--cols", "8,8"], "killml.nc", server=server)
    _ended_soon_after_the_kill(rc, out, err, time.time(), r"killing ML process at t=([0-9.]+)", 2)
