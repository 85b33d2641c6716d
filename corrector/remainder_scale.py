"""The scale of what a diffusion stage generates on top of its regression stage (`diffusion.remainder_scale_cells`).

The remainder (target − regression prediction) is heavy-tailed across windows: on the twin box its per-window rms
spans two orders of magnitude (calm ≈ 0.03, storms ≈ 5 in normalised units) and follows the regression stage's own
magnitude (correlation of the logs 0.93–0.97, slope ≈ 1; docs/emulator.md). Under one global normalisation the
denoising loss is all storms: the trained stage adds noise of the storms' size to calm windows and too little to
the storms. Dividing the remainder by a scale that depends only on the conditioning — the local rms of the regression
prediction — is an exact change of variables (the learnt distribution is not re-weighted) that gives every window a
remainder of order one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def remainder_scale(base: torch.Tensor, ocean: torch.Tensor | None, cells: int, floor: float) -> torch.Tensor:
    """(B, C, H, W) scale s = √(local mean of base² over a cells × cells window of ocean cells + floor²).

    base: the regression stage's normalised prediction (0 on land); ocean: (B, 1, H, W) 0/1 or None (all ocean);
    cells: odd window width; floor (normalised units) keeps s > 0 where the prediction vanishes."""
    pad = cells // 2
    pool = lambda f: F.avg_pool2d(f, cells, stride=1, padding=pad, count_include_pad=True)  # noqa: E731
    square = pool(base * base)
    share = pool(torch.ones_like(base[:, :1]) if ocean is None else ocean.to(base.dtype))
    return torch.sqrt(square / share.clamp_min(1.0 / (cells * cells)) + floor * floor)
