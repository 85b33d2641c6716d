"""Deformation scaling of long runs against the truth: β(q) of each run pooled over the records of a few lead
windows (issue 20: within 20 % of the truth's at 15 and 50 days), over the same records of the truth.

A long run starts from one state, so a lead window (e.g. days 45–55) pools its records (and members) as samples; the
truth's β comes from the same records, so the two share their season.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from training.evaluation.deformation import deformation_scaling

#: lead windows (days since the start) over which β(q) is pooled
LEAD_WINDOWS = ((10.0, 20.0), (45.0, 55.0))
Q = (1.0, 2.0, 3.0)
ICE = 0.15  # sic above which deformation counts (as `icecorr evaluate`)


def _beta(ds: xr.Dataset, records: slice, ocean: np.ndarray, dx: float) -> list[float] | None:
    part = ds.isel(time=records)
    if part.sizes["time"] == 0:
        return None
    u, v, sic = (part[k].transpose(..., "y", "x").values for k in ("siu", "siv", "sic"))
    shape = (-1,) + u.shape[-2:]
    u, v, sic = u.reshape(shape), v.reshape(shape), sic.reshape(shape)
    ok = np.isfinite(u).all(axis=(1, 2)) & np.isfinite(v).all(axis=(1, 2))
    if not ok.any():
        return None
    ice = (sic[ok] > ICE) & ocean
    return [float(b) for b in deformation_scaling(u[ok], v[ok], dx, mask=ice, q=Q).beta]


def scaling_by_lead(runs: Mapping[str, xr.Dataset], truth: xr.Dataset, mask: np.ndarray | None, dx: float,
                    step_days: float, windows: Sequence[tuple[float, float]] = LEAD_WINDOWS) -> dict:
    """{"windows": [[lo, hi], …], "q": [...], "beta": {source: [β(q) per window or None]}} for the truth and every
    run long enough to cover a window; None where a run has no finite record there."""
    ocean = np.ones(truth["sic"].shape[-2:], bool) if mask is None else np.asarray(mask) > 0.5
    out = {"windows": [list(w) for w in windows], "q": list(Q), "beta": {}}
    for name, ds in {"truth": truth, **runs}.items():
        betas = []
        n = min(ds.sizes["time"], truth.sizes["time"])
        for lo, hi in windows:
            records = slice(int(round(lo / step_days)), min(int(round(hi / step_days)) + 1, n))
            betas.append(_beta(ds, records, ocean, dx) if records.start < n else None)
        out["beta"][name] = betas
    return out


def scaling_markdown(s: dict) -> list[str]:
    """Report lines: one row per source and lead window, β(q) and the ratio to the truth's."""
    qs = "/".join(f"{q:g}" for q in s["q"])
    lines = [f"| source | days | β({qs}) | ratio to the truth |", "|---|---|---|---|"]
    truth = s["beta"]["truth"]
    for name, betas in s["beta"].items():
        for (lo, hi), b, t in zip(s["windows"], betas, truth):
            if b is None:
                continue
            ratio = "—" if name == "truth" or t is None else "/".join(f"{x / y:.2f}" for x, y in zip(b, t))
            lines.append(f"| {name} | {lo:g}–{hi:g} | {'/'.join(f'{x:.3f}' for x in b)} | {ratio} |")
    return lines
