"""12 h offline skill of correctors on a held-out pair file: RMSE of the uncorrected and corrected forecasts, the
ensemble CRPS of a diffusion corrector and the MAE of a deterministic one (issue: residual corrector ≥ 50 % RMSE
reduction; its CRPS below the deterministic baseline's MAE).

Every window of the file is corrected (in batches), scores are over ocean cells, per variable, in physical units.
The corrected state is the forecast plus the correction after physical bounds (`Corrector.apply`), as in every mode.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from icecorr.base.files import open_netcdf
from coupling.pairs import pair_conditioning
from corrector.fields import MASK
from corrector.inference import Corrector
from corrector.seeding import member_seeds
from training.evaluation.metrics import crps_fair_pointwise


def corrected_windows(checkpoint: Path, pair_file: Path, members: int = 8, batch: int = 16, seed: int = 2024,
                      max_windows: int | None = None) -> Iterator[tuple[dict, dict, dict, np.ndarray]]:
    """Batches of the file's windows corrected by `checkpoint` (a residual corrector; one member if deterministic):
    ({v: forecast (B, cells)}, {v: corrected ensemble (B, M, cells)}, {v: reference (B, cells)}, window indices),
    ocean cells only, physical units, float64."""
    c = Corrector.load(checkpoint)
    if c.mode != "residual":
        raise ValueError(f"{checkpoint}: offline skill needs a residual corrector, not mode {c.mode!r}")
    m = 1 if c.kind == "deterministic" else members
    ds = open_netcdf(pair_file, "pair file")
    with ds:
        ocean = np.asarray(ds[MASK].values) > 0.5 if MASK in ds else np.ones(ds["initial_sic"].shape[-2:], bool)
        n = ds.sizes["time"] if max_windows is None else min(max_windows, ds.sizes["time"])
        for lo in range(0, n, batch):
            sl = slice(lo, min(lo + batch, n))
            cond = pair_conditioning(c, ds, Path(pair_file), sl)
            forecast = {v: np.asarray(ds[f"forecast_{v}"][sl].values, np.float64) for v in c.variables}
            reference = {v: np.asarray(ds[f"reference_{v}"][sl].values, np.float64) for v in c.variables}
            seeds = member_seeds(seed, np.arange(sl.start, sl.stop), 0, m)
            corrected = c.apply({v: np.repeat(forecast[v][:, None], m, axis=1) for v in c.variables},
                                c.sample(cond, m, seeds=seeds))
            yield ({v: forecast[v][..., ocean] for v in c.variables},
                   {v: np.asarray(corrected[v], np.float64)[..., ocean] for v in c.variables},
                   {v: reference[v][..., ocean] for v in c.variables}, np.arange(sl.start, sl.stop))


def offline_skill(checkpoint: Path, pair_file: Path, members: int = 8, batch: int = 16, seed: int = 2024,
                  max_windows: int | None = None) -> dict[str, dict[str, float]]:
    """{variable: {rmse_forecast, rmse_corrected, mae_corrected, crps, reduction}} over the file's windows
    (ensemble mean for a diffusion corrector; crps = MAE for a deterministic one)."""
    sums: dict[str, np.ndarray] = {}  # Σ forecast², Σ corrected², Σ |corrected|, Σ crps
    count = 0
    for forecast, corrected, reference, _ in corrected_windows(checkpoint, pair_file, members, batch, seed,
                                                                max_windows):
        for v, ens in corrected.items():                            # (B, M, cells)
            ref = reference[v]
            mean = ens.mean(axis=1)
            s = sums.setdefault(v, np.zeros(4))
            s[0] += np.sum((forecast[v] - ref) ** 2)
            s[1] += np.sum((mean - ref) ** 2)
            s[2] += np.sum(np.abs(mean - ref))
            s[3] += np.sum(crps_fair_pointwise(ens, ref, axis=1)) if ens.shape[1] > 1 else np.sum(np.abs(mean - ref))
        count += ref.size
    out = {}
    for v, s in sums.items():
        rmse_f, rmse_c = np.sqrt(s[0] / count), np.sqrt(s[1] / count)
        out[v] = {"rmse_forecast": float(rmse_f), "rmse_corrected": float(rmse_c), "mae_corrected": float(s[2] / count),
                  "crps": float(s[3] / count), "reduction": float(1.0 - rmse_c / rmse_f)}
    return out
