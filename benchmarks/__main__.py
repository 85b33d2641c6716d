"""The whole benchmark table: `python -m benchmarks [--quick] [--skip fortran coupling …] [--quality CKPT TEST]`.

Rows come from the benchmark scripts' own functions, run in this one process (one machine state):
  fortran     coarse model seconds per 12 h step at 32², 64², 128² (benchmarks.fortran_model), its log-log slope
              in cells, mEVP Fortran vs vectorised NumPy, and 3 years of coarse physics on the default grid
  coupling    coupled-step overhead and MPI exchange bandwidth (benchmarks.coupling: mpiexec -n 3)
  scaling, members, efficiency, emulator, quality   the corrector (benchmarks.performance)
  emulator_scaling  the demo emulator vs the BBM truth and the mEVP model per 12 h step on 64²…512² at 8 km, their
              log-log slopes in cells, speed-ups and 3-year rollout estimates (benchmarks.emulator_scaling)
Shared 2-core machine: the figures are minima over repeats; compare ratios measured in the same run. The machine's
core count and load average are printed with the table. Without --quality, the few-step quality rows score the
demo's runs/demo/train/diffusion/best.pt on runs/demo/data/test.nc when both exist (--no-quality skips them).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from benchmarks import emulator_scaling, performance  # noqa: E402
from benchmarks.performance import STEPS_3_YEARS  # noqa: E402
from benchmarks.timing import Table, machine_line, print_table  # noqa: E402

PARTS = ("fortran", "coupling") + performance.SECTIONS + ("emulator_scaling",)


def fortran_rows(sizes=(32, 64, 128), repeats: int = 3, mevp_size: int = 64, mevp_iterations: int = 200) -> Table:
    """Coarse-model rows: seconds per 12 h step per grid size, their log-log slope, 3 years extrapolated, and mEVP
    Fortran vs NumPy."""
    import numpy as np

    from benchmarks import fortran_model

    t = Table()
    per_step = {}
    for n in sizes:
        sec, info = fortran_model.time_full_step(n, repeats)
        per_step[n] = sec
        t.add("fortran", f"coarse model {n}², one 12 h step (default physics, cyclone forcing)",
              f"{sec * 1e3:.1f} ms ({info.get('dynamics_steps', '?')} dynamics steps, "
              f"{info.get('transport_substeps', '?')} transport substeps)")
    if len(sizes) > 1:
        cells = np.array([n * n for n in sizes], float)
        slope = float(np.polyfit(np.log(cells), np.log([per_step[n] for n in sizes]), 1)[0])
        t.add("fortran", f"log-log slope of physics cost vs cells, {sizes[0]}²…{sizes[-1]}²", f"{slope:.2f}")
    t.add("fortran", f"3 years ({STEPS_3_YEARS} steps) of coarse physics on {sizes[0]}², 1 member",
          f"{per_step[sizes[0]] * STEPS_3_YEARS / 60:.1f} min (extrapolated)")
    tf, tn, diff = fortran_model.compare_mevp(mevp_size, mevp_iterations, max(1, repeats - 1))
    t.add("fortran", f"mEVP {mevp_size}², {mevp_iterations} iterations: Fortran vs vectorised NumPy",
          f"{tf * 1e3:.1f} ms vs {tn * 1e3:.1f} ms = {tn / tf:.1f}× faster (max |Δu|/|u| {diff:.1e})")
    return t


def coupling_rows(grid: int = 32, members: int = 8, steps: int = 4) -> Table:
    """Runs benchmarks.coupling (mpiexec -n 3) and turns its overhead/bandwidth lines into rows."""
    from benchmarks import coupling

    t = Table()
    buf = io.StringIO()
    argv = ["--grid", str(grid), "--members", str(members), "--steps", str(steps), "--no-single"]
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(buf):
            rc = coupling.main(argv)
    except SystemExit as exc:  # argparse in a changed script
        rc = exc.code
    out = buf.getvalue()
    wall = time.perf_counter() - t0
    if rc:
        t.add("coupling", f"benchmarks.coupling {' '.join(argv)}", f"failed (exit {rc}); last output: "
                                                                   f"{out.strip().splitlines()[-1:]}")
        return t
    for line in out.splitlines():
        m = re.search(r"coupling overhead = ([-\d.]+) %", line)
        if m:
            t.add("coupling", f"overhead of a coupled step ({line.split(':')[0]}), {grid}², {members} members",
                  f"{m.group(1)} % ({line.split('(', 1)[-1].split(')')[0].strip()})", "≤ 1 %",
                  float(m.group(1)) <= 1.0)
        m = re.search(r"exchange bandwidth \((\w+)\s+path,\s*([\d.]+) MB one-way\):\s*([\d.]+) GB/s =\s*(\d+) % of memcpy",
                      line)
        if m:
            t.add("coupling", f"MPI exchange bandwidth, {m.group(1)} path, {m.group(2)} MB",
                  f"{m.group(3)} GB/s = {m.group(4)} % of memcpy", "≥ 50 %", float(m.group(4)) >= 50)
        m = re.search(r"coupled step ([\d.]+) s = physics ([\d.]+) s \+ sampling ([\d.]+) s", line)
        if m:
            t.add("coupling", f"coupled step split ({line.split(':')[0]})",
                  f"{m.group(1)} s = physics {m.group(2)} s + sampling {m.group(3)} s + rest")
    t.add("coupling", "benchmark wall time", f"{wall:.0f} s (mpiexec -n 3 on {os.cpu_count()} cores)")
    return t


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks …`: run the chosen parts in this one process and print the whole table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip", nargs="*", default=[], choices=PARTS, help="parts to leave out")
    ap.add_argument("--only", nargs="*", default=None, choices=PARTS, help="run only these parts")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads for the corrector parts")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compilation)")
    ap.add_argument("--emulator-steps", type=int, default=None)
    ap.add_argument("--quality", nargs=2, metavar=("CHECKPOINT", "TEST_FILE"), default=None,
                    help="few-step vs Heun-20 CRPS and spread/RMSE on a held-out pair file")
    ap.add_argument("--quality-members", type=int, default=16)
    ap.add_argument("--quality-windows", type=int, default=40)
    ap.add_argument("--tune", metavar="VAL_FILE", default=None, help="tune the few-step σ levels on this file first")
    ap.add_argument("--sigmas", type=float, nargs="+", default=None, help="an extra few-step schedule to score")
    ap.add_argument("--no-quality", action="store_true",
                    help="do not score the demo checkpoint even if it exists (--only never scores it by default)")
    a = ap.parse_args(argv)
    demo = (ROOT / "runs/demo/train/diffusion/best.pt", ROOT / "runs/demo/data/test.nc")
    if a.quality is None and a.only is None and not a.no_quality and all(p.exists() for p in demo):
        a.quality = [str(p) for p in demo]  # the lead's demo outputs: score them by default
    parts = [p for p in (a.only if a.only is not None else PARTS) if p not in a.skip]
    print(machine_line(), flush=True)
    t0 = time.perf_counter()
    table = Table()
    if "fortran" in parts:
        print("== fortran", flush=True)
        table.extend(fortran_rows((32, 64) if a.quick else (32, 64, 128), repeats=2 if a.quick else 3))
    if "coupling" in parts:
        print("== coupling", flush=True)
        table.extend(coupling_rows(steps=3 if a.quick else 4))
    sections = [s for s in performance.SECTIONS if s in parts]
    table.extend(performance.run(sections, a.quick, a.threads, a.compile, a.emulator_steps, a.quality,
                                 a.quality_members, a.quality_windows, performance.extra_schedules(a)))
    if "emulator_scaling" in parts:
        print("== emulator_scaling", flush=True)
        table.extend(emulator_scaling.rows((64, 128) if a.quick else emulator_scaling.SIZES, n_threads=a.threads,
                                           repeat=2 if a.quick else 3))
    print_table("benchmarks", argv, table, f"; total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
