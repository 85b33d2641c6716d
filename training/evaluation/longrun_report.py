"""The report of the long-run check (`training.evaluation.longrun`): `<out>/report.md` from its summary — every run's
status, bound checks and biases, min/max, seasonal cycles, deformation scaling, the coupled runs by season, figures."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from icecorr.base.files import write_text_atomic
from icecorr.base.variables import ML_VARIABLES
from training.evaluation.longrun_scaling import scaling_markdown
from training.evaluation.longrun_seasons import seasonal_markdown


def _fmt(x, f="{:.4g}") -> str:
    return "—" if x is None else f.format(x)


def write_report(out: Path, summary: dict) -> Path:
    """`<out>/report.md` of the long-run `summary` (runs, checks, biases, figures); returns its path."""
    lines = ["# Long runs: stability against the truth", "",
             f"Truth: `{summary['truth']}` ({summary['truth_records']} records = {summary['truth_days']:.0f} days, "
             f"grid {summary['grid']}). Command: `{summary['command']}`. Coarse physics (every coarse-model run): "
             f"from {summary.get('coarse_physics', {}).get('source', '?')}, P* = "
             f"{summary.get('coarse_physics', {}).get('p_star', float('nan')):g} N m⁻².", "",
             "Every record of every run was checked for NaN/inf over ocean cells and against the hard physical "
             "bounds (0 ≤ sic ≤ 1, sit ≥ 0, snt ≥ 0) and plausible ranges (sit ≤ 30 m, snt ≤ 5 m, |u|,|v| ≤ 3 m/s). "
             "Domain means are over ocean cells; 'volume' is sic·sit (m), 'thickness' the mean sit where sic > 0.15; "
             "ensembles use the member mean. Bias = mean over the run of (run − truth) of the domain mean.", "",
             "| run | members | days | wall (s) | status | NaN/inf first step | hard-bound violations | "
             "plausible-range violations | bias sic | bias volume (m) | bias thickness (m) | final sic run/truth | "
             "final volume run/truth (m) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    truth_row = {"members": 1, "days": summary["truth_days"], "wall_seconds": float("nan"), "error": None,
                 "checks": summary["truth_checks"], "stats": {}}
    for name, r in [("truth (coarse-grained)", truth_row), *summary["runs"].items()]:
        c, s = r.get("checks") or {}, r.get("stats") or {}
        hard = ", ".join(f"{v}: {d['count']} (first step {d['first_step']})"
                         for v, d in c.get("hard_violations", {}).items()) or "none"
        odd = ", ".join(f"{v}: {d['count']} (first step {d['first_step']})"
                        for v, d in c.get("plausible_violations", {}).items()) or "none"
        status = "ok" if r["error"] is None else f"FAILED: {r['error'][:160]}"
        lines.append(
            f"| {name} | {r['members']} | {r['days']:g} | {r['wall_seconds']:.0f} | {status} | "
            f"{_fmt(c.get('nonfinite_first_step'), '{}') if c else '—'} | {hard if c else '—'} | {odd if c else '—'} | "
            f"{_fmt(s.get('sic', {}).get('mean_bias'), '{:+.4f}')} | "
            f"{_fmt(s.get('volume', {}).get('mean_bias'), '{:+.4f}')} | "
            f"{_fmt(s.get('thickness', {}).get('mean_bias'), '{:+.4f}')} | "
            f"{_fmt(s.get('sic', {}).get('final_run'), '{:.3f}')}/{_fmt(s.get('sic', {}).get('final_truth'), '{:.3f}')} | "
            f"{_fmt(s.get('volume', {}).get('final_run'), '{:.3f}')}/"
            f"{_fmt(s.get('volume', {}).get('final_truth'), '{:.3f}')} |")
    lines += ["", "Min/max over all records and ocean cells:", "", "| run | " + " | ".join(ML_VARIABLES) + " |",
              "|---|" + "---|" * len(ML_VARIABLES)]
    for name, r in [("truth", {"checks": summary["truth_checks"]}), *summary["runs"].items()]:
        c = r.get("checks") or {}
        if not c:
            continue
        lines.append(f"| {name} | " + " | ".join(f"{_fmt(c['min'][v])} … {_fmt(c['max'][v])}" for v in ML_VARIABLES) + " |")
    cycles = [(name, r["cycle"]) for name, r in summary["runs"].items()
              if r.get("cycle") and np.isfinite(r["cycle"]["sic"]["amplitude_ratio"])]
    if cycles:
        lines += ["", "Seasonal cycle of the domain means against the truth's (annual harmonic over the run, "
                  "`training.evaluation.seasonal_cycle`; runs of at least a year; lag > 0: the run's minimum later):",
                  "", "| run | sic amplitude run/truth | sic phase lag (d) | volume amplitude run/truth | "
                  "volume phase lag (d) |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {c['sic']['amplitude_ratio']:.3f} | {c['sic']['phase_lag_days']:+.1f} | "
                  f"{c['volume']['amplitude_ratio']:.3f} | {c['volume']['phase_lag_days']:+.1f} |" for name, c in cycles]
    if summary.get("scaling"):
        lines += ["", "Deformation scaling of the emulator runs against the truth over the same records "
                  "(`training.evaluation.longrun_scaling`: records and members of each lead window pooled):", "",
                  *scaling_markdown(summary["scaling"])]
    by_season = seasonal_markdown(summary.get("seasons") or {})
    if by_season:
        lines += ["", "## Coupled runs by season against the uncorrected coarse model "
                  "(`training.evaluation.longrun_seasons`)", "", *by_season]
    lines += ["", "## Figures", ""]
    for caption, fig in summary["figures"].items():
        lines += [f"![{caption}]({Path(fig).name})", "", f"*{caption}*", ""]
    if summary.get("notes"):
        lines += ["## Notes", "", *summary["notes"], ""]
    return write_text_atomic("\n".join(lines) + "\n", out / "report.md")
