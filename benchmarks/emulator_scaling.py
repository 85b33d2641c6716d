"""Cost of the emulator against the physics on large grids (issue 20, "Arctic"): seconds per 12 h step, log-log
slopes in cells, the emulator's speed-up over the BBM truth and 3-year rollout estimates.

    python -m benchmarks.emulator_scaling [--sizes 64 128 256 512] [--members 4] [--threads N] [--json out.json]
    python -m benchmarks.emulator_scaling --sizes 64 128 --json out.json      # quick

Measured on square n×n all-ocean grids at the demo truth's cell size (8 km; the domain grows with n, as an
Arctic-wide grid would), in this one process:
  emulator  one full sample of a 12 h step (`Corrector.sample`: every network evaluation of the sampler) with the
            network, conditioning channels and sampler of configs/train_diffusion_emulator.yaml (untrained weights:
            the cost of an evaluation does not depend on their values), 1 member and `--members` members in one
            network batch; the same with the bottleneck attention removed and with it global (one window over the
            whole coarsest level, O(cells²)) to show what the windowed attention costs
  bbm       the BBM truth (coupling.truth.TruthModel, default physics), the second 12 h step from rest (the first
            is a spin-up: it touches the arrays and sets the ice moving), synthetic forcing; also at 25 km (the
            Arctic target), where its elastic substep is 25/8 times longer
  mevp      the coarse mEVP model (coupling.bridge.CoarseModel, default physics) on the same grid, same forcing
Every figure is the minimum over repeats (noise only adds time) of the process CPU time and of the wall time of
the same calls; the ratios are of timings taken in the same run. The Fortran models run on one thread, and so does
the emulator by default (`--threads`): like for like per core, and on a machine shared by several jobs (load above
the core count) a second torch thread measures the contention (2 threads ran 3–5× slower than 1 at load 8). With
one thread the fits, speed-ups and estimates use the CPU time, which the other jobs hardly change (it is the wall
time of an idle core); with more threads (`--clock wall` too) the wall time. Both are in the table and the JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import yaml

from corrector.config import CorrectorConfig
from corrector.inference import Corrector
from corrector.model import CorrectorModel
from corrector.normalization import Normalization
from corrector.seeding import member_seeds
from coupling.bridge import CoarseModel
from coupling.truth import TruthModel
from fortran_stub.config import CoarsePhysicsConfig, GridConfig
from fortran_stub.truth_config import TruthPhysicsConfig
from training.data.config import ForcingConfig, InitialIceConfig
from training.data.forcing import SyntheticForcing
from training.data.generate import initial_truth_state
from benchmarks.performance import STEPS_3_YEARS
from benchmarks.timing import Table, machine_line, print_table, threads

ROOT = Path(__file__).resolve().parents[1]
EMULATOR_CONFIG = ROOT / "configs" / "train_diffusion_emulator.yaml"
SIZES = (64, 128, 256, 512)
TRUTH_DX = GridConfig().refined(2).dx  # m: the demo truth's cell size (8 km)
BBM_DX = (25e3,)  # m: the BBM is also timed at the Arctic target resolution (issue 20: 25 km)
START = "2000-11-01T00:00"  # winter: compact ice, storms
GOAL_SLOPE, GOAL_SLOPE_TOL = 1.0, 0.15
GOAL_STEP_S = 1.0  # s per 12 h step on the whole domain
GOAL_ROLLOUT_S = 30 * 60.0  # 3 years

#: emulator variants: name -> (members in the one network batch, network overrides); "{m}" = --members
VARIANTS = {
    "1 member": (1, {}),
    "{m} members": (None, {}),
    "1 member, no attention": (1, {"attention_bottleneck": False}),
    "1 member, global attention": (1, {"attention_window": 1 << 20}),
}


# ------------------------------------------------------------------------------------------------ fits and table
@dataclass
class LogLogFit:
    """Least-squares line through (log cells, log seconds): seconds ≈ first · (cells / first_cells) ** slope."""
    slope: float
    slope_stderr: float  # standard error of the slope (nan with 2 points)
    r2: float
    first: float  # s: the fitted time at the smallest grid
    first_cells: int

    def text(self) -> str:
        """The fit in one line of the table."""
        err = "" if math.isnan(self.slope_stderr) else f" ± {self.slope_stderr:.2f}"
        return (f"{self.slope:.2f}{err} (R² {self.r2:.3f}; t ≈ {self.first * 1e3:.3g} ms × "
                f"(cells/{self.first_cells})^{self.slope:.2f})")


def loglog_fit(cells: Sequence[float], seconds: Sequence[float]) -> LogLogFit:
    """Fit of log(seconds) against log(cells) (at least 2 points)."""
    x, y = np.log(np.asarray(cells, float)), np.log(np.asarray(seconds, float))
    if len(x) < 2:
        raise ValueError("loglog_fit: needs at least 2 grid sizes")
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid ** 2)) / ss_tot if ss_tot > 0 else 1.0
    dof = len(x) - 2
    stderr = math.sqrt(float(np.sum(resid ** 2)) / dof / float(np.sum((x - x.mean()) ** 2))) if dof else math.nan
    c0 = float(np.exp(x[0]))
    return LogLogFit(float(slope), stderr, r2, float(np.exp(slope * x[0] + intercept)), int(round(c0)))


@dataclass
class Timings:
    """Seconds per 12 h step on `clock`: emulator[variant][n] (all members of the batch), bbm[n], mevp[n] (grids
    n×n); `other` the same series (named as `series` names them) on the other clock, for reference."""
    threads: int
    members: int
    dx: float
    clock: str = "cpu"
    emulator: dict[str, dict[int, float]] = field(default_factory=dict)
    bbm: dict[int, float] = field(default_factory=dict)
    mevp: dict[int, float] = field(default_factory=dict)
    bbm_extra: dict[str, dict[int, float]] = field(default_factory=dict)  # "bbm at 25 km": the BBM at other dx
    other: dict[str, dict[int, float]] = field(default_factory=dict)
    bbm_info: dict[str, dict[int, dict]] = field(default_factory=dict)  # series -> n -> step counts

    @property
    def other_clock(self) -> str:
        return "wall" if self.clock == "cpu" else "cpu"

    def series(self) -> dict[str, dict[int, float]]:
        """Every series by name: "emulator, <variant>", "bbm", "mevp", "bbm at <dx> km"."""
        return ({f"emulator, {k}": v for k, v in self.emulator.items()} | {"bbm": self.bbm, "mevp": self.mevp}
                | self.bbm_extra)

    def bbm_series(self) -> dict[str, dict[int, float]]:
        """The BBM series: "bbm" (at `dx`) and those at other cell sizes."""
        return {"bbm": self.bbm} | self.bbm_extra

    def other_text(self, name: str, n: int) -> str:
        """"wall 1.23 s" (the other clock's figure of a series at grid n) or ""."""
        sec = self.other.get(name, {}).get(n)
        return "" if sec is None else f"{self.other_clock} {sec:.3g} s"


def ratio(x: float) -> str:
    """A speed-up as text: two significant digits below 10 (0.68×, 3.4×), whole numbers above (27×)."""
    return f"{x:.2g}×" if x < 10 else f"{x:.0f}×"


def _paren(*parts: str) -> str:
    """" (a; b)" of the non-empty parts, or ""."""
    parts = tuple(p for p in parts if p)
    return f" ({'; '.join(parts)})" if parts else ""


def fits(t: Timings) -> dict[str, LogLogFit]:
    """Log-log fits of every series with at least 2 grids (emulator variants, bbm, mevp)."""
    out = {}
    for name, s in t.series().items():
        sizes = sorted(s)
        if len(sizes) >= 2:
            out[name] = loglog_fit([n * n for n in sizes], [s[n] for n in sizes])
    return out


def build_table(t: Timings) -> Table:
    """The rows: per grid the emulator variants, BBM and mEVP; the slopes; the speed-ups; the 3-year estimates."""
    table = Table()
    one, many = "1 member", f"{t.members} members"
    for n in sorted(set().union(*t.emulator.values(), t.bbm, t.mevp)):
        for name, s in t.emulator.items():
            if n in s:
                m = t.members if name == many else 1
                per = f" = {s[n] / m * 1e3:.1f} ms per member" if m > 1 else ""
                goal = (f"< {GOAL_STEP_S:g} s", s[n] < GOAL_STEP_S) if name == one else ("", None)
                per_cell = f"{s[n] / (n * n) * 1e6 / m:.2f} µs per cell and member"
                table.add("emulator", f"{n}² ({n * n} cells), {name}, one 12 h step",
                          f"{s[n] * 1e3:.1f} ms{per}" + _paren(per_cell, t.other_text("emulator, " + name, n)), *goal)
        for name, s in t.bbm_series().items():
            if n in s:
                detail = ", ".join(f"{k} {v:g}" for k, v in t.bbm_info.get(name, {}).get(n, {}).items())
                at = f"at {t.dx / 1e3:g} km" if name == "bbm" else name.removeprefix("bbm ")
                table.add("bbm", f"{n}² BBM truth {at}, one 12 h step",
                          f"{s[n]:.3g} s" + _paren(detail, t.other_text(name, n)))
        if n in t.mevp:
            table.add("mevp", f"{n}² coarse mEVP model, one 12 h step",
                      f"{t.mevp[n] * 1e3:.1f} ms" + _paren(t.other_text("mevp", n)))
    for name, fit in fits(t).items():
        s = t.series()[name]
        span = f"{min(s)}²…{max(s)}²"
        is_goal = name.startswith("emulator") and "attention" not in name
        goal = (f"{GOAL_SLOPE:g} ± {GOAL_SLOPE_TOL:g}", abs(fit.slope - GOAL_SLOPE) <= GOAL_SLOPE_TOL) if is_goal \
            else ("", None)
        table.add("slope", f"log-log slope of time vs cells, {name}, {span}", fit.text(), *goal)
    emu1, emum = t.emulator.get(one, {}), t.emulator.get(many, {})
    for n in sorted(t.bbm):
        if n in emu1:
            extra = f"; {ratio(t.bbm[n] / (emum[n] / t.members))} per member with {t.members} members" \
                if n in emum else ""
            mevp = f"; mEVP/emulator {ratio(t.mevp[n] / emu1[n])}" if n in t.mevp else ""
            others = "".join(f"; {k.replace('bbm', 'BBM')}: {ratio(s[n] / emu1[n])}" for k, s in t.bbm_extra.items()
                             if n in s)
            table.add("speed-up", f"{n}² BBM at {t.dx / 1e3:g} km / emulator, time per 12 h step",
                      f"{ratio(t.bbm[n] / emu1[n])} (1 member){extra}{others}{mevp}")
    for n in sorted(emu1):
        total = emu1[n] * STEPS_3_YEARS
        ens = f"; {t.members} members {emum[n] * STEPS_3_YEARS / 60:.1f} min" if n in emum else ""
        bbm = f"; BBM {t.bbm[n] * STEPS_3_YEARS / 3600:.1f} h" if n in t.bbm else ""
        table.add("rollout", f"{n}², 3 years ({STEPS_3_YEARS} steps × time per step), 1 member",
                  f"{total / 60:.1f} min{ens}{bbm}", f"< {GOAL_ROLLOUT_S / 60:.0f} min", total < GOAL_ROLLOUT_S)
    return table


def per_grid_summary(t: Timings) -> str:
    """One markdown line per grid: the headline figures side by side."""
    one, many = t.emulator.get("1 member", {}), t.emulator.get(f"{t.members} members", {})
    cell = lambda d, n, f: f(d[n]) if n in d else "–"  # noqa: E731
    bbm = t.bbm_series()
    heads = [f"BBM {k.removeprefix('bbm ') if k != 'bbm' else f'at {t.dx / 1e3:g} km'} (s) | BBM/emulator"
             for k in bbm]
    lines = [f"| grid | emulator 1 member (s) | emulator {t.members} members (s/member) | {' | '.join(heads)} | "
             f"mEVP (s) | 3 years, 1 member (min) |", "|" + "---|" * (5 + 2 * len(bbm))]
    for n in sorted(set(one).union(t.mevp, *bbm.values())):
        physics = " | ".join(f"{cell(s, n, lambda x: f'{x:.3g}')} | "
                             + (ratio(s[n] / one[n]) if n in s and n in one else "–") for s in bbm.values())
        lines.append(f"| {n}² | {cell(one, n, lambda x: f'{x:.3f}')} | "
                     f"{cell(many, n, lambda x: f'{x / t.members:.3f}')} | {physics} | "
                     f"{cell(t.mevp, n, lambda x: f'{x:.3f}')} | "
                     f"{cell(one, n, lambda x: f'{x * STEPS_3_YEARS / 60:.1f}')} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ measurements
def emulator_config(path: Path = EMULATOR_CONFIG, **network) -> CorrectorConfig:
    """The `corrector:` section of a training YAML (the demo emulator's by default), network keys overridden."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))["corrector"]
    data["network"] = {**data.get("network", {}), **network}
    return CorrectorConfig.model_validate(data)


def min_times(fn: Callable[[], object], repeat: int, warmup: int = 1) -> tuple[float, float]:
    """(CPU, wall) seconds: the minima over `repeat` calls of `fn` after `warmup` calls (process CPU time: all
    threads of this process)."""
    for _ in range(warmup):
        fn()
    cpu = wall = math.inf
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu, wall = min(cpu, time.process_time() - c0), min(wall, time.perf_counter() - w0)
    return cpu, wall


def emulator_step(cfg: CorrectorConfig, n: int, members: int, seed: int = 0):
    """A call of one 12 h sample (untrained network, fixed seeds, random conditioning) on an n×n grid, with all
    `members` in one network batch."""
    torch.manual_seed(seed)
    cfg = cfg.model_copy(update={"sampler": cfg.sampler.model_copy(update={"network_batch": members})})
    model = CorrectorModel(cfg, len(cfg.conditioning))
    norm = Normalization.identity(cfg.conditioning, cfg.variables)
    corr = Corrector.from_model(model, norm, cfg, dict(nx=n, ny=n), device="cpu")
    rng = np.random.default_rng(seed)
    cond = {k: rng.normal(size=(1, n, n)).astype(np.float32) for k in cfg.conditioning}
    cond["mask"] = np.ones((n, n), np.float32)
    seeds = member_seeds(0, 0, 0, members)[None]
    return lambda: corr.sample(cond, members, seeds=seeds)


def repeats_for(n: int, repeat: int) -> int:
    """Fewer repeats on the large grids (their noise is relatively smaller and each costs seconds)."""
    return repeat if n <= 128 else max(1, repeat - (1 if n <= 256 else 2))


def time_emulator(sizes: Sequence[int], members: int, repeat: int, variants: Sequence[str],
                  config: Path = EMULATOR_CONFIG, global_max: int = 512) -> dict[str, dict[int, tuple[float, float]]]:
    """(CPU, wall) seconds per 12 h step (all members) of each emulator variant per grid size."""
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for name in variants:
        m, overrides = VARIANTS[name]
        label, m = (name.format(m=members), members) if m is None else (name, m)
        cfg = emulator_config(config, **overrides)
        out[label] = {}
        for n in sizes:
            if "global" in name and n > global_max:
                continue
            out[label][n] = min_times(emulator_step(cfg, n, m), repeats_for(n, repeat))
            print(f"  emulator {label} {n}²: CPU {out[label][n][0]:.3f} s, wall {out[label][n][1]:.3f} s", flush=True)
    return out


def square_grid(n: int, dx: float) -> GridConfig:
    """An n×n all-ocean grid of cell size dx (m)."""
    return GridConfig(nx=n, ny=n, dx=dx)


def time_bbm(n: int, dx: float = TRUTH_DX, seed: int = 1) -> tuple[tuple[float, float], dict]:
    """(CPU, wall) seconds of the BBM truth's second 12 h step on n×n (the first spins up), and its step info."""
    grid = square_grid(n, dx)
    forcing = SyntheticForcing(ForcingConfig(), grid, START, 3, seed=seed)
    model = TruthModel(grid, TruthPhysicsConfig(), seed=seed)
    model.set_state(initial_truth_state(InitialIceConfig(), grid, seed))
    f = [forcing.truth_at(k) for k in range(3)]
    model.step(f[0], f[1])
    sec = min_times(lambda: model.step(f[1], f[2]), 1, warmup=0)
    info = {k: v for k, v in model.last_step_info.items() if "substep" in k or "steps" in k}
    return sec, info


def time_mevp(n: int, dx: float = TRUTH_DX, repeat: int = 2, seed: int = 1) -> tuple[float, float]:
    """(CPU, wall) minima (s) of a 12 h step of the coarse mEVP model on n×n, after a spin-up step."""
    grid = square_grid(n, dx)
    forcing = SyntheticForcing(ForcingConfig(), grid, START, 2, seed=seed)
    model = CoarseModel(grid, CoarsePhysicsConfig())
    init = initial_truth_state(InitialIceConfig(), grid, seed)
    model.set_state({k: init[k] for k in ("sic", "sit", "snt")})
    f0, f1 = forcing.truth_at(0), forcing.truth_at(1)
    model.step(f0, f1)
    return min_times(lambda: model.step(f0, f1), repeat, warmup=0)


def measure(sizes: Sequence[int] = SIZES, members: int = 4, n_threads: int = 1, repeat: int = 3,
            bbm_max: int = 512, variants: Sequence[str] = tuple(VARIANTS), dx: float = TRUTH_DX,
            config: Path = EMULATOR_CONFIG, global_max: int = 512, clock: str | None = None,
            bbm_dx: Sequence[float] = ()) -> Timings:
    """All the timings of the table, in this process; `clock` "cpu" (default with one thread) or "wall";
    `bbm_dx` other cell sizes (m) at which the BBM truth is timed too."""
    clock = clock or ("cpu" if n_threads == 1 else "wall")
    pick = (lambda cw: cw[0]) if clock == "cpu" else (lambda cw: cw[1])  # noqa: E731
    rest = (lambda cw: cw[1]) if clock == "cpu" else (lambda cw: cw[0])  # noqa: E731
    t = Timings(threads=n_threads, members=members, dx=dx, clock=clock)
    with threads(n_threads):
        emulator = time_emulator(sizes, members, repeat, variants, config, global_max)
    raw: dict[str, dict[int, tuple[float, float]]] = {f"emulator, {k}": v for k, v in emulator.items()}
    bbm_names = {"bbm": dx} | {f"bbm at {d / 1e3:g} km": d for d in bbm_dx if d != dx}
    raw["mevp"] = {}
    raw |= {name: {} for name in bbm_names}
    t.bbm_info = {name: {} for name in bbm_names}
    for n in sizes:
        raw["mevp"][n] = time_mevp(n, dx, repeat=repeats_for(n, repeat))
        print(f"  mevp {n}²: CPU {raw['mevp'][n][0]:.3f} s, wall {raw['mevp'][n][1]:.3f} s", flush=True)
        for name, d in bbm_names.items():
            if n <= bbm_max:
                raw[name][n], t.bbm_info[name][n] = time_bbm(n, d)
                print(f"  {name} {n}²: CPU {raw[name][n][0]:.2f} s, wall {raw[name][n][1]:.2f} s "
                      f"{t.bbm_info[name][n]}", flush=True)
    t.emulator = {k: {n: pick(cw) for n, cw in emulator[k].items()} for k in emulator}
    t.bbm = {n: pick(cw) for n, cw in raw["bbm"].items()}
    t.mevp = {n: pick(cw) for n, cw in raw["mevp"].items()}
    t.bbm_extra = {name: {n: pick(cw) for n, cw in raw[name].items()} for name in bbm_names if name != "bbm"}
    t.other = {name: {n: rest(cw) for n, cw in s.items()} for name, s in raw.items()}
    return t


def to_json(t: Timings) -> dict:
    """Timings, fits and the machine line as a JSON-ready dict."""
    return {"machine": machine_line(), "load_average": list(os.getloadavg()), "timings": asdict(t),
            "fits": {k: asdict(v) for k, v in fits(t).items()}, "steps_3_years": STEPS_3_YEARS}


def rows(sizes: Sequence[int] = SIZES, members: int = 4, n_threads: int | None = None, repeat: int = 3,
         bbm_max: int = 512) -> Table:
    """The measured table (for `python -m benchmarks`; `n_threads` None = 1)."""
    return build_table(measure(sizes, members, n_threads or 1, repeat, bbm_max, bbm_dx=BBM_DX))


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.emulator_scaling …`: measure, print the table (and the per-grid summary), write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="grid sides n (n×n; multiples of 4)")
    ap.add_argument("--members", type=int, default=4, help="members in one network batch (the ensemble row)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the emulator (default 1, as the "
                                                            "Fortran models)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default=None,
                    help="clock of the fits, speed-ups and estimates (default: cpu with one thread, else wall)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats per timing (fewer on grids above 128²)")
    ap.add_argument("--bbm-max", type=int, default=512, help="largest grid side on which the BBM truth is timed")
    ap.add_argument("--global-max", type=int, default=512, help="largest grid side with global attention timed")
    ap.add_argument("--dx", type=float, default=TRUTH_DX, help="cell size (m) of the physics models' grids")
    ap.add_argument("--bbm-dx", type=float, nargs="*", default=list(BBM_DX),
                    help="other cell sizes (m) at which the BBM is timed too (its elastic substep grows with dx)")
    ap.add_argument("--config", type=Path, default=EMULATOR_CONFIG, help="training YAML of the emulator")
    ap.add_argument("--json", type=Path, default=None, help="also write the timings and fits here")
    a = ap.parse_args(argv)
    print(machine_line(), flush=True)
    t0 = time.perf_counter()
    t = measure(a.sizes, a.members, a.threads, a.repeat, a.bbm_max, dx=a.dx, config=a.config,
                global_max=a.global_max, clock=a.clock, bbm_dx=a.bbm_dx)
    table = build_table(t)
    print_table("benchmarks.emulator_scaling", argv, table,
                f"; emulator on {t.threads} torch thread(s), Fortran on 1; figures: {t.clock} time "
                f"(and {t.other_clock}); total {time.perf_counter() - t0:.0f} s")
    print()
    print(per_grid_summary(t))
    if a.json:
        a.json.write_text(json.dumps(to_json(t), indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
