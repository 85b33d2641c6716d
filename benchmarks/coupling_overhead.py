"""Coupling overhead of the protocol route, and the cost of tiles.

    OMP_NUM_THREADS=1 python -m benchmarks.coupling_overhead [--grid 32] [--members 4] [--steps 6] [--tile-grid 256]

1. Python route, zero corrector, on the default grid (32², 16 km): `mpiexec -n 2` (1 physics rank with every member,
   1 ML rank: `icecorr couple`'s clients and server) and one process. Per 12 h step,
   overhead = coupled step − physics − ML compute, as a % of the physics step (goal ≤ 1 %); from the ML rank's view
   also step − (wait for the step's headers ≈ physics) − ML compute, which needs no physics timing and so also
   serves other drivers (`mpmd_overhead(driver_command, n_physics)`: e.g. the Fortran client's driver).
2. Tiles at 256²: 4 physics ranks (2×2 tiles) send (members, 2, 5, 128, 128) and receive (members, 5, 128, 128)
   per step; the ML rank's gather (from a common barrier: the senders' start-up, headers, fields) + scatter of whole fields (contiguous
   transfers + one copy into place) against one memcpy of the same bytes, and against the same exchange with 1 untiled physics rank.
   With more ranks than cores the senders share the cores: the 2×2 figure is then an upper bound.
Ratios of one run are printed; the machine is shared, so re-run and compare ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
VARS = ["sic", "sit", "snt", "siu", "siv"]


def _run_config(tmp: Path, grid: int, members: int, steps: int) -> Path:
    """A pair file (initial state + forcing) and an `icecorr couple`/`serve` config of the zero corrector."""
    from tests.mpi_scripts.pairs import make_pair_file

    make_pair_file(tmp / "pairs.nc", n_time=steps + 2, n=grid)
    cfg = tmp / "run.yaml"
    cfg.write_text(f"grid: {{nx: {grid}, ny: {grid}, dx: 16000.0}}\ninitial: {tmp / 'pairs.nc'}\n"
                   f"couple: {{members: {members}, n_steps: {steps}, output: {tmp / 'bench.nc'}}}\n")
    return cfg


def _load(config: str):
    """(couple section as CoupleConfig, grid as GridConfig, initial file) of a run config written by _run_config."""
    import yaml

    from coupling.config import CoupleConfig
    from fortran_stub.config import GridConfig

    raw = yaml.safe_load(Path(config).read_text())
    return CoupleConfig(**raw["couple"]), GridConfig(**raw["grid"]), raw["initial"]


def overhead_worker(config: str, role: str | None) -> int:
    """One rank of the Python route (`icecorr couple` under mpiexec, or serve with --role ml): the writer prints
    one JSON line of per-step timings (s)."""
    from mpi4py import MPI

    from coupling.couple import run_couple
    from coupling.serve import run_serve

    world = MPI.COMM_WORLD
    couple, grid, initial = _load(config)
    stats: dict = {}
    if role == "ml":
        run_serve(couple, initial, comm=world, stats=stats)
    else:
        run_couple(couple, initial, initial, comm=world, grid=grid, stats=stats)
    lay, tim = stats.get("layout"), stats.get("timings")
    steps = couple.steps
    mine = np.array(tim.physics if lay is not None and lay.role == "physics" else [np.nan] * steps)
    every = np.zeros((world.Get_size(), steps))
    world.Allgather(mine, every)   # the Python physics ranks' step times (NaN from other ranks)
    if lay is not None and lay.rank == lay.writer:
        print(json.dumps({"cycle": tim.cycle, "ml": tim.ml[1:], "write": tim.write[1:],
                          "physics": np.nanmax(every, axis=0).tolist(), "waits": stats["header_waits"][1:]}),
              flush=True)
    return 0


def one_process(config: str) -> dict:
    """The same run in one process (no MPI)."""
    from coupling.couple import run_couple

    couple, grid, initial = _load(config)
    stats: dict = {}
    run_couple(couple, initial, initial, comm=None, grid=grid, stats=stats)
    t = stats["timings"]
    return {"cycle": t.cycle, "ml": t.ml[1:], "write": t.write[1:], "physics": t.physics}


def report_overhead(name: str, r: dict, skip: int = 1) -> None:
    """Median step split and overhead (% of the physics step) of timings `r`; the first `skip` steps are warm-up."""
    cycle, physics, ml = (np.array(r[k][skip:], dtype=float) for k in ("cycle", "physics", "ml"))
    if np.isfinite(physics).all():
        over = (cycle - physics - ml) / physics
        print(f"{name}: step {np.median(cycle) * 1e3:8.2f} ms = physics {np.median(physics) * 1e3:8.2f} ms + ML "
              f"{np.median(ml) * 1e3:6.2f} ms + overhead {np.median(cycle - physics - ml) * 1e3:6.2f} ms "
              f"(writing {np.median(r['write'][skip:]) * 1e3:.2f} ms) -> {np.median(over) * 100:5.2f} % of the "
              f"physics step (goal <= 1 %)")
    if r.get("waits"):
        waits = np.array(r["waits"][skip:])
        print(f"{name} (ML rank's view): step - wait for headers - ML = "
              f"{np.median(cycle - waits - ml) * 1e3:6.2f} ms = {np.median((cycle - waits - ml) / waits) * 100:5.2f} "
              f"% of the wait (≈ physics step)")


def mpmd_overhead(driver: list[str], n_physics: int, config: str, timeout: float = 1800) -> dict:
    """Overhead hook for any physics driver speaking the protocol: `mpiexec -n n_physics <driver …> : -n 1` the
    ML rank of this benchmark (serve, zero corrector, timings); returns its JSON timings (report_overhead)."""
    from tests.helpers.mpirun import MPI_ENV, mpiexec
    import subprocess

    ml = [sys.executable, "-m", "mpi4py", "-m", "benchmarks.coupling_overhead", "--worker", "overhead", "--role",
          "ml", "--config", config]
    proc = subprocess.run([mpiexec(), "-n", str(n_physics), *driver, ":", "-n", "1", *ml], capture_output=True,
                          text=True, timeout=timeout, cwd=str(ROOT), env={**os.environ, **MPI_ENV})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def tiles_worker(grid: int, members: int, rows: int, cols: int, repeat: int) -> int:
    """One rank of the tile benchmark: physics ranks hold a `rows` × `cols` tiling of every member's fields."""
    from mpi4py import MPI

    from coupling.client import PhysicsClient
    from coupling.handshake import ServerTerms
    from coupling.layout import Layout, split_blocks
    from coupling.protocol import KIND_STEP, Hello, codes_of
    from coupling.server import MLServer

    world = MPI.COMM_WORLD
    lay = Layout.build(world, None, role="physics" if world.Get_rank() < world.Get_size() - 1 else "ml")
    if lay.role == "physics":
        r, c = divmod(lay.physics_ranks.index(lay.rank), cols)
        rs, cs = split_blocks(grid, rows)[r], split_blocks(grid, cols)[c]
        client = PhysicsClient(lay, 120, 120)
        client.hello(Hello(grid, grid, 16_000.0, codes_of(VARS, "variable"), (0,) * 5, n_slots=members,
                           j0=rs.start + 1, j1=rs.stop, i0=cs.start + 1, i1=cs.stop))
        client.fields[...] = np.random.default_rng(lay.rank).random(client.fields.shape)
        for k in range(repeat):
            lay.comm.Barrier()
            client.correct(k)
        client.end(repeat - 1)
    else:
        server = MLServer(lay, 120, 120)
        server.handshake(lambda h: (ServerTerms(VARS, {}, members, repeat, ml_of=lay.ml_of), False, 0))
        gather, scatter = [], []
        for k in range(repeat):
            lay.comm.Barrier()
            t0 = time.perf_counter()
            server.gather(KIND_STEP, k)
            t1 = time.perf_counter()
            server.corrected[...] = server.fields[:, 1]
            t2 = time.perf_counter()
            server.scatter()
            gather.append(t1 - t0)   # from the barrier: the senders' start-up, headers and fields
            scatter.append(time.perf_counter() - t2)
        server.wait_end(repeat - 1)
        src = np.concatenate([server.fields.ravel(), server.corrected.ravel()])
        dst = np.empty_like(src)
        copies = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            np.copyto(dst, src)
            copies.append(time.perf_counter() - t0)
        print(json.dumps({"gather": gather[1:], "scatter": scatter[1:], "memcpy": copies[1:],
                          "bytes": int(src.nbytes)}), flush=True)
    lay.free()
    return 0


def _json_of(res) -> dict:
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-4000:])
    return json.loads([line for line in res.stdout.splitlines() if line.startswith("{")][-1])


def main(argv=None) -> int:
    """Run both benchmarks (or, with --worker, one rank of one) and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", type=int, default=32)
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--tile-grid", type=int, default=256)
    ap.add_argument("--tile-members", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--worker", choices=["overhead", "tiles"], help=argparse.SUPPRESS)
    ap.add_argument("--role", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--config", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tiles", default="2x2", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker == "overhead":
        return overhead_worker(a.config, a.role)
    if a.worker == "tiles":
        rows, cols = map(int, a.tiles.split("x"))
        return tiles_worker(a.tile_grid, a.tile_members, rows, cols, a.repeat)

    from tests.helpers.mpirun import run_mpi

    print(f"Python route: {a.grid}² grid, {a.members} members, {a.steps} steps, zero corrector, "
          f"{os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        config = str(_run_config(Path(tmp), a.grid, a.members, a.steps))
        report_overhead("mpiexec -n 2 (1 physics + 1 ML)", _json_of(run_mpi(
            2, ["-m", "benchmarks.coupling_overhead", "--worker", "overhead", "--config", config], timeout=1800,
            cwd=str(ROOT))))
        report_overhead("one process", one_process(config))
    size = a.tile_members * (2 + 1) * 5 * a.tile_grid ** 2 * 8
    print(f"tiles: {a.tile_grid}² grid, {a.tile_members} members, {size / 1e6:.1f} MB per step (fields + "
          f"corrections), median of {a.repeat - 1}")
    for tiles, n in (("2x2", 4), ("1x1", 1)):
        r = _json_of(run_mpi(n + 1, ["-m", "benchmarks.coupling_overhead", "--worker", "tiles", "--tiles", tiles,
                                     "--tile-grid", str(a.tile_grid), "--tile-members", str(a.tile_members),
                                     "--repeat", str(a.repeat)], timeout=1800, cwd=str(ROOT)))
        g, s, m = (float(np.median(r[k])) for k in ("gather", "scatter", "memcpy"))
        print(f"  {tiles} ({n} physics rank{'s' if n > 1 else ''}): gather {g * 1e3:6.2f} ms + scatter {s * 1e3:6.2f} "
              f"ms = {(g + s) / m:5.1f} x one memcpy of the same bytes ({m * 1e3:.2f} ms, "
              f"{r['bytes'] / m / 1e9:.1f} GB/s)")
    print("(shared machine: timings are noisy; re-run and compare ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
