"""Cross-fitted regression stages (`train.cross_fit`) for a diffusion corrector trained on top of a regression stage.

The regression stage's residuals on its own training windows are narrower than on new data (measured on the demo's
pairs: std 0.54 in-sample against 0.77 on validation, normalised units), so a diffusion stage trained on them
learns too narrow a distribution and its ensembles are under-dispersed. With cross-fitting each training window's
regression prediction comes from a stage trained without that window's run (e.g. two folds of the pair file's
runs, `train.data.runs`), as in stacking / double machine learning; validation and sampling keep the full stage.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import yaml
from torch import nn

from corrector.checkpoint import load_checkpoint
from corrector.normalization import Normalization
from icecorr.base.errors import InputError
from training.fit.checkpoints import load_base_stage
from training.fit.config import TrainRunConfig


def fold_training_runs(path) -> list[int] | None:
    """The runs a deterministic checkpoint was trained on (`train.data.runs` of its saved training config), or
    None when it was trained on every run of its file (or does not say)."""
    text = load_checkpoint(path).extra.get("train_config")
    if not text:
        return None
    runs = ((yaml.safe_load(text) or {}).get("train") or {}).get("data", {}).get("runs")
    return None if runs is None else [int(r) for r in runs]


class CrossFittedStages:
    """{run: frozen regression stage trained without that run}; `__call__(batch)` gives each window the prediction
    of its own run's stage (normalised target units, as `CorrectorModel.base_prediction`)."""

    def __init__(self, cfg: TrainRunConfig, normalization: Normalization,
                 factory: Callable[..., nn.Module], device: torch.device, train_runs: Sequence[int]):
        self.stages: dict[int, nn.Module] = {}
        t = cfg.train
        for run, path in (t.cross_fit or {}).items():
            seen = fold_training_runs(path)
            if seen is None or run in seen:
                raise InputError(str(path), "train.cross_fit",
                                 f"the stage for run {run} must be trained without it (train.data.runs without "
                                 f"{run}); it was trained on {'every run' if seen is None else f'runs {seen}'}")
            fold_cfg, stage = load_base_stage(
                cfg.model_copy(update={"train": t.model_copy(update={"base_checkpoint": path})}), normalization)
            model = factory(fold_cfg.corrector, len(fold_cfg.corrector.conditioning)).to(device)
            model.base.load_state_dict(stage["weights"])
            model.set_base_adapter(*stage["adapter"])
            model.requires_grad_(False).eval()
            self.stages[int(run)] = model
        missing = sorted(set(int(r) for r in train_runs) - set(self.stages))
        if missing:
            raise InputError(str(t.data.train_file), "train.cross_fit",
                             f"no stage for run(s) {missing} of the training windows (given: {sorted(self.stages)})")

    @torch.no_grad()
    def __call__(self, batch: dict) -> torch.Tensor:
        runs = batch["run"]
        out = None
        for run in runs.unique().tolist():
            sel = runs == run
            pred = self.stages[int(run)].base_prediction(batch["cond"][sel], batch["labels"][sel])
            out = pred.new_zeros((runs.shape[0], *pred.shape[1:])) if out is None else out
            out[sel] = pred
        return out
