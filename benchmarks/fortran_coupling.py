"""Coupling overhead of the Fortran route: the standalone Fortran coarse driver against `icecorr serve`.

    OMP_NUM_THREADS=1 python -m benchmarks.fortran_coupling [--grid 32] [--members 4] [--steps 6] [--ranks 1]
                                                             [--ml serve|fake|both]

Launches `mpiexec -n RANKS icecorr_coarse_driver KIT : -n 1 ML` and reads the driver's own MPI_Wtime figures per
12 h step: the physics (its members' model steps), the client calls (icecorr_correct: packing, the exchange and the
wait for the ML rank's answer) and the hand-back of the corrections. Overhead = (client + hand-back) / physics, per
rank; goal ≤ 1 %. Two ML sides:
  serve  `icecorr serve` with the zero corrector: the whole coupled cost as a user sees it, including the ML rank's
         own work per step (conditioning, bounds, writing the output record), which the physics rank waits for;
  fake   the doc-only ML side of the tests (tests/mpi_scripts/fortran_fake_server.py), which answers at once: the
         Fortran route's own cost (packing, MPI transfer both ways, unpacking).
Timings on a shared machine are noisy: re-run, and compare the ratios.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

TIMING = re.compile(r"icecorr driver timing: rank (\d+) slots (\d+) steps (\d+) physics_s_per_step\s+(\S+) "
                    r"client_s_per_step\s+(\S+) rebuild_apply_s_per_step\s+(\S+) start_s\s+(\S+) overhead_percent\s+(\S+)")


def write_case(folder: Path, n: int, members: int, steps: int) -> Path:
    """A pair file on an n × n grid (initial state + forcing) and the run config; returns the config path."""
    from tests.mpi_scripts.pairs import make_pair_file

    pairs = make_pair_file(folder / "pairs.nc", n_time=steps + 1, n=n)
    config = folder / "run.yaml"
    config.write_text(f"grid: {{nx: {n}, ny: {n}, dx: 16000.0}}\n"
                      f"couple: {{members: {members}, n_steps: {steps}, start_indices: [0], seed: 1, "
                      f"output: {folder / 'serve.nc'}}}\n"
                      f"initial: {pairs}\n")
    return config


def run(n: int, members: int, steps: int, ranks: int, ml: str = "serve", timeout: float = 1800.0) -> list[dict]:
    """One Fortran-driven coupled run against `ml` ('serve' or 'fake'); the driver's timing line of every rank."""
    from fortran_stub.client_paths import driver_path
    from icecorr.base.mpi import LAUNCH_ENV

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = write_case(folder, n, members, steps)
        kit = folder / "kit"
        subprocess.run([sys.executable, "-m", "icecorr.cli", "fortran-kit", str(config), "--out", str(kit)],
                       check=True, capture_output=True, text=True)
        ml_cmd = (["-m", "icecorr.cli", "serve", str(config)] if ml == "serve"
                  else [str(ROOT / "tests" / "mpi_scripts" / "fortran_fake_server.py"), "--out", str(folder / "f.npz")])
        cmd = ["mpiexec", "-n", str(ranks), str(driver_path()), str(kit), ":", "-n", "1", sys.executable, "-m",
               "mpi4py", *ml_cmd]
        env = {**os.environ, **LAUNCH_ENV, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"coupled run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    rows = []
    for m in TIMING.finditer(proc.stdout):
        rows.append({"rank": int(m[1]), "slots": int(m[2]), "steps": int(m[3]), "physics": float(m[4]),
                     "client": float(m[5]), "apply": float(m[6]), "start": float(m[7]), "percent": float(m[8])})
    return sorted(rows, key=lambda r: r["rank"])


def main(argv=None) -> int:
    """Print the per-rank figures and the overhead ratio."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", type=int, default=32, help="cells per side (default: the 32 × 32 benchmark box)")
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--ranks", type=int, default=1, help="Fortran physics ranks")
    p.add_argument("--ml", choices=("serve", "fake", "both"), default="both")
    args = p.parse_args(argv)
    print(f"Fortran route, {args.grid}x{args.grid} grid, {args.members} members, {args.steps} steps, "
          f"{args.ranks} physics rank(s) + 1 ML rank")
    for ml in (("serve", "fake") if args.ml == "both" else (args.ml,)):
        rows = run(args.grid, args.members, args.steps, args.ranks, ml)
        label = "icecorr serve, zero corrector" if ml == "serve" else "doc-only ML side answering at once"
        print(f"ML side: {label}")
        for r in rows:
            print(f"  rank {r['rank']}: physics {r['physics'] * 1e3:9.2f} ms/step  client {r['client'] * 1e3:8.3f} "
                  f"ms/step  hand-back {r['apply'] * 1e3:7.3f} ms/step  (start {r['start'] * 1e3:.1f} ms once)  "
                  f"overhead {r['percent']:.3f} %")
        worst = max(r["percent"] for r in rows)
        print(f"  coupling overhead per 12 h step (worst rank): {worst:.3f} % of the physics step (goal <= 1 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
