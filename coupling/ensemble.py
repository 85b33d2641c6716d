"""The ML side of an ensemble run: loading the corrector, and correcting (or emulating) a batch of ensemble slots
(slot = window × members + member) at a step with one batched sample, plus the seeded initial perturbation.

The corrector's modules are imported where they are used: they load torch, which the physics ranks of a coupled
run never need (≈ 2 s and 200 MB per rank at start-up).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import numpy as np

from icecorr.base.errors import InputError
from .forcing import ForcingSource
from .restart import checkpoint_file_id

PERTURB_STREAM = 0x5EED  # extra SeedSequence word: initial perturbations never share a stream with the sampler


def checkpoint_id(corrector) -> str:
    """The id a run records for `corrector`: `coupling.restart.checkpoint_file_id` of its checkpoint file
    ('sha256:<first 16 hex> (<path>)'), 'zero' for the identity corrector, 'in-memory' without a file."""
    if getattr(corrector, "is_zero", False):
        return checkpoint_file_id(None)
    src = getattr(corrector, "source", None)
    if src and Path(src).exists():
        return checkpoint_file_id(src)
    return "in-memory"


def load_corrector(checkpoint: str | None, mode: str, grid_shape: tuple[int, int] | None = None):
    """The corrector of a run: the checkpoint, or the zero (identity) corrector when none is given."""
    from corrector.inference import Corrector

    if checkpoint is None:
        grid = {"ny": grid_shape[0], "nx": grid_shape[1]} if grid_shape else None
        return Corrector.zero(grid=grid, mode=mode)
    return Corrector.load(checkpoint)


def with_sampler(corrector, overrides: dict):
    """`corrector` sampling with its checkpoint's sampler section updated by `overrides` (`couple.sampler`, e.g.
    {noise_decorrelation_days: 0.5, spread_inflation: [...]}): a copy, validated as a SamplerConfig; `corrector`
    itself without overrides or when it has no config (the zero corrector)."""
    config = getattr(corrector, "config", None)
    if not overrides or config is None:
        return corrector
    from corrector.config import SamplerConfig

    sampler = SamplerConfig.model_validate({**config.sampler.model_dump(), **overrides})
    out = copy.copy(corrector)
    out.config = config.model_copy(update={"sampler": sampler})
    return out


def check_mode(corrector, mode: str, what: str) -> None:
    """InputError naming the checkpoint unless `corrector` works in `mode` ('residual' or 'emulator'), which the
    command `what` needs."""
    if corrector.mode != mode:
        hint = "icecorr emulate" if corrector.mode == "emulator" else "icecorr couple/correct"
        raise InputError(getattr(corrector, "source", None), "mode",
                         f"the checkpoint is a {corrector.mode!r} corrector; {what} needs {mode!r} (use {hint})")


class EnsembleCorrection:
    """ML-side correction of ensemble slots (slot = window × members + member) at a step: one batched sample.

    Residual mode corrects the physics forecast; emulator mode advances the initial state by the sampled 12 h
    tendency, or replaces it by the sampled next state for the corrector's `state_variables` (`Corrector.apply`).
    Member k of window w at step n uses seed member_seeds(seed, start_w, n, members)[k]. With the corrector's
    `sampler.noise_decorrelation_days` τ > 0 the member's initial latent noise is the AR(1) combination of its
    draws at steps n, n−1, … (`corrector.seeding.ar1_weights`), still a function of the seeds alone.
    """

    def __init__(self, corrector, forcing: ForcingSource, start_indices: Sequence[int], members: int, seed: int,
                 sampler_steps: int | None, mask: np.ndarray | None = None):
        from corrector.seeding import ar1_coefficient

        self.c, self.forcing = corrector, forcing
        self.starts, self.members, self.seed, self.steps = list(start_indices), members, seed, sampler_steps
        self.mask = mask if mask is not None else forcing.mask
        self.variables = list(corrector.variables)
        self.bounds_counts: dict[str, int] = {}
        sampler = getattr(getattr(corrector, "config", None), "sampler", None)
        self.rho = ar1_coefficient(float(getattr(sampler, "noise_decorrelation_days", 0.0) or 0.0))
        self._geography: dict[str, np.ndarray] | None = None  # read from the forcing at the first call

    def noise_weights(self, step: int) -> np.ndarray | None:
        """AR(1) weights of the draws at `step`, `step`−1, … (None: white noise, the sampler's own draw)."""
        from corrector.seeding import ar1_weights

        return None if self.rho == 0.0 else ar1_weights(self.rho, step)

    def seeds(self, slots: range, step: int) -> np.ndarray:
        """Sampler seeds of `slots` at `step`: (len(slots), 1) member_seeds(seed, window start, step, members), or
        with correlated noise (len(slots), 1, L), [..., l] the seed of step − l (L = len(noise_weights(step)))."""
        from corrector.seeding import lagged_member_seeds

        weights = self.noise_weights(step)
        lags = 1 if weights is None else len(weights)
        per_window = {w: lagged_member_seeds(self.seed, self.starts[w], step, self.members, lags)
                      for w in sorted({s // self.members for s in slots})}
        out = np.array([[per_window[s // self.members][s % self.members]] for s in slots], dtype=np.int64)
        return out[..., 0] if weights is None else out

    def prefetch(self, slots: range, step: int) -> None:
        """Read the forcing `slots` need at `step` now (an ML rank calls it while the physics ranks compute), so
        that the correction after their fields arrive does not wait for the file."""
        self._prefetched = (slots, step, self._forcing(slots, step))

    def _forcing(self, slots: range, step: int):
        cached = getattr(self, "_prefetched", None)
        if cached is not None and cached[0] == slots and cached[1] == step:
            return cached[2]
        pairs = {w: self.forcing.pair(self.starts[w] + step) for w in sorted({s // self.members for s in slots})}
        names = pairs[next(iter(pairs))][0].keys()
        f0 = {f: np.stack([pairs[s // self.members][0][f] for s in slots]) for f in names}
        f1 = {f: np.stack([pairs[s // self.members][1][f] for s in slots]) for f in names}
        return f0, f1

    def __call__(self, step: int, slots: range, initial: np.ndarray, forecast: np.ndarray | None) -> np.ndarray:
        """The corrected (residual) or next (emulator) states (B, n_vars, ny, nx) of `slots` after `step`."""
        from corrector.fields import build_conditioning, geography_fields

        f0, f1 = self._forcing(slots, step)
        if self._geography is None:  # static lat/position channels of the forcing file (if it has them)
            ds = getattr(self.forcing, "ds", None)
            self._geography = geography_fields(ds) if ds is not None else {}
        cond = build_conditioning(self.c.conditioning_names, self.variables, initial, forecast, f0, f1, self.mask,
                                  drift_steps=step,  # the run started from the reference (or an analysis)
                                  geography=self._geography)
        weights = self.noise_weights(step)
        extra = {} if weights is None else {"noise_weights": weights}  # white noise: the plain call of old
        sample = self.c.sample(cond, members=1, steps=self.steps, seeds=self.seeds(slots, step), **extra)
        base_arr = forecast if self.c.mode == "residual" else initial
        base = {v: base_arr[:, i] for i, v in enumerate(self.variables)}
        new = self.c.apply(base, sample, mask=self.mask)
        for k, n in getattr(self.c, "last_bounds_counts", {}).items():
            self.bounds_counts[k] = self.bounds_counts.get(k, 0) + int(n)
        return np.stack([new[v][:, 0] for v in self.variables], axis=1)


def make_perturbation(amplitude: float, seed: int, start_indices: Sequence[int], members: int,
                      variables: Sequence[str], mask: np.ndarray | None = None):
    """Initial perturbation of each member (None if amplitude is 0): white Gaussian noise, std `amplitude` for
    sic where there is ice and relative for sit/snt; then physical bounds. Seeded by (seed, start, member)."""
    if amplitude <= 0:
        return None

    def perturb(slots: range, initial: np.ndarray) -> np.ndarray:
        from corrector.bounds import apply_bounds

        out = np.array(initial, dtype=np.float64)
        for b, slot in enumerate(slots):
            w, m = divmod(slot, members)
            rng = np.random.default_rng([seed, start_indices[w], m, PERTURB_STREAM])
            for i, v in enumerate(variables):
                noise = rng.standard_normal(out.shape[-2:])
                if v == "sic":
                    out[b, i] += amplitude * noise * (out[b, i] > 0)
                elif v in ("sit", "snt"):
                    out[b, i] *= 1.0 + amplitude * noise
            if mask is not None:
                out[b] *= (mask > 0.5)
        bounded, _ = apply_bounds({v: out[:, i] for i, v in enumerate(variables)})
        return np.stack([bounded[v] for v in variables], axis=1)

    return perturb
