"""Benchmarks of the BBM truth model (prints figures; no assertions).

    python -m benchmarks.truth_model timing  [--sizes 64 128] [--knobs 1 16 64] [--steps 2]
    python -m benchmarks.truth_model twin    [--days 6] [--spinup 2] [--knobs 16] [--seed 1]

`timing`: seconds per 12 h of the truth at 64² (8 km) and 128² (4 km) for several E-reduction factors k (E/k), on
the synthetic forcing, and minutes per simulated year. The machine is shared: figures are noisy (compare ratios).

`twin`: the twin experiment in miniature on the default grid (coarse 32² at 16 km, truth ×2): spin the truth up,
then every 12 h coarse-grain it, run the coarse mEVP model 12 h from there, and compare with the coarse-grained
truth. Prints the deformation scaling β(q) (line-integral coarse-graining of 12 h velocities, physics.md §4.7) of
the truth (at 8 km and coarse-grained to 16 km; 12 h mean velocities, since the instantaneous BBM velocity
carries small elastic ringing that inflates grid-scale deformation) and of the coarse forecasts (end-of-window
velocity), deformation percentiles, and the
12 h forecast error of the coarse model against persistence, with the share of the error that is the time-mean
(systematic) part.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from icecorr.base.variables import STEP_HOURS

from coupling.bridge import CoarseModel
from coupling.truth import TruthModel
from fortran_stub.config import CoarsePhysicsConfig, GridConfig
from fortran_stub.truth_config import TruthPhysicsConfig
from training.data.coarsegrain import coarsen_u, coarsen_v
from training.data.config import ForcingConfig, InitialIceConfig
from training.evaluation.deformation import deformation_rates, deformation_scaling
from training.data.forcing import SyntheticForcing
from training.data.generate import coarse_grained, coarse_start_state, initial_truth_state

START = "2000-11-01T00:00"
WINDOWS_PER_YEAR = 365.25 * 24 / STEP_HOURS


def _truth(fine: GridConfig, knob: float, seed: int, **phys) -> TruthModel:
    m = TruthModel(fine, TruthPhysicsConfig(e_reduction=knob, **phys), seed=seed)
    m.set_state(initial_truth_state(InitialIceConfig(), fine, seed))
    return m


def timing(sizes: list[int], knobs: list[float], steps: int) -> None:
    """Print the truth model's median wall time per 12 h step per grid size and elastic knob E/k (and per year)."""
    print(f"{'grid':>6} {'E/k':>5} {'substep s':>9} {'s / 12 h':>9} {'min / year':>10} {'vs E/16':>8}")
    for n in sizes:
        fine = GridConfig(nx=n, ny=n, dx=512e3 / n)
        forcing = SyntheticForcing(ForcingConfig(), fine, START, steps + 2, seed=1)
        ref = None
        rows = []
        for k in knobs:
            m = _truth(fine, k, 1)
            m.step(forcing.truth_at(0), forcing.truth_at(1))  # warm-up (allocation, page faults)
            walls = []
            for s in range(1, steps + 1):
                t0 = time.perf_counter()
                m.step(forcing.truth_at(s), forcing.truth_at(s + 1))
                walls.append(time.perf_counter() - t0)
            sec = float(np.median(walls))
            rows.append((k, m.physics.elastic_substep(fine.dx), sec))
            if k == 16:
                ref = sec
        for k, sub, sec in rows:
            ratio = f"{sec / ref:8.2f}" if ref else "       -"
            print(f"{n:>4}² {k:>5g} {sub:>9.1f} {sec:>9.3f} {sec * WINDOWS_PER_YEAR / 60:>10.1f} {ratio}")


def _beta(u, v, dx, mask):
    r = deformation_scaling(np.stack(u), np.stack(v), dx, mask=np.stack(mask), q=(1, 2, 3))
    return r


def twin(days: float, spinup: float, knobs: list[float], seed: int) -> None:
    """Print, per knob, a short twin run's deformation scaling (truth vs coarse model) and the coarse model's 12 h
    errors against the coarse-grained truth (RMSE, persistence, systematic share)."""
    coarse_grid = GridConfig()
    r = 2
    fine = coarse_grid.refined(r)
    n_spin, n_win = int(round(spinup * 24 / STEP_HOURS)), int(round(days * 24 / STEP_HOURS))
    forcing = SyntheticForcing(ForcingConfig(), fine, START, n_spin + n_win + 1, seed=seed)
    for knob in knobs:
        t_start = time.perf_counter()
        truth = _truth(fine, knob, seed)
        for k in range(n_spin):
            truth.step(forcing.truth_at(k), forcing.truth_at(k + 1))
        coarse = CoarseModel(coarse_grid, CoarsePhysicsConfig())
        coarse_vars = set(coarse.get_state().data_vars)
        tu, tv, tmask, cu, cv, cmask, gu, gv, dmg = [], [], [], [], [], [], [], [], []
        err, pers = {k: [] for k in ("sic", "sit", "siu", "siv")}, {k: [] for k in ("sic", "sit", "siu", "siv")}
        current = coarse_grained(truth.get_state(), r)
        truth_wall = 0.0
        for w in range(n_win):
            k = n_spin + w
            coarse.set_state(coarse_start_state(current, coarse_vars))
            coarse.step(forcing.coarse_at(k, r), forcing.coarse_at(k + 1, r))
            t0 = time.perf_counter()
            truth.step(forcing.truth_at(k), forcing.truth_at(k + 1))
            truth_wall += time.perf_counter() - t0
            reference = coarse_grained(truth.get_state(), r)
            fc = coarse.get_state()
            for name in err:
                err[name].append(fc[name].values - reference[name])
                pers[name].append(current[name] - reference[name])
            ub, vb = truth.mean_velocity()
            s = truth.state_views()
            tu.append(ub), tv.append(vb), tmask.append(s["sic"] > 0.5), dmg.append(s["damage"].copy())
            gu.append(coarsen_u(ub, r)), gv.append(coarsen_v(vb, r))
            cu.append(fc.siu.values), cv.append(fc.siv.values), cmask.append(fc.sic.values > 0.5)
            current = reference
        elapsed = time.perf_counter() - t_start
        bt = _beta(tu, tv, fine.dx, tmask)
        bg = _beta(gu, gv, coarse_grid.dx, cmask)
        bc = _beta(cu, cv, coarse_grid.dx, cmask)
        rt = deformation_rates(np.stack(tu), np.stack(tv), fine.dx, mask=np.stack(tmask))
        rc = deformation_rates(np.stack(cu), np.stack(cv), coarse_grid.dx, mask=np.stack(cmask))
        print(f"\n=== E/{knob:g}: {n_win} windows after {spinup:g} d spin-up, seed {seed}; "
              f"truth {truth_wall / n_win:.2f} s per 12 h, total {elapsed:.0f} s (shared machine: noisy)")
        print("  beta(q=1,2,3) ± stderr, 12 h velocities, line-integral coarse-graining:")
        for label, res in (("truth 8 km (12 h mean u)", bt), ("C(truth) 16 km (12 h mean u)", bg),
                           ("coarse mEVP 16 km (end u)", bc)):
            b = " ".join(f"{x:.3f}±{e:.3f}" for x, e in zip(res.beta, res.beta_stderr))
            print(f"    {label:<30} {b}   [{res.note()}]")
        for label, rr in (("truth 8 km", rt), ("coarse 16 km", rc)):
            tot = rr.total[np.isfinite(rr.total)]
            print(f"    {label:<13} total deformation day-1: median {np.median(tot):.4f}  P90 {np.percentile(tot, 90):.4f}"
                  f"  P99 {np.percentile(tot, 99):.4f}  max/median {tot.max() / np.median(tot):.0f}")
        d = np.stack(dmg)
        print(f"    damage: mean {d.mean():.3f}, fraction < 0.5: {(d < 0.5).mean():.3f}")
        print("  12 h error of the coarse model vs C(truth) (RMSE; persistence; systematic share = |time-mean|²/MSE):")
        for name in err:
            e, p = np.stack(err[name]), np.stack(pers[name])
            mse = float(np.mean(e ** 2))
            sys_share = float(np.mean(e.mean(axis=0) ** 2)) / mse if mse > 0 else float("nan")
            print(f"    {name:<4} rmse {mse ** 0.5:.4g}  persistence {np.sqrt(np.mean(p ** 2)):.4g}  "
                  f"systematic share {sys_share:.2f}")


def main(argv=None) -> None:
    """`python -m benchmarks.truth_model {timing | twin} …` (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("timing")
    t.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    t.add_argument("--knobs", type=float, nargs="+", default=[1, 16, 64])
    t.add_argument("--steps", type=int, default=2)
    w = sub.add_parser("twin")
    w.add_argument("--days", type=float, default=6)
    w.add_argument("--spinup", type=float, default=2)
    w.add_argument("--knobs", type=float, nargs="+", default=[16])
    w.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    if a.what == "timing":
        timing(a.sizes, a.knobs, a.steps)
    else:
        twin(a.days, a.spinup, a.knobs, a.seed)


if __name__ == "__main__":
    main()
