"""Residual statistics of training-pair files, printed and stored in the manifest by `icecorr generate` and
`icecorr prepare`: residual mean/std, RMSE of the coarse forecast and of persistence, and the share of the
residual a point-wise linear (ridge) regression on the conditioning explains (a lower bound on what a corrector
can learn)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr

from icecorr.base.files import open_netcdf
from icecorr.base.variables import ML_VARIABLES
from training.data.pairs import SPLITS


def _valid_points(v: str, mask: np.ndarray) -> np.ndarray:
    """Ocean cells, minus the closed east wall for siu and the north wall for siv (always 0)."""
    ok = mask.astype(bool).copy()
    if v == "siu":
        ok[:, -1] = False
    if v == "siv":
        ok[-1, :] = False
    return ok


def _features(ds: xr.Dataset, idx_t: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Point-wise regressors: every conditioning channel (initial_*, forecast_*, forcing at t and t+12h) plus 1."""
    names = ([f"initial_{v}" for v in ML_VARIABLES] + [f"forecast_{v}" for v in ML_VARIABLES]
             + [n for n in ds.data_vars if n.endswith(("_t0", "_t1"))])
    cols = [np.asarray(ds[n].values[idx_t][:, ok], np.float64).ravel() for n in names]
    return np.column_stack(cols + [np.ones_like(cols[0])])


def _ridge(x: np.ndarray, y: np.ndarray, lam: float = 1e-3) -> np.ndarray:
    """Ridge regression on standardised columns (the last column is the unpenalised intercept); the seasonal
    forcing columns (radiation, snowfall, mean temperature) are nearly collinear in time, and plain least squares
    turns that into huge coefficients that blow up on another run."""
    feats = x[:, :-1]
    mean, scale = feats.mean(axis=0), feats.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (feats - mean) / scale
    gram = z.T @ z + lam * len(y) * np.eye(z.shape[1])
    beta = np.linalg.solve(gram, z.T @ (y - y.mean()))
    coef = beta / scale
    return np.concatenate([coef, [y.mean() - mean @ coef]])


def residual_summary(files: Mapping[str, Path], max_rows: int = 200_000) -> dict[str, Any]:
    """Per split and ML variable: residual mean/std, RMSE of the coarse forecast (= rms residual) and of
    persistence (reference − initial), and the fraction of residual variance explained (R²) by a point-wise linear
    (ridge) regression on the conditioning fields, fitted on `train` (a lower bound on what a corrector can learn)."""
    out: dict[str, Any] = {}
    coefs: dict[str, np.ndarray] = {}
    order = sorted(files, key=lambda s: SPLITS.index(s) if s in SPLITS else 99)
    for split in order:
        with open_netcdf(files[split], "pair file") as ds:
            ds = ds.load()
        mask = np.asarray(ds["mask"].values) if "mask" in ds else np.ones(ds["sic" if "sic" in ds else
                                                                          "initial_sic"].shape[-2:])
        nt = ds.sizes["time"]
        rng = np.random.default_rng(0)
        stats: dict[str, Any] = {}
        for v in ML_VARIABLES:
            ok = _valid_points(v, mask)
            res = np.asarray(ds[f"residual_{v}"].values, np.float64)[:, ok]
            pers = (np.asarray(ds[f"reference_{v}"].values, np.float64)
                    - np.asarray(ds[f"initial_{v}"].values, np.float64))[:, ok]
            s = {"units": ds[f"residual_{v}"].attrs.get("units", ""),
                 "mean": float(np.nanmean(res)), "std": float(np.nanstd(res)),
                 "rmse_forecast": float(np.sqrt(np.nanmean(res**2))),
                 "rmse_persistence": float(np.sqrt(np.nanmean(pers**2))), "linear_r2": None,
                 "linear_rmse_reduction": None}
            # subsample whole time records so that the regression sees every cell
            n_keep = max(1, min(nt, max_rows // max(1, int(ok.sum()))))
            idx_t = np.sort(rng.choice(nt, size=n_keep, replace=False))
            x = _features(ds, idx_t, ok)
            y = res[idx_t].ravel()
            good = np.isfinite(y) & np.all(np.isfinite(x), axis=1)
            x, y = x[good], y[good]
            if split == "train" and len(y) > x.shape[1]:
                coefs[v] = _ridge(x, y)
            if v in coefs and y.size and y.var() > 0:
                mse = float(np.mean((y - x @ coefs[v]) ** 2))
                s["linear_r2"] = 1.0 - mse / float(y.var())
                # share of the forecast RMSE (bias included) that the linear correction removes
                s["linear_rmse_reduction"] = 1.0 - float(np.sqrt(mse / np.mean(y**2)))
            stats[v] = s
        out[split] = {"windows": int(nt), "residual": stats}
    return out


def format_summary(summary: Mapping[str, Any], elapsed: float, n_ranks: int) -> str:
    """The residual statistics of `residual_summary` as printed lines, after the run time (s) and rank count."""
    lines = [f"generate: {elapsed:.1f} s on {n_ranks} rank(s)"]
    for split, stats in summary.items():
        lines.append(f"  {split}: {stats['windows']} windows")
        for v, s in stats["residual"].items():
            lines.append(f"    residual_{v:<4s} mean {s['mean']:+.3e}  std {s['std']:.3e}  "
                         f"rmse(forecast) {s['rmse_forecast']:.3e}  rmse(persistence) {s['rmse_persistence']:.3e}"
                         + (f"  linear R² {s['linear_r2']:.2f}, RMSE -{100 * s['linear_rmse_reduction']:.0f}%"
                            if s.get("linear_r2") is not None else ""))
    return "\n".join(lines)
