"""Run under `mpiexec -n 3 python -m mpi4py`: `icecorr ARGS` where rank 0's `run_correct` fails after a delay and
the other ranks' succeed at once, so a rank that announces success without waiting for the others shows up."""
import sys
import time

from mpi4py import MPI

import coupling.correct
from icecorr.base.errors import InputError
from icecorr.cli.main import main


def run_correct(cfg, forecasts, out, comm=None, **kwargs):
    if MPI.COMM_WORLD.Get_rank() == 0:
        time.sleep(3)
        raise InputError(str(forecasts), None, "rank 0 fails on purpose")
    return out


coupling.correct.run_correct = run_correct
sys.exit(main(sys.argv[1:]))
