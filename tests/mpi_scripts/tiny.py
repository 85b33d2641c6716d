"""A tiny untrained diffusion corrector checkpoint (seconds to build; corrections of a few per cent)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


TARGET_STD = (0.02, 0.05, 0.005, 0.01, 0.01)
UNITS = {"sic": "1", "sit": "m", "snt": "m", "siu": "m s-1", "siv": "m s-1"}


def _tiny(mode, steps, target_std):
    from corrector.config import CorrectorConfig
    from corrector.model import CorrectorModel
    from corrector.normalization import Normalization

    cfg = CorrectorConfig(kind="diffusion", mode=mode,
                          network={"base_channels": 4, "channel_mults": [1], "attention_bottleneck": False,
                                   "embedding_dim": 8, "norm_groups": 1},
                          sampler={"name": "dpmpp_2m", "steps": steps})
    torch.manual_seed(0)
    model = CorrectorModel(cfg, len(cfg.conditioning))
    norm = Normalization.identity(cfg.conditioning, cfg.variables)
    norm.target_std = np.asarray(target_std, dtype=np.float64)
    return cfg, model, norm


def tiny_corrector(ny=16, nx=16, dx=16_000.0, mode="residual", steps=2, target_std=TARGET_STD):
    """The same tiny untrained corrector, in memory (identical on every rank: fixed torch seed)."""
    from corrector.inference import Corrector

    cfg, model, norm = _tiny(mode, steps, target_std)
    c = Corrector.from_model(model, norm, cfg, grid={"ny": ny, "nx": nx, "dx": dx}, device="cpu")
    c.variables_units = dict(UNITS)
    return c


def tiny_checkpoint(path, ny=16, nx=16, dx=16_000.0, mode="residual", steps=2, target_std=TARGET_STD):
    from corrector.checkpoint import mask_hash, save_checkpoint
    from corrector.config import CorrectorConfig
    from corrector.model import CorrectorModel
    from corrector.normalization import Normalization

    cfg = CorrectorConfig(kind="diffusion", mode=mode,
                          network={"base_channels": 4, "channel_mults": [1], "attention_bottleneck": False,
                                   "embedding_dim": 8, "norm_groups": 1},
                          sampler={"name": "dpmpp_2m", "steps": steps})
    torch.manual_seed(0)
    model = CorrectorModel(cfg, len(cfg.conditioning))
    norm = Normalization.identity(cfg.conditioning, cfg.variables)
    norm.target_std = np.asarray(target_std, dtype=np.float64)
    units = {"sic": "1", "sit": "m", "snt": "m", "siu": "m s-1", "siv": "m s-1"}
    return save_checkpoint(Path(path), model_state=model.state_dict(), ema_state=None, config=cfg,
                           normalization=norm, grid={"ny": ny, "nx": nx, "dx": dx,
                                                     "mask_hash": mask_hash(np.ones((ny, nx)))},
                           variables_units=units)
