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
import tempfile
import time
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
from benchmarks.timing import Table, best_time, interleaved, machine_line, matmul_flops, threads
from training.evaluation.sampler_quality import autocast, few_step_quality, network_params, tune_few_step_sigmas

STEPS_3_YEARS = 2190  # 12 h steps in 3 × 365 days


# ----------------------------------------------------------------------------------------------------- variants
@contextlib.contextmanager
def layout(channels_last: bool):
    """Run the network in channels-last (True) or NCHW (False) memory layout inside the block."""
    old = network_module.CHANNELS_LAST
    network_module.CHANNELS_LAST = channels_last
    try:
        yield
    finally:
        network_module.CHANNELS_LAST = old


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
    """The corrector's sampler with `members_per_batch` members per network batch."""
    return corr.config.sampler.model_copy(update={"network_batch": members_per_batch})


def sample_fn(corr: Corrector, cond: dict, members: int, sampler: SamplerConfig) -> Callable[[], np.ndarray]:
    """A call of `corr.sample` (one 12 h step, `members` members, fixed seeds) to time."""
    seeds = member_seeds(0, 0, 0, members)[None]
    return lambda: corr.sample(cond, members, seeds=seeds, sampler=sampler)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of `fn`, counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


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
def bench_quality(checkpoint: str, test_file: str, members: int = 16, max_windows: int | None = 40,
                  extra_sigmas: dict[str, Sequence[float]] | None = None) -> Table:
    """The rows of `training.evaluation.sampler_quality.few_step_quality` (reference Heun vs the few-step sampler
    on held-out windows), printed as they are measured."""
    t = Table()
    for row in few_step_quality(checkpoint, test_file, members=members, max_windows=max_windows,
                                extra_sigmas=extra_sigmas):
        t.add("quality", *row)
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
            table.extend(bench_quality(quality[0], quality[1], members=quality_members,
                                       max_windows=quality_windows, extra_sigmas=tuned))
    return table


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The command-line options of this benchmark (shared with `python -m benchmarks`)."""
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
    """`python -m benchmarks.performance …`: run the sections, print the table and return it."""
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
