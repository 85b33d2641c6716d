"""The inference API used by the coupler, the offline `correct` driver and the emulator: one code path for all.

    c = Corrector.load("best.pt")
    dy = c.sample(conditioning, members=8, seeds=member_seeds(base_seed, start_idx, step_idx, 8)[None])
    state = c.apply(base_state, dy, mask=mask)

All B × members samples go through the network in batches of exactly `sampler.network_batch` (the last one padded),
float32, under torch.inference_mode. Member (b, k) draws its noise from its own torch.Generator seeded with
seeds[b, k], so a member is the same sample whatever the number of members or batch items: bitwise for the same
run on the same device and thread count, to float32 round-off (~1e-6 relative) otherwise — the fixed network batch
size keeps the kernels' algorithms fixed, but a member's place in a batch moves with the member count, and
vectorised CPU kernels (AVX-512) treat the tail of a tensor apart.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .bounds import apply_bounds, guard_thin_forecast, rebound, zero_walls
from .checkpoint import CheckpointData, CheckpointError, load_checkpoint, mask_hash
from icecorr.base.variables import ML_VARIABLES
from .config import CorrectorConfig, SamplerConfig
from .fields import DRIFT_STEPS, MASK, stack
from .model import CorrectorModel
from .normalization import Normalization
from .seeding import filtered_noise, generators


def _padded(items: list, size: int) -> list:
    """`items` extended to `size` by repeating its last element."""
    return items + [items[-1]] * (size - len(items))


def default_device() -> torch.device:
    """cuda if available, else cpu (decided at run time, not at checkpoint time)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Corrector:
    """A loaded corrector. Use `load`, `from_model` or `zero` rather than the constructor."""

    def __init__(self, model: CorrectorModel | None, normalization: Normalization, config: CorrectorConfig,
                 grid: Mapping[str, Any], device: "torch.device | str | None" = None,
                 variables_units: Mapping[str, str] | None = None, source: str | None = None):
        self.config = config
        self.normalization = normalization
        self.grid = dict(grid)
        self.device = torch.device(device) if device is not None else default_device()
        self.variables_units = dict(variables_units or {})
        self.source = source
        self.model = model
        if model is not None:
            self.model = model.to(self.device, torch.float32).eval()
        self.last_bounds_counts: dict[str, int] = {}
        #: the built-in coarse model's physics (its config fields) whose residual a residual-mode corrector learned,
        #: as its training pairs recorded it; None if unknown (pairs of a model of your own)
        self.coarse_physics: dict | None = None

    # -------------------------------------------------------------------------------------------- constructors
    @classmethod
    def load(cls, path: str | os.PathLike, device: "torch.device | str | None" = None, use_ema: bool = True,
             grid: Mapping[str, Any] | None = None, variables: list[str] | None = None) -> "Corrector":
        """Load and validate a checkpoint (weights_only); optionally check grid/variables (CheckpointError)."""
        data = load_checkpoint(path, grid=grid, variables=variables)
        return cls.from_checkpoint(data, device=device, use_ema=use_ema)

    @classmethod
    def from_checkpoint(cls, data: CheckpointData, device=None, use_ema: bool = True) -> "Corrector":
        """The corrector of a loaded checkpoint (EMA weights by default) on `device` (None: `default_device()`);
        CheckpointError if the weights do not fit the stored network config."""
        model = CorrectorModel(data.config, len(data.config.conditioning or []))
        try:
            model.load_state_dict(data.state(use_ema), strict=True)
        except RuntimeError as exc:
            raise CheckpointError(data.path, f"weights do not fit the stored network config: "
                                             f"{str(exc).splitlines()[0]}") from None
        out = cls(model, data.normalization, data.config, data.grid, device, data.variables_units, data.path)
        out.coarse_physics = data.extra.get("coarse_physics")
        return out

    @classmethod
    def from_model(cls, model: CorrectorModel, normalization: Normalization, config: CorrectorConfig | None = None,
                   grid: Mapping[str, Any] | None = None, device=None) -> "Corrector":
        """Wrap an in-memory model (tests, validation during training). The model is moved to `device` and put in
        eval mode — pass a copy (e.g. the EMA model) if training continues."""
        config = config or model.cfg
        grid = dict(grid or {})
        return cls(model, normalization, config, grid, device if device is not None else
                   next(model.parameters()).device)

    @classmethod
    def zero(cls, variables: Sequence[str] = ML_VARIABLES, grid: Mapping[str, Any] | None = None,
             mode: str = "residual", conditioning: Sequence[str] | None = None) -> "Corrector":
        """A corrector that always returns 0 (identity correction; persistence in emulator mode, whose targets are
        then all tendencies), for coupling tests. Deterministic kind."""
        cfg = CorrectorConfig(kind="deterministic", mode=mode, variables=list(variables), emulator_state_variables=[],
                              conditioning=list(conditioning) if conditioning is not None else None)
        norm = Normalization.identity(cfg.conditioning or [], cfg.variables)
        return cls(None, norm, cfg, grid or {}, "cpu")

    # -------------------------------------------------------------------------------------------- properties
    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def variables(self) -> list[str]:
        return list(self.config.variables)

    @property
    def state_variables(self) -> list[str]:
        """Variables whose sample is the next state itself (emulator mode), not an increment of the base."""
        return list(self.config.emulator_state_variables or [])

    @property
    def conditioning_names(self) -> list[str]:
        return list(self.config.conditioning or [])

    @property
    def is_zero(self) -> bool:
        return self.model is None

    # -------------------------------------------------------------------------------------------- sampling
    def _stack_conditioning(self, conditioning: Mapping[str, np.ndarray]) -> torch.Tensor:
        if DRIFT_STEPS in conditioning and DRIFT_STEPS in self.conditioning_names:  # raw counts → trained range
            conditioning = {**conditioning, DRIFT_STEPS: np.minimum(np.asarray(conditioning[DRIFT_STEPS]),
                                                                    self.config.max_drift_steps)}
        cond = stack(self.conditioning_names, conditioning)
        ny, nx = cond.shape[-2:]
        for key, have in (("ny", ny), ("nx", nx)):
            want = self.grid.get(key)
            if want is not None and int(want) != have:
                raise ValueError(f"conditioning: grid {ny}×{nx} (ny×nx) differs from the corrector's "
                                 f"{self.grid.get('ny')}×{self.grid.get('nx')}")
        want_hash = self.grid.get("mask_hash")
        if want_hash and MASK in conditioning:
            m = np.asarray(conditioning[MASK])
            have_hash = mask_hash(m if m.ndim == 2 else m[0])
            if have_hash != want_hash:
                raise ValueError(f"field 'mask': this land/ocean mask (hash {have_hash}) differs from the one the "
                                 f"corrector was trained on (hash {want_hash})")
        if not torch.isfinite(cond).all():
            bad = [n for k, n in enumerate(self.conditioning_names) if not torch.isfinite(cond[:, k]).all()]
            raise ValueError(f"conditioning: field(s) {bad} contain NaN/inf")
        return cond

    @torch.inference_mode()
    def sample(self, conditioning: Mapping[str, np.ndarray], members: int, steps: int | None = None,
               seeds: np.ndarray | None = None, sampler: SamplerConfig | None = None,
               noise_weights: np.ndarray | None = None) -> np.ndarray:
        """Corrections (residual mode) or, emulator mode, 12 h tendencies and next states (`state_variables`), in
        physical units.

        conditioning: {name: (B, ny, nx)} for every name in `conditioning_names` (`mask` may be (ny, nx)).
        seeds: (B, members) int64, e.g. `member_seeds(...)`; required for the diffusion kind.
        noise_weights: (L,) weights of a linear filter of per-step white noise (`seeding.ar1_weights`): seeds is then
        (B, members, L), [..., l] the seed of the draw l steps back, and the initial latent noise is
        Σ_l w_l ε(seeds[..., l]) (`seeding.filtered_noise`); the churn noise still comes from seeds[..., 0].
        Returns float32 (B, members, n_vars, ny, nx); land cells are 0. The deterministic kind returns the same
        field for every member.
        """
        if members < 1:
            raise ValueError(f"members must be ≥ 1, got {members}")
        cond = self._stack_conditioning(conditioning)
        b, _, ny, nx = cond.shape
        out = np.zeros((b, members, len(self.variables), ny, nx), np.float32)
        if self.is_zero:
            return out
        sampler = sampler or self.config.sampler
        q = sampler.network_batch
        ocean = self.model.ocean(cond)
        cond_n = self.normalization.normalise_cond(cond)
        if MASK in self.conditioning_names:  # keep the exact 0/1 mask channel
            k = self.conditioning_names.index(MASK)
            cond_n[:, k] = cond[:, k]
        if self.kind == "deterministic":
            for lo in range(0, b, q):
                idx = _padded(list(range(lo, min(lo + q, b))), q)
                y = self._finish(self.model.sample_normalised(cond_n[idx].to(self.device)), ocean, idx)
                out[lo:lo + q] = y[:min(q, b - lo), None]
            return out
        if seeds is None:
            raise ValueError("sample: `seeds` (B, members) int64 is required for a diffusion corrector "
                             "(use corrector.seeding.member_seeds)")
        seeds = np.asarray(seeds)
        want = (b, members) if noise_weights is None else (b, members, len(noise_weights))
        if seeds.shape != want or not np.issubdtype(seeds.dtype, np.integer):
            raise ValueError(f"seeds: shape {seeds.shape} dtype {seeds.dtype}, expected {want} integers")
        lagged = seeds.reshape(b, members, -1)
        pairs = [(i, k) for i in range(b) for k in range(members)]
        shape = (len(self.variables), ny, nx)
        for lo in range(0, len(pairs), q):
            chunk = pairs[lo:lo + q]
            full = _padded(chunk, q)  # padding repeats the last pair; its result is discarded
            idx = [i for i, _ in full]
            gens = generators(np.array([lagged[i, k, 0] for i, k in full]), device=self.device)
            noise = filtered_noise(shape, gens, np.array([lagged[i, k, 1:] for i, k in full]), noise_weights,
                                   device=self.device)
            y = self.model.sample_normalised(cond_n[idx].to(self.device), None, noise, steps, gens, sampler)
            y = self._finish(y, ocean, idx)
            for j, (i, k) in enumerate(chunk):
                out[i, k] = y[j]
        return out

    def _finish(self, y: torch.Tensor, ocean: torch.Tensor | None, idx: list[int]) -> np.ndarray:
        """Normalised network output → physical units, land = 0, on the CPU as float32 numpy."""
        y = self.normalization.denormalise_target(y)
        if ocean is not None:
            y = y * ocean[idx].to(y.device)
        return y.float().cpu().numpy()

    # -------------------------------------------------------------------------------------------- applying
    def apply(self, base: Mapping[str, np.ndarray], sample: np.ndarray,
              mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """base + sample — the sample itself for `state_variables` (emulator mode: predicted as the next state, the
        base is ignored; residual mode: no forecast thickness where the forecast has almost no ice,
        `bounds.guard_thin_forecast`, except for the zero corrector, which stays the identity) — then closed walls
        (C-grid velocities; land faces if `mask` (ny, nx) is given) and physical bounds in the mode
        `config.sampler.bounds` (corrector.bounds.rebound). base: {variable: (B, M, ny, nx) or (B, ny, nx)} (the coarse forecast in residual mode, the
        initial state in emulator mode); sample: (B, M, n_vars, ny, nx). Returns {variable: (B, M, ny, nx)} plus
        any other base entries unchanged. Counts of clipped values are left in `last_bounds_counts`.
        """
        sample = np.asarray(sample)
        if sample.ndim != 5 or sample.shape[2] != len(self.variables):
            raise ValueError(f"sample: shape {sample.shape}, expected (B, M, {len(self.variables)}, ny, nx)")
        b, m = sample.shape[:2]
        thin = 0
        if self.mode == "residual" and not self.is_zero:
            base, thin = guard_thin_forecast(base)
        out: dict[str, np.ndarray] = {k: v for k, v in base.items() if k not in self.variables}
        physics: dict[str, np.ndarray] = {}  # the uncorrected forecast, (B, M, ny, nx) views
        states = self.state_variables
        for k, v in enumerate(self.variables):
            if v not in base:
                raise KeyError(f"apply: base field '{v}' missing; got {sorted(base)}")
            a = np.asarray(base[v])
            if a.ndim == 3:
                a = a[:, None]
            if a.ndim != 4 or a.shape[0] != b or a.shape[1] not in (1, m) or a.shape[-2:] != sample.shape[-2:]:
                raise ValueError(f"field '{v}': base shape {np.shape(base[v])} does not fit sample shape "
                                 f"{sample.shape} (expected (B, M, ny, nx) or (B, ny, nx))")
            out[v] = sample[:, :, k].astype(np.result_type(a, sample)) if v in states else a + sample[:, :, k]
            physics[v] = np.broadcast_to(a, out[v].shape)
        unbounded = out
        out, wall_counts = zero_walls(out, mask)
        out, counts = apply_bounds(out)
        if self.config.sampler.bounds != "clip":  # keep the totals the clipping changed (corrector.bounds)
            out = rebound(self.config.sampler.bounds, unbounded, out, mask, physics)
        self.last_bounds_counts = {**wall_counts, **counts, "thin_forecast_thickness": thin}
        return out
