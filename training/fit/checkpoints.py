"""The corrector checkpoints a training run writes (`best.pt`, `last.pt`: `corrector.checkpoint` format) and the
frozen regression stage a diffusion run starts from (`train.base_checkpoint`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import xarray as xr
from torch import nn

from corrector.checkpoint import load_checkpoint, mask_hash, save_checkpoint
from corrector.normalization import Normalization
from icecorr.base.errors import InputError
from icecorr.base.variables import VARIABLES
from icecorr.inputs.regrid import grid_mapping_name
from training.data.provenance import pair_file_physics
from training.fit.config import TrainRunConfig
from training.fit.dataset import PairDataset
from training.fit.inputs import Data
from training.fit.optim import EMA


def corrector_units(ds: PairDataset, variables: Sequence[str]) -> dict[str, str]:
    """{variable: units} as the pair file's `reference_{v}` states them, else the variable table's ("1" for a
    variable the table lacks)."""
    def default(v: str) -> str:
        return VARIABLES[v]["units"] if v in VARIABLES else "1"

    with xr.open_dataset(ds.path) as f:
        return {v: str(f[f"reference_{v}"].attrs.get("units", default(v)))
                if f"reference_{v}" in f.variables else default(v) for v in variables}


def save_corrector(path: Path, model: nn.Module, ema: EMA, cfg: TrainRunConfig, data: Data, extra: dict) -> Path:
    """A corrector checkpoint (corrector.checkpoint format): raw + EMA weights, config, normalisation, grid."""
    ds = data.train
    projection, provenance, coarse_physics = pair_provenance(ds.path)
    if cfg.corrector.mode != "residual":  # an emulator runs no coarse model
        coarse_physics = None
    grid = {"nx": ds.nx, "ny": ds.ny, "dx": ds.grid_dx, "mask_hash": mask_hash(ds.ocean), "projection": projection}
    return save_checkpoint(path, model_state=model.state_dict(), ema_state=ema.module.state_dict(),
                           config=cfg.corrector, normalization=data.normalization, grid=grid,
                           variables_units=corrector_units(ds, cfg.corrector.variables),
                           extra={**extra, "train_pairs": provenance, "coarse_physics": coarse_physics})


def pair_provenance(path: Path) -> tuple[dict, dict, dict | None]:
    """(the CF grid-mapping attributes of a pair file, or {}; its provenance: producer, source files, version; the
    built-in coarse model's physics its forecasts ran, or None: the model whose residual a corrector learns, which
    couple refuses to run another of)."""
    def plain(value):
        return value.item() if isinstance(value, np.generic) else \
            value.tolist() if isinstance(value, np.ndarray) else value

    with xr.open_dataset(path) as f:
        name = grid_mapping_name(f)
        projection = {k: plain(a) for k, a in f[name].attrs.items()} if name else {}
        provenance = {k: str(f.attrs[k]) for k in ("producer", "source_files", "icecorr_version", "history")
                      if k in f.attrs}
        coarse_physics = pair_file_physics(f.attrs, path)
    return projection, provenance, coarse_physics



def load_base_stage(cfg: TrainRunConfig, normalization: Normalization) -> tuple[TrainRunConfig, Optional[dict]]:
    """The frozen regression stage named by `train.base_checkpoint`: (config with `corrector.base_network` and
    `base_conditioning` set, {"weights": its EMA weights keyed for `CorrectorModel.base`, "adapter": the affine maps
    of `CorrectorModel.set_base_adapter`}), after checking it fits this run; (cfg, None) without one.

    The stage may read a subset of this run's channels (e.g. not `drift_steps`) and may have been trained on other
    windows (other normalisation statistics): the adapter maps this run's normalised channels to the stage's and
    its output back to this run's target units."""
    path = cfg.train.base_checkpoint
    if path is None:
        return cfg, None
    c = cfg.corrector
    if c.kind != "diffusion":
        raise InputError(str(path), "train.base_checkpoint", "only a diffusion corrector takes a regression stage")
    base = load_checkpoint(path)
    for what, mine, theirs in (("kind", "deterministic", base.config.kind), ("mode", c.mode, base.config.mode),
                               ("variables", c.variables, base.config.variables),
                               ("emulator_state_variables", c.emulator_state_variables,
                                base.config.emulator_state_variables)):
        if mine != theirs:
            raise InputError(str(path), what, f"regression stage has {theirs!r}, this run needs {mine!r}")
    base_names = list(base.config.conditioning)
    unknown = [n for n in base_names if n not in c.conditioning]
    if unknown:
        raise InputError(str(path), "conditioning", f"regression stage reads {unknown}, which this run lacks")
    idx = [c.conditioning.index(n) for n in base_names]
    # x_base = (x · std + mean − mean_base) / std_base for the stage's channels; y = (y_base · std_base + mean_base
    # − mean) / std for the targets (all per channel; the mask channel has mean 0, std 1 in both)
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    mean, std = f64(normalization.cond_mean)[idx], f64(normalization.cond_std)[idx]
    mean_b, std_b = f64(base.normalization.cond_mean), f64(base.normalization.cond_std)
    t_mean, t_std = f64(normalization.target_mean), f64(normalization.target_std)
    t_mean_b, t_std_b = f64(base.normalization.target_mean), f64(base.normalization.target_std)
    adapter = (std / std_b, (mean - mean_b) / std_b, t_std_b / t_std, (t_mean_b - t_mean) / t_std)
    weights = {k[len("network."):]: v for k, v in base.state(use_ema=True).items() if k.startswith("network.")}
    corrector = c.model_copy(update={"base_network": base.config.network,
                                     "base_conditioning": None if base_names == list(c.conditioning) else base_names})
    return cfg.model_copy(update={"corrector": corrector}), {"weights": weights, "adapter": adapter}


def load_initial_weights(cfg: TrainRunConfig):
    """The checkpoint named by `train.init_checkpoint` (`corrector.checkpoint.CheckpointData`) after checking that
    this run builds the same network on the same channels; None without one."""
    path = cfg.train.init_checkpoint
    if path is None:
        return None
    data = load_checkpoint(path)
    c, theirs = cfg.corrector, data.config
    for what in ("kind", "mode", "variables", "emulator_state_variables", "conditioning", "network"):
        if getattr(c, what) != getattr(theirs, what):
            raise InputError(str(path), what, f"the checkpoint has {getattr(theirs, what)!r}, this run builds "
                                              f"{getattr(c, what)!r}: train.init_checkpoint needs the same network")
    return data
