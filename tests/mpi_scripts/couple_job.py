"""A coupled run of the real CoarseModel on the small test case; run with or without mpiexec.

    mpiexec -n 3 python -m mpi4py tests/mpi_scripts/couple_job.py --out run.nc --members 4 --steps 3
    python tests/mpi_scripts/couple_job.py --uncoupled ref.npz --members 1 --steps 3   # plain physics, one process
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2]))  # for `tests.…`; after the installed packages

import numpy as np  # noqa: E402

from tests.mpi_scripts import case  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="couple.nc")
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--starts", type=int, nargs="+", default=[0])
    ap.add_argument("--grid", type=int, default=16)
    ap.add_argument("--corrector", choices=["zero", "tiny"], default="tiny")
    ap.add_argument("--checkpoint", default=None, help="corrector checkpoint (loaded by the ML ranks)")
    ap.add_argument("--fault", choices=["none", *case.STEP_FAULTS], default="none")
    ap.add_argument("--fault-at", type=int, default=1)
    ap.add_argument("--physics-fault", choices=["none", *case.PHYSICS_FAULTS], default="none",
                    help="raise or SIGKILL in a physics rank's model step (rank --physics-fault-rank)")
    ap.add_argument("--physics-fault-rank", type=int, default=0)
    ap.add_argument("--restart-interval", type=int, default=0)
    ap.add_argument("--restart", default=None)
    ap.add_argument("--perturb", type=float, default=0.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--ml-ranks", type=int, default=1)
    ap.add_argument("--no-mpi", action="store_true", help="one process without importing mpi4py")
    ap.add_argument("--uncoupled", default=None, help="run the plain physics and save its ML fields to this .npz")
    a = ap.parse_args(argv)

    forcing = case.forcing(a.grid, max(a.starts) + a.steps + 2)
    if a.uncoupled:
        from coupling.bridge import CoarseModel

        out = {}
        for s in a.starts:
            model = CoarseModel(case.grid(a.grid))
            model.set_state(case.initial_state(a.grid))
            traj = [model.get_state()]
            for k in range(a.steps):
                model.step(*forcing.pair(s + k))
                traj.append(model.get_state())
            for v in ("sic", "sit", "snt", "siu", "siv"):
                out[f"{v}_w{s}"] = np.stack([t[v].values for t in traj])
        np.savez(a.uncoupled, **out)
        return 0

    from coupling.config import CoupleConfig
    from coupling.couple import run_couple
    from coupling.layout import WORLD

    comm = None if a.no_mpi else WORLD
    cfg = CoupleConfig(members=a.members, n_steps=a.steps, start_indices=a.starts, restart_interval=a.restart_interval,
                       checkpoint=a.checkpoint, initial_perturbation=a.perturb, ml_ranks=a.ml_ranks,
                       timeouts={"handshake": a.timeout, "step": a.timeout},
                       output_options={"write_forecast": True, "write_correction": True,
                                       "precision": "float64"})  # bit-for-bit comparisons
    corrector = None  # with --checkpoint and no fault, run_couple loads it on the ML rank(s) itself
    if a.checkpoint is None and a.corrector == "zero":
        from corrector.inference import Corrector

        corrector = Corrector.zero(grid={"ny": a.grid, "nx": a.grid})
    elif a.checkpoint is None:
        from tests.mpi_scripts.tiny import tiny_corrector

        corrector = tiny_corrector(a.grid, a.grid)
    elif a.fault != "none":
        from corrector.inference import Corrector

        corrector = Corrector.load(a.checkpoint)
    if corrector is not None and a.fault != "none":
        corrector = case.FaultyCorrector(corrector, a.fault, a.fault_at)
    factory = None
    if a.physics_fault != "none":
        factory = case.physics_fault_factory(a.grid, a.physics_fault, a.fault_at, a.physics_fault_rank)
    stats = {}
    paths = run_couple(cfg, case.initial_state(a.grid), forcing, a.out, restart=a.restart, comm=comm,
                       grid=case.grid(a.grid), corrector=corrector, stats=stats, model_factory=factory)
    lay = stats["layout"]
    if lay.rank == lay.writer:
        print("wrote", *paths, "restart", stats.get("last_restart"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
