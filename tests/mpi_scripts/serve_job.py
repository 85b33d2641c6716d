"""`icecorr serve` with a corrector that fails on purpose (tests/mpi_scripts/case.py FaultyCorrector): the ML rank
of an MPMD launch raises, SIGKILLs itself or hangs at sampling call `at`.

    mpiexec -n 2 python -m mpi4py tests/mpi_scripts/tile_client.py run.yaml \
        : -n 1 python -m mpi4py tests/mpi_scripts/serve_job.py run.yaml out.nc kill 1
"""
from __future__ import annotations

import sys

sys.path.append(__file__.rsplit("/tests/", 1)[0])

from mpi4py import MPI  # noqa: E402

from coupling.serve import run_serve  # noqa: E402
from corrector.inference import Corrector  # noqa: E402
from icecorr.base.config import load_config  # noqa: E402
from icecorr.cli.runconfig import CoupleRunConfig  # noqa: E402
from tests.mpi_scripts.case import FaultyCorrector  # noqa: E402


def main() -> int:
    config, out, fault, at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    cfg = load_config(CoupleRunConfig, config, [])
    corrector = FaultyCorrector(Corrector.load(cfg.couple.checkpoint), fault, at)
    run_serve(cfg.couple, cfg.forcing or cfg.initial, out, comm=MPI.COMM_WORLD, corrector=corrector)
    return 0


if __name__ == "__main__":
    sys.exit(main())
