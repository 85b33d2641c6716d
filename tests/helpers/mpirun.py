"""Launch MPI jobs from tests with a hard timeout, so a hang fails a test instead of blocking CI."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from icecorr.base.mpi import LAUNCH_ENV

MPI_ENV = {**LAUNCH_ENV, "OMP_NUM_THREADS": "1"}


@dataclass
class MPIResult:
    returncode: int
    stdout: str
    stderr: str


def mpiexec() -> str:
    exe = shutil.which("mpiexec")
    if exe is None:
        raise RuntimeError("mpiexec not found: run the project set-up (make setup) to install Open MPI")
    return exe


def run_mpi(n: int, args: list[str], timeout: float = 120.0, cwd: str | None = None,
            env: dict[str, str] | None = None) -> MPIResult:
    """Run `mpiexec -n n python -m mpi4py <args>`; raise AssertionError on timeout (a hang)."""
    full_env = dict(os.environ, **MPI_ENV, **(env or {}))
    cmd = [mpiexec(), "-n", str(n), sys.executable, "-m", "mpi4py", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=full_env)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"MPI job hung for more than {timeout} s: {' '.join(cmd)}\n"
                             f"stdout: {exc.stdout}\nstderr: {exc.stderr}") from exc
    return MPIResult(proc.returncode, proc.stdout, proc.stderr)
