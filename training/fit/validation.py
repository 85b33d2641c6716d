"""Validation during training: the EMA model's loss with fixed noise, its RMSE skill against the uncorrected
forecast (or persistence) and its fair CRPS, summed over ranks.
"""
from __future__ import annotations

import torch
from torch import nn

from training.fit.config import TrainRunConfig
from training.fit.dataset import epoch_batches
from training.fit.inputs import Data, loader, to_device
from training.fit.runtime import Env, all_reduce


@torch.no_grad()
def validate(model: nn.Module, data: Data, cfg: TrainRunConfig, env: Env, autocast) -> dict[str, float]:
    """EMA-model validation loss (fixed noise, so successive validations are comparable) and the RMSE skill.

    skill = mean over variables of 1 − RMSE(corrected) / RMSE(uncorrected), physical units, observed ocean cells,
    on the first `skill_batches` validation batches. The uncorrected forecast has error = target (residual mode);
    in emulator mode the reference is persistence: a zero tendency, or the initial state (read from the `initial_{v}`
    conditioning channel) for the `emulator_state_variables`, whose target is the next state. The corrected
    prediction is the network output (deterministic) or the mean of `skill_members` samples with `skill_steps`
    sampler steps (diffusion).

    val_crps = mean over variables of fair CRPS (Ferro 2014: pairwise term over M(M−1)) of the `skill_members`
    samples / MAE of the uncorrected reference, on the same batches (lower is better; the MAE ratio for the
    deterministic kind or one member). Unlike the skill of the ensemble mean it also rewards a calibrated spread.
    """
    t, val = cfg.train, data.val
    if val is None:
        return {}
    per_rank = max(1, t.batch_size // env.world)
    batches = epoch_batches(len(val), per_rank, seed=0, epoch=0, rank=env.rank, world=env.world,
                            augment=False, shuffle=False, drop_last=False)
    gen = torch.Generator(env.device).manual_seed(t.seed + 7919 * (env.rank + 1))
    loss_sum = torch.zeros(2, dtype=torch.float64, device=env.device)
    n_vars = len(cfg.corrector.variables)
    # squared errors corrected / uncorrected, count, fair CRPS, absolute error uncorrected
    sse = torch.zeros(5, n_vars, dtype=torch.float64, device=env.device)
    members = 1 if cfg.corrector.kind == "deterministic" else t.skill_members
    std = torch.as_tensor(data.normalization.target_std, device=env.device, dtype=torch.float32)[:, None, None]
    mean = torch.as_tensor(data.normalization.target_mean, device=env.device, dtype=torch.float32)[:, None, None]
    c = cfg.corrector
    persist = [(k, c.conditioning.index(f"initial_{v}")) for k, v in enumerate(c.variables)
               if v in c.emulator_state_variables]  # (target channel, conditioning channel of its initial state)
    cond_std, cond_mean = (torch.as_tensor(a, device=env.device, dtype=torch.float32)
                           for a in (data.normalization.cond_std, data.normalization.cond_mean))
    model.eval()
    for b, batch in enumerate(loader(val, batches, 0)):
        if t.val_batches is not None and b >= t.val_batches and b >= t.skill_batches:
            break
        batch = to_device(batch, env.device, t.channels_last)
        n = batch["target"].shape[0]
        if t.val_batches is None or b < t.val_batches:
            with autocast():
                loss = model.loss(batch["target"], batch["cond"], batch["labels"],
                                  target_mask=batch["target_mask"], generator=gen)
            loss_sum += torch.stack([loss.double() * n, torch.tensor(n, dtype=torch.float64, device=env.device)])
        if b < t.skill_batches:
            cond = batch["cond"].repeat_interleave(members, 0)
            labels = batch["labels"].repeat_interleave(members, 0)
            noise = torch.randn(cond.shape[0], n_vars, *cond.shape[-2:], generator=gen, device=env.device)
            with autocast():
                pred = model.sample_normalised(cond, labels, noise, t.skill_steps)
                if cfg.corrector.loss_bounded:  # scored as trained: on the bounded state
                    pred = model.bounded(pred, cond)
            ens = pred.float().reshape(n, members, n_vars, *cond.shape[-2:]) * std + mean
            pred = ens.mean(1)
            m = batch["target_mask"]
            truth = batch["target"] * std + mean
            reference = torch.zeros_like(truth)  # persistence / the uncorrected forecast
            for k, j in persist:
                reference[:, k] = batch["cond"][:, j] * cond_std[j] + cond_mean[j]
            err_corr = (pred - truth) * m
            err_ref = (reference - truth) * m
            crps = fair_crps(ens, truth) * m
            sse += torch.stack([(err_corr ** 2).sum((0, 2, 3)).double(), (err_ref ** 2).sum((0, 2, 3)).double(),
                                m.expand_as(err_ref).sum((0, 2, 3)).double(), crps.sum((0, 2, 3)).double(),
                                err_ref.abs().sum((0, 2, 3)).double()])
    all_reduce(loss_sum, env)
    all_reduce(sse, env)
    out = {}
    if loss_sum[1] > 0:
        out["val_loss"] = float(loss_sum[0] / loss_sum[1])
    if sse[2].sum() > 0:
        ratio = torch.sqrt(sse[0] / sse[1].clamp_min(1e-300))
        out["val_skill"] = float((1.0 - ratio).mean())
        out.update({f"val_skill_{v}": float(1.0 - r) for v, r in zip(cfg.corrector.variables, ratio)})
        crps = sse[3] / sse[4].clamp_min(1e-300)
        out["val_crps"] = float(crps.mean())
        out.update({f"val_crps_{v}": float(r) for v, r in zip(cfg.corrector.variables, crps)})
    return out


def fair_crps(ensemble: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Fair CRPS (Ferro 2014) per cell: mean_i |x_i − y| − Σ_{i<j} |x_i − x_j| / (M(M − 1)), unbiased for the
    CRPS of the infinite ensemble. ensemble (B, M, C, H, W), truth (B, C, H, W); M = 1 gives the absolute error."""
    m = ensemble.shape[1]
    out = (ensemble - truth[:, None]).abs().mean(1)
    if m > 1:
        pairs = torch.zeros_like(out)
        for i in range(m - 1):
            pairs += (ensemble[:, i + 1:] - ensemble[:, i:i + 1]).abs().sum(1)
        out = out - pairs / (m * (m - 1))
    return out
