"""`icecorr floor GENERATE.yaml [key=value …] --out data/floor.nc`: the twin's predictability floor
(`training.data.floor`) from the config of `icecorr generate` (the same overrides) plus its `floor:` section
(`training.data.floor_config.FloorConfig`: split, run, starts, members, lead_days, seed, redraw.*).

Write it beside the pair files (`data/floor.nc` next to `data/test.nc`): `icecorr evaluate --reference
data/test.nc` then shows it in the report. Under `mpiexec -n N` the start dates go over the ranks (same file for
any N); any failure prints one line naming the rank and aborts the whole job.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Sequence

from icecorr.base.mpi import world_if_parallel
from icecorr.cli.finish import run_mpi_verb


def build_parser() -> argparse.ArgumentParser:
    """The arguments of `icecorr floor`."""
    p = argparse.ArgumentParser(prog="icecorr floor", description="predictability floor of the twin experiment: "
                                "truth ensembles with the parts the coarse model cannot know redrawn")
    p.add_argument("config", help="YAML config of `icecorr generate` (optionally with a `floor:` section)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides (values parsed as YAML), e.g. "
                   "floor.members=8 floor.starts=6")
    p.add_argument("--out", default="data/floor.nc", help="output NetCDF, beside the pair files (default "
                   "data/floor.nc)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (only once this run "
                                                            "completes)")
    p.add_argument("--dry-run", action="store_true", help="validate the config and print it resolved, then exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def floor(args: argparse.Namespace, world) -> int:
    """Load the config, guard the output, measure the floor; rank 0 prints the 12 h floor and what it wrote."""
    import xarray as xr

    from icecorr.base.config import dump_config, load_config
    from icecorr.base.progress import progress
    from icecorr.base.variables import ML_VARIABLES
    from icecorr.cli.guards import guard
    from training.data.floor import run_floor
    from training.data.floor_config import FloorRunConfig

    cfg = load_config(FloorRunConfig, args.config, args.overrides)
    if args.dry_run:
        print(dump_config(cfg))
        return 0
    rank = world.Get_rank() if world is not None else 0
    command = "icecorr floor " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    t0 = time.perf_counter()
    with guard([args.out], {"config": args.config}, args.overwrite, command):
        bar = progress(total=None, desc="floor (rank 0)", unit="step", leave=False,
                       enabled=rank == 0 and not args.no_progress)
        try:
            path = run_floor(cfg, args.out, comm=world, progress=bar.update)
        finally:
            bar.close()
    if world is not None:
        world.Barrier()
    if rank == 0:
        with xr.open_dataset(path) as ds:
            at12 = ", ".join(f"{v} {float(ds[f'{v}_floor_ratio'].sel(lead_time=12.0)):.3f}" for v in ML_VARIABLES)
        size = world.Get_size() if world is not None else 1
        n_starts = len(cfg.floor.start_windows) if cfg.floor.start_windows else cfg.floor.starts
        print(f"floor: 12 h spread / coarse RMSE {at12} ({n_starts} starts × {cfg.floor.members} members, "
              f"{time.perf_counter() - t0:.0f} s on {size} rank(s))", flush=True)
        print(f"wrote {path}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`icecorr floor …`: 0 when the floor is written; any failure aborts the MPI job (exit 2 bad input, 1 other)."""
    args = build_parser().parse_args(argv)
    world = world_if_parallel()
    return run_mpi_verb("floor", floor, args, world, also_known=(ValueError,))
