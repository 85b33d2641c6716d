"""Timing helpers of the benchmarks: the result table (printed as rows come), the machine line, minimum-over-repeats
and interleaved timings, a matmul FLOP/s reference and a torch thread-count context.

Timings on a shared machine are noisy: every figure is the minimum over repeats (noise only adds time), and the
comparisons that matter are ratios of timings taken in the same run.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class Row:
    """One measured figure: its section, what was measured, the value, the goal (if any) and "ok"/"MISS"/""."""
    section: str
    what: str
    value: str
    goal: str = ""
    status: str = ""  # "ok", "MISS" or "" (informative)


@dataclass
class Table:
    """The benchmark's rows, printed as they are added and rendered as one markdown table at the end."""
    rows: list[Row] = field(default_factory=list)

    def add(self, section: str, what: str, value: str, goal: str = "", ok: bool | None = None) -> None:
        """Add a row and print it (`ok`: whether the goal is met; None = informative)."""
        self.rows.append(Row(section, what, value, goal, "" if ok is None else ("ok" if ok else "MISS")))
        print(f"  [{section}] {what}: {value}" + (f"   (goal {goal}: {self.rows[-1].status})" if goal else ""),
              flush=True)

    def extend(self, other: "Table") -> None:
        self.rows.extend(other.rows)

    def render(self) -> str:
        """All rows as a markdown table."""
        heads = ("section", "measure", "value", "goal", "")
        cols = [[r.section, r.what, r.value, r.goal, r.status] for r in self.rows]
        widths = [max([len(h)] + [len(c[i]) for c in cols]) for i, h in enumerate(heads)]
        line = lambda c: "| " + " | ".join(s.ljust(w) for s, w in zip(c, widths)) + " |"  # noqa: E731
        out = [line(heads), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(c) for c in cols]
        return "\n".join(out)


def machine_line() -> str:
    """Core count, torch version and CPU capability, intra-op threads and load average of this machine."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    cpu = torch.backends.cpu.get_cpu_capability()
    return (f"cores: {os.cpu_count()} (usable {affinity}); torch {torch.__version__} ({cpu}), intra-op threads "
            f"{torch.get_num_threads()}; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


def print_table(module: str, argv: list[str] | None, table: Table, machine_note: str = "") -> None:
    """How every benchmark ends: a blank line, the command (`python -m module` and its arguments), the machine line
    with `machine_note` appended, and the table."""
    print()
    print(f"python -m {module} {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(machine_line() + machine_note)
    print(table.render())


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
    """Run the block with `n` torch intra-op threads (None: leave the count as it is)."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
