"""Shared by the Fortran-client tests: the small case (pair file, run config, kit) and MPMD launches of the Fortran
driver beside an ML side (`icecorr serve` or the doc-only fake of tests/mpi_scripts/fortran_fake_server.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.mpirun import MPI_ENV, mpiexec
from tests.helpers.paths import MPI_SCRIPTS  # noqa: F401 - also used by the tests

FAKE_SERVER = str(MPI_SCRIPTS / "fortran_fake_server.py")
N = 16                # grid cells per side
MEMBERS, STEPS, STARTS = 3, 3, [0, 2]
TIMEOUT = 300.0
ICECORR = [sys.executable, "-m", "mpi4py", "-m", "icecorr.cli"]   # an MPI rank running the CLI


@dataclass
class Job:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def driver() -> str:
    """The built Fortran coarse driver."""
    from fortran_stub.client_paths import driver_path

    return str(driver_path())


def write_case(folder: Path, checkpoint: str | None = None, output: str = "serve.nc") -> Path:
    """Pair file + run config (16 × 16, 3 members, 2 windows of 3 steps); returns the config path."""
    from tests.mpi_scripts.pairs import make_pair_file

    pairs = folder / "pairs.nc"
    if not pairs.exists():
        make_pair_file(pairs, n_time=6, n=N)
    lines = [f"grid: {{nx: {N}, ny: {N}, dx: 16000.0}}",
             f"couple: {{members: {MEMBERS}, n_steps: {STEPS}, start_indices: {STARTS}, seed: 11, "
             f"output: {folder / output}, sampler_steps: 2"
             + (f", checkpoint: {checkpoint}" if checkpoint else "") + "}",
             f"initial: {pairs}"]
    config = folder / f"{Path(output).stem}.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def write_kit(config: Path, out: Path) -> Path:
    """`icecorr fortran-kit CONFIG --out OUT`."""
    res = subprocess.run([sys.executable, "-m", "icecorr.cli", "fortran-kit", str(config), "--out", str(out)],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def overrides(folder: Path, name: str, text: str) -> str:
    """A &kit override namelist file."""
    path = folder / f"{name}.nml"
    path.write_text(f"&kit\n {text}\n/\n")
    return str(path)


def mpmd(n_physics: int, driver_args: list[str], ml_command: list[str], cwd: Path,
         timeout: float = TIMEOUT) -> Job:
    """`mpiexec -n n_physics DRIVER ARGS : -n 1 ML_COMMAND`; a hang fails the test (AssertionError)."""
    return mpmd_program(n_physics, [driver(), *driver_args], ml_command, cwd, timeout)


def mpmd_program(n_physics: int, program: list[str], ml_command: list[str], cwd: Path,
                 timeout: float = TIMEOUT) -> Job:
    """`mpiexec -n n_physics PROGRAM : -n 1 ML_COMMAND`; a hang fails the test (AssertionError)."""
    cmd = [mpiexec(), "-n", str(n_physics), *program, ":", "-n", "1", *ml_command]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(cwd),
                              env={**os.environ, **MPI_ENV})
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"MPMD job hung: {' '.join(cmd)}\n{exc.stdout}\n{exc.stderr}") from exc
    return Job(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)


def serve_command(config: Path, *extra: str) -> list[str]:
    """The ML side: `python -m mpi4py -m icecorr.cli serve CONFIG …`."""
    return [*ICECORR, "serve", str(config), *extra]


def fake_command(out: Path, *extra: str) -> list[str]:
    """The doc-only fake ML side (zero correction, saves what it receives)."""
    return [sys.executable, "-m", "mpi4py", FAKE_SERVER, "--out", str(out), *extra]


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the direct children of `pid` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except (OSError, ValueError, IndexError):
            continue
    return out


def kill_mid_run(n_physics: int, driver_args: list[str], ml_command: list[str], cwd: Path, victim: str,
                 after: str, timeout: float = TIMEOUT) -> tuple[Job, float]:
    """Launch like `mpmd`, SIGKILL the child process whose command line contains `victim` once the output shows
    `after`; returns the job and the seconds from the kill to the end of mpiexec."""
    import signal

    cmd = [mpiexec(), "-n", str(n_physics), driver(), *driver_args, ":", "-n", "1", *ml_command]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(cwd),
                            env={**os.environ, **MPI_ENV})
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if after in line:
                break
            if time.monotonic() - t0 > timeout:
                raise AssertionError("no progress line before the timeout")
        targets = [pid for pid, cmdline in children(proc.pid) if victim in cmdline]
        assert targets, f"no child process matching {victim!r}: {children(proc.pid)}"
        os.kill(targets[0], signal.SIGKILL)
        killed = time.monotonic()
        out, err = proc.communicate(timeout=60)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return Job(proc.returncode, "".join(seen) + out, err, time.monotonic() - t0), time.monotonic() - killed
