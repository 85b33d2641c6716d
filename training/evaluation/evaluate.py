"""`icecorr evaluate`: score forecast runs against the reference, write metrics (NetCDF + CSV), plots and a report.

Run files (one label → one file or a list of files, one per window):
  * `(time, [member,] y, x)`: one window per file. The lead of each record comes from the `step` variable
    (completed 12 h steps, as written by `coupling.output.TrajectoryWriter`), else from the CF `time` (time − first
    time + the first lead, see `EvaluateConfig.first_lead_hours`), else `time` is a record index.
  * `(window, time, [member,] y, x)`: several windows; `time` is the lead (`step` variable, a timedelta, or an
    index); an optional `valid_time (window, time)` datetime variable aligns it with a trajectory reference.
  A `member` dim of size 1, or none, is a deterministic run.
Reference (coarse-grained truth): a `(time, y, x)` trajectory with CF times (records are picked at each run record's
valid time); or `(window, time, y, x)` / a list of per-window files aligned with the runs by position; or a
training-pair file (`initial_*`, `reference_*`; turned into a trajectory). Its `mask` (1 = ocean) selects the scored
cells. NaN in the reference is missing data. Grids and variables must agree exactly: any mismatch is an
`InputError` naming the file and the field.

All scores are per lead (hours), area-weighted over ocean cells (closed-wall faces of siu/siv excluded).
"""
from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import xarray as xr
import yaml

from icecorr.base.errors import InputError
from icecorr.base.files import atomic_path
from icecorr.base.progress import progress
from training.evaluation import metrics as M
from training.evaluation.alignment import Aligned, PathLike, align, grid_spacing, read_reference
from training.evaluation.coastal import region_masks, region_scores
from training.evaluation.config import EvaluateConfig
from training.evaluation.field_stats import FieldStats, field_stats, nearest_leads, small_scale_ratio, stats_dataset
from training.evaluation.floor_file import floor_path, floor_scores
from training.evaluation.metrics_file import write_metrics_netcdf
from training.evaluation.scores import (climatology, climatology_baseline, drop_strawman_scores, persistence,
                                        score_labels)


@dataclass
class Evaluation:
    """Everything `run_evaluate` computed: the metrics dataset and the aligned inputs (for maps)."""

    metrics: xr.Dataset
    aligned: dict[str, Aligned]
    dx: float
    ocean: xr.DataArray


def evaluate(run_paths: Mapping[str, PathLike | Sequence[PathLike]],
             reference: PathLike | Sequence[PathLike], leads: Sequence[float] | None = None,
             config: EvaluateConfig | None = None) -> Evaluation:
    """Read, align and score every run; `leads` (hours; default `spectrum_leads_hours`) select the spectra
    (nearest available lead)."""
    cfg = config or EvaluateConfig()
    leads = cfg.spectrum_leads_hours if leads is None else leads
    if not run_paths:
        raise InputError(None, "run_paths", "no runs to evaluate")
    for v in ("sic", "siu", "siv", "sit"):
        if v not in cfg.variables:
            raise InputError(None, "evaluate.variables", f"'{v}' is needed for deformation/spectra/ice edge")
    ref_raw, ref_files = read_reference(reference, cfg.variables, cfg.velocity_reference == "mean12h")
    ref0 = ref_raw[0] if isinstance(ref_raw, list) else ref_raw
    dx = grid_spacing(ref0, ref_files[0], cfg)
    ny, nx = ref0.sizes["y"], ref0.sizes["x"]
    ocean = ref0["mask"].fillna(0).astype(np.float64) if "mask" in ref0 else xr.DataArray(np.ones((ny, nx)),
                                                                                           dims=M.SPACE)
    ocean = ocean.drop_vars(list(ocean.coords))
    if ocean.dims != M.SPACE:
        raise InputError(ref_files[0], "mask", f"has dims {ocean.dims}, expected (y, x)")
    weights = M.ocean_weights(ocean, cell_area=(dx / 1000.0) ** 2)  # km²
    aligned = {label: align(label, p, ref_raw, ref_files, cfg) for label, p in run_paths.items()}
    if cfg.persistence and "persistence" not in aligned:
        baseline = persistence(next(iter(aligned.values())))
        if baseline is not None:
            aligned["persistence"] = baseline
    if cfg.climatology and "climatology" not in aligned:
        clim_raw, _ = read_reference(cfg.climatology, cfg.variables)
        clim = xr.concat(clim_raw, "time") if isinstance(clim_raw, list) else clim_raw
        aligned["climatology"] = climatology_baseline(next(iter(aligned.values())), clim,
                                                      cfg.climatology_window_days)
    sigma = climatology(list(aligned.values()), weights, cfg)

    labels = list(aligned)
    scores = score_labels(list(progress(aligned.values(), desc="evaluate", unit="run")), weights, cfg)
    masks = region_masks(ocean, cfg.coastal_band_cells)
    if masks is not None:  # the coastal band apart from the open sea (training.evaluation.coastal)
        scores = xr.merge([scores, region_scores(aligned, weights, masks, cfg)], join="outer", compat="override")
    scores = drop_strawman_scores(scores)
    scores["nrmse"] = M.nrmse(scores["rmse"], sigma)
    scores["members"] = ("model", [a.members for a in aligned.values()])
    scores["sigma"] = ("variable", [sigma[v] for v in cfg.variables])

    first = next(iter(aligned.values()))
    common = np.intersect1d(first.forecast["lead"].values, first.reference["lead"].values)
    for a in aligned.values():
        common = np.intersect1d(common, a.forecast["lead"].values)
    spectrum_leads = nearest_leads(leads, common) if common.size else []
    sources: dict[str, FieldStats] = {
        "truth": field_stats(first.reference, ocean.values, dx, spectrum_leads, cfg)}
    for label, a in aligned.items():
        sources[label] = field_stats(a.forecast, ocean.values, dx, spectrum_leads, cfg)
    stats = stats_dataset(sources, spectrum_leads, cfg)
    metrics = xr.merge([scores, stats], join="outer", compat="override")
    if spectrum_leads:
        metrics["small_scale_ratio"] = small_scale_ratio(sources, labels, spectrum_leads, cfg)
    floor = floor_path(cfg.floor, ref_files)
    if floor is not None:  # the twin's predictability floor beside the pair files (`icecorr floor`)
        metrics = xr.merge([metrics, floor_scores(floor, cfg.variables, metrics["lead"].values)], join="left")
    _annotate(metrics, cfg, dx, run_paths, aligned, ref_files)
    return Evaluation(metrics=metrics, aligned=aligned, dx=dx, ocean=ocean)


def _annotate(ds: xr.Dataset, cfg: EvaluateConfig, dx: float, run_paths, aligned, ref_files) -> None:
    units = {"rmse": "variable units", "mae": "variable units", "bias": "variable units (forecast − reference)",
             "crps": "variable units", "spread": "variable units", "iiee": "km2", "nrmse": "1",
             "spread_skill_ratio": "1", "spread_skill_ratio_raw": "1",
             "ensemble_mean_rmse_fair": "variable units"}
    for k, u in units.items():
        if k in ds:
            ds[k].attrs.setdefault("units", u)
    if "crps" in ds:
        ds["crps"].attrs["estimator"] = "fair ensemble CRPS (Ferro 2014); MAE for deterministic runs"
    if "spread_skill_ratio" in ds:
        ds["spread_skill_ratio"].attrs["definition"] = "sqrt((M+1)/M) * spread / ensemble-mean RMSE"
    if "spread_skill_ratio_raw" in ds:  # beside the corrected one: shows the size of the finite-M factor
        ds["spread_skill_ratio_raw"].attrs["definition"] = ("spread / ensemble-mean RMSE, no finite-ensemble factor "
                                                            "(sqrt(M/(M+1)) for a calibrated ensemble)")
    if "ensemble_mean_rmse_fair" in ds:
        ds["ensemble_mean_rmse_fair"].attrs["definition"] = (
            "sqrt(max(MSE of the M-member mean - mean unbiased member variance / M, 0)): "
            "unbiased estimate of the infinite-ensemble mean's MSE (Leutbecher & Palmer 2008)")
    ds.attrs.update({
        "producer": "icecorr evaluate", "grid_dx": dx, "reference": ", ".join(ref_files),
        "runs": "; ".join(f"{k}: {', '.join(a.files)}" for k, a in aligned.items()),
        "config": yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
        "weighting": "cell area over ocean cells; NaN reference = missing; siu/siv wall faces excluded",
        "coastal_band_cells": cfg.coastal_band_cells,
    })


def metrics_rows(metrics: xr.Dataset) -> list[dict[str, object]]:
    """Long-format rows (model, variable, lead_hours, metric, value) of every scalar score."""
    rows: list[dict[str, object]] = []
    per_lead = [k for k in metrics.data_vars if set(metrics[k].dims) <= {"model", "variable", "lead"}
                and "lead" in metrics[k].dims and "model" in metrics[k].dims]
    for k in per_lead:
        da = metrics[k]
        for m in metrics["model"].values:
            sub = da.sel(model=m)
            for var in (sub["variable"].values if "variable" in sub.dims else [""]):
                s = sub.sel(variable=var) if "variable" in sub.dims else sub
                for lead, value in zip(s["lead"].values, s.values):
                    if np.isfinite(value):
                        rows.append({"model": str(m), "variable": str(var), "lead_hours": float(lead),
                                     "metric": k, "value": float(value)})
    for k in ("spread_error_slope", "spread_error_ratio_low", "spread_error_ratio_high"):  # (model, variable)
        if k in metrics:
            for m in metrics["model"].values:
                for var in metrics["variable"].values:
                    value = float(metrics[k].sel(model=m, variable=var))
                    if np.isfinite(value):
                        rows.append({"model": str(m), "variable": str(var), "lead_hours": "", "metric": k,
                                     "value": value})
    for src in metrics["source"].values:
        for method in metrics["coarse_graining"].values:
            for q, b in zip(metrics["q"].values, metrics["beta"].sel(source=src, coarse_graining=method).values):
                rows.append({"model": str(src), "variable": "deformation", "lead_hours": "",
                             "metric": f"beta_q{q:g}_{method}", "value": float(b)})
    if "small_scale_ratio" in metrics:
        r = metrics["small_scale_ratio"]
        for m in r["model"].values:
            for f in r["spectrum_field"].values:
                for lead in r["spectrum_lead"].values:
                    rows.append({"model": str(m), "variable": str(f), "lead_hours": float(lead),
                                 "metric": "small_scale_power_ratio",
                                 "value": float(r.sel(model=m, spectrum_field=f, spectrum_lead=lead))})
    return rows


def write_metrics_csv(metrics: xr.Dataset, path: Path) -> Path:
    """Long-format CSV of `metrics_rows` (atomic)."""
    rows = metrics_rows(metrics)

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["model", "variable", "lead_hours", "metric", "value"])
        w.writeheader()
        w.writerows(rows)
    return path


def parse_run_specs(specs: Sequence[str]) -> dict[str, list[Path]]:
    """`label=path[,path…]` strings (paths may be globs, expanded in sorted order: one file per window) → run_paths.

    For the CLI: `icecorr evaluate … --run coarse=out/coarse_w*.nc --run diffusion=out/diff_w*.nc`.
    """
    import glob

    runs: dict[str, list[Path]] = {}
    for spec in specs:
        label, sep, rest = spec.partition("=")
        if not sep or not label.strip() or not rest.strip():
            raise InputError(None, "run", f"{spec!r}: expected label=path[,path…]")
        if label in runs:
            raise InputError(None, "run", f"label '{label}' given twice")
        paths: list[Path] = []
        for item in rest.split(","):
            matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
            if not matches:
                raise InputError(item, "run", f"no file matches the pattern (label '{label}')")
            paths += [Path(m) for m in matches]
        runs[label.strip()] = paths
    return runs


def run_evaluate(run_paths: Mapping[str, PathLike | Sequence[PathLike]], reference: PathLike | Sequence[PathLike],
                 out_dir: PathLike, leads: Sequence[float] | None = None,
                 config: EvaluateConfig | None = None) -> Path:
    """Evaluate every labelled run against `reference`; write metrics.nc, metrics.csv, PNG plots and report.md
    into `out_dir`; return the report path. `leads` (hours; default `spectrum_leads_hours`) choose the maps and
    spectra shown."""
    from training.evaluation import plots, report  # matplotlib only when outputs are written

    cfg = config or EvaluateConfig()
    leads = cfg.spectrum_leads_hours if leads is None else leads
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ev = evaluate(run_paths, reference, leads, cfg)
    write_metrics_netcdf(ev.metrics, out / "metrics.nc")
    write_metrics_csv(ev.metrics, out / "metrics.csv")
    figures: dict[str, Path] = {}
    if cfg.plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices in maps of masked cells
            figures = plots.evaluation_figures(ev.metrics, ev.aligned, ev.ocean, out, leads, cfg.map_window,
                                               cfg.map_member)
    return report.write_report(ev.metrics, figures, out / "report.md", cfg.summary_leads_hours)
