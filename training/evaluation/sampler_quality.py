"""Sampling quality of a trained residual diffusion corrector on held-out pair windows: fair CRPS, spread/RMSE and
ensemble-mean RMSE of the corrected 12 h forecast, the reference Heun sampler against the few-step DPM-Solver++(2M)
(`few_step_quality`), and the tuning of the few-step σ levels on a validation file (`tune_few_step_sigmas`).

`python -m benchmarks.performance --quality CHECKPOINT TEST_FILE [--tune VAL_FILE]` prints these rows with the
sampling wall times.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import xarray as xr

from corrector.config import SamplerConfig
from corrector.inference import Corrector
from corrector.sampler import network_evaluations
from corrector.schedule import karras_sigmas
from corrector.seeding import member_seeds
from icecorr.base.files import open_netcdf
from training.evaluation import metrics

#: one row of the quality table: (what, value, goal, met: True/False, or None when informative)
QualityRow = tuple[str, str, str, bool | None]


def autocast(dtype: str):
    """bf16 CPU autocast for "bf16", else a no-op context (fp32)."""
    if dtype == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def network_params(corr: Corrector) -> int:
    """Number of parameters of the corrector's network."""
    return sum(p.numel() for p in corr.model.parameters())


@dataclass
class Windows:
    """Held-out windows of a pair file, ready for Corrector.sample/apply."""
    index: np.ndarray
    cond: dict
    forecast: dict
    reference: dict
    mask: np.ndarray


def load_windows(corr: Corrector, path: str | os.PathLike, max_windows: int | None) -> Windows:
    """`max_windows` evenly spaced time records of a pair file (all if None)."""
    with open_netcdf(path, "pair file") as ds:
        n_time = ds.sizes["time"]
        idx = np.arange(n_time) if not max_windows or max_windows >= n_time else \
            np.unique(np.linspace(0, n_time - 1, max_windows).round().astype(int))
        ds = ds.isel(time=idx).load()
    mask = ds["mask"].values if "mask" in ds else np.ones((ds.sizes["y"], ds.sizes["x"]))
    cond = {name: mask if name == "mask" else ds[name].values.astype(np.float64) for name in corr.conditioning_names}
    return Windows(idx, cond, {v: ds[f"forecast_{v}"].values.astype(np.float64) for v in corr.variables},
                   {v: ds[f"reference_{v}"].values.astype(np.float64) for v in corr.variables}, mask)


def ensemble_scores(corr: Corrector, w: Windows, sampler: SamplerConfig, members: int, seed: int = 0,
                    precision: str = "fp32") -> tuple[dict[str, tuple[float, float, float]], float]:
    """{variable: (fair CRPS, spread/RMSE, ensemble-mean RMSE)} of the corrected forecast (forecast + sample, with
    physical bounds) against the reference, area-weighted over ocean, over all windows; and the sampling wall time."""
    seeds = member_seeds(seed, w.index, 0, members)
    t0 = time.perf_counter()
    with autocast(precision):
        sample = corr.sample(w.cond, members, seeds=seeds, sampler=sampler)
    wall = time.perf_counter() - t0
    new = corr.apply(w.forecast, sample, mask=w.mask)
    weights = metrics.ocean_weights(w.mask)
    out = {}
    for v in corr.variables:
        ens = xr.DataArray(new[v], dims=("time", "member", "y", "x"))
        obs = xr.DataArray(w.reference[v], dims=("time", "y", "x"))
        out[v] = (float(metrics.crps(ens, obs, weights, keep=())),
                  float(metrics.spread_skill_ratio(ens, obs, weights, keep=())),
                  float(metrics.ensemble_mean_rmse(ens, obs, weights, keep=())))
    return out, wall


def tune_few_step_sigmas(checkpoint: str | os.PathLike, val_file: str | os.PathLike, members: int = 8,
                         max_windows: int = 16, iterations: int = 40, seed: int = 1,
                         starts: Sequence[Sequence[float]] | None = None) -> tuple[list[float], float, float]:
    """Tune the 4 σ levels of the few-step DPM-Solver++(2M) schedule for one checkpoint on its validation file.

    Objective: mean over variables of CRPS_v(σ) / CRPS_v(checkpoint schedule), fixed seeds (common random numbers,
    so the objective is smooth in σ), Nelder–Mead in ln σ from the better of `starts` (default: the checkpoint's
    schedule and the Karras ρ = 7 schedule with the same number of levels). The reference sampler is not used and
    the test file is not touched. Returns (σ levels, objective of the checkpoint schedule (1.0), tuned objective).
    """
    from scipy.optimize import minimize

    corr = Corrector.load(checkpoint, device="cpu")
    base = corr.config.sampler
    if base.name != "dpmpp_2m" or base.sigmas is None:
        base = SamplerConfig.few_step(network_batch=base.network_batch)
    d = corr.config.diffusion
    karras = karras_sigmas(len(base.sigmas), d.sigma_min, d.sigma_max, d.rho).tolist()[:-1]
    starts = [list(x) for x in (starts or (base.sigmas, karras))]
    w = load_windows(corr, val_file, max_windows)
    sampler = base.model_copy(update={"network_batch": min(16, members * len(w.index))})

    def crps_at(levels) -> dict[str, float]:
        cfg = sampler.model_copy(update={"sigmas": [float(x) for x in levels], "steps": len(levels)})
        return {v: sc[0] for v, sc in ensemble_scores(corr, w, cfg, members, seed)[0].items()}

    ref = crps_at(base.sigmas)

    def objective(log_sig: np.ndarray) -> float:
        levels = np.exp(log_sig)
        if np.any(np.diff(levels) >= 0):
            return 10.0  # not strictly decreasing
        c = crps_at(levels)
        return float(np.mean([c[v] / ref[v] for v in ref]))

    x0 = min((np.log(np.array(st, float)) for st in starts), key=objective)
    res = minimize(objective, x0, method="Nelder-Mead", options=dict(maxfev=iterations, xatol=1e-3, fatol=1e-4))
    best = res.x if res.fun < objective(x0) else x0
    return [float(x) for x in np.exp(best)], 1.0, float(min(res.fun, objective(x0)))


def few_step_quality(checkpoint: str | os.PathLike, test_file: str | os.PathLike, members: int = 16,
                     max_windows: int | None = 40, reference_steps: int = 20, seed: int = 0,
                     network_batch: int = 16, include_bf16: bool = True,
                     extra_sigmas: dict[str, Sequence[float]] | None = None) -> Iterator[QualityRow]:
    """Fair CRPS and spread/RMSE of the corrected 12 h forecast on held-out windows: reference Heun-`reference_steps`
    (Karras schedule, 2n−1 evaluations) vs the checkpoint's few-step sampler (also under bf16 autocast, with a
    second seed as the Monte-Carlo noise floor, and with any `extra_sigmas` schedules {label: σ levels}).

    Scores are of the corrected state (forecast + sampled residual, physical bounds applied) against
    `reference_{v}`, area-weighted over ocean cells and averaged over windows, per variable. Same seeds and windows
    for every sampler, so the difference is the sampler's alone (plus Monte-Carlo noise of `members` members).
    Yields the rows (what, value, goal, met) as they are measured: sampling every schedule takes a while.
    """
    corr = Corrector.load(checkpoint, device="cpu")
    if corr.kind != "diffusion" or corr.mode != "residual":
        raise ValueError(f"{checkpoint}: few_step_quality needs a residual diffusion corrector, got "
                         f"{corr.kind}/{corr.mode}")
    w = load_windows(corr, test_file, max_windows)
    few = corr.config.sampler.model_copy(update={"network_batch": network_batch})
    if few.name != "dpmpp_2m":  # the checkpoint samples with Heun: score the tuned few-step schedule instead
        few = SamplerConfig.few_step(network_batch=network_batch)
    ref = SamplerConfig(name="heun", steps=reference_steps, network_batch=network_batch)
    few_label = f"{few.name} {few.steps} levels ({network_evaluations(few.name, few.steps)} NFE)"
    runs = [(f"heun-{reference_steps} ({network_evaluations('heun', reference_steps)} NFE)", ref, "fp32", seed),
            (few_label, few, "fp32", seed),
            (few_label + ", other seed", few, "fp32", seed + 1)]
    if include_bf16:
        runs.append((few_label + ", bf16 autocast", few, "bf16", seed))
    d = corr.config.diffusion
    karras = karras_sigmas(4, d.sigma_min, d.sigma_max, d.rho).tolist()[:-1]  # the 4-level Karras schedule
    extra = {"dpmpp_2m Karras ρ=7 σ=" + "/".join(f"{x:.4g}" for x in karras): karras, **(extra_sigmas or {})}
    for label, levels in extra.items():
        cfg = few.model_copy(update={"name": "dpmpp_2m", "sigmas": [float(x) for x in levels],
                                     "steps": len(levels)})
        runs.append((f"{label} ({network_evaluations('dpmpp_2m', len(levels))} NFE)", cfg, "fp32", seed))
    yield ("data", f"{checkpoint} on {test_file}: {len(w.index)} windows, {members} members, "
                             f"{network_params(corr) / 1e6:.3f} M parameters", "", None)
    weights = metrics.ocean_weights(w.mask)
    uncorrected = {v: float(metrics.rmse(xr.DataArray(w.forecast[v], dims=("time", "y", "x")),
                                         xr.DataArray(w.reference[v], dims=("time", "y", "x")), weights, keep=()))
                   for v in corr.variables}
    yield ("uncorrected forecast RMSE", ", ".join(f"{v} {uncorrected[v]:.4g}" for v in corr.variables), "", None)
    scores = {}
    for label, sampler, prec, sd in runs:
        scores[label], wall = ensemble_scores(corr, w, sampler, members, sd, prec)
        yield (f"{label}: sampling wall time", f"{wall:.1f} s ({wall / len(w.index) / members * 1e3:.1f} "
                                                f"ms per member and step)", "", None)
    ref_label = runs[0][0]
    for label in scores:
        is_ref = label == ref_label
        rel = {v: scores[label][v][0] / scores[ref_label][v][0] - 1 for v in corr.variables}
        worst = max(rel.values())  # the largest CRPS increase; being better than the reference is fine
        for v in corr.variables:
            c, ssr, rm = scores[label][v]
            yield (f"{label}: {v}",
                   f"CRPS {c:.4g}" + ("" if is_ref else f" ({rel[v] * 100:+.1f} %)") +
                   f", spread/RMSE {ssr:.2f}, ens-mean RMSE {rm:.4g}", "", None)
        if not is_ref:
            yield (f"{label}: CRPS change vs reference, mean over variables (largest increase)",
                   f"{np.mean(list(rel.values())) * 100:+.1f} % ({worst * 100:+.1f} %)", "≤ +5 %", worst <= 0.05)
