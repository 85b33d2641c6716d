"""Where a corrector hurts: per held-out 12 h window the RMSE of the corrected forecast (ensemble mean) over the
uncorrected one, binned by the uncorrected error. Pooled scores are dominated by the storm windows; this shows the
calm windows, where the coarse model is already right and a correction can only add error (docs/calibration.md).

    python -m training.evaluation.window_harm CHECKPOINT PAIRS [--members 4] [--variable sit]
        [--edges 0 3e-4 1e-3 3e-3 1e-2 inf]
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from training.evaluation.offline_skill import corrected_windows

#: bin edges of the uncorrected RMSE (physical units of the variable; for sit in m: 0.3 mm … 10 mm)
DEFAULT_EDGES = (0.0, 3e-4, 1e-3, 3e-3, 1e-2, np.inf)


def window_rmse(checkpoint: Path, pair_file: Path, members: int = 4, seed: int = 2024) -> dict[str, tuple]:
    """{variable: (uncorrected RMSE (n,), corrected ensemble-mean RMSE (n,))} per window of the pair file."""
    out: dict[str, tuple[list, list]] = {}
    for forecast, corrected, reference, _ in corrected_windows(checkpoint, pair_file, members, seed=seed):
        for v, ens in corrected.items():
            before, after = out.setdefault(v, ([], []))
            before.extend(np.sqrt(np.mean((forecast[v] - reference[v]) ** 2, axis=1)))
            after.extend(np.sqrt(np.mean((ens.mean(axis=1) - reference[v]) ** 2, axis=1)))
    return {v: (np.asarray(b), np.asarray(a)) for v, (b, a) in out.items()}


def harm_table(uncorrected: np.ndarray, corrected: np.ndarray,
               edges: Sequence[float] = DEFAULT_EDGES) -> list[dict]:
    """Per bin [lo, hi) of the uncorrected RMSE: windows, median of corrected / uncorrected, share of windows the
    correction made worse. Windows with an uncorrected RMSE of exactly 0 count as worse if corrected at all."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(uncorrected > 0, corrected / uncorrected, np.where(corrected > 0, np.inf, 1.0))
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        k = (uncorrected >= lo) & (uncorrected < hi)
        if k.any():
            rows.append({"lo": float(lo), "hi": float(hi), "windows": int(k.sum()),
                         "median_ratio": float(np.median(ratio[k])), "share_worse": float(np.mean(ratio[k] > 1))})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m training.evaluation.window_harm …` (module docstring): one table per variable; returns 0."""
    ap = argparse.ArgumentParser(prog="python -m training.evaluation.window_harm", description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path, help="residual corrector")
    ap.add_argument("pairs", type=Path, help="held-out pair file (e.g. data/test.nc)")
    ap.add_argument("--members", type=int, default=4, help="members of a diffusion corrector (mean scored)")
    ap.add_argument("--variable", action="append", help="variables to show (default: all)")
    ap.add_argument("--edges", type=float, nargs="+", default=list(DEFAULT_EDGES),
                    help="bin edges of the uncorrected RMSE, physical units (the same for every variable)")
    a = ap.parse_args(argv)
    scores = window_rmse(a.checkpoint, a.pairs, a.members)
    for v in a.variable or list(scores):
        print(f"\n{v}: corrected / uncorrected 12 h RMSE per window, by the uncorrected RMSE")
        print("| uncorrected RMSE | windows | median ratio | share worse |\n|---|---|---|---|")
        for r in harm_table(*scores[v], a.edges):
            print(f"| {r['lo']:.3g} – {r['hi']:.3g} | {r['windows']} | {r['median_ratio']:.2f} | "
                  f"{r['share_worse']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
