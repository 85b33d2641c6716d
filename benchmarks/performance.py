"""Performance of the corrector on this CPU, as ratios measured within one run, and few-step sampling quality.

    python -m benchmarks.performance [--quick] [--sections scaling members efficiency emulator]
    python -m benchmarks.performance --quality runs/demo/train/diffusion/best.pt runs/demo/data/test.nc

(`python -m benchmarks` prints these together with the Fortran model and coupling figures.)

What is measured (untrained weights: the cost of a network evaluation does not depend on their values):
  scaling     sampling cost per 12 h step and member vs grid size (32² … 256²) for the default network and the
              4-evaluation sampler; log-log slope of time vs cells (goal 1.0 ± 0.15)
  members     per-member cost at 1, 4 and 16 members run as one network batch (goal ≥ 3× cheaper at 16 than at 1),
              and with the product's default fixed `network_batch` = 8 (padded batches, see below)
  efficiency  achieved FLOP/s of a sampling step (FLOPs counted by torch.utils.flop_counter over the real
              Corrector.sample call) over the FLOP/s of a square float32 torch matmul measured in the same run
              (goal ≥ 40 %); NCHW vs channels-last, bf16 autocast, 1 vs 2 threads, optionally torch.compile
  emulator    wall time of a single-member default-grid (32²) emulator rollout with `coupling.emulate.run_emulate`
              and with the corrector alone in a loop, extrapolated from `--emulator-steps` steps to 3 years
              (2190 steps) (goal < 10 min)
  quality     (needs a trained residual diffusion checkpoint and a held-out pair file) fair CRPS and spread/RMSE
              of the corrected forecast, reference Heun-20 (39 evaluations) vs the few-step DPM-Solver++(2M)
              (4 evaluations), same seeds, same windows (goal: CRPS within 5 %)

Timings on a shared 2-core machine are noisy: every figure is the minimum over repeats, and the comparisons that
matter are ratios of timings taken in the same run (interleaved where it matters). Check `uptime`.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from corrector import network as network_module
from corrector.config import CorrectorConfig, SamplerConfig
from corrector.inference import Corrector
from corrector.model import CorrectorModel
from corrector.normalization import Normalization
from corrector.sampler import network_evaluations
from corrector.seeding import member_seeds

STEPS_3_YEARS = 2190  # 12 h steps in 3 × 365 days


# ----------------------------------------------------------------------------------------------------- table
@dataclass
class Row:
    section: str
    what: str
    value: str
    goal: str = ""
    status: str = ""  # "ok", "MISS" or "" (informative)


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)

    def add(self, section: str, what: str, value: str, goal: str = "", ok: bool | None = None) -> None:
        self.rows.append(Row(section, what, value, goal, "" if ok is None else ("ok" if ok else "MISS")))
        print(f"  [{section}] {what}: {value}" + (f"   (goal {goal}: {self.rows[-1].status})" if goal else ""),
              flush=True)

    def extend(self, other: "Table") -> None:
        self.rows.extend(other.rows)

    def render(self) -> str:
        heads = ("section", "measure", "value", "goal", "")
        cols = [[r.section, r.what, r.value, r.goal, r.status] for r in self.rows]
        widths = [max([len(h)] + [len(c[i]) for c in cols]) for i, h in enumerate(heads)]
        line = lambda c: "| " + " | ".join(s.ljust(w) for s, w in zip(c, widths)) + " |"  # noqa: E731
        out = [line(heads), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(c) for c in cols]
        return "\n".join(out)


def machine_line() -> str:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    cpu = torch.backends.cpu.get_cpu_capability()
    return (f"cores: {os.cpu_count()} (usable {affinity}); torch {torch.__version__} ({cpu}), intra-op threads "
            f"{torch.get_num_threads()}; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


# ----------------------------------------------------------------------------------------------------- timing
def best_time(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    """Minimum wall time over `repeat` calls after `warmup` calls (noise on a shared machine only adds time)."""
    for _ in range(warmup):
        fn()
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Minimum wall time of each function, calls interleaved round-robin so that load changes hit all alike."""
    for fn in fns.values():
        fn()
    best = {k: math.inf for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def matmul_flops(n: int = 1024, repeat: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of an n×n torch matmul (2n³ FLOPs) with the current thread count (best of `repeat`)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    out = torch.empty(n, n, dtype=dtype)
    return 2.0 * n ** 3 / best_time(lambda: torch.matmul(a, b, out=out), repeat, warmup=2)


@contextlib.contextmanager
def threads(n: int | None):
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def layout(channels_last: bool):
    old = network_module.CHANNELS_LAST
    network_module.CHANNELS_LAST = channels_last
    try:
        yield
    finally:
        network_module.CHANNELS_LAST = old


def autocast(dtype: str):
    if dtype == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------------------------------- setups
def default_corrector(n: int, mode: str = "residual", network_batch: int = 8, seed: int = 0) -> tuple[Corrector, dict]:
    """The default-size corrector (untrained, fixed seed) on an n×n all-ocean grid and random conditioning."""
    cfg = CorrectorConfig(mode=mode, sampler=SamplerConfig.few_step(network_batch=network_batch))
    torch.manual_seed(seed)
    model = CorrectorModel(cfg, len(cfg.conditioning))
    norm = Normalization.identity(cfg.conditioning, cfg.variables)
    norm.target_std = np.array([0.02, 0.05, 0.005, 0.01, 0.01])  # small physical tendencies keep states sane
    corr = Corrector.from_model(model, norm, cfg, dict(nx=n, ny=n), device="cpu")
    rng = np.random.default_rng(seed)
    cond = {k: rng.normal(size=(1, n, n)).astype(np.float32) for k in cfg.conditioning}
    cond["mask"] = np.ones((n, n), np.float32)
    return corr, cond


def sampler_for(corr: Corrector, members_per_batch: int) -> SamplerConfig:
    return corr.config.sampler.model_copy(update={"network_batch": members_per_batch})


def sample_fn(corr: Corrector, cond: dict, members: int, sampler: SamplerConfig) -> Callable[[], np.ndarray]:
    seeds = member_seeds(0, 0, 0, members)[None]
    return lambda: corr.sample(cond, members, seeds=seeds, sampler=sampler)


def count_flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def network_params(corr: Corrector) -> int:
    return sum(p.numel() for p in corr.model.parameters())


# ----------------------------------------------------------------------------------------------------- sections
def bench_scaling(sizes: Sequence[int] = (32, 64, 128, 256), members: int = 1, repeat: int = 3) -> Table:
    """Per-member cost of one 12 h step (4-evaluation sampler) vs cells; log-log slope."""
    t = Table()
    per_member = {}
    for n in sizes:
        corr, cond = default_corrector(n, network_batch=members)
        fn = sample_fn(corr, cond, members, sampler_for(corr, members))
        per_member[n] = best_time(fn, repeat if n <= 128 else max(1, repeat - 1)) / members
        t.add("scaling", f"{n}² ({n * n} cells), {members} member(s) per batch",
              f"{per_member[n] * 1e3:.1f} ms per member and step ({per_member[n] / n ** 2 * 1e6:.2f} µs per cell)")
    cells = np.array([n * n for n in sizes], float)
    cost = np.array([per_member[n] for n in sizes])
    slope = float(np.polyfit(np.log(cells), np.log(cost), 1)[0])
    t.add("scaling", f"log-log slope of cost vs cells, {sizes[0]}²…{sizes[-1]}²", f"{slope:.2f}", "1.0 ± 0.15",
          abs(slope - 1.0) <= 0.15)
    if len(sizes) > 2:
        upper = float(np.polyfit(np.log(cells[1:]), np.log(cost[1:]), 1)[0])
        t.add("scaling", f"log-log slope {sizes[1]}²…{sizes[-1]}² (without the smallest grid)", f"{upper:.2f}")
    return t


def bench_members(n: int = 32, counts: Sequence[int] = (1, 4, 16), repeat: int = 3) -> Table:
    """Per-member cost with all members in one network batch, and with the product's default network_batch = 8.

    Also the achieved FLOP/s at each member count against a matmul's, which bounds what batching can gain: once
    one member keeps the convolutions busy, more members per batch cannot make a member much cheaper on a CPU.
    """
    t = Table()
    corr, cond = default_corrector(n)
    fns = {m: sample_fn(corr, cond, m, sampler_for(corr, m)) for m in counts}
    flops_1 = count_flops(fns[counts[0]]) / counts[0]
    mm = matmul_flops()
    times = interleaved(fns, repeat)
    mm = max(mm, matmul_flops())
    per = {m: times[m] / m for m in counts}
    for m in counts:
        t.add("members", f"{n}², {m} member(s) in one network batch",
              f"{per[m] * 1e3:.1f} ms per member and step ({per[counts[0]] / per[m]:.2f}× cheaper than "
              f"{counts[0]}); {flops_1 / per[m] / 1e9:.1f} GFLOP/s = {flops_1 / per[m] / mm * 100:.0f} % of matmul")
    gain = per[counts[0]] / per[counts[-1]]
    t.add("members", f"per-member cost {counts[0]} / {counts[-1]} members (batched)",
          f"{gain:.2f}× (bound from matmul FLOP/s: ≤ {mm / (flops_1 / per[counts[0]]):.1f}×)", "≥ 3×", gain >= 3.0)
    default_nb = CorrectorConfig().sampler.network_batch
    fixed = {m: sample_fn(corr, cond, m, sampler_for(corr, default_nb)) for m in (1, 16)}
    times = interleaved(fixed, max(1, repeat - 1))
    t.add("members", f"default network_batch={default_nb} (padded): 1 member vs 16 members",
          f"{times[1] * 1e3:.1f} ms vs {times[16] / 16 * 1e3:.1f} ms per member: a lone member pays for "
          f"{default_nb} ({times[1] / (times[16] / 16):.1f}×)")
    return t


def bench_efficiency(n: int = 32, members: int = 8, repeat: int = 3, thread_counts: Sequence[int] = (1, 2),
                     compile_net: bool = False) -> Table:
    """Achieved FLOP/s of Corrector.sample over a float32 matmul's FLOP/s, for layout/precision/thread variants."""
    t = Table()
    corr, cond = default_corrector(n, network_batch=members)
    sampler = sampler_for(corr, members)
    nfe = network_evaluations(sampler.name, sampler.steps)
    fn = sample_fn(corr, cond, members, sampler)
    flops = count_flops(fn)
    per_eval = flops / (members * nfe)
    t.add("efficiency", "default network", f"{network_params(corr) / 1e6:.3f} M parameters, "
          f"{per_eval / 1e9:.3f} GFLOP per evaluation and member at {n}² ({nfe} evaluations per step)")
    for th in thread_counts:
        with threads(th):
            variants = {}
            for cl in (False, True):
                for prec in ("fp32", "bf16"):
                    def run(cl=cl, prec=prec):
                        with layout(cl), autocast(prec):
                            return fn()
                    variants[("channels-last" if cl else "NCHW") + " " + prec] = run
            mm, mm16 = matmul_flops(), matmul_flops(dtype=torch.bfloat16)
            times = interleaved(variants, repeat)
            mm, mm16 = max(mm, matmul_flops()), max(mm16, matmul_flops(dtype=torch.bfloat16))
            base = times["NCHW fp32"]
            for name, sec in times.items():
                eff = flops / sec / mm
                is_default = name == "channels-last fp32"
                extra = f", {flops / sec / mm16 * 100:.0f} % of a bf16 matmul ({mm16 / 1e9:.1f} GFLOP/s)" \
                    if name.endswith("bf16") else ""
                t.add("efficiency", f"{th} thread(s), {name}" + (" (default)" if is_default else ""),
                      f"{flops / sec / 1e9:.1f} GFLOP/s = {eff * 100:.0f} % of fp32 matmul ({mm / 1e9:.1f} GFLOP/s)"
                      f"{extra}; time ×{sec / base:.2f} of NCHW fp32", "≥ 40 %" if is_default else "",
                      eff >= 0.40 if is_default else None)
    if compile_net:
        t.extend(_bench_compile(corr, fn, repeat))
    return t


def _bench_compile(corr, fn, repeat) -> Table:
    """torch.compile (inductor) of the network: compile time and speed against eager, same run."""
    t = Table()
    eager = corr.model.network
    compiled = torch.compile(eager, dynamic=False)

    def with_net(net):
        def call():
            corr.model.network = net
            try:
                return fn()
            finally:
                corr.model.network = eager
        return call
    try:
        t0 = time.perf_counter()
        with_net(compiled)()
        t_compile = time.perf_counter() - t0
        times = interleaved({"eager": with_net(eager), "compiled": with_net(compiled)}, repeat)
        t.add("efficiency", "torch.compile (inductor, fp32, channels-last)",
              f"first call {t_compile:.0f} s; time ×{times['compiled'] / times['eager']:.2f} of eager")
    except Exception as exc:  # noqa: BLE001 - report, do not fail the benchmark
        t.add("efficiency", "torch.compile", f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
    return t


def _emulator_initial(n: int) -> dict[str, np.ndarray]:
    y, x = np.mgrid[0:n, 0:n] / n
    sic = np.clip(0.9 + 0.1 * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y), 0, 1)
    return {"sic": sic, "sit": 1.0 + 0.3 * x, "snt": np.full((n, n), 0.05), "siu": np.zeros((n, n)),
            "siv": np.zeros((n, n))}


def bench_emulator(steps: int = 200, n: int = 32, network_batch: int = 1, padded_steps: int = 20) -> Table:
    """3-year single-member emulator rollout on the default grid: run_emulate (synthetic forcing, NetCDF output)
    and the corrector alone in a loop (sample + apply), extrapolated from `steps` steps."""
    from coupling.config import CoupleConfig
    from coupling.emulate import run_emulate
    from coupling.forcing import CallableForcing
    from fortran_stub.config import GridConfig
    from training.data.config import ForcingConfig
    from training.data.forcing import SyntheticForcing

    t = Table()
    grid = GridConfig(nx=n, ny=n)
    corr, _ = default_corrector(n, mode="emulator", network_batch=network_batch)
    initial = _emulator_initial(n)

    def emulate(n_steps: int, corrector: Corrector) -> float:
        gen = SyntheticForcing(ForcingConfig(), grid, "2000-10-01T00:00", n_steps + 2, seed=0)
        forcing = CallableForcing(gen.resolved_at)
        cfg = CoupleConfig(members=1, n_steps=n_steps)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run_emulate(cfg, initial, forcing, Path(tmp) / "emulate.nc", comm=None, corrector=corrector)
            return time.perf_counter() - t0

    emulate(2, corr)  # warm-up
    wall = emulate(steps, corr)
    per_step = wall / steps
    total = per_step * STEPS_3_YEARS
    t.add("emulator", f"run_emulate, {n}², 1 member, network_batch={network_batch}, {steps} steps",
          f"{per_step * 1e3:.1f} ms per 12 h step → 3 years ({STEPS_3_YEARS} steps) ≈ {total / 60:.1f} min "
          f"(extrapolated)" if steps < STEPS_3_YEARS else f"{total / 60:.1f} min", "< 10 min", total < 600)

    # the corrector alone: sample + apply on an in-memory state, no forcing generation, no output
    gen = SyntheticForcing(ForcingConfig(), grid, "2000-10-01T00:00", 3, seed=0)
    f0, f1 = gen.resolved_at(0), gen.resolved_at(1)
    state = {k: v[None] for k, v in initial.items()}
    cond = {}
    for name in corr.conditioning_names:
        if name == "mask":
            cond[name] = np.ones((n, n))
        elif name.startswith("initial_"):
            cond[name] = state[name[len("initial_"):]]
        else:
            base, when = name.rsplit("_", 1)
            cond[name] = (f0 if when == "t0" else f1)[base][None]

    def one_step(k: int) -> None:
        s = corr.sample(cond, 1, seeds=member_seeds(0, 0, k, 1)[None])
        corr.apply({v: state[v] for v in corr.variables}, s)

    loop_steps = max(20, steps // 4)
    one_step(0)
    t0 = time.perf_counter()
    for k in range(loop_steps):
        one_step(k)
    per_loop = (time.perf_counter() - t0) / loop_steps
    t.add("emulator", f"corrector alone in a loop (sample + apply), {loop_steps} steps",
          f"{per_loop * 1e3:.1f} ms per step → 3 years ≈ {per_loop * STEPS_3_YEARS / 60:.1f} min; run_emulate "
          f"overhead (forcing, conditioning, output) {(per_step - per_loop) / per_step * 100:.0f} %")

    if padded_steps:
        padded, _ = default_corrector(n, mode="emulator", network_batch=CorrectorConfig().sampler.network_batch)
        emulate(2, padded)
        wall_p = emulate(padded_steps, padded)
        t.add("emulator", f"same with the default network_batch={padded.config.sampler.network_batch} "
                          f"(a lone member padded), {padded_steps} steps",
              f"{wall_p / padded_steps * 1e3:.1f} ms per step → 3 years ≈ "
              f"{wall_p / padded_steps * STEPS_3_YEARS / 60:.1f} min")
    return t


# ----------------------------------------------------------------------------------------------------- quality
@dataclass
class Windows:
    """Held-out windows of a pair file, ready for Corrector.sample/apply."""
    index: np.ndarray
    cond: dict
    forecast: dict
    reference: dict
    mask: np.ndarray


def load_windows(corr: Corrector, path: str | os.PathLike, max_windows: int | None) -> Windows:
    """`max_windows` evenly spaced time records of a pair file (all if None)."""
    import xarray as xr

    with xr.open_dataset(path) as ds:
        n_time = ds.sizes["time"]
        idx = np.arange(n_time) if not max_windows or max_windows >= n_time else \
            np.unique(np.linspace(0, n_time - 1, max_windows).round().astype(int))
        ds = ds.isel(time=idx).load()
    mask = ds["mask"].values if "mask" in ds else np.ones((ds.sizes["y"], ds.sizes["x"]))
    cond = {name: mask if name == "mask" else ds[name].values.astype(np.float64) for name in corr.conditioning_names}
    return Windows(idx, cond, {v: ds[f"forecast_{v}"].values.astype(np.float64) for v in corr.variables},
                   {v: ds[f"reference_{v}"].values.astype(np.float64) for v in corr.variables}, mask)


def ensemble_scores(corr: Corrector, w: Windows, sampler: SamplerConfig, members: int, seed: int = 0,
                    precision: str = "fp32") -> tuple[dict[str, tuple[float, float, float]], float]:
    """{variable: (fair CRPS, spread/RMSE, ensemble-mean RMSE)} of the corrected forecast (forecast + sample, with
    physical bounds) against the reference, area-weighted over ocean, over all windows; and the sampling wall time."""
    import xarray as xr

    from training.evaluation import metrics

    seeds = member_seeds(seed, w.index, 0, members)
    t0 = time.perf_counter()
    with autocast(precision):
        sample = corr.sample(w.cond, members, seeds=seeds, sampler=sampler)
    wall = time.perf_counter() - t0
    new = corr.apply(w.forecast, sample, mask=w.mask)
    weights = metrics.ocean_weights(w.mask)
    out = {}
    for v in corr.variables:
        ens = xr.DataArray(new[v], dims=("time", "member", "y", "x"))
        obs = xr.DataArray(w.reference[v], dims=("time", "y", "x"))
        out[v] = (float(metrics.crps(ens, obs, weights, keep=())),
                  float(metrics.spread_skill_ratio(ens, obs, weights, keep=())),
                  float(metrics.ensemble_mean_rmse(ens, obs, weights, keep=())))
    return out, wall


def tune_few_step_sigmas(checkpoint: str | os.PathLike, val_file: str | os.PathLike, members: int = 8,
                         max_windows: int = 16, iterations: int = 40, seed: int = 1,
                         starts: Sequence[Sequence[float]] | None = None) -> tuple[list[float], float, float]:
    """Tune the 4 σ levels of the few-step DPM-Solver++(2M) schedule for one checkpoint on its validation file.

    Objective: mean over variables of CRPS_v(σ) / CRPS_v(checkpoint schedule), fixed seeds (common random numbers,
    so the objective is smooth in σ), Nelder–Mead in ln σ from the better of `starts` (default: the checkpoint's
    schedule and the Karras ρ = 7 schedule with the same number of levels). The reference sampler is not used and
    the test file is not touched. Returns (σ levels, objective of the checkpoint schedule (1.0), tuned objective).
    """
    from scipy.optimize import minimize

    from corrector.schedule import karras_sigmas

    corr = Corrector.load(checkpoint, device="cpu")
    base = corr.config.sampler
    if base.name != "dpmpp_2m" or base.sigmas is None:
        base = SamplerConfig.few_step(network_batch=base.network_batch)
    d = corr.config.diffusion
    karras = karras_sigmas(len(base.sigmas), d.sigma_min, d.sigma_max, d.rho).tolist()[:-1]
    starts = [list(x) for x in (starts or (base.sigmas, karras))]
    w = load_windows(corr, val_file, max_windows)
    sampler = base.model_copy(update={"network_batch": min(16, members * len(w.index))})

    def crps_at(levels) -> dict[str, float]:
        cfg = sampler.model_copy(update={"sigmas": [float(x) for x in levels], "steps": len(levels)})
        return {v: sc[0] for v, sc in ensemble_scores(corr, w, cfg, members, seed)[0].items()}

    ref = crps_at(base.sigmas)

    def objective(log_sig: np.ndarray) -> float:
        levels = np.exp(log_sig)
        if np.any(np.diff(levels) >= 0):
            return 10.0  # not strictly decreasing
        c = crps_at(levels)
        return float(np.mean([c[v] / ref[v] for v in ref]))

    x0 = min((np.log(np.array(st, float)) for st in starts), key=objective)
    res = minimize(objective, x0, method="Nelder-Mead", options=dict(maxfev=iterations, xatol=1e-3, fatol=1e-4))
    best = res.x if res.fun < objective(x0) else x0
    return [float(x) for x in np.exp(best)], 1.0, float(min(res.fun, objective(x0)))


def few_step_quality(checkpoint: str | os.PathLike, test_file: str | os.PathLike, members: int = 16,
                     max_windows: int | None = 40, reference_steps: int = 20, seed: int = 0,
                     network_batch: int = 16, include_bf16: bool = True,
                     extra_sigmas: dict[str, Sequence[float]] | None = None) -> Table:
    """Fair CRPS and spread/RMSE of the corrected 12 h forecast on held-out windows: reference Heun-`reference_steps`
    (Karras schedule, 2n−1 evaluations) vs the checkpoint's few-step sampler (also under bf16 autocast, with a
    second seed as the Monte-Carlo noise floor, and with any `extra_sigmas` schedules {label: σ levels}).

    Scores are of the corrected state (forecast + sampled residual, physical bounds applied) against
    `reference_{v}`, area-weighted over ocean cells and averaged over windows, per variable. Same seeds and windows
    for every sampler, so the difference is the sampler's alone (plus Monte-Carlo noise of `members` members).
    """
    import xarray as xr

    from corrector.schedule import karras_sigmas
    from training.evaluation import metrics

    corr = Corrector.load(checkpoint, device="cpu")
    if corr.kind != "diffusion" or corr.mode != "residual":
        raise ValueError(f"{checkpoint}: few_step_quality needs a residual diffusion corrector, got "
                         f"{corr.kind}/{corr.mode}")
    w = load_windows(corr, test_file, max_windows)
    few = corr.config.sampler.model_copy(update={"network_batch": network_batch})
    if few.name != "dpmpp_2m":  # the checkpoint samples with Heun: score the tuned few-step schedule instead
        few = SamplerConfig.few_step(network_batch=network_batch)
    ref = SamplerConfig(name="heun", steps=reference_steps, network_batch=network_batch)
    few_label = f"{few.name} {few.steps} levels ({network_evaluations(few.name, few.steps)} NFE)"
    runs = [(f"heun-{reference_steps} ({network_evaluations('heun', reference_steps)} NFE)", ref, "fp32", seed),
            (few_label, few, "fp32", seed),
            (few_label + ", other seed", few, "fp32", seed + 1)]
    if include_bf16:
        runs.append((few_label + ", bf16 autocast", few, "bf16", seed))
    d = corr.config.diffusion
    karras = karras_sigmas(4, d.sigma_min, d.sigma_max, d.rho).tolist()[:-1]  # the 4-level Karras schedule
    extra = {"dpmpp_2m Karras ρ=7 σ=" + "/".join(f"{x:.4g}" for x in karras): karras, **(extra_sigmas or {})}
    for label, levels in extra.items():
        cfg = few.model_copy(update={"name": "dpmpp_2m", "sigmas": [float(x) for x in levels],
                                     "steps": len(levels)})
        runs.append((f"{label} ({network_evaluations('dpmpp_2m', len(levels))} NFE)", cfg, "fp32", seed))
    t = Table()
    t.add("quality", "data", f"{checkpoint} on {test_file}: {len(w.index)} windows, {members} members, "
                             f"{network_params(corr) / 1e6:.3f} M parameters")
    weights = metrics.ocean_weights(w.mask)
    uncorrected = {v: float(metrics.rmse(xr.DataArray(w.forecast[v], dims=("time", "y", "x")),
                                         xr.DataArray(w.reference[v], dims=("time", "y", "x")), weights, keep=()))
                   for v in corr.variables}
    t.add("quality", "uncorrected forecast RMSE", ", ".join(f"{v} {uncorrected[v]:.4g}" for v in corr.variables))
    scores = {}
    for label, sampler, prec, sd in runs:
        scores[label], wall = ensemble_scores(corr, w, sampler, members, sd, prec)
        t.add("quality", f"{label}: sampling wall time", f"{wall:.1f} s ({wall / len(w.index) / members * 1e3:.1f} "
                                                         f"ms per member and step)")
    ref_label = runs[0][0]
    for label in scores:
        is_ref = label == ref_label
        rel = {v: scores[label][v][0] / scores[ref_label][v][0] - 1 for v in corr.variables}
        worst = max(rel.values())  # the largest CRPS increase; being better than the reference is fine
        for v in corr.variables:
            c, ssr, rm = scores[label][v]
            t.add("quality", f"{label}: {v}",
                  f"CRPS {c:.4g}" + ("" if is_ref else f" ({rel[v] * 100:+.1f} %)") +
                  f", spread/RMSE {ssr:.2f}, ens-mean RMSE {rm:.4g}")
        if not is_ref:
            t.add("quality", f"{label}: CRPS change vs reference, mean over variables (largest increase)",
                  f"{np.mean(list(rel.values())) * 100:+.1f} % ({worst * 100:+.1f} %)", "≤ +5 %", worst <= 0.05)
    return t


# ----------------------------------------------------------------------------------------------------- main
SECTIONS = ("scaling", "members", "efficiency", "emulator")


def run(sections: Iterable[str] = SECTIONS, quick: bool = False, threads_: int | None = None,
        compile_net: bool = False, emulator_steps: int | None = None, quality: Sequence[str] | None = None,
        quality_members: int = 16, quality_windows: int | None = 40,
        tuned: dict[str, Sequence[float]] | None = None) -> Table:
    """Run the requested sections and return their rows (also printed as they come)."""
    table = Table()
    repeat = 2 if quick else 3
    with threads(threads_):
        for s in sections:
            print(f"== {s}", flush=True)
            if s == "scaling":
                table.extend(bench_scaling((32, 64, 128) if quick else (32, 64, 128, 256), repeat=repeat))
            elif s == "members":
                table.extend(bench_members(repeat=repeat))
            elif s == "efficiency":
                table.extend(bench_efficiency(repeat=repeat, compile_net=compile_net))
            elif s == "emulator":
                table.extend(bench_emulator(emulator_steps or (50 if quick else 200),
                                            padded_steps=10 if quick else 20))
            else:
                raise ValueError(f"unknown section {s!r}; choose from {SECTIONS}")
        if quality:
            print("== quality", flush=True)
            table.extend(few_step_quality(quality[0], quality[1], members=quality_members,
                                          max_windows=quality_windows, extra_sigmas=tuned))
    return table


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--sections", nargs="*", default=None, choices=SECTIONS,
                    help="default: all, or none when --quality is given")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no 256² grid, 50 emulator steps")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compilation)")
    ap.add_argument("--emulator-steps", type=int, default=None)
    ap.add_argument("--quality", nargs=2, metavar=("CHECKPOINT", "TEST_FILE"), default=None,
                    help="few-step vs Heun-20 quality on a held-out pair file")
    ap.add_argument("--quality-members", type=int, default=16)
    ap.add_argument("--quality-windows", type=int, default=40, help="held-out windows used (evenly spaced)")
    ap.add_argument("--tune", metavar="VAL_FILE", default=None,
                    help="first tune the few-step σ levels of the --quality checkpoint on this validation pair file "
                         "(tune_few_step_sigmas), then score the tuned schedule on the test file too")
    ap.add_argument("--sigmas", type=float, nargs="+", default=None,
                    help="an extra few-step DPM-Solver++(2M) schedule (σ levels) to score with --quality")


def extra_schedules(a: argparse.Namespace) -> dict[str, list[float]]:
    """Schedules from --sigmas and --tune (the latter tuned now, on the validation file)."""
    out = {}
    if a.sigmas:
        out["dpmpp_2m σ=" + "/".join(f"{x:.4g}" for x in a.sigmas)] = list(a.sigmas)
    if a.tune:
        if not a.quality:
            raise SystemExit("--tune needs --quality CHECKPOINT TEST_FILE")
        with threads(a.threads):
            t0 = time.perf_counter()
            sig, f0, f1 = tune_few_step_sigmas(a.quality[0], a.tune)
        print(f"  [quality] tuned σ on {a.tune}: {[round(x, 4) for x in sig]} (val objective {f0:.3f} → {f1:.3f}, "
              f"{time.perf_counter() - t0:.0f} s)", flush=True)
        out["dpmpp_2m val-tuned σ=" + "/".join(f"{x:.4g}" for x in sig)] = sig
    return out


def main(argv: list[str] | None = None) -> Table:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    a = ap.parse_args(argv)
    print(machine_line(), flush=True)
    sections = a.sections if a.sections is not None else ([] if a.quality else list(SECTIONS))
    table = run(sections, a.quick, a.threads, a.compile, a.emulator_steps, a.quality, a.quality_members,
                a.quality_windows, extra_schedules(a))
    print()
    print(machine_line())
    print(table.render())
    return table


if __name__ == "__main__":
    main()
