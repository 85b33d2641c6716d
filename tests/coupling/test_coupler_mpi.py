"""Coupled runs under `mpiexec -n 3` (2 physics ranks + 1 ML rank) with the real CoarseModel and Corrector.

Every job goes through tests/helpers/mpirun.py::run_mpi (hard timeout: a hang fails the test). The jobs are shared by the
tests through module-scoped fixtures so that each MPI launch happens once.
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

from tests.mpi_scripts.tiny import tiny_checkpoint
from tests.helpers.mpirun import MPI_ENV, mpiexec, run_mpi
from tests.helpers.paths import MPI_SCRIPTS

pytestmark = pytest.mark.mpi

SCRIPTS = MPI_SCRIPTS
JOB = str(SCRIPTS / "couple_job.py")
VARS = ["sic", "sit", "snt", "siu", "siv"]
TIMEOUT = 240.0  # generous: the 2 cores are shared; no test relies on it except as a hang guard


def couple(tmp: Path, name: str, *args: str, n: int = 3, timeout: float = TIMEOUT, check: bool = True):
    out = tmp / f"{name}.nc"
    res = run_mpi(n, [JOB, "--out", str(out), *args], timeout=timeout, cwd=str(tmp))
    if check:
        assert res.returncode == 0, f"{name} failed:\n{res.stdout}\n{res.stderr[-4000:]}"
    return out, res


def mpmd_zero_run(tmp: Path) -> Path:
    """MPMD launch `mpiexec -n 1 -x ICECORR_ROLE=ml … : -n 2 …` (the ML rank comes first) with the zero corrector."""
    out = tmp / "z.nc"
    py = [sys.executable, "-m", "mpi4py", JOB, "--out", str(out), "--members", "3", "--steps", "4", "--corrector",
          "zero"]
    cmd = [mpiexec(), "-n", "1", "-x", "ICECORR_ROLE=ml", *py, ":", "-n", "2", *py]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=str(tmp),
                          env={**os.environ, **MPI_ENV})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote" in proc.stdout
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A: tiny diffusion corrector, 4 members, restarts every 2 steps; B: same with 2 members;
    C: A continued from its step-2 restart; Z: zero corrector, 3 members."""
    tmp = tmp_path_factory.mktemp("couple")
    ckpt = str(tiny_checkpoint(tmp / "tiny.pt"))
    a, _ = couple(tmp, "a", "--members", "4", "--steps", "4", "--restart-interval", "2", "--checkpoint", ckpt)
    b, _ = couple(tmp, "b", "--members", "2", "--steps", "4", "--checkpoint", ckpt)
    c, _ = couple(tmp, "c", "--members", "4", "--steps", "4", "--restart", str(tmp / "a.restart.step00002.nc"),
                  "--checkpoint", ckpt)
    z = mpmd_zero_run(tmp)
    ref = tmp / "ref.npz"
    proc = subprocess.run([sys.executable, JOB, "--uncoupled", str(ref), "--steps", "4"], capture_output=True,
                          text=True, timeout=TIMEOUT, env={**os.environ, **MPI_ENV})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {k: xr.load_dataset(p) for k, p in dict(a=a, b=b, c=c, z=z).items()} | {"ref": dict(np.load(ref)),
                                                                                    "tmp": tmp, "ckpt": ckpt}


def test_exchange_is_exact_several_members_per_rank():
    res = run_mpi(3, [str(SCRIPTS / "exchange_check.py"), "6", "3"], timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "exchange ok records [0, 1, 2, 3]" in res.stdout
    assert "physics slots [0, 1, 2] ok" in res.stdout and "physics slots [3, 4, 5] ok" in res.stdout
    assert "checked 36 ok" in res.stdout  # 6 members × 3 steps × (initial, forecast)


def test_exchange_is_exact_with_two_ml_ranks():
    res = run_mpi(5, [str(SCRIPTS / "exchange_check.py"), "7", "2", "2"], timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "exchange ok records [0, 1, 2]" in res.stdout
    assert "ml slots [5, 6] checked" in res.stdout


def test_zero_corrector_reproduces_uncoupled_physics_bit_for_bit(runs):
    """Run as an MPMD launch with the ML rank first (role from ICECORR_ROLE): also shows role assignment works."""
    z, ref = runs["z"], runs["ref"]
    assert z.sizes == {"time": 5, "member": 3, "y": 16, "x": 16}
    for v in VARS:
        for k in range(3):
            np.testing.assert_array_equal(z[v].values[:, k], ref[f"{v}_w0"], err_msg=v)
        np.testing.assert_array_equal(z[f"correction_{v}"].values[1:], 0.0)
    assert z.attrs["checkpoint_id"] == "zero" and z.attrs["status"] == "complete"


def test_members_differ_only_through_their_noise(runs):
    a, b = runs["a"], runs["b"]
    # member k is identical with 2 or 4 members (its seeds depend on k only, it sits on another rank)
    for v in VARS:
        np.testing.assert_array_equal(a[v].values[:, :2], b[v].values, err_msg=v)
    # ... and the tiny diffusion corrector does make members differ
    spread = float(a["sic"].isel(time=-1).std("member").max())
    assert spread > 1e-4
    assert np.all(a["sic"].values[0] == a["sic"].values[0, :1])  # unperturbed start: identical record 0


def test_restart_continues_bit_identically(runs):
    a, c = runs["a"], runs["c"]
    assert c.sizes["time"] == a.sizes["time"] == 5
    for v in [*VARS, *(f"forecast_{v}" for v in VARS)]:
        np.testing.assert_array_equal(c[v].values, a[v].values, err_msg=v)
    np.testing.assert_array_equal(c["time"].values, a["time"].values)
    assert (runs["tmp"] / "a.restart.step00004.nc").exists()


def test_output_is_cf_with_provenance(runs, tmp_path):
    a = runs["a"]
    assert list(a["sic"].dims) == ["time", "member", "y", "x"]
    assert a["sic"].attrs["standard_name"] == "sea_ice_area_fraction" and a["siu"].attrs["units"] == "m s-1"
    assert a.attrs["Conventions"] == "CF-1.10"
    for key in ("command", "config", "checkpoint_id", "sampler", "seeding", "icecorr_version"):
        assert a.attrs[key], key
    assert "couple_job.py" in a.attrs["command"] and "members: 4" in a.attrs["config"]
    assert a.attrs["checkpoint_id"].startswith("sha256:") and "tiny.pt" in a.attrs["checkpoint_id"]
    np.testing.assert_array_equal(np.diff(a["time"].values), np.timedelta64(12, "h"))
    assert float(a["x"][1] - a["x"][0]) == 16_000.0
    assert float(a["sic"].min()) >= 0 and float(a["sic"].max()) <= 1 and float(a["sit"].min()) >= 0
    # a coupled run (2 physics ranks, 1 ML rank) with a stub corrector of known output, correction = FACTOR ·
    # forecast: the written corrected state and correction are recomputed from the written forecast
    from corrector.bounds import THIN_FORECAST_SIC
    from tests.helpers.known_corrector import known_correction
    from tests.helpers.paths import REPO

    # couple_job.py with its in-memory tiny corrector wrapped in the stub (every rank runs the same code)
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "import tests.mpi_scripts.tiny as tiny\n"
            "from tests.helpers.known_corrector import KnownCorrection\n"
            "inner = tiny.tiny_corrector\n"
            "tiny.tiny_corrector = lambda *a, **k: KnownCorrection(inner(*a, **k))\n"
            "from tests.mpi_scripts import couple_job\n"
            f"sys.exit(couple_job.main(['--out', {str(tmp_path / 'known.nc')!r}, '--members', '3', '--steps', '2']))\n")
    res = run_mpi(3, ["-c", code], timeout=TIMEOUT, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    k = xr.load_dataset(tmp_path / "known.nc")
    assert k.sizes["time"] == 3 and k.sizes["member"] == 3
    forecast = {v: k[f"forecast_{v}"].values[1:] for v in VARS}
    want = known_correction(forecast)
    iced = forecast["sic"] >= THIN_FORECAST_SIC  # elsewhere the thin-forecast guard and the bounds step in
    assert iced.mean() > 0.5
    for v in VARS:
        np.testing.assert_allclose(k[v].values[1:][iced], (forecast[v] + want[v])[iced], rtol=1e-6, atol=1e-12,
                                   err_msg=v)
        np.testing.assert_allclose(k[f"correction_{v}"].values[1:][iced], want[v][iced], rtol=1e-5, atol=1e-9,
                                   err_msg=v)
    # the next forecast starts from the corrected state: it differs from the uncorrected physics
    assert not np.allclose(k["sit"].values[2], runs["ref"]["sit_w0"][2])


def _fails_fast(tmp: Path, name: str, *args: str, timeout: float = 60.0):
    t0 = time.monotonic()
    _, res = couple(tmp, name, "--members", "4", "--steps", "3", "--timeout", "30", *args, check=False,
                    timeout=TIMEOUT)
    elapsed = time.monotonic() - t0
    assert res.returncode != 0, res.stdout
    # a failure ends the job well before the hard timeout (and is not left to the 30 s exchange deadline alone)
    assert elapsed < timeout, f"{name}: the job took {elapsed:.0f} s to fail (bound {timeout:.0f} s)"
    return res, elapsed


def test_raising_ml_rank_aborts_the_job_naming_the_rank(tmp_path, runs):
    res, elapsed = _fails_fast(tmp_path, "raise", "--fault", "raise", "--fault-at", "1", "--checkpoint", runs["ckpt"])
    assert "rank 2 (ml) failed: RuntimeError: injected failure in the corrector at sampling call 1" in res.stderr
    # the file written so far is readable and holds the completed records
    assert not (tmp_path / "raise.nc").exists()  # the output appears only when the run completes
    ds = xr.open_dataset(tmp_path / "raise.nc.partial")
    assert ds.sizes["time"] == 2 and ds.attrs["status"] == "failed"


def test_nan_correction_aborts_the_job(tmp_path):
    res, _ = _fails_fast(tmp_path, "nan", "--fault", "nan", "--fault-at", "0")
    assert re.search(r"rank 2 \(ml\) failed: .*non-finite", res.stderr), res.stderr[-2000:]


def test_sigkilled_ml_rank_ends_the_job(tmp_path):
    res, elapsed = _fails_fast(tmp_path, "kill", "--fault", "kill", "--fault-at", "1")
    # ended by mpiexec noticing the dead rank, not by the 30 s exchange deadline of the surviving ranks
    assert "timed out" not in res.stderr, res.stderr[-2000:]
    assert re.search(r"rank 2 .*(signal 9|Killed)", res.stderr + res.stdout), res.stderr[-2000:]
    ds = xr.open_dataset(tmp_path / "kill.nc.partial")  # writer was the killed rank: completed records survive
    assert ds.sizes["time"] >= 2 and np.isfinite(ds["sic"].values).all()


def test_hung_ml_rank_is_caught_by_the_exchange_deadline(tmp_path, runs):
    _, res = couple(tmp_path, "hang", "--members", "4", "--steps", "3", "--timeout", "5", "--fault", "hang",
                    "--checkpoint", runs["ckpt"], check=False)
    assert res.returncode != 0
    assert re.search(r"rank [01] \(physics\) failed: PeerTimeout: timed out after 5 s waiting for corrected fields "
                     r"from ML rank 2", res.stderr), res.stderr[-2000:]


def test_bad_checkpoint_aborts_the_job_naming_the_rank(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    res, _ = _fails_fast(tmp_path, "badckpt", "--checkpoint", str(bad))
    assert "rank 2 (ml) failed: CheckpointError" in res.stderr and "bad.pt" in res.stderr
