"""Per-channel normalisation of conditioning inputs and of the target, fitted from arrays that may contain NaN.

Conditioning channels are z-scored with their mean/std (the `mask` channel is left as 0/1). The target — residual
(reference − forecast) in residual mode, 12 h tendency or next state in emulator mode (`corrector.fields.target_names`)
— is z-scored with its own per-variable mean/std, so the diffusion works on unit-variance fields (σ_data = 1).
Statistics are taken over ocean cells only when a mask is given, ignoring NaN (gappy observations), and accumulated
in float64 so files can be streamed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from .fields import MASK

# A channel whose std is below this (e.g. a constant forcing) is only centred: dividing by ~0 would blow it up.
MIN_STD = 1e-12


class _Moments:
    """Running count/sum/sum of squares per channel (float64), NaN ignored."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        c = len(self.names)
        self.n = np.zeros(c)
        self.s = np.zeros(c)
        self.s2 = np.zeros(c)
        self.shift = np.full(c, np.nan)  # first finite value: improves the one-pass variance's accuracy

    def update(self, arrays: Mapping[str, np.ndarray], ocean: np.ndarray | None) -> None:
        for k, name in enumerate(self.names):
            if name == MASK:
                continue
            if name not in arrays:
                raise KeyError(f"normalisation: field '{name}' missing; got {sorted(arrays)}")
            a = np.asarray(arrays[name], dtype=np.float64)
            if ocean is not None:
                if a.shape[-2:] != ocean.shape:
                    raise ValueError(f"field '{name}': grid {a.shape[-2:]} differs from mask grid {ocean.shape}")
                a = a[..., ocean]
            a = a[np.isfinite(a)]
            if a.size == 0:
                continue
            if np.isnan(self.shift[k]):
                self.shift[k] = a.flat[0]
            d = a - self.shift[k]
            self.n[k] += d.size
            self.s[k] += d.sum()
            self.s2[k] += np.square(d).sum()

    def result(self, what: str) -> tuple[np.ndarray, np.ndarray]:
        mean = np.zeros(len(self.names))
        std = np.ones(len(self.names))
        for k, name in enumerate(self.names):
            if name == MASK:
                continue
            if self.n[k] == 0:
                raise ValueError(f"normalisation: {what} field '{name}' has no finite value on ocean cells")
            m = self.s[k] / self.n[k]
            var = max(self.s2[k] / self.n[k] - m * m, 0.0)
            mean[k] = m + self.shift[k]
            sd = float(np.sqrt(var))
            std[k] = sd if sd > MIN_STD else 1.0
        return mean, std


class NormalizationAccumulator:
    """Streaming fit: call `update` on chunks (e.g. per time block of a file), then `result()`."""

    def __init__(self, cond_names: Sequence[str], target_names: Sequence[str], mask: np.ndarray | None = None):
        self.cond = _Moments(cond_names)
        self.target = _Moments(target_names)
        self.ocean = None if mask is None else np.asarray(mask) > 0.5

    def update(self, cond: Mapping[str, np.ndarray], target: Mapping[str, np.ndarray]) -> None:
        """cond: {name: (N, ny, nx)}; target: {variable: (N, ny, nx)} in physical units (NaN = missing)."""
        self.cond.update(cond, self.ocean)
        self.target.update(target, self.ocean)

    def result(self) -> "Normalization":
        """The statistics accumulated so far (ocean cells, finite values) as a `Normalization`; ValueError naming a
        field with no finite ocean value."""
        cm, cs = self.cond.result("conditioning")
        tm, ts = self.target.result("target")
        return Normalization(list(self.cond.names), cm, cs, list(self.target.names), tm, ts)


@dataclass
class Normalization:
    """cond_mean/std: (Cc,) for `cond_names`; target_mean/std: (C,) for `target_names` (the variables), physical
    units of each field (target: units of the variable per 12 h step)."""

    cond_names: list[str]
    cond_mean: np.ndarray
    cond_std: np.ndarray
    target_names: list[str]
    target_mean: np.ndarray
    target_std: np.ndarray

    def __post_init__(self) -> None:
        for attr, names in (("cond_mean", self.cond_names), ("cond_std", self.cond_names),
                            ("target_mean", self.target_names), ("target_std", self.target_names)):
            v = np.asarray(getattr(self, attr), dtype=np.float64).reshape(-1)
            if v.shape != (len(names),):
                raise ValueError(f"normalisation: {attr} has {v.size} values for {len(names)} channels")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"normalisation: {attr} has non-finite values")
            setattr(self, attr, v)
        if np.any(self.cond_std <= 0) or np.any(self.target_std <= 0):
            raise ValueError("normalisation: standard deviations must be positive")

    @classmethod
    def fit(cls, cond: Mapping[str, np.ndarray], target: Mapping[str, np.ndarray],
            cond_names: Sequence[str], target_names: Sequence[str],
            mask: np.ndarray | None = None) -> "Normalization":
        """Fit from in-memory arrays {name: (N, ny, nx)}; NaN ignored; only ocean cells if `mask` (ny, nx) given."""
        acc = NormalizationAccumulator(cond_names, target_names, mask)
        acc.update(cond, target)
        return acc.result()

    @classmethod
    def identity(cls, cond_names: Sequence[str], target_names: Sequence[str]) -> "Normalization":
        """Mean 0, std 1 everywhere (tests, zero corrector)."""
        return cls(list(cond_names), np.zeros(len(cond_names)), np.ones(len(cond_names)),
                   list(target_names), np.zeros(len(target_names)), np.ones(len(target_names)))

    @staticmethod
    def _shape(v: np.ndarray, like: torch.Tensor, axis: int) -> torch.Tensor:
        t = torch.as_tensor(v, dtype=like.dtype, device=like.device)
        shape = [1] * like.ndim
        shape[axis] = -1
        return t.reshape(shape)

    def normalise_cond(self, x: torch.Tensor, axis: int = 1) -> torch.Tensor:
        """(B, Cc, H, W) physical → normalised."""
        self._check(x, axis, self.cond_names, "conditioning")
        return (x - self._shape(self.cond_mean, x, axis)) / self._shape(self.cond_std, x, axis)

    def normalise_target(self, y: torch.Tensor, axis: int = 1) -> torch.Tensor:
        """(B, C, H, W) physical target → normalised."""
        self._check(y, axis, self.target_names, "target")
        return (y - self._shape(self.target_mean, y, axis)) / self._shape(self.target_std, y, axis)

    def denormalise_target(self, y: torch.Tensor, axis: int = 1) -> torch.Tensor:
        """(…, C, H, W) normalised target → physical units."""
        self._check(y, axis, self.target_names, "target")
        return y * self._shape(self.target_std, y, axis) + self._shape(self.target_mean, y, axis)

    @staticmethod
    def _check(x: torch.Tensor, axis: int, names: list[str], what: str) -> None:
        if x.shape[axis] != len(names):
            raise ValueError(f"{what}: {x.shape[axis]} channels on axis {axis}, normalisation has {len(names)} "
                             f"({names})")

    def to_dict(self) -> dict:
        """Plain dict of lists and float64 tensors (safe for torch.load(weights_only=True))."""
        return {"cond_names": list(self.cond_names), "cond_mean": torch.from_numpy(self.cond_mean.copy()),
                "cond_std": torch.from_numpy(self.cond_std.copy()), "target_names": list(self.target_names),
                "target_mean": torch.from_numpy(self.target_mean.copy()),
                "target_std": torch.from_numpy(self.target_std.copy())}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Normalization":
        """The inverse of `to_dict` (tensors or arrays); ValueError naming missing entries."""
        keys = ("cond_names", "cond_mean", "cond_std", "target_names", "target_mean", "target_std")
        missing = [k for k in keys if k not in d]
        if missing:
            raise ValueError(f"normalisation: missing entries {missing}")
        arr = {k: (d[k].numpy() if isinstance(d[k], torch.Tensor) else np.asarray(d[k])) for k in keys[1:3] + keys[4:]}
        return cls(list(d["cond_names"]), arr["cond_mean"], arr["cond_std"], list(d["target_names"]),
                   arr["target_mean"], arr["target_std"])
