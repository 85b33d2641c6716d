"""Drift pairs: training pairs that start from the coarse model's own free run instead of the reference.

Pairs re-forecast from the reference only show the corrector states on the reference's manifold. A coupled run
feeds it its own states, which drift off that manifold, and a corrector extrapolating there can run away: in the
1-year coupled run of `make longrun` the correction added ice faster than the coarse model melted it and the
hybrid kept 3 m of ice through the summer the truth melted out. Drift pairs follow the DAgger idea (train on the
states the policy visits) with the free coarse model as a stand-in for the hybrid: within each run the model is
restarted from the reference every `segment_steps` windows and left free in between; each window keeps its free
state as `initial_*`, the model's next state as `forecast_*` and the reference at t + 12 h as `reference_*`. The
residual then holds the model's accumulated error as well as its 12 h error, so the corrector learns the reference
given a drifted state: a learned nudging back to the reference's manifold, applied at every step. Given correctors,
the segments are also run as coupled runs of each of them (the DAgger step proper).

`drift_steps` counts the free steps before a window's start (0 = started from the reference); a corrector with
the `drift_steps` conditioning channel (`CorrectorConfig.max_drift_steps`) sees it, any other uses only the
windows with 0. Drift windows get the run index `run + k·DRIFT_RUN_OFFSET` (k-th set), so windows never cross from
a reference run into its drift copies. Measured effects: README, "Long runs" and "Drift windows".
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from corrector.fields import DRIFT_STEPS
from icecorr.base.variables import STEP_HOURS
from fortran_stub.config import CoarsePhysicsConfig
from training.data.pair_runs import run_inputs, transform_pair_file, window_step, with_run_fields

#: added to a run's index for its drift windows
DRIFT_RUN_OFFSET = 100_000
#: variables whose 12 h state keeps (almost) no memory of the initial one: their drift target stays the state
MEMORYLESS = ("siu", "siv")


def segment_steps(days: float) -> int:
    """12 h windows in a drift segment of `days` days (at least one)."""
    return max(1, int(round(days * (24 // STEP_HOURS))))


def drift_pairs(pairs: xr.Dataset, segment_steps: int, physics: CoarsePhysicsConfig | None = None,
                model_cls=None, corrector=None, seed: int = 0, target: str = "state") -> xr.Dataset:
    """The drift windows of a pair Dataset (time, y, x): same variables, `drift_steps` added, run indices offset.

    Each run (the `run` variable; the whole file is one run without it) is cut into segments of `segment_steps`
    windows; a segment starts from the reference `initial_*` and continues with the model's own forecasts — or,
    with `corrector` (a residual-mode `corrector.inference.Corrector`), with the hybrid's corrected forecasts, one
    sample per step seeded from `seed` and the window index (the DAgger step proper: the states the corrector's own
    coupled run visits). The model's hidden state (stresses, surface and mixed-layer temperatures) is carried
    through, as in a coupled run.

    `target` 'state': a drift window's reference is the reference's state at t + 12 h (the residual pulls the
    drifted state back to it). 'tendency': for the slow variables (all but siu, siv, which keep no memory of their
    initial state) the drifted state plus the reference's own 12 h change, so the residual is the reference's
    tendency minus the model's from the drifted state — what a coupled run needs to evolve like the reference from
    where it is, not a pull towards a state it can no longer know.
    """
    if target not in ("state", "tendency"):
        raise ValueError(f"drift_pairs: target must be 'state' or 'tendency', got {target!r}")
    if segment_steps < 1:
        raise ValueError(f"drift_pairs: segment_steps must be >= 1, got {segment_steps}")
    if model_cls is None:
        from coupling.bridge import CoarseModel as model_cls
    ny, nx, n = pairs.sizes["y"], pairs.sizes["x"], pairs.sizes["time"]
    inputs = run_inputs(pairs, "drift windows")
    state_vars, runs, reference_start = inputs.state_vars, inputs.runs, inputs.reference_start
    initial = {v: np.empty((n, ny, nx)) for v in state_vars}
    forecast = {v: np.empty((n, ny, nx)) for v in state_vars}
    age = np.zeros(n, dtype=np.int32)
    correct = None if corrector is None else _correction_step(corrector, pairs, state_vars, seed)

    model, model_run, k_in_run = None, None, 0
    for t in range(n):
        if runs[t] != model_run:  # a new run: a fresh model, its stresses develop within the first segment
            model, model_run, k_in_run = model_cls(inputs.grid, physics or CoarsePhysicsConfig()), runs[t], 0
        if k_in_run % segment_steps == 0:
            model.set_state({v: reference_start[v][t] for v in state_vars})
        else:
            age[t] = age[t - 1] + 1
        window_step(model, t, inputs, initial, forecast)
        if correct is not None and (k_in_run + 1) % segment_steps != 0:  # the next window continues this one
            model.set_state(correct(t, initial, forecast, inputs.f0, inputs.f1, int(age[t])))
        k_in_run += 1

    reference_next = inputs.reference_next
    if target == "tendency":
        reference_next = {v: (initial[v] + reference_next[v] - reference_start[v]) if v not in MEMORYLESS
                          else reference_next[v] for v in state_vars}
    out = with_run_fields(pairs, state_vars, initial, forecast, reference_next)
    out["run"] = ("time", (runs + DRIFT_RUN_OFFSET).astype(np.int32),
                  {"long_name": "run (truth trajectory) index; windows never cross runs"})
    out[DRIFT_STEPS] = ("time", age, _DRIFT_ATTRS)
    return out


def _correction_step(corrector, pairs: xr.Dataset, state_vars: Sequence[str], seed: int):
    """fn(t, initial, forecast, f0, f1, drift_steps) -> the hybrid's state after window t: its forecast plus one
    correction sample (as `icecorr couple` does). Checked and prepared once per run of `drift_pairs`."""
    from corrector.fields import build_conditioning

    if corrector.mode != "residual":
        raise ValueError(f"drift_pairs: the corrector must be in residual mode, got {corrector.mode}")
    names = list(corrector.variables)
    missing = [v for v in names if v not in state_vars]
    if missing:
        raise ValueError(f"drift_pairs: the corrector needs {missing}, which the pair file lacks")
    mask = np.asarray(pairs["mask"].values) if "mask" in pairs else None

    def corrected(t: int, initial, forecast, f0, f1, drift_steps: int) -> dict[str, np.ndarray]:
        stack = lambda fields: np.stack([fields[v][t] for v in names])[None]  # noqa: E731
        cond = build_conditioning(corrector.conditioning_names, names, stack(initial), stack(forecast),
                                  {f: a[t][None] for f, a in f0.items()}, {f: a[t][None] for f, a in f1.items()},
                                  mask, drift_steps=drift_steps)
        sample = corrector.sample(cond, members=1, seeds=np.array([[seed * 1_000_003 + t]], dtype=np.int64))
        new = corrector.apply({v: forecast[v][t][None] for v in names}, sample, mask=mask)
        return {v: np.asarray(new[v][0, 0], dtype=np.float64) for v in names}

    return corrected


_DRIFT_ATTRS = {"long_name": "free coarse-model 12 h steps between the last start from the reference and the "
                             "window start (0 = started from the reference)", "units": "1"}


def with_drift_pairs(pairs: xr.Dataset, segment_steps: int, physics: CoarsePhysicsConfig | None = None,
                     model_cls=None, correctors: Sequence = (), seed: int = 0, target: str = "state") -> xr.Dataset:
    """`pairs` (drift_steps 0), its free-model drift windows, then one set of hybrid drift windows per corrector
    in `correctors` (`drift_pairs`; run indices offset by k·DRIFT_RUN_OFFSET for the k-th set), along time."""
    if DRIFT_STEPS in pairs:
        raise ValueError("with_drift_pairs: the pairs already hold drift windows (drift_steps); start from the "
                         "reference pairs")
    base = pairs.copy()
    base[DRIFT_STEPS] = ("time", np.zeros(pairs.sizes["time"], dtype=np.int32), _DRIFT_ATTRS)
    parts = [base, drift_pairs(pairs, segment_steps, physics, model_cls, target=target)]
    for k, corrector in enumerate(correctors, start=1):
        part = drift_pairs(pairs, segment_steps, physics, model_cls, corrector, seed, target)
        part["run"] = part["run"] + k * DRIFT_RUN_OFFSET
        parts.append(part)
    out = xr.concat(parts, dim="time", data_vars="minimal", coords="minimal", compat="override", join="override")
    out.attrs = {**pairs.attrs, "drift_segment_steps": int(segment_steps)}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m training.data.drift PAIRS OUT …`: append drift windows to a pair file; 2 on bad input."""
    ap = argparse.ArgumentParser(
        prog="python -m training.data.drift",
        description="Append drift windows (free coarse-model runs restarted from the reference) to a pair file.")
    ap.add_argument("pairs", type=Path, help="training-pair NetCDF (icecorr generate / prepare)")
    ap.add_argument("out", type=Path, help="output pair file (written atomically)")
    ap.add_argument("--segment-days", type=float, default=15.0, help="free-run length between restarts (days)")
    ap.add_argument("--corrector", type=Path, action="append", default=[],
                    help="residual checkpoint: also add the drift windows of its hybrid (repeatable; DAgger)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the hybrid runs' correction samples")
    ap.add_argument("--target", choices=("state", "tendency"), default="state",
                    help="drift windows' reference: the reference's state, or the drifted state plus the reference's "
                         "12 h change (slow variables)")
    args = ap.parse_args(argv)
    from corrector.inference import Corrector

    def make(pairs: xr.Dataset, physics: CoarsePhysicsConfig) -> xr.Dataset:
        correctors = [Corrector.load(p) for p in args.corrector]
        return with_drift_pairs(pairs, segment_steps(args.segment_days), physics, correctors=correctors,
                                seed=args.seed, target=args.target)

    out = transform_pair_file("training.data.drift", args.pairs, args.out, make)
    if out is None:  # one line naming the file and field, no partial output
        return 2
    n_ref = int((out[DRIFT_STEPS].values == 0).sum())
    print(f"{args.out}: {out.sizes['time']} windows ({n_ref} started from the reference, segment "
          f"{args.segment_days:g} days, {len(args.corrector)} hybrid(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
