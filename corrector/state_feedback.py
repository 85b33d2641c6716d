"""An emulator's prediction as the state it will start its next step from, in the normalised channels the network
sees — the training-time image of a rollout (`coupling.emulate`).

Each variable with an `initial_{v}` conditioning channel: the next state is the predicted 12 h tendency added to the
initial state (or, for `emulator_state_variables`, the prediction itself), bounded as a rollout bounds it
(`corrector.bounds`: ranges, then no thickness, snow or velocity without ice; walls are not zeroed, a training
patch has none), and normalised with the conditioning statistics (land 0, the normalised mean). Used by
`CorrectorModel.bounded` (`loss_bounded`: the loss on the bounded state) and by the multi-step loss
(`train.rollout_steps`: step k + 1 starts from step k's prediction, its target re-referenced to that state).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from corrector.bounds import zeroing_rules
from corrector.config import CorrectorConfig
from icecorr.base.variables import RANGES


@dataclass(frozen=True)
class _Channel:
    """Where variable `name` sits in the target (`target`) and conditioning (`cond`, its initial state) tensors, with
    the normalisation of both and whether the network predicts the next state itself (`state`) or a tendency."""

    name: str
    target: int
    cond: int
    cond_mean: float
    cond_std: float
    target_mean: float
    target_std: float
    state: bool


class StateFeedback:
    """Maps between normalised predictions, physical next states and normalised conditioning for a corrector config
    and the training normalisation (`corrector.normalization.Normalization`)."""

    def __init__(self, cfg: CorrectorConfig, normalization):
        n = normalization
        cond, target = list(n.cond_names), list(n.target_names)
        if cond != list(cfg.conditioning) or target != list(cfg.variables):
            raise ValueError(f"normalisation channels {cond} / {target} do not match the corrector's "
                             f"{list(cfg.conditioning)} / {list(cfg.variables)}")
        states = cfg.emulator_state_variables or []
        self.channels = []
        for v in cfg.variables:
            if f"initial_{v}" not in cond:
                continue
            t, c = target.index(v), cond.index(f"initial_{v}")
            self.channels.append(_Channel(v, t, c, float(n.cond_mean[c]), float(n.cond_std[c]),
                                          float(n.target_mean[t]), float(n.target_std[t]), v in states))
        self.mask_channel = cond.index("mask") if "mask" in cond else None

    def initial(self, cond: torch.Tensor, c: _Channel) -> torch.Tensor:
        """(B, H, W) physical initial state of channel `c` (meaningless on land)."""
        return cond[:, c.cond] * c.cond_std + c.cond_mean

    def bounded(self, pred: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """`pred` (normalised) with each tendency clamped so that initial + tendency stays in its `RANGES` (clamped
        values carry no gradient); predicted states and unbounded variables untouched."""
        out = list(pred.unbind(1))
        for c in self.channels:
            if c.state or c.name not in RANGES:
                continue
            lo, hi = RANGES[c.name]
            initial = self.initial(cond, c)
            # initial + (p·ts + tm) within [lo, hi]  ⇔  p within [(lo − initial − tm)/ts, (hi − initial − tm)/ts]
            low = (lo - initial - c.target_mean) / c.target_std
            out[c.target] = torch.maximum(out[c.target], low)
            if hi is not None:
                out[c.target] = torch.minimum(out[c.target], (hi - initial - c.target_mean) / c.target_std)
        return torch.stack(out, 1)

    def next_state(self, pred: torch.Tensor, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        """{variable: (B, H, W) physical next state}, bounded as a rollout bounds it."""
        fields = {}
        for c in self.channels:
            value = pred[:, c.target] * c.target_std + c.target_mean
            fields[c.name] = value if c.state else self.initial(cond, c) + value
        for name, (lo, hi) in RANGES.items():
            if name in fields:
                fields[name] = fields[name].clamp(lo, hi)
        for _, name, zero in zeroing_rules(fields):
            fields[name] = torch.where(zero, torch.zeros_like(fields[name]), fields[name])
        return fields

    def step(self, pred: torch.Tensor, cond: torch.Tensor, next_cond: torch.Tensor,
             next_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditioning, target) of the next window with the predicted state in place of its true initial state:
        `next_cond` with its `initial_{v}` channels replaced, `next_target`'s tendency channels re-referenced to the
        predicted state (reference − predicted state, so the loss scores the state the rollout reaches; the state
        channels are unchanged). All normalised, (B, C, H, W) and (B, V, H, W)."""
        state = self.next_state(pred, cond)
        ocean = None if self.mask_channel is None else next_cond[:, self.mask_channel] > 0.5
        conds, targets = list(next_cond.unbind(1)), list(next_target.unbind(1))
        for c in self.channels:
            fed = (state[c.name] - c.cond_mean) / c.cond_std
            conds[c.cond] = fed if ocean is None else torch.where(ocean, fed, torch.zeros_like(fed))
            if not c.state:  # (reference − fed)/ts − tm/ts = target + (true initial − fed)/ts
                targets[c.target] = targets[c.target] + (self.initial(next_cond, c) - state[c.name]) / c.target_std
        return torch.stack(conds, 1), torch.stack(targets, 1)
