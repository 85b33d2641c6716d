"""PNG figures of an evaluation (matplotlib, Agg backend): scores vs lead, rank histograms, spectra, deformation
PDFs, scaling β(q), P90 shear, maps at chosen leads, and long-run domain means against the truth.

Every function takes the metrics dataset of `training.evaluation.evaluate` (or plain arrays), writes one PNG
atomically and returns its path, so figures can be re-drawn from a saved metrics.nc.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from icecorr.base.files import atomic_path  # noqa: E402
from icecorr.base.variables import VARIABLES  # noqa: E402
from training.evaluation.alignment import Aligned  # noqa: E402
from training.evaluation.field_stats import nearest_leads  # noqa: E402

TRUTH_COLOUR = "black"


def units_label(name: str) -> str:
    """Units of a variable for axis labels ('m s⁻¹'); `speed` has the velocities' units, unknown names none."""
    entry = VARIABLES.get("siu" if name == "speed" else name)
    return entry["units"].replace("-1", "⁻¹") if entry else ""


def _colours(names: Sequence[str]) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    out = {"truth": TRUTH_COLOUR}
    for i, n in enumerate(x for x in names if x != "truth"):
        out[n] = cycle[i % len(cycle)]
    return out


def _save(fig: plt.Figure, path: Path) -> Path:
    path = Path(path)
    try:
        with atomic_path(path) as tmp:  # the temporary name has no image suffix: the format is given
            fig.savefig(tmp, dpi=90, format=path.suffix[1:] or "png")  # no bbox "tight": it draws every figure twice
    finally:
        plt.close(fig)
    return path


def _subplots(nrows: int = 1, ncols: int = 1, figsize=(4.0, 3.0), squeeze: bool = True):
    """Fixed margins instead of tight/constrained layout, which cost seconds per figure on a busy CPU."""
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=squeeze)
    w, h = figsize  # margins in inches, so labels fit at every figure size
    fig.subplots_adjust(left=0.75 / w, right=1 - 0.2 / w, bottom=0.55 / h, top=1 - 0.4 / h, wspace=0.45,
                        hspace=0.55)
    return fig, axes


def _tidy_log(ax) -> None:
    """Log axes: no minor tick labels (they overlap on narrow panels)."""
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())


def _style(name: str) -> dict:
    """Truth drawn thick and underneath, so identical model curves remain visible on top of it."""
    return {"lw": 2.2, "zorder": 1} if name == "truth" else {"lw": 1.0, "zorder": 2}


def _days(lead_hours) -> np.ndarray:
    return np.asarray(lead_hours, dtype=float) / 24.0


def plot_scores_vs_lead(metrics: xr.Dataset, path: Path) -> Path:
    """RMSE (solid; ensemble mean for ensembles) and spread (dashed) against lead, one panel per variable."""
    variables = [str(v) for v in metrics["variable"].values]
    models = [str(m) for m in metrics["model"].values]
    col = _colours(models)
    fig, axes = _subplots(1, len(variables), figsize=(3.2 * len(variables), 3.0), squeeze=False)
    for ax, v in zip(axes[0], variables):
        for m in models:
            r = metrics["rmse"].sel(model=m, variable=v)
            ax.plot(_days(r["lead"]), r, color=col[m], label=f"{m} RMSE")
            if "spread" in metrics and np.isfinite(metrics["spread"].sel(model=m, variable=v)).any():
                s = metrics["spread"].sel(model=m, variable=v)
                ax.plot(_days(s["lead"]), s, color=col[m], ls="--", label=f"{m} spread")
        if "floor_ratio" in metrics and "coarse" in models:  # the floor ratio times this coarse RMSE
            floor = metrics["floor_ratio"].sel(variable=v) * metrics["rmse"].sel(model="coarse", variable=v)
            ax.plot(_days(floor["lead"]), floor, color="k", ls="--", lw=1.5, label="predictability floor")
        ax.set_title(v)
        ax.set_xlabel("lead (days)")
        ax.set_ylabel(f"({units_label(v)})")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    return _save(fig, path)


def plot_nrmse(metrics: xr.Dataset, path: Path) -> Path:
    """nRMSE = √(mean_v (RMSE_v/σ_v)²) of each model (ensemble mean for ensembles) against lead."""
    models = [str(m) for m in metrics["model"].values]
    col = _colours(models)
    fig, ax = _subplots(figsize=(4.5, 3.2))
    for m in models:
        n = metrics["nrmse"].sel(model=m)
        ax.plot(_days(n["lead"]), n, color=col[m], label=m)
    ax.set_xlabel("lead (days)")
    ax.set_ylabel("nRMSE")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_probabilistic_scores(metrics: xr.Dataset, path: Path) -> Path:
    """Per variable: spread/RMSE (top; ensembles only, 1 = calibrated) and fair CRPS (bottom) against lead."""
    variables = [str(v) for v in metrics["variable"].values]
    models = [str(m) for m in metrics["model"].values]
    col = _colours(models)
    fig, axes = _subplots(2, len(variables), figsize=(3.2 * len(variables), 6.0), squeeze=False)
    for k, v in enumerate(variables):
        top, bottom = axes[0, k], axes[1, k]
        for m in models:
            if "spread_skill_ratio" in metrics:
                s = metrics["spread_skill_ratio"].sel(model=m, variable=v)
                if np.isfinite(s).any():
                    top.plot(_days(s["lead"]), s, color=col[m], label=m)
            c = metrics["crps"].sel(model=m, variable=v)
            bottom.plot(_days(c["lead"]), c, color=col[m], label=m)
        top.axhline(1.0, color="grey", lw=0.8)
        top.set_title(f"spread/RMSE {v}", fontsize=9)
        bottom.set_title(f"CRPS {v} ({units_label(v)})", fontsize=9)
        bottom.set_xlabel("lead (days)")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    axes[1, 0].legend(fontsize=7)
    return _save(fig, path)


def plot_rank_histograms(metrics: xr.Dataset, path: Path) -> Path | None:
    """Rank histograms of the ensemble models (frequencies averaged over leads > 0), one panel per variable."""
    ens = [str(m) for m in metrics["model"].values if int(metrics["members"].sel(model=m)) > 1]
    if not ens or "rank_histogram" not in metrics:
        return None
    variables = [str(v) for v in metrics["variable"].values]
    fig, axes = _subplots(len(ens), len(variables), figsize=(2.6 * len(variables), 2.2 * len(ens)),
                             squeeze=False)
    for i, m in enumerate(ens):
        members = int(metrics["members"].sel(model=m))
        for k, v in enumerate(variables):
            h = metrics["rank_histogram"].sel(model=m, variable=v)
            h = h.sel(lead=h["lead"] > 0).mean("lead").isel(rank=slice(0, members + 1))
            ax = axes[i, k]
            ax.bar(np.arange(members + 1), h.values, color="tab:blue", width=0.9)
            ax.axhline(1.0 / (members + 1), color="black", lw=0.8)
            ax.set_title(f"{m}: {v}", fontsize=8)
            ax.set_xticks([0, members])
    return _save(fig, path)


def plot_spread_error(metrics: xr.Dataset, path: Path) -> Path | None:
    """Binned RMSE against spread (log–log) per variable, one line per ensemble model, the diagonal in grey."""
    if "spread_error_bin_spread" not in metrics:
        return None
    spread, err = metrics["spread_error_bin_spread"], metrics["spread_error_bin_rmse"]
    ens = [str(m) for m in metrics["model"].values if np.isfinite(spread.sel(model=m)).any()]
    if not ens:
        return None
    variables = [str(v) for v in metrics["variable"].values]
    col = _colours(ens)
    fig, axes = _subplots(1, len(variables), figsize=(2.8 * len(variables), 2.8), squeeze=False)
    for ax, v in zip(axes[0], variables):
        for m in ens:
            ax.loglog(spread.sel(model=m, variable=v), err.sel(model=m, variable=v), marker="o", ms=3,
                      color=col[m], label=m)
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        _tidy_log(ax)
        ax.set_title(v, fontsize=9)
        ax.set_xlabel("spread")
    axes[0, 0].set_ylabel("RMSE of the ensemble mean")
    axes[0, 0].legend(fontsize=7)
    return _save(fig, path)


def plot_spectra(metrics: xr.Dataset, path: Path) -> Path | None:
    """PSD against wavelength per field (rows) and lead (columns), truth in black."""
    if "spectrum_power" not in metrics:
        return None
    sources = [str(s) for s in metrics["source"].values]
    col = _colours(sources)
    fields = [str(f) for f in metrics["spectrum_field"].values]
    leads = metrics["spectrum_lead"].values
    bw = float(metrics["spectrum_power"].attrs.get("bin_width_km-1", 1.0))
    fig, axes = _subplots(len(fields), len(leads), figsize=(3.3 * len(leads), 2.8 * len(fields)), squeeze=False)
    wl = metrics["wavelength_km"].values
    for i, f in enumerate(fields):
        for j, lead in enumerate(leads):
            ax = axes[i, j]
            for s in sources:
                p = metrics["spectrum_power"].sel(source=s, spectrum_field=f, spectrum_lead=lead).values / bw
                ax.loglog(wl, np.where(p > 0, p, np.nan), color=col[s], label=s, **_style(s))
            ax.invert_xaxis()
            _tidy_log(ax)
            ax.set_title(f"{f}, {lead / 24:g} d", fontsize=9)
            ax.set_xlabel("wavelength (km)")
            ax.grid(alpha=0.3, which="both")
        axes[i, 0].set_ylabel("PSD (units² km)")
    axes[0, 0].legend(fontsize=7)
    return _save(fig, path)


def plot_deformation_pdfs(metrics: xr.Dataset, path: Path) -> Path:
    """PDFs of shear and |divergence| (day⁻¹), log–log, truth in black."""
    sources = [str(s) for s in metrics["source"].values]
    col = _colours(sources)
    fig, axes = _subplots(1, 2, figsize=(7.5, 3.2))
    x = metrics["pdf_centre"].values
    for ax, key, title in zip(axes, ("pdf_shear", "pdf_divergence"), ("shear", "|divergence|")):
        for s in sources:
            d = metrics[key].sel(source=s).values
            ax.loglog(x, np.where(d > 0, d, np.nan), color=col[s], label=s, marker=".", ms=3, **_style(s))
        _tidy_log(ax)
        ax.set_xlabel(f"{title} (day⁻¹)")
        ax.set_ylabel("PDF (day)")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def plot_scaling(metrics: xr.Dataset, path: Path) -> Path:
    """⟨ε̇^q⟩ against scale (gradient coarse-graining) and β(q) for both coarse-graining methods."""
    sources = [str(s) for s in metrics["source"].values]
    col = _colours(sources)
    fig, axes = _subplots(1, 2, figsize=(8, 3.3))
    L = metrics["scale_km"].values
    markers = ["o", "s", "^", "v", "D"]
    for s in sources:
        for k, q in enumerate(metrics["q"].values):
            mom = metrics["scaling_moments"].sel(source=s, coarse_graining="gradient", q=q).values
            axes[0].loglog(L, mom, color=col[s], marker=markers[k % 5], ms=4, label=s if k == 0 else None,
                           **_style(s))
        for method, ls in (("gradient", "-"), ("magnitude", "--")):
            b = metrics["beta"].sel(source=s, coarse_graining=method)
            e = metrics["beta_stderr"].sel(source=s, coarse_graining=method)
            axes[1].errorbar(metrics["q"].values, b, yerr=np.nan_to_num(e), color=col[s], ls=ls, capsize=3,
                             label=f"{s} ({method})")
    axes[0].set_xlabel("scale L (km)")
    axes[0].set_ylabel("⟨ε̇_tot^q⟩ (day⁻q)")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("moment q")
    axes[1].set_ylabel("β(q)")
    _tidy_log(axes[0])
    axes[1].set_title(metrics["beta"].attrs.get("fit_range", "").replace(", ", ",\n", 1), fontsize=7)
    axes[1].legend(fontsize=6)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def plot_shear_p90(metrics: xr.Dataset, path: Path) -> Path:
    """Spatial P90 of shear against lead (truth in black)."""
    sources = [str(s) for s in metrics["source"].values]
    col = _colours(sources)
    fig, ax = _subplots(figsize=(4.5, 3.0))
    for s in sources:
        p = metrics["shear_p90"].sel(source=s)
        ax.plot(_days(p["lead"]), p, color=col[s], label=s, **_style(s))
    ax.set_xlabel("lead (days)")
    ax.set_ylabel("P90 shear (day⁻¹)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def centre_speed(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Ice speed (m s⁻¹) at cell centres from C-grid face velocities (closed walls: implicit zero west/south)."""
    u_w = np.concatenate([np.zeros(u.shape[:-1] + (1,)), u[..., :-1]], axis=-1)
    v_s = np.concatenate([np.zeros(v.shape[:-2] + (1, v.shape[-1])), v[..., :-1, :]], axis=-2)
    return np.hypot(0.5 * (u + u_w), 0.5 * (v + v_s))


def plot_maps(aligned: Mapping[str, Aligned], ocean: xr.DataArray, lead: float, path: Path, window: int = 0,
              member: int = 0) -> Path:
    """Maps at one lead: rows sic, sit, speed; columns truth, each model (ensemble mean) and one member of each
    ensemble. `aligned`: the evaluation's aligned runs; `ocean`: (y, x) mask, land cells (≤ 0) are blank."""
    first = next(iter(aligned.values()))
    land = ocean.values <= 0
    w = min(window, first.reference.sizes["window"] - 1)

    def fields(ds: xr.Dataset, reduce: str | None) -> dict[str, np.ndarray]:
        at = ds.sel(lead=lead).isel(window=min(w, ds.sizes["window"] - 1))
        if reduce == "mean":
            at = at.mean("member")
        elif reduce == "member":
            at = at.isel(member=min(member, at.sizes["member"] - 1))
        out = {"sic": at["sic"].values, "sit": at["sit"].values,
               "speed": centre_speed(at["siu"].values, at["siv"].values)}
        return {k: np.where(land, np.nan, a) for k, a in out.items()}

    columns = [("truth", fields(first.reference, None))]
    for label, a in aligned.items():
        if lead not in a.forecast["lead"].values:
            continue
        ens = "member" in a.forecast.dims
        columns.append((f"{label} (mean)" if ens else label, fields(a.forecast, "mean" if ens else None)))
        if ens:
            columns.append((f"{label} member {member}", fields(a.forecast, "member")))
    rows = ["sic", "sit", "speed"]
    fig, axes = _subplots(len(rows), len(columns), figsize=(2.4 * len(columns), 2.3 * len(rows)),
                             squeeze=False)
    for i, r in enumerate(rows):
        truth = columns[0][1][r]
        vmin, vmax = (0.0, 1.0) if r == "sic" else (0.0, float(np.nanmax(truth)) if np.isfinite(truth).any() else 1.0)
        for j, (title, f) in enumerate(columns):
            ax = axes[i, j]
            im = ax.imshow(f[r], origin="lower", vmin=vmin, vmax=vmax or 1.0,
                           cmap="Blues_r" if r == "sic" else "viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=8)
        axes[i, 0].set_ylabel(f"{r} ({units_label(r)})")
        fig.colorbar(im, ax=list(axes[i]), shrink=0.8)
    fig.suptitle(f"lead {lead / 24:g} days, window {w}", fontsize=9)
    return _save(fig, path)


def plot_long_run(runs: Mapping[str, xr.Dataset], truth: xr.Dataset, path: Path,
                  mask: np.ndarray | None = None) -> Path:
    """Domain-mean concentration and ice volume per area (sic·sit, m) against time for long runs and the truth.

    Datasets have `sic`, `sit` with dims (time, [member,] y, x); ensembles show the member mean and min–max range.
    Times may be CF datetimes or step indices (shown in days assuming 12 h steps).
    """
    fig, axes = _subplots(1, 2, figsize=(9, 3.2))
    col = _colours(["truth", *runs])

    def days(ds: xr.Dataset) -> np.ndarray:
        t = ds["time"].values
        if np.issubdtype(t.dtype, np.datetime64):
            return (t - t[0]) / np.timedelta64(1, "D")
        return np.arange(t.size) * 0.5

    def domain_mean(a: xr.DataArray) -> xr.DataArray:
        if mask is not None:
            a = a.where(xr.DataArray(np.asarray(mask) > 0, dims=("y", "x")))
        return a.mean(("y", "x"))

    for name, ds in [("truth", truth), *runs.items()]:
        for ax, quantity in zip(axes, ("sic", "volume")):
            a = ds["sic"] if quantity == "sic" else ds["sic"] * ds["sit"]
            m = domain_mean(a)
            t = days(ds)
            if "member" in m.dims:
                ax.fill_between(t, m.min("member"), m.max("member"), color=col[name], alpha=0.2)
                m = m.mean("member")
            ax.plot(t, m, color=col[name], label=name, **_style(name))
    axes[0].set_ylabel("domain-mean sic (1)")
    axes[1].set_ylabel("domain-mean ice volume sic·sit (m)")
    for ax in axes:
        ax.set_xlabel("time (days)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def evaluation_figures(metrics: xr.Dataset, aligned: Mapping[str, Aligned], ocean: xr.DataArray, out_dir: Path,
                       leads: Sequence[float], window: int = 0, member: int = 0) -> dict[str, Path]:
    """All figures of an evaluation (its metrics, aligned runs and (y, x) ocean mask), keyed by a short name (used
    as captions by the report)."""
    out_dir = Path(out_dir)
    m = metrics
    figs: dict[str, Path | None] = {
        "scores": plot_scores_vs_lead(m, out_dir / "rmse_spread_vs_lead.png"),
        "nrmse": plot_nrmse(m, out_dir / "nrmse_vs_lead.png"),
        "probabilistic_scores": plot_probabilistic_scores(m, out_dir / "spread_skill_crps_vs_lead.png"),
        "rank_histograms": plot_rank_histograms(m, out_dir / "rank_histograms.png"),
        "spread_error": plot_spread_error(m, out_dir / "spread_error.png"),
        "spectra": plot_spectra(m, out_dir / "spectra.png"),
        "deformation_pdfs": plot_deformation_pdfs(m, out_dir / "deformation_pdfs.png"),
        "scaling": plot_scaling(m, out_dir / "deformation_scaling.png"),
        "shear_p90": plot_shear_p90(m, out_dir / "shear_p90.png"),
    }
    first = next(iter(aligned.values()))
    for lead in nearest_leads(leads, first.reference["lead"].values):
        figs[f"maps_{lead:g}h"] = plot_maps(aligned, ocean, lead, out_dir / f"maps_{lead:g}h.png", window, member)
    return {k: v for k, v in figs.items() if v is not None}
