"""Markdown report of an evaluation: summary tables (per model; per variable and model) and the figures."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from icecorr.base.files import write_text_atomic
from training.evaluation.coastal import coastal_table
from training.evaluation.floor_file import floor_section
from training.evaluation.spread_reliability import RELIABILITY_NOTE, reliability_table

CAPTIONS = {
    "scores": "RMSE (solid; of the ensemble mean for ensembles) and ensemble spread (dashed) against lead.",
    "nrmse": "nRMSE = √(mean_v (RMSE_v/σ_v)²) against lead (ensemble mean for ensembles).",
    "probabilistic_scores": "Spread/RMSE with the √((M+1)/M) correction (1 = calibrated; ensembles only) and "
                            "fair CRPS (MAE for deterministic runs) against lead.",
    "rank_histograms": "Rank histograms (leads > 0 pooled; ties broken at random). Flat = calibrated, "
                       "U-shaped = under-dispersive.",
    "spectra": "Isotropic power spectra (PSD) of concentration, thickness and velocity (u + v) at chosen leads.",
    "deformation_pdfs": "PDFs of shear and |divergence| (day⁻¹), leads > 0 and members pooled, ice cells only.",
    "scaling": "Multifractal scaling ⟨ε̇_tot^q⟩ ∝ L^-β(q): moments against scale (gradient coarse-graining) "
               "and β(q) for gradient (solid) and block-mean-of-magnitude (dashed, Finn et al. 2024) "
               "coarse-graining.",
    "spread_error": "Spread–error reliability: RMSE of the ensemble mean against the spread, per class of equal "
                    "area by spread (leads ≥ 1 day); the diagonal is conditional calibration.",
    "shear_p90": "Spatial 90th percentile of shear against lead, mean over windows and members.",
}


def _fmt(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.3g}"


def _lead_label(hours: float) -> str:
    return f"{hours:g} h" if hours < 48 else f"{hours / 24:g} d"


def _nearest(da: xr.DataArray, lead: float) -> tuple[float, xr.DataArray]:
    leads = da["lead"].values
    ok = np.isfinite(da).any([d for d in da.dims if d != "lead"]).values if da.ndim > 1 else np.isfinite(da.values)
    cand = leads[ok] if ok.any() else leads
    chosen = float(cand[np.argmin(np.abs(cand - lead))])
    return chosen, da.sel(lead=chosen)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def model_table(m: xr.Dataset, short: float, long: float) -> str:
    """One row per model (and the truth for deformation/spectra): skill summary, scaling and small scales."""
    s_lead, n_short = _nearest(m["nrmse"], short)
    l_lead, n_long = _nearest(m["nrmse"], long)
    header = ["model", "members", f"nRMSE {_lead_label(s_lead)}", f"nRMSE {_lead_label(l_lead)}"]
    has_iiee = "iiee" in m
    if has_iiee:
        _, iiee_long = _nearest(m["iiee"], long)
        header.append(f"IIEE {_lead_label(l_lead)} (km²)")
    q = m["q"].values
    header += [f"β({qq:g})" for qq in q] + [f"β({qq:g}) block-mean" for qq in q if qq > 1]
    header.append("P90 shear (day⁻¹)")
    ratio = m.get("small_scale_ratio")
    if ratio is not None:
        r_lead = float(ratio["spectrum_lead"].values[-1])
        header += [f"small-scale power {f} {_lead_label(r_lead)}" for f in ratio["spectrum_field"].values]
    rows = []
    for src in m["source"].values:
        src = str(src)
        is_model = src in m["model"].values
        row = [src]
        if is_model:
            row += [str(int(m["members"].sel(model=src))), _fmt(float(n_short.sel(model=src))),
                    _fmt(float(n_long.sel(model=src)))]
            if has_iiee:
                row.append(_fmt(float(iiee_long.sel(model=src))))
        else:
            row += ["–", "–", "–"] + (["–"] if has_iiee else [])
        b = m["beta"].sel(source=src)
        row += [_fmt(float(b.sel(coarse_graining="gradient", q=qq))) for qq in q]
        row += [_fmt(float(b.sel(coarse_graining="magnitude", q=qq))) for qq in q if qq > 1]
        p90 = m["shear_p90"].sel(source=src)
        row.append(_fmt(float(p90.sel(lead=p90["lead"] > 0).mean())))
        if ratio is not None:
            row += [_fmt(float(ratio.sel(model=src, spectrum_field=f, spectrum_lead=r_lead))) if is_model else "1"
                    for f in ratio["spectrum_field"].values]
        rows.append(row)
    return _table(header, rows)


def variable_table(m: xr.Dataset, short: float, long: float) -> str:
    """One row per (variable, model): RMSE at the short and long lead, spread/RMSE, CRPS and bias."""
    s_lead, _ = _nearest(m["rmse"], short)
    l_lead, _ = _nearest(m["rmse"], long)
    header = ["variable", "model", f"RMSE {_lead_label(s_lead)}", f"RMSE {_lead_label(l_lead)}",
              f"spread/RMSE {_lead_label(s_lead)}", f"spread/RMSE {_lead_label(l_lead)}",
              f"CRPS {_lead_label(l_lead)}", f"bias {_lead_label(l_lead)}"]
    rows = []
    ssr = m.get("spread_skill_ratio")
    for v in m["variable"].values:
        for mod in m["model"].values:
            def at(name: str, lead: float) -> float:
                da = m.get(name)
                if da is None or lead not in da["lead"].values:
                    return float("nan")
                return float(da.sel(model=mod, variable=v, lead=lead))
            rows.append([str(v), str(mod), _fmt(at("rmse", s_lead)), _fmt(at("rmse", l_lead)),
                         _fmt(at("spread_skill_ratio", s_lead)) if ssr is not None else "–",
                         _fmt(at("spread_skill_ratio", l_lead)) if ssr is not None else "–",
                         _fmt(at("crps", l_lead)), _fmt(at("bias", l_lead))])
    return _table(header, rows)


def finite_ensemble_table(m: xr.Dataset, short: float, long: float) -> str | None:
    """One row per (variable, ensemble model): ensemble-mean RMSE raw and corrected to M → ∞, spread/RMSE with and
    without the √((M+1)/M) factor; None when no model has ≥ 2 members (the fair scores are then absent)."""
    fair = m.get("ensemble_mean_rmse_fair")
    if fair is None:
        return None
    models = [mod for mod in m["model"].values if np.isfinite(fair.sel(model=mod)).any()]
    if not models:
        return None
    s_lead, _ = _nearest(fair, short)
    l_lead, _ = _nearest(fair, long)
    header = ["variable", "model", "members"]
    header += [f"{name} {_lead_label(lead)}" for lead in (s_lead, l_lead)
               for name in ("RMSE", "RMSE fair (M → ∞)", "spread/RMSE raw", "spread/RMSE")]

    def at(name: str, mod, v, lead: float) -> float:
        da = m.get(name)
        if da is None or lead not in da["lead"].values:
            return float("nan")
        return float(da.sel(model=mod, variable=v, lead=lead))

    rows = []
    for v in m["variable"].values:
        for mod in models:
            row = [str(v), str(mod), str(int(m["members"].sel(model=mod)))]
            for lead in (s_lead, l_lead):
                row += [_fmt(at(k, mod, v, lead)) for k in ("ensemble_mean_rmse", "ensemble_mean_rmse_fair",
                                                            "spread_skill_ratio_raw", "spread_skill_ratio")]
            rows.append(row)
    return _table(header, rows)


FINITE_ENSEMBLE_NOTE = (
    "The mean of M members carries sampling variance s²/M, so an M-member ensemble-mean RMSE is above the "
    "infinite-ensemble one by about √(1 + 1/M) when spread/RMSE ≈ 1 (6 % for M = 8). \"RMSE fair\" removes it: "
    "√max(MSE − mean(s²)/M, 0), unbiased for the MSE of the M → ∞ mean. \"spread/RMSE raw\" is spread / RMSE "
    "without the √((M+1)/M) factor (√(M/(M+1)) for a calibrated ensemble); \"spread/RMSE\" is the corrected ratio "
    "of the summary by variable (1 = calibrated for any M; Fortin et al. 2014).")


def report_text(m: xr.Dataset, figures: Mapping[str, Path], md_dir: Path,
                summary_leads_hours: Sequence[float] = (12.0, 360.0)) -> str:
    """The report as markdown; figure links are relative to `md_dir`."""
    short, long = summary_leads_hours
    sigma = ", ".join(f"{v} {_fmt(float(s))}" for v, s in zip(m["variable"].values, m["sigma"].values))
    parts = [
        "# icecorr evaluation report",
        "",
        f"Reference: `{m.attrs.get('reference', '?')}`  ",
        f"Runs: {m.attrs.get('runs', '?')}  ",
        f"Grid: dx = {float(m.attrs.get('grid_dx', np.nan)) / 1000:g} km. Scores are area-weighted over ocean cells "
        "(closed-wall faces of siu/siv excluded), NaN reference values are missing, means are taken over windows and "
        "space before the square root. Ensemble models are scored by their ensemble mean (RMSE, bias, nRMSE); "
        "CRPS is the fair ensemble estimator (MAE for deterministic runs).  ",
        f"Climatological σ for nRMSE: {sigma}.  ",
        f"Deformation scaling: {m['beta'].attrs.get('fit_range', '')}; β(1) of the block-mean method is 0 by "
        "construction (block means conserve the mean), so β(q ≥ 2) is reported for it.",
        "",
        "## Summary by model",
        "",
        model_table(m, short, long),
        "",
        "## Summary by variable",
        "",
        variable_table(m, short, long),
        "",
    ]
    parts += floor_section(m)
    coastal = coastal_table(m, short)
    if coastal is not None:
        parts += ["## Coastal band and open sea", "", coastal, ""]
    finite = finite_ensemble_table(m, short, long)
    if finite is not None:
        parts += ["## Finite-ensemble correction", "", FINITE_ENSEMBLE_NOTE, "", finite, ""]
    reliability = reliability_table(m)
    if reliability is not None:
        parts += ["## Spread–error reliability", "", RELIABILITY_NOTE, "", reliability, ""]
    if figures:
        parts += ["## Figures", ""]
        for key, path in figures.items():
            caption = CAPTIONS.get(key, key.replace("_", " ") if not key.startswith("maps_")
                                   else f"Maps at lead {key[5:]}: truth, models (ensemble mean) and one member.")
            rel = os.path.relpath(Path(path), md_dir)
            parts += [f"### {key.replace('_', ' ')}", "", caption, "", f"![{key}]({rel})", ""]
    return "\n".join(parts)


def write_report(metrics: xr.Dataset, figures: Mapping[str, Path], path: Path,
                 summary_leads_hours: Sequence[float] = (12.0, 360.0)) -> Path:
    """Write report.md atomically and return its path."""
    path = Path(path)
    text = report_text(metrics, figures, path.parent, summary_leads_hours)
    return write_text_atomic(text, path)
