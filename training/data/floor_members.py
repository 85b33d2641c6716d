"""The members of a predictability-floor ensemble (`training.data.floor`): what the coarse model cannot know about
the fine truth, redrawn per member from (seed, start, member).

* subgrid wind noise: the member's own noise realisation (`SyntheticForcing.noise_at` of another seed) replaces
  the truth's within each coarse block; the block means (which the coarse model's forcing holds) stay the truth's;
* the static random cohesion field: drawn from another seed (`TruthModel(seed=…)`);
* damage: shuffled among the ocean cells of each refinement × refinement block (its block mean is kept).

Stresses and the rest of the sub-block structure stay the truth's. With nothing redrawn a member is the truth run
itself, bit for bit.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from training.data.coarsegrain import block_mean
from training.data.floor_config import RedrawConfig

#: wind components and their noise names (training.data.forcing.NOISE_NAMES)
_WIND_NOISE = (("uas", "uas_noise"), ("vas", "vas_noise"))


def member_seeds(seed: int, start: int, member: int) -> tuple[int, int, np.random.Generator]:
    """(noise seed, cohesion seed, generator of the damage shuffle) of member `member` at start date `start`."""
    seq = np.random.SeedSequence([seed, start, member])
    noise, cohesion = (int(x) for x in seq.generate_state(2))
    return noise, cohesion, np.random.default_rng(seq.spawn(1)[0])


def upsampled(a: np.ndarray, r: int) -> np.ndarray:
    """Every coarse cell repeated over its r×r fine cells: (ny, nx) → (r·ny, r·nx)."""
    return np.repeat(np.repeat(a, r, axis=-2), r, axis=-1)


def within_block(a: np.ndarray, r: int) -> np.ndarray:
    """The part of a fine field that its r×r block means do not hold: a − block mean (m s-1 for the wind noise)."""
    return a - upsampled(block_mean(a, r), r)


def shuffled_within_blocks(field: np.ndarray, r: int, rng: np.random.Generator,
                           ocean: np.ndarray | None = None) -> np.ndarray:
    """A copy of `field` (ny, nx) with the values of every r×r block permuted at random among its ocean cells
    (`ocean`: 1 ocean, 0 land; None = all ocean): land cells keep theirs, block sums are unchanged."""
    out = np.array(field, dtype=np.float64, copy=True)
    ny, nx = out.shape
    for j in range(0, ny, r):
        for i in range(0, nx, r):
            block = out[j:j + r, i:i + r]  # a view: written in place
            cells = np.flatnonzero(ocean[j:j + r, i:i + r] > 0.5) if ocean is not None else np.arange(block.size)
            if cells.size > 1:
                flat = block.reshape(-1).copy()
                flat[cells] = flat[cells][rng.permutation(cells.size)]
                block[...] = flat.reshape(block.shape)
    return out


def member_state(truth_state: Mapping[str, np.ndarray], redraw: RedrawConfig, r: int, rng: np.random.Generator,
                 ocean: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The exact fine state a member starts from (for `TruthModel.set_state`): volumes rather than thicknesses (a
    round trip through sit = vol/sic would not be exact), the wall-corner stress, the damage shuffled within blocks
    if `redraw.damage`, and without the cohesion field if `redraw.cohesion` (the member's model draws its own)."""
    state = {k: np.array(v, dtype=np.float64, copy=True) for k, v in truth_state.items() if k not in ("sit", "snt")}
    if redraw.cohesion:
        state.pop("cohesion", None)
    if redraw.damage:
        state["damage"] = shuffled_within_blocks(state["damage"], r, rng, ocean)
    return state


def member_forcing(truth: Mapping[str, np.ndarray], truth_noise: Mapping[str, np.ndarray],
                   member_noise: Mapping[str, np.ndarray] | None, r: int) -> Mapping[str, np.ndarray]:
    """A member's fine forcing at one step: the truth's (`truth`, resolved + noise), with the within-block part of
    its wind noise (`truth_noise`) replaced by the member's (`member_noise`; None = not redrawn: `truth` itself)."""
    if member_noise is None:
        return truth
    out = dict(truth)
    for wind, noise in _WIND_NOISE:
        out[wind] = truth[wind] + (within_block(member_noise[noise], r) - within_block(truth_noise[noise], r))
    return out
