"""Coupling overhead and MPI exchange bandwidth of `icecorr couple`.

    OMP_NUM_THREADS=1 python -m benchmarks.coupling [--grid 32] [--members 8] [--steps 4] [--corrector default]

Launches `mpiexec -n 3` (2 physics ranks + 1 ML rank; on a 2-core machine that is oversubscribed) and prints:
  coupling overhead = (coupled step time − physics time − sampling time) / coupled step time
     physics time = slowest physics rank's model steps in that cycle; sampling time = the ML rank's sample + apply;
     the remainder is exchange, waiting latency, bounds/state hand-back and writing the output record.
  exchange bandwidth = bytes / one-way time of the coupler's own Isend/Irecv + polling path, as a fraction of a
     local memcpy (np.copyto) of the same bytes measured in the same job; also for blocking Send/Recv.
Timings on a shared machine are noisy: compare the ratios, and re-run. Goals: overhead ≤ 1 %, bandwidth ≥ 50 %.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LARGE = 8 * 2 * 5 * 128 * 128 * 8  # bytes: 8 members' (initial, forecast) on a 128² grid, beyond the caches
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))


def _corrector(kind: str, n: int):
    import torch

    from corrector.config import CorrectorConfig
    from corrector.inference import Corrector
    from corrector.model import CorrectorModel
    from corrector.normalization import Normalization

    if kind == "tiny":
        from tests.mpi_scripts.tiny import tiny_corrector

        return tiny_corrector(n, n)
    cfg = CorrectorConfig()  # default network and sampler; untrained weights cost the same
    torch.manual_seed(0)
    model = CorrectorModel(cfg, len(cfg.conditioning))
    norm = Normalization.identity(cfg.conditioning, cfg.variables)
    norm.target_std = np.array([0.02, 0.05, 0.005, 0.01, 0.01])
    return Corrector.from_model(model, norm, cfg, grid={"ny": n, "nx": n}, device="cpu")


def _median_time(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bandwidth(comm, writer: int, peer: int, nbytes: int, repeat: int = 50) -> dict | None:
    """Ping-pong between `peer` (a physics rank) and `writer` (the ML rank); memcpy of the same bytes on `writer`."""
    from coupling.transport import wait_all

    rank = comm.Get_rank()
    buf = np.ones(nbytes // 8)
    if rank not in (writer, peer):  # wait asleep, as an idle rank of a coupled run does
        wait_all([comm.Ibarrier()], 120, "bench barrier", rank)
        return None
    other = peer if rank == writer else writer
    results = {}
    for mode in ("coupler", "blocking"):
        times = []
        for it in range(repeat + 5):
            t0 = time.perf_counter()
            if rank == peer:
                if mode == "coupler":
                    wait_all([comm.Isend(buf, dest=other, tag=90)], 30, "bench", rank)
                    wait_all([comm.Irecv(buf, source=other, tag=91)], 30, "bench", rank)
                else:
                    comm.Send(buf, dest=other, tag=90)
                    comm.Recv(buf, source=other, tag=91)
            else:
                if mode == "coupler":
                    wait_all([comm.Irecv(buf, source=other, tag=90)], 30, "bench", rank)
                    wait_all([comm.Isend(buf, dest=other, tag=91)], 30, "bench", rank)
                else:
                    comm.Recv(buf, source=other, tag=90)
                    comm.Send(buf, dest=other, tag=91)
            if it >= 5:
                times.append((time.perf_counter() - t0) / 2)  # one-way
        results[mode] = float(np.median(times))
    wait_all([comm.Ibarrier()], 120, "bench barrier", rank)
    if rank != writer:
        return None
    dst = np.empty_like(buf)
    results["memcpy"] = _median_time(lambda: np.copyto(dst, buf), repeat)
    return results


def worker(a) -> int:
    """One rank of the mpiexec job: the coupled run, then the exchange bandwidth; the writer prints the JSON line."""
    from mpi4py import MPI

    from coupling.config import CoupleConfig
    from coupling.couple import run_couple
    from tests.mpi_scripts import case

    world = MPI.COMM_WORLD
    corrector = _corrector(a.corrector, a.grid) if world.Get_rank() == world.Get_size() - 1 else None
    cfg = CoupleConfig(members=a.members, n_steps=a.steps, sampler_steps=a.sampler_steps)
    stats: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_couple(cfg, case.initial_state(a.grid), case.forcing(a.grid, a.steps + 2), Path(tmp) / "bench.nc",
                   comm=world, grid=case.grid(a.grid), corrector=corrector, stats=stats)
    lay, tim = stats["layout"], stats["timings"]
    comm = world.Dup()
    # physics timings of every rank (one per step) to every rank, as buffers
    mine = np.array(tim.physics if lay.role == "physics" else [np.nan] * a.steps, dtype=np.float64)
    gathered = np.zeros((comm.Get_size(), a.steps))
    comm.Allgather(mine, gathered)
    phys = [gathered[p] for p in lay.physics_ranks]
    payload = int(np.prod((len(lay.slots_of[lay.physics_ranks[0]]), 2, 5, a.grid, a.grid))) * 8
    bw = {"payload": bandwidth(comm, lay.writer, lay.physics_ranks[0], payload),
          "large": bandwidth(comm, lay.writer, lay.physics_ranks[0], LARGE, repeat=20)}
    if lay.rank == lay.writer:
        skip = 1 if a.steps > 2 else 0  # first cycle: warm-up (allocations, oneDNN primitive cache)
        cycle = np.array(tim.cycle[skip:])
        physics = np.max(np.array([p[skip:] for p in phys]), axis=0)
        ml = np.array(tim.ml[1 + skip:])  # tim.ml[0] is the initial (perturbation) exchange
        write = np.array(tim.write[1 + skip:])
        print(json.dumps({"cycle": cycle.tolist(), "physics": physics.tolist(), "ml": ml.tolist(),
                          "write": write.tolist(), "bandwidth": bw, "payload_bytes": payload}), flush=True)
    comm.Free()
    return 0


def single_process(a) -> dict:
    """The same run in one process (no MPI): overhead = cycle − physics − sampling."""
    from coupling.config import CoupleConfig
    from coupling.couple import run_couple
    from tests.mpi_scripts import case

    cfg = CoupleConfig(members=a.members, n_steps=a.steps, sampler_steps=a.sampler_steps)
    stats: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_couple(cfg, case.initial_state(a.grid), case.forcing(a.grid, a.steps + 2), Path(tmp) / "bench.nc",
                   comm=None, grid=case.grid(a.grid), corrector=_corrector(a.corrector, a.grid), stats=stats)
    t = stats["timings"]
    skip = 1 if a.steps > 2 else 0
    return {"cycle": t.cycle[skip:], "physics": t.physics[skip:], "ml": t.ml[1 + skip:], "write": t.write[1 + skip:]}


def report(name: str, r: dict) -> None:
    """Print the median cycle split (physics, sampling, rest) and the coupling overhead of timings `r` (s)."""
    cycle, physics, ml = (np.median(r[k]) for k in ("cycle", "physics", "ml"))
    over = (np.array(r["cycle"]) - np.array(r["physics"]) - np.array(r["ml"])) / np.array(r["cycle"])
    print(f"{name}: coupled step {cycle:.3f} s = physics {physics:.3f} s + sampling {ml:.3f} s + rest "
          f"(writing {np.median(r['write']) * 1e3:.1f} ms)")
    print(f"{name}: coupling overhead = {np.median(over) * 100:.2f} % (median over {len(over)} cycles; "
          f"min {over.min() * 100:.2f} %, max {over.max() * 100:.2f} %)   goal ≤ 1 %")


def main(argv=None) -> int:
    """Run the benchmark (or, with --worker, one rank of it) and print the results."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", type=int, default=32)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--corrector", choices=["default", "tiny"], default="default")
    ap.add_argument("--sampler-steps", type=int, default=None)
    ap.add_argument("--no-single", action="store_true", help="skip the one-process run")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a)

    from tests.helpers.mpirun import run_mpi

    args = ["-m", "benchmarks.coupling", "--worker", "--grid", str(a.grid), "--members", str(a.members),
            "--steps", str(a.steps), "--corrector", a.corrector]
    if a.sampler_steps:
        args += ["--sampler-steps", str(a.sampler_steps)]
    print(f"coupled run: {a.grid}² grid, {a.members} members, {a.steps} steps, corrector '{a.corrector}', "
          f"mpiexec -n 3 (2 physics + 1 ML rank) on {__import__('os').cpu_count()} cores (oversubscribed if < 3)")
    res = run_mpi(3, args, timeout=1800, cwd=str(ROOT))
    if res.returncode != 0:
        print(res.stdout, res.stderr[-4000:])
        return 1
    r = json.loads([line for line in res.stdout.splitlines() if line.startswith("{")][-1])
    report("mpi 2+1", r)
    for which, n in (("payload", r["payload_bytes"]), ("large", LARGE)):
        bw = r["bandwidth"][which]
        for mode in ("coupler", "blocking"):
            gbs, mem = n / bw[mode] / 1e9, n / bw["memcpy"] / 1e9
            print(f"exchange bandwidth ({mode:8s} path, {n / 1e6:5.2f} MB one-way): {gbs:5.2f} GB/s = "
                  f"{bw['memcpy'] / bw[mode] * 100:3.0f} % of memcpy ({mem:5.2f} GB/s)   goal ≥ 50 %")
    if not a.no_single:
        report("one process", single_process(a))
    print("(shared machine: timings are noisy; re-run and compare ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
