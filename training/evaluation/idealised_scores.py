"""Scores of the idealised cases (training.evaluation.idealised): per run and variable the RMSE against the
coarse-grained truth at fixed leads, its ratio to the coarse model's, ensemble spread/RMSE, and physical sanity
(NaN, bounds, domain ice volume against the reference, maximum speed); and the markdown report of all cases.

Every score comes from the repository's helpers: `training.evaluation.metrics` (RMSE, ensemble-mean RMSE, the
finite-ensemble spread/RMSE and fair RMSE), `training.evaluation.scores.variable_weights` (the always-zero wall faces
of siu/siv are not scored), `training.evaluation.longrun` (bound checks, domain means) and
`training.evaluation.plots.centre_speed`.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from icecorr.base.files import write_text_atomic
from icecorr.base.variables import ML_VARIABLES, STEP_HOURS
from training.evaluation import metrics as M
from training.evaluation.longrun import check_records, domain_means
from training.evaluation.plots import centre_speed
from training.evaluation.scores import variable_weights

#: scored leads (hours): 12 h, 1, 5 and 10 days
LEADS_HOURS = (12, 24, 120, 240)
#: scores kept per variable and lead (those an ensemble of one member lacks are left out)
KEPT = ("rmse", "spread", "spread_skill_ratio", "ensemble_mean_rmse_fair")


def _at_leads(da: xr.DataArray, hours: list[int]) -> xr.DataArray:
    """The records of `da` (time, …) at `hours` after its first, as a `lead` dim (hours)."""
    idx = [h // STEP_HOURS for h in hours]
    return da.isel(time=idx).rename(time="lead").assign_coords(lead=list(hours))


def _clean(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _scores(run: xr.Dataset, reference: xr.Dataset, weights: xr.DataArray, hours: list[int]) -> dict:
    """{score: {variable: {lead hours: value}}} of one run (ensemble mean and spread for M ≥ 2)."""
    out: dict = {k: {} for k in KEPT}
    for v in ML_VARIABLES:
        f, r = _at_leads(run[v], hours), _at_leads(reference[v], hours)
        w = variable_weights(v, weights)
        if "member" in f.dims and f.sizes["member"] >= 2:
            s = M.ensemble_scores(f, r, w, keep=("lead",))
        else:
            s = M.deterministic_scores(f.isel(member=0, drop=True) if "member" in f.dims else f, r, w, ("lead",))
        for k in KEPT:
            if k in s:
                out[k][v] = {str(h): _clean(s[k].sel(lead=h)) for h in hours}
    return {k: d for k, d in out.items() if d}


def _physical(ds: xr.Dataset, mask: np.ndarray) -> dict:
    """Per record: domain-mean ice volume per area sic·sit (m, member mean) and the largest centre speed (m s-1)
    over ocean cells and members; over the run: NaN count and hard-bound violations (0 ≤ sic ≤ 1, sit, snt ≥ 0).
    `ds`: (time, [member,] y, x), time first."""
    ocean = np.asarray(mask) > 0.5
    speed = centre_speed(ds["siu"].values, ds["siv"].values)[..., ocean]
    checks = check_records(ds, mask)
    return {"volume": domain_means(ds, mask)["volume"],
            "max_speed": np.nanmax(speed.reshape(speed.shape[0], -1), axis=1),
            "nan_count": int(sum(np.isnan(ds[v].values).sum() for v in ML_VARIABLES)),
            "hard_violations": checks["hard_violations"], "records": checks["records"]}


def _by_lead(per_record: np.ndarray, hours: list[int], have: list[int]) -> dict[str, float | None]:
    """{lead hours: the record's value} of a per-record series; None for the leads not in `have`."""
    return {str(h): _clean(per_record[h // STEP_HOURS]) if h in have else None for h in hours}


def score_case(reference: xr.Dataset, runs: Mapping[str, xr.Dataset], baseline: str = "coarse") -> dict:
    """Scores of every run of a case against `reference` (time, y, x; `mask` optional) at LEADS_HOURS (those the
    reference holds; a run that stopped early gets None beyond its last record): per run the scores of `_scores`,
    `ratio` (RMSE / the `baseline` run's RMSE, None where that is 0), the physical checks, and per emulator the
    verdict whether it beats the baseline at 12 h for every variable."""
    mask = reference["mask"].values if "mask" in reference else np.ones(reference["sic"].shape[-2:])
    weights = M.ocean_weights(mask)
    hours = [h for h in LEADS_HOURS if h // STEP_HOURS < reference.sizes["time"]]
    ref_phys = _physical(reference, mask)
    out = {"leads_hours": hours, "reference": {
        "volume": {str(h): _clean(ref_phys["volume"][h // STEP_HOURS]) for h in hours},
        "max_speed": {str(h): _clean(ref_phys["max_speed"][h // STEP_HOURS]) for h in hours}}, "scores": {}}
    for name, ds in runs.items():
        ds = ds.transpose("time", ...)  # the record axis first (check_records, _physical)
        have = [h for h in hours if h // STEP_HOURS < ds.sizes["time"]]
        s = _scores(ds, reference, weights, have) if have else {}
        phys = _physical(ds, mask)
        drift = phys["volume"] - ref_phys["volume"][:len(phys["volume"])]
        s.update(members=int(ds.sizes.get("member", 1)), nan_count=phys["nan_count"], records=phys["records"],
                 hard_violations=phys["hard_violations"], volume=_by_lead(phys["volume"], hours, have),
                 volume_drift=_by_lead(drift, hours, have), max_speed=_by_lead(phys["max_speed"], hours, have))
        out["scores"][name] = s
    base = out["scores"].get(baseline, {}).get("rmse", {})
    for name, s in out["scores"].items():
        s["ratio"] = {v: {h: (None if s.get("rmse", {}).get(v, {}).get(h) is None or not base.get(v, {}).get(h)
                              else s["rmse"][v][h] / base[v][h]) for h in map(str, hours)} for v in ML_VARIABLES}
    out["verdict"] = {name: beats_at_12h(s, base) for name, s in out["scores"].items() if name != baseline}
    return out


def beats_at_12h(scores: Mapping, baseline_rmse: Mapping) -> bool:
    """True if the run's 12 h RMSE is below the baseline's for every ML variable (a missing value: False)."""
    rmse = scores.get("rmse", {})
    return all(rmse.get(v, {}).get("12") is not None and baseline_rmse.get(v, {}).get("12") is not None
               and rmse[v]["12"] < baseline_rmse[v]["12"] for v in ML_VARIABLES)


def _fmt(x, f: str = "{:.3g}") -> str:
    return "—" if x is None else f.format(x)


def case_markdown(name: str, case: Mapping) -> list[str]:
    """The section of one case: its table (one row per run and lead), the status lines and the verdicts."""
    hours = case["leads_hours"]
    label = {h: (f"{h} h" if h < 24 else f"{h // 24} d") for h in hours}
    ref = case["reference"]
    lines = [f"## {name}", "", case["description"], "",
             "Reference (coarse-grained BBM truth): domain-mean volume sic·sit " +
             ", ".join(f"{label[h]} {_fmt(ref['volume'][str(h)], '{:.4f}')} m" for h in hours) +
             "; max speed " + ", ".join(f"{label[h]} {_fmt(ref['max_speed'][str(h)])}" for h in hours) +
             " m/s.", "",
             "| run | members | lead | " + " | ".join(f"RMSE {v} (÷ coarse)" for v in ML_VARIABLES) +
             " | spread/RMSE " + "/".join(ML_VARIABLES) + " | Δ volume (m) | max speed (m/s) |",
             "|---|---|---|" + "---|" * (len(ML_VARIABLES) + 3)]
    for run, s in case["scores"].items():
        for h in hours:
            k = str(h)
            cells = [f"{_fmt(s.get('rmse', {}).get(v, {}).get(k))} ({_fmt(s['ratio'][v][k])})"
                     for v in ML_VARIABLES]
            ssr = s.get("spread_skill_ratio")
            spread = "/".join(_fmt(ssr[v][k], "{:.2f}") for v in ML_VARIABLES) if ssr else "—"
            lines.append(f"| {run} | {s['members']} | {label[h]} | " + " | ".join(cells) +
                         f" | {spread} | {_fmt(s['volume_drift'][k], '{:+.3g}')} | {_fmt(s['max_speed'][k])} |")
    lines.append("")
    for run, info in case["runs"].items():
        s = case["scores"].get(run, {})
        bounds = ", ".join(f"{v}: {d['count']}" for v, d in s.get("hard_violations", {}).items()) or "none"
        status = "ok" if info["error"] is None else f"FAILED: {info['error'][:200]}"
        lines.append(f"- {run}: {status}; {s.get('records', 0)} records, NaN {s.get('nan_count', '—')}, "
                     f"bound violations {bounds}, " +
                     ("reused (--reuse)" if info.get("reused") else f"wall {_fmt(info['wall_seconds'], '{:.0f}')} s"))
    lines.append("")
    for run, ok in case["verdict"].items():
        lines.append(f"**{run} beats coarse at 12 h for every variable: {'yes' if ok else 'no'}**")
    return lines + [""]


def write_report(path: Path, summary: Mapping) -> Path:
    """`report.md` of a run of training.evaluation.idealised (`summary`: what scores.json holds)."""
    g, w = summary["grid"], summary["winter_thermodynamics"]
    lines = ["# Idealised cases: emulators on analytic cases they never saw", "",
             (f"Command: `{summary['command']}`. Coarse grid {g['ny']}×{g['nx']} at {g['dx'] / 1e3:g} km, truth "
             f"refined {summary['refinement']}×, {summary['days']:g} days ({summary['steps']} steps of "
             f"{summary['step_hours']} h), wall {summary['wall_seconds']:.0f} s."), "",
             (f"Thermodynamic forcing of every case (truth, coarse model and emulators): tas {w['tas']:.2f} K, huss "
             f"{w['huss']:.3g} kg/kg, rsds {w['rsds']:g} W/m², rlds {w['rlds']:.1f} W/m², prsn {w['prsn']:g}."), "",
             ("RMSE over ocean cells against the coarse-grained BBM truth (ensemble mean for ensembles; siu's east "
             "and siv's north wall faces, always 0, not scored), in brackets divided by the coarse model's. "
             "spread/RMSE with the finite-ensemble factor √((M+1)/M) (1 = calibrated). Δ volume: run − reference "
             "domain-mean ice volume per area sic·sit (member mean), the mass-conservation proxy. Max speed: at "
             "cell centres, over cells and members."), ""]
    if summary.get("hybrids"):
        lines += [f"Hybrids (residual correctors coupled to the coarse model with the physics overrides "
                  f"{', '.join(summary.get('hybrid_physics') or []) or 'none'}): "
                  + ", ".join(f"{k} = `{v}`" for k, v in summary["hybrids"].items()) + ".", ""]
    for name, case in summary["cases"].items():
        lines += case_markdown(name, case)
    return write_text_atomic("\n".join(lines) + "\n", path)
