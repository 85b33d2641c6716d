"""Offline correction or emulation of the small pair file, with or without mpiexec.

    mpiexec -n 3 python -m mpi4py tests/mpi_scripts/offline_job.py correct pairs.nc out.nc --members 3 --chunk 2
    python tests/mpi_scripts/offline_job.py emulate pairs.nc out.nc --no-mpi --steps 3 --starts 0 2
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2]))  # for `tests.…`; after the installed packages


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("verb", choices=["correct", "emulate", "both"])
    ap.add_argument("pairs")
    ap.add_argument("out", help="output path (both: <stem>_correct / <stem>_emulate)")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--starts", type=int, nargs="+", default=[0])
    ap.add_argument("--restart-interval", type=int, default=0)
    ap.add_argument("--restart", default=None)
    ap.add_argument("--no-mpi", action="store_true")
    a = ap.parse_args(argv)

    from coupling.correct import run_correct
    from coupling.emulate import run_emulate
    from coupling.forcing import FileForcing
    from coupling.layout import WORLD
    from tests.mpi_scripts.tiny import tiny_corrector

    comm = None if a.no_mpi else WORLD
    if a.verb == "both":
        out = Path(a.out)
        for verb in ("correct", "emulate"):
            rest = [x for x in (argv if argv is not None else sys.argv[1:])[3:]]
            main([verb, a.pairs, str(out.with_name(f"{out.stem}_{verb}{out.suffix}")), *rest])
        return 0
    if a.verb == "correct":
        from coupling.config import CorrectConfig

        cfg = CorrectConfig(members=a.members, chunk_size=a.chunk,
                            output_options={"write_forecast": True, "write_correction": True,
                                            "precision": "float64"})  # compared bit for bit with one process
        out = run_correct(cfg, a.pairs, a.out, comm=comm, corrector=tiny_corrector())
        print("wrote", out, flush=True)
    else:
        from coupling.config import CoupleConfig

        cfg = CoupleConfig(members=a.members, n_steps=a.steps, start_indices=a.starts,
                           restart_interval=a.restart_interval, output_options={"precision": "float64"})
        out = run_emulate(cfg, a.pairs, FileForcing(a.pairs), a.out, restart=a.restart, comm=comm,
                          corrector=tiny_corrector(mode="emulator"))
        print("wrote", *out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
