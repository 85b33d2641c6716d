"""Chains of consecutive windows for multi-step training (`train.rollout_steps`): the items of a `PairDataset`
whose windows follow each other in one run, 12 h apart, each starting from the previous one's reference state."""
from __future__ import annotations

import numpy as np

from icecorr.base.errors import InputError

STEP = np.timedelta64(43200, "s")


def rollout_chains(ds, steps: int) -> np.ndarray:
    """(items, steps) dataset positions of each chain of `steps` consecutive windows of one run of `ds` (a
    `training.fit.dataset.PairDataset`, emulator mode); checks on a few chains that each window starts where the
    previous one ends. Raises InputError when no run is long enough or the windows are not one trajectory."""
    if ds.mode != "emulator":
        raise ValueError(f"rollout_steps={steps}: multi-step items need emulator mode, not {ds.mode!r}")
    file_idx = ds.indices
    where = {int(i): p for p, i in enumerate(file_idx)}
    following = np.full(len(file_idx), -1)  # position of the window after each one, −1 if none
    for p, i in enumerate(file_idx):
        q = where.get(int(i) + 1)
        if q is not None and ds.runs[i + 1] == ds.runs[i] and ds.times[i + 1] - ds.times[i] == STEP:
            following[p] = q
    chains = [np.arange(len(file_idx))]
    for _ in range(steps - 1):
        last = chains[-1]
        chains.append(np.where(last >= 0, following[np.maximum(last, 0)], -1))
    chains = np.stack(chains, 1)
    chains = chains[(chains >= 0).all(1)]
    if not len(chains):
        raise InputError(str(ds.path), "time", f"rollout_steps={steps}: no run has {steps} consecutive 12 h windows")
    check_trajectories(ds, chains[np.linspace(0, len(chains) - 1, min(8, len(chains))).astype(int)])
    return chains


def check_trajectories(ds, chains: np.ndarray) -> None:
    """Raise InputError unless window k + 1 of each chain starts from window k's reference state (to 1e-4 of its
    largest value), for every variable with an initial-state channel."""
    states = {v for v, name in zip(ds.variables, ds.target_names) if name.startswith("next_")}
    for first, second in zip(chains[:, 0], chains[:, 1]):
        raw = ds.read_physical(np.array([first, second]))
        for k, v in enumerate(ds.variables):
            if f"initial_{v}" not in ds.cond_names:
                continue
            c = ds.cond_names.index(f"initial_{v}")
            reference = raw["target"][0, k] + (0 if v in states else raw["cond"][0, c])
            valid = ds.ocean & np.isfinite(reference)
            gap = np.abs(raw["cond"][1, c] - reference)[valid]
            scale = max(float(np.abs(reference[valid]).max(initial=0)), 1e-12)
            if gap.size and float(gap.max()) > 1e-4 * scale:
                i, j = ds.indices[first], ds.indices[second]
                raise InputError(str(ds.path), f"initial_{v}",
                                 f"window {j} does not start from window {i}'s reference_{v} (max difference "
                                 f"{float(gap.max()):.3g}): multi-step training needs trajectories")
