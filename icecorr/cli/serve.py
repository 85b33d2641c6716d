"""`icecorr serve CONFIG.yaml [key=value …] [--restart FILE] [-o OUT] [--overwrite]`: the ML side of an MPMD
launch, for any physics ranks that speak the coupling protocol (docs/coupling-protocol.md):

    mpiexec -n P ./model … : -n 1 icecorr serve run.yaml

The config is the one of `icecorr couple` (its `couple` section: members, n_steps, start_indices, seed, checkpoint,
output, restarts, timeouts, ml_ranks; `forcing`, else the `initial` pair file, conditions the corrector); the grid,
the variables and their units come from the physics ranks' hellos. The first ML rank writes the output and the
restart files and prints "wrote PATH". Any failure prints one line naming the rank and aborts the whole job.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import Sequence

from icecorr.base.mpi import world_if_parallel
from icecorr.cli.finish import run_mpi_verb


def build_parser() -> argparse.ArgumentParser:
    """The arguments of `icecorr serve`."""
    p = argparse.ArgumentParser(prog="icecorr serve", description="ML ranks of an MPMD coupled run: corrects the "
                                "fields of any physics ranks that speak the icecorr coupling protocol")
    p.add_argument("config", help="YAML config of `icecorr couple`")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides (values parsed as YAML)")
    p.add_argument("--restart", help="restart file to continue from")
    p.add_argument("-o", "--output", help="output NetCDF (default: couple.output)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (only once this run "
                                                            "completes)")
    return p


def serve(args: argparse.Namespace, world) -> int:
    """Load the config, check the outputs, run the ML side; the writer prints what it wrote."""
    from coupling.ensemble_output import output_paths
    from coupling.serve import run_serve
    from icecorr.base.config import dump_config, load_config
    from icecorr.base.outputs import guarded_outputs
    from icecorr.cli.runconfig import CoupleRunConfig

    overrides = list(args.overrides) + ([f"couple.output={args.output}"] if args.output else [])
    cfg = load_config(CoupleRunConfig, args.config, overrides)
    command = "icecorr serve " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    inputs = {"initial file": cfg.initial, "forcing file": cfg.forcing, "checkpoint": cfg.couple.checkpoint,
              "config": args.config, "restart file": args.restart}
    stats: dict = {}
    # checks on every ML rank; no lock: which rank writes is known only once the launch is laid out
    with guarded_outputs(output_paths(cfg.couple.output, cfg.couple.start_indices),
                         {k: (str(v) if v is not None else None) for k, v in inputs.items()},
                         overwrite=args.overwrite, partial_ok=bool(args.restart), lock=False, command=command):
        paths = run_serve(cfg.couple, cfg.forcing or cfg.initial, restart=args.restart, comm=world, command=command,
                          config_text=dump_config(cfg), stats=stats)
    lay = stats.get("layout")
    if lay is not None and lay.rank == lay.writer:
        for p in paths:
            print(f"wrote {p}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`icecorr serve …`: 0 when the run completed; any failure aborts the MPI job (exit 2 bad input, 1 other)."""
    args = build_parser().parse_args(argv)
    world = world_if_parallel()
    return run_mpi_verb("serve", serve, args, world)
