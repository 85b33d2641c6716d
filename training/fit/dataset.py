"""Training items from training-pair NetCDF files: normalised target, stacked conditioning, augmentation labels, mask.

An item (a dict of float32 tensors) holds
* `target` (V, ny, nx): for the ML variables, the residual reference − forecast (mode 'residual') or, mode
  'emulator', the state at t+12 h (reference, for the `state_variables`) or the 12 h tendency reference − initial
  (the others) — `corrector.fields.target_names` — normalised per channel; 0 where unobserved;
* `target_mask` (V, ny, nx): 1 where the target is observed (finite, ocean, and `observed_{v}` ≠ 0 if the file has
  such a per-variable, per-time mask), else 0 — gappy references are simply NaN;
* `cond` (C, ny, nx): the conditioning channels in the corrector's order, normalised, 0 (the mean) on land;
* `labels` (3,): augmentation flags (flip_x, flip_y, rot90); zeros for unaugmented items and at inference.

Random crops (`crop`: patch size in cells, `train.data.crop`): the items are (window, patch) pairs, patches of
`crop` × `crop` cells on a lattice of `crop_stride` cells with at least `crop_min_ocean` ocean
(`training.fit.augment.crop_origins`); target, mask, land and every conditioning channel (the geography channels
`lat`, `x_position`, `y_position` of `corrector.fields` included) are cut at the same place, so a network trained
on patches of a large domain runs convolutionally on the whole of it. The statistics are fitted on whole windows.

Augmentation (flips and rot90, §1.1 of the anchors) acts on physical values before normalisation and treats C-grid
velocities exactly (`training.fit.augment`). Files are read lazily through xarray; a file whose needed variables fit in
`cache_max_mb` is read into memory once. Keys are plain indices or `(index, flip_x, flip_y, rot90)` tuples, so the
random choices live in the sampler (`epoch_batches`) and a batch is a pure function of (seed, epoch, position):
exact resume and identical results with any number of DataLoader workers.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import xarray as xr

from corrector.config import CorrectorConfig
from corrector.fields import (DRIFT_STEPS, GEOGRAPHY_CHANNELS, MASK, drift_steps_field, geography_fields, target_names,
                              target_terms)
from corrector.normalization import Normalization, NormalizationAccumulator
from coupling.checks import check_pair_times, check_units
from icecorr.base.files import describe_open_error
from icecorr.base.errors import InputError
from icecorr.inputs.regrid import projection_coordinate
from training.fit.augment import Flags, augment_fields, crop_fields, crop_origins
from training.fit.chains import rollout_chains


def epoch_batches(n_items: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                  augment: bool = True, square: bool = True, shuffle: bool = True,
                  drop_last: bool = True) -> list[list[tuple[int, int, int, int]]]:
    """This rank's batches of keys (index, flip_x, flip_y, rot90) for one epoch, a pure function of the arguments.

    `batch_size` is per rank. The permutation and the flags come from a generator seeded by (seed, epoch) and are
    the same on every rank; rank r takes every world-th item (as DistributedSampler does), so the global batch at
    position b is the same set of items for any number of ranks that divides it.
    """
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    order = torch.randperm(n_items, generator=g) if shuffle else torch.arange(n_items)
    flags = torch.randint(0, 2, (n_items, 3), generator=g)
    if not augment:
        flags.zero_()
    if not square:
        flags[:, 2] = 0
    global_batch = batch_size * world
    n_batches = n_items // global_batch if drop_last else -(-n_items // global_batch)
    batches = []
    for b in range(n_batches):
        items = order[b * global_batch:(b + 1) * global_batch][rank::world]
        batches.append([(int(i), *(int(f) for f in flags[i])) for i in items])
    return [b for b in batches if b]


# ----------------------------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------------------------

class PairDataset(torch.utils.data.Dataset):
    """Items of one training-pair file (or a subset of its windows), see the module docstring.

    path: the pair NetCDF; variables: ML variables (target channels, e.g. ['sic','sit','snt','siu','siv']);
    cond_names: conditioning channels in order (file variable names such as 'initial_sic', 'uas_t0');
    mode: 'residual' or 'emulator'; state_variables (emulator mode): the variables whose target is the next state
    (`CorrectorConfig.emulator_state_variables`; `for_config` passes it); indices: window (time) indices to use
    (default all);
    normalization: `corrector.normalization.Normalization` (None = physical units, e.g. to fit the statistics).
    The conditioning channel `mask` is the file's (y, x) ocean mask (all ocean if the file has none).
    Drift windows (`training.data.drift`: the file's `drift_steps` > 0) are used only by a corrector with the
    `drift_steps` channel, which reads the file's counts (0 without the variable) clamped at `max_drift_steps`.
    crop, crop_stride, crop_min_ocean: random patches (module docstring); None = whole windows.
    rollout_steps K > 1 (emulator mode, `train.rollout_steps`): an item starts a chain of K consecutive windows of
    one run (12 h apart, each starting from the previous one's reference: checked) and also holds the K − 1 windows
    after the first as `rollout_target`, `rollout_target_mask` (K − 1, V, ny, nx) and `rollout_cond`
    (K − 1, C, ny, nx), cut and augmented like the first; windows without K − 1 successors start no item.
    """

    def __init__(self, path: str | Path, variables: Sequence[str], cond_names: Sequence[str], mode: str,
                 indices: Iterable[int] | None = None, normalization: Normalization | None = None,
                 cache_max_mb: float = 1024.0, state_variables: Sequence[str] | None = None,
                 max_drift_steps: int = 0, crop: int | None = None, crop_stride: int | None = None,
                 crop_min_ocean: float = 0.1, rollout_steps: int = 1):
        self.path, self.variables, self.cond_names, self.mode = Path(path), list(variables), list(cond_names), mode
        self.max_drift_steps = max_drift_steps
        self.target_names = target_names(mode, self.variables, state_variables)
        self.normalization = normalization
        if normalization is not None:
            self._check_normalization(normalization)
        self._pid, self._ds = None, None
        ds = self._open()
        self._check(ds)
        n_time = ds.sizes["time"]
        self.indices = np.arange(n_time) if indices is None else np.asarray(list(indices), dtype=np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n_time):
            raise InputError(str(self.path), "time", f"window index out of range 0..{n_time - 1}")
        #: drift windows of the file left out (no `drift_steps` channel to tell the network they are drifted)
        self.drift_windows_left_out = 0
        if DRIFT_STEPS in ds.variables and DRIFT_STEPS not in self.cond_names:
            started = np.asarray(ds[DRIFT_STEPS].values)[self.indices] == 0
            self.drift_windows_left_out = int((~started).sum())
            self.indices = self.indices[started]
        self.ny, self.nx = ds.sizes["y"], ds.sizes["x"]
        self.ocean = self._ocean_mask(ds)
        self.geography = geography_fields(ds)
        self.crop = crop
        self.origins = (crop_origins(self.ocean, crop, crop_stride or max(crop // 4, 1), crop_min_ocean)
                        if crop else np.zeros((1, 2), dtype=np.int64))
        self.runs = (np.asarray(ds["run"].values) if "run" in ds.variables else np.zeros(n_time, dtype=np.int64))
        self.grid_dx = pair_grid_dx(ds, self.path)
        self.times = ds["time"].values if "time" in ds.variables else np.arange(n_time)
        n_read = len(self._target_sources()) + len(self.cond_names)
        size_mb = len(self.indices) * n_read * self.ny * self.nx * 4 / 2 ** 20
        self._memory = None
        if size_mb <= cache_max_mb:
            self._memory = self._read_file(self.indices)
        # (items, K) dataset positions of the windows of each item: one column without rollouts
        self.chains = np.arange(self.n_windows)[:, None] if rollout_steps == 1 else rollout_chains(self, rollout_steps)

    @classmethod
    def for_config(cls, corrector: CorrectorConfig, path: str | Path, **kw) -> "PairDataset":
        """The items a corrector with config `corrector` trains on: its variables, targets and conditioning."""
        return cls(path, corrector.variables, list(corrector.conditioning), corrector.mode,
                   state_variables=corrector.emulator_state_variables, max_drift_steps=corrector.max_drift_steps,
                   **kw)

    # --- file access -------------------------------------------------------------------------------------------
    def _open(self) -> xr.Dataset:
        """The lazily opened file, re-opened in each DataLoader worker process (handles are not fork-safe)."""
        if self._ds is None or self._pid != os.getpid():
            try:
                # cache=False: indexing reads from disk each time instead of keeping whole variables in memory
                self._ds = xr.open_dataset(self.path, cache=False)
            except Exception as exc:  # noqa: BLE001 - netCDF4/HDF5 raise OSError, ValueError, KeyError, …
                raise InputError(str(self.path), None, describe_open_error(exc)) from None
            self._pid = os.getpid()
        return self._ds

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_ds"], state["_pid"] = None, None
        return state

    def _target_sources(self) -> list[str]:
        """File variables read to form the target (and optional observation masks)."""
        return [f for name in self.target_names for f in target_terms(name) if f is not None]

    def _check(self, ds: xr.Dataset) -> None:
        for dim in ("time", "y", "x"):
            if dim not in ds.sizes:
                raise InputError(str(self.path), dim, "missing dimension (pair files are (time, y, x))")
        if DRIFT_STEPS in ds.variables and ds[DRIFT_STEPS].dims != ("time",):
            raise InputError(str(self.path), DRIFT_STEPS, f"dims {ds[DRIFT_STEPS].dims}, expected ('time',)")
        for name in self._target_sources() + self.cond_names:
            if name in (MASK, DRIFT_STEPS):
                continue
            if name in GEOGRAPHY_CHANNELS:
                if name not in geography_fields(ds):
                    raise InputError(str(self.path), name, "geography channel: the file needs a 2-D `lat` "
                                                           "coordinate (lat) or 1-D `x` and `y` (x/y_position)")
                continue
            if name not in ds.variables:
                if name.startswith("residual_") and {f"reference_{name[9:]}", f"forecast_{name[9:]}"} <= set(ds.variables):
                    continue  # formed as reference − forecast
                raise InputError(str(self.path), name, "missing variable (see docs/design.md 'Training-pair files')")
            if ds[name].dims != ("time", "y", "x"):
                raise InputError(str(self.path), name, f"dims {ds[name].dims}, expected ('time', 'y', 'x')")
            check_units(self.path, name, ds[name])
        check_pair_times(ds, self.path)

    def _ocean_mask(self, ds: xr.Dataset) -> np.ndarray:
        if "mask" not in ds.variables:
            return np.ones((ds.sizes["y"], ds.sizes["x"]), dtype=bool)
        m = np.asarray(ds["mask"].values)
        if m.shape != (ds.sizes["y"], ds.sizes["x"]):
            raise InputError(str(self.path), "mask", f"shape {m.shape}, expected (y, x)")
        return np.nan_to_num(m) > 0.5

    def _var(self, ds: xr.Dataset, name: str, idx: np.ndarray) -> np.ndarray:
        if name == DRIFT_STEPS:
            steps = ds[name].values[idx] if name in ds.variables else np.zeros(len(idx))
            return drift_steps_field(steps, (self.ny, self.nx), self.max_drift_steps)
        if name in GEOGRAPHY_CHANNELS:  # static: the same field in every window
            return np.broadcast_to(self.geography[name].astype(np.float32), (len(idx), self.ny, self.nx))
        if name.startswith("residual_") and name not in ds.variables:
            v = name[9:]
            return self._var(ds, f"reference_{v}", idx) - self._var(ds, f"forecast_{v}", idx)
        return np.asarray(ds[name].isel(time=idx).values, dtype=np.float32)

    def _read_file(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Physical target (T, V, ny, nx) with NaN = unobserved, and conditioning (T, C, ny, nx), for file windows
        `idx` (read in increasing order, one indexed read per variable)."""
        ds = self._open()
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        target = np.empty((len(idx), len(self.variables), self.ny, self.nx), np.float32)
        for k, (v, name) in enumerate(zip(self.variables, self.target_names)):
            plus, minus = target_terms(name)
            t = self._var(ds, plus, sorted_idx)
            if minus is not None:
                t = t - self._var(ds, minus, sorted_idx)
            if f"observed_{v}" in ds.variables:  # optional per-variable, per-time observation mask
                t = np.where(self._var(ds, f"observed_{v}", sorted_idx) > 0.5, t, np.nan)
            target[order, k] = t
        cond = np.empty((len(idx), len(self.cond_names), self.ny, self.nx), np.float32)
        for k, name in enumerate(self.cond_names):
            cond[order, k] = self.ocean if name == MASK else self._var(ds, name, sorted_idx)
        return {"target": target, "cond": cond}

    def read_physical(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """Unnormalised, unaugmented target and conditioning for dataset positions (not file indices)."""
        positions = np.asarray(positions, dtype=np.int64)
        if self._memory is not None:
            return {k: a[positions] for k, a in self._memory.items()}
        return self._read_file(self.indices[positions])

    # --- items -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Items: windows (chains of windows with `rollout_steps`), or (window, patch) pairs with crops."""
        return len(self.chains) * len(self.origins)

    @property
    def n_windows(self) -> int:
        """Windows (time records) of this dataset."""
        return len(self.indices)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: Sequence) -> list[dict[str, torch.Tensor]]:
        """Items for a list of keys (int or (index, flip_x, flip_y, rot90)); one file read per variable."""
        keys = [(int(k), 0, 0, 0) if np.isscalar(k) or isinstance(k, torch.Tensor) and k.ndim == 0 else
                tuple(int(x) for x in k) for k in keys]
        n_o, steps = len(self.origins), self.chains.shape[1]
        raw = self.read_physical(self.chains[[k[0] // n_o for k in keys]].reshape(-1))
        items = []
        for b, (p, fx, fy, rot) in enumerate(keys):
            flags = Flags(bool(fx), bool(fy), bool(rot))
            windows = []
            for w in range(b * steps, (b + 1) * steps):
                target, cond, ocean = raw["target"][w], raw["cond"][w], self.ocean
                if self.crop:
                    origin = self.origins[p % n_o]
                    target, cond, ocean = (crop_fields(a, origin, self.crop) for a in (target, cond, ocean))
                windows.append(self._item(target, cond, flags, ocean))
            item = windows[0]
            if steps > 1:
                for key in ("target", "target_mask", "cond"):
                    item[f"rollout_{key}"] = torch.stack([w[key] for w in windows[1:]])
            # the run picks a cross-fitted regression stage
            item["run"] = torch.tensor(int(self.runs[self.indices[self.chains[p // n_o, 0]]]))
            items.append(item)
        return items

    def _item(self, target: np.ndarray, cond: np.ndarray, flags: Flags, ocean: np.ndarray
              ) -> dict[str, torch.Tensor]:
        observed = np.isfinite(target) & ocean
        bad = ~np.isfinite(cond) & ocean
        if bad.any():
            c = int(np.argwhere(bad)[0][0])
            raise InputError(str(self.path), self.cond_names[c], "NaN/inf in an ocean cell of a conditioning field")
        target = np.where(observed, target, 0.0).astype(np.float32)
        cond = np.where(ocean, cond, 0.0).astype(np.float32)
        if flags != Flags():
            target = augment_fields(target, self.variables, flags)
            cond = augment_fields(cond, self.cond_names, flags)
            observed = augment_fields(observed.astype(np.float32), self.variables, flags, is_mask=True) > 0.5
            land = augment_fields(np.broadcast_to(~ocean, cond.shape[-2:])[None].astype(np.float32),
                                  ["mask"], flags, is_mask=True)[0] > 0.5
        else:
            land = ~ocean
        if self.normalization is not None:
            n = self.normalization
            target = (target - n.target_mean[:, None, None]) / n.target_std[:, None, None]
            cond = (cond - n.cond_mean[:, None, None]) / n.cond_std[:, None, None]
        target = np.where(observed, target, 0.0)
        cond = np.where(land, 0.0, cond)  # land carries no information: the normalised mean
        return {"target": torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)),
                "target_mask": torch.from_numpy(observed.astype(np.float32)),
                "cond": torch.from_numpy(np.ascontiguousarray(cond, dtype=np.float32)),
                "labels": torch.from_numpy(flags.labels())}

    # --- statistics --------------------------------------------------------------------------------------------
    def fit_normalization(self, chunk: int = 64) -> tuple[Normalization, np.ndarray]:
        """(normalisation fitted on this dataset's windows, target coverage per variable).

        Streams `chunk` windows at a time over ocean cells and ignores unobserved (NaN) targets, so gappy
        references and files larger than memory are fine. Coverage = observed / ocean cells per target variable.
        Raises InputError for NaN in an ocean cell of a conditioning field or a variable without any observation.
        """
        acc = NormalizationAccumulator(self.cond_names, self.variables, self.ocean.astype(np.float32))
        observed = np.zeros(len(self.variables))
        for start in range(0, self.n_windows, chunk):
            raw = self.read_physical(np.arange(start, min(start + chunk, self.n_windows)))
            bad = ~np.isfinite(raw["cond"]) & self.ocean
            if bad.any():
                c = int(np.argwhere(bad)[0][1])
                raise InputError(str(self.path), self.cond_names[c], "NaN/inf in an ocean cell of a conditioning field")
            observed += (np.isfinite(raw["target"]) & self.ocean).sum(axis=(0, 2, 3))
            acc.update(dict(zip(self.cond_names, np.moveaxis(raw["cond"], 1, 0))),
                       dict(zip(self.variables, np.moveaxis(raw["target"], 1, 0))))
        for v, n in zip(self.variables, observed):
            if n == 0:
                raise InputError(str(self.path), f"reference_{v}", "no observed (finite) value in the train split")
        coverage = observed / max(self.n_windows * int(self.ocean.sum()), 1)
        return acc.result(), coverage

    def _check_normalization(self, n: Normalization) -> None:
        if list(n.cond_names) != self.cond_names or list(n.target_names) != self.variables:
            raise ValueError(f"normalisation channels {n.cond_names} / {n.target_names} do not match the dataset's "
                             f"{self.cond_names} / {self.variables}")

    def with_normalization(self, normalization: Normalization) -> "PairDataset":
        """The same windows (sharing any in-memory cache) with normalisation switched on."""
        self._check_normalization(normalization)
        new = object.__new__(PairDataset)
        new.__dict__.update(self.__getstate__())
        new.normalization = normalization
        return new


def pair_grid_dx(ds: xr.Dataset, path: Path) -> float:
    """Cell size (m) of a pair file: its `grid_dx` attribute, else the spacing of a uniform `x` coordinate in a
    length unit (any UDUNITS spelling). A checkpoint records it, so a file without either is an error, not 0 m."""
    if "grid_dx" in ds.attrs:
        dx = float(ds.attrs["grid_dx"])
        if not (np.isfinite(dx) and dx > 0):
            raise InputError(str(path), "grid_dx", f"global attribute is {dx:g}, expected a positive cell size (m)")
        return dx
    x = projection_coordinate(ds, "x")
    if x is not None and x.size > 1:
        steps = np.diff(x)
        if np.allclose(steps, steps[0], rtol=1e-6) and steps[0] > 0:
            return float(steps[0])
    raise InputError(str(path), "grid_dx", "no grid spacing: set the global attribute grid_dx (m) or give `x` "
                                           "as an increasing, uniform coordinate with length units")


def split_windows(runs: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) window indices holding out about `val_fraction` of windows as whole last runs (when there
    are several runs) or as the last contiguous windows (one run), so validation never overlaps training runs."""
    n = len(runs)
    n_val = int(round(n * val_fraction))
    if n_val == 0:
        return np.arange(n), np.arange(0)
    unique = list(dict.fromkeys(runs.tolist()))
    if len(unique) > 1:
        held, count = [], 0
        for r in reversed(unique[1:]):  # keep at least one run for training
            if count >= n_val:
                break
            held.append(r)
            count += int((runs == r).sum())
        val = np.isin(runs, held)
        return np.flatnonzero(~val), np.flatnonzero(val)
    return np.arange(n - n_val), np.arange(n - n_val, n)


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack item dicts into a batch dict (what the DataLoader's default collate would do, without its overhead)."""
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
