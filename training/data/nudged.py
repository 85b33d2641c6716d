"""Nudged pairs: training pairs from a coarse-model run relaxed towards the reference, for long coupled runs.

A corrector trained on windows re-forecast from the reference learns, besides the model's error, the model's
reaction to being started from a state that is not its own (an initialisation shock): in the twin, the tuned coarse
model started from the coarse-grained truth loses ≈ 8 mm of ice volume per 12 h more than the truth in June, while
its free run stays within 0.07 m of the truth's volume over the whole summer. Applied every step of a year-long
coupled run, that learned shock adds ice the run never lost. Training on the increments of a *nudged* run instead
(Watt-Meyer et al. 2021, Bretherton et al. 2022: ML of the nudging tendency of a coarse model relaxed towards a
reference) keeps the states on the model's own attractor: each run starts from the reference and continues as

    x_{t+1} = f(x_t) + α (reference_{t+1} − f(x_t)),

the model's hidden state carried through. Window t keeps x_t as `initial_*`, f(x_t) as `forecast_*`, and x_{t+1}
as `reference_*`, so the residual is the nudging increment α (reference − forecast): a corrector trained on it is a
learned nudging with relaxation time 12 h / α that needs no reference at run time.

    python -m training.data.nudged PAIRS OUT [--alpha 0.5]
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from fortran_stub.config import CoarsePhysicsConfig
from training.data.pair_runs import run_inputs, transform_pair_file, window_step, with_run_fields


def nudged_pairs(pairs: xr.Dataset, alpha: float, physics: CoarsePhysicsConfig | None = None,
                 model_cls=None) -> xr.Dataset:
    """The windows of `pairs` (time, y, x) re-made from a run nudged towards its reference with strength `alpha`
    (0 < α ≤ 1; 1 = every step restarted from the reference, the plain pairs); same variables and runs."""
    if not 0 < alpha <= 1:
        raise ValueError(f"nudged_pairs: alpha must be in (0, 1], got {alpha}")
    if model_cls is None:
        from coupling.bridge import CoarseModel as model_cls
    ny, nx, n = pairs.sizes["y"], pairs.sizes["x"], pairs.sizes["time"]
    inputs = run_inputs(pairs, "nudged windows")
    state_vars, target = inputs.state_vars, inputs.reference_next
    initial, forecast, nudged = ({v: np.empty((n, ny, nx)) for v in state_vars} for _ in range(3))
    model, model_run = None, None
    for t in range(n):
        if inputs.runs[t] != model_run:  # a new run starts from its reference
            model, model_run = model_cls(inputs.grid, physics or CoarsePhysicsConfig()), inputs.runs[t]
            model.set_state({v: inputs.reference_start[v][t] for v in state_vars})
        window_step(model, t, inputs, initial, forecast)
        for v in state_vars:
            nudged[v][t] = forecast[v][t] + alpha * (target[v][t] - forecast[v][t])
        model.set_state({v: nudged[v][t] for v in state_vars})  # set_state keeps the hidden state
    out = with_run_fields(pairs, state_vars, initial, forecast, nudged)
    out.attrs = {**pairs.attrs, "nudging_alpha": float(alpha)}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m training.data.nudged PAIRS OUT [--alpha A]`: the nudged windows of a pair file; 2 on bad input."""
    ap = argparse.ArgumentParser(prog="python -m training.data.nudged", description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", type=Path, help="training-pair NetCDF (icecorr generate / prepare)")
    ap.add_argument("out", type=Path, help="output pair file (written atomically)")
    ap.add_argument("--alpha", type=float, default=0.5, help="nudging strength per 12 h step, in (0, 1]")
    args = ap.parse_args(argv)
    out = transform_pair_file("training.data.nudged", args.pairs, args.out,
                              lambda pairs, physics: nudged_pairs(pairs, args.alpha, physics))
    if out is None:
        return 2
    print(f"{args.out}: {out.sizes['time']} nudged windows (alpha {args.alpha:g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
