"""The Arctic report (`scripts/arctic.sh`, docs/arctic.md): multi-year emulator rollouts on the whole domain against
the BBM run on the same grid — sea-ice extent and volume, their seasonal cycles, deformation scaling β(q) at 15
and 50 days, bounds, ice on land, cost per step.

    python -m training.evaluation.arctic_report --truth runs/arctic/truth/train.nc \\
        --emulator diffusion=runs/arctic/train/emulator/best.pt \\
        --emulator deterministic=runs/arctic/train/emulator_deterministic/best.pt --out runs/arctic/report

The truth is a pair file of one contiguous BBM run (`generate_longrun.yaml`). Each emulator runs one member from its
first state for `--days` (`training.evaluation.longrun.run_emulator`: `icecorr emulate` on the whole domain in one
pass), forced by the truth's forcing. Extent = area of ocean cells with sic > 0.15 (10^6 km2); volume = sum of
sic·sit·dx² (10^3 km3). The seasonal cycle of a series is its annual harmonic, fitted by least squares over whole
years: amplitude (half the peak-to-trough range of the harmonic) and phase (day of year of its minimum); the report
gives each run's amplitude as a ratio to the BBM's and its phase lag in days. With `--region` (and `--forcing`) the
BBM and the mEVP model are also timed on the same grid in the same process (`training.data.arctic_cost.step_costs`:
mid-winter, compact ice, their costliest dynamics), so the speed-up of each emulator is measured in one run under
one load. Writes `report.md`, `arctic.json` and `seasonal_cycle.png` in `--out`.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import xarray as xr

from icecorr.base.files import open_netcdf, write_text_atomic
from training.evaluation.longrun import STEP_DAYS, check_records, run_emulator, truth_trajectory
from training.evaluation.longrun_scaling import scaling_by_lead, scaling_markdown
from training.evaluation.seasonal_cycle import annual_harmonic, compare_cycles

EXTENT_THRESHOLD = 0.15


def extent_volume(ds: xr.Dataset, mask: np.ndarray, dx: float) -> dict[str, np.ndarray]:
    """Per record: extent (10^6 km2, ocean cells with sic > 0.15) and volume (10^3 km3), member mean."""
    ocean = np.asarray(mask) > 0.5
    sic, sit = ds["sic"].values, ds["sit"].values
    sic = sic.reshape(sic.shape[0], -1, *sic.shape[-2:])
    sit = sit.reshape(sit.shape[0], -1, *sit.shape[-2:])
    area = dx * dx
    extent = ((sic > EXTENT_THRESHOLD) & ocean).sum(axis=(-2, -1)).mean(axis=1) * area / 1e12
    volume = np.where(ocean, np.nan_to_num(sic * sit), 0.0).sum(axis=(-2, -1)).mean(axis=1) * area / 1e12
    return {"extent": extent, "volume": volume}


def ice_on_land(ds: xr.Dataset, mask: np.ndarray) -> float:
    """Largest sic on a land cell over all records and members (0 when land never holds ice)."""
    land = np.asarray(mask) <= 0.5
    if not land.any():
        return 0.0
    on_land = np.abs(ds["sic"].values[..., land])
    return float(np.nanmax(on_land)) if np.isfinite(on_land).any() else 0.0  # NaN/fill on land: no ice there


def compare(run: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict:
    """Seasonal cycles of extent and volume of a run against the truth's: amplitude ratio, phase lag (days)."""
    return compare_cycles(run, truth, ("extent", "volume"), STEP_DAYS)


def plot(series: dict[str, dict[str, np.ndarray]], path: Path) -> Path:
    """Extent and volume against time (days) for every run; the BBM in black."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for label, s in series.items():
        days = np.arange(len(s["extent"])) * STEP_DAYS
        kw = {"color": "k", "lw": 2} if label == "BBM" else {"lw": 1}
        axes[0].plot(days, s["extent"], label=label, **kw)
        axes[1].plot(days, s["volume"], label=label, **kw)
    axes[0].set_ylabel("extent (10$^6$ km$^2$)")
    axes[1].set_ylabel("volume (10$^3$ km$^3$)")
    axes[1].set_xlabel("days since the start")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(out: Path, summary: dict) -> Path:
    """`report.md`: one table row per run (cost, stability, seasonal cycles against the BBM)."""
    lines = [f"# Arctic emulators against the BBM ({summary['days']:.0f} days, grid {summary['grid']})", "",
             f"Truth: `{summary['truth']}`. Extent: sic > {EXTENT_THRESHOLD}; seasonal cycle: annual harmonic "
             "(training.evaluation.arctic_report).", "",
             "| run | s/step | wall (min) | NaN from step | bound violations | max sic on land | extent amp. ratio | "
             "extent lag (d) | volume amp. ratio | volume lag (d) |", "|" + "---|" * 10]
    for label, r in summary["runs"].items():
        if r.get("error"):
            lines.append(f"| {label} | failed: {r['error']} |" + " |" * 8)
            continue
        c = r["cycle"]
        lines.append(f"| {label} | {r['seconds_per_step']:.3f} | {r['wall_s'] / 60:.1f} | {r['checks']['nonfinite_first_step']} "
                     f"| {sum(v['count'] for v in r['checks']['hard_violations'].values())} | {r['ice_on_land']:.3g} "
                     f"| {c['extent']['amplitude_ratio']:.3f} | {c['extent']['phase_lag_days']:+.1f} "
                     f"| {c['volume']['amplitude_ratio']:.3f} | {c['volume']['phase_lag_days']:+.1f} |")
    cost = summary.get("bbm_cost")
    if cost:
        lines += ["", f"Cost in this run (load average {cost['load_before'][0]:.1f} before, {cost['load_after'][0]:.1f} "
                  f"after): the BBM {cost['truth_s']:.3f} s and the mEVP model {cost['coarse_s']:.3f} s per 12 h step "
                  f"on this grid (one thread, mid-winter, {cost['steps']} timed steps); emulators on "
                  f"{cost['torch_threads']} torch thread(s), whole rollout including its file output:"]
        for label, r in summary["runs"].items():
            if not r.get("error"):
                lines.append(f"- {label}: {r['seconds_per_step']:.3f} s per step, speed-up over the BBM "
                             f"{cost['truth_s'] / r['seconds_per_step']:.2g}x (below 1: slower than the BBM)")
    t = summary["truth_cycle"]
    lines += ["", f"BBM: extent mean {t['extent']['mean']:.3f}, amplitude {t['extent']['amplitude']:.3f} 10^6 km2, "
              f"minimum on day {t['extent']['min_day']:.0f}; volume mean {t['volume']['mean']:.3f}, amplitude "
              f"{t['volume']['amplitude']:.3f} 10^3 km3, minimum on day {t['volume']['min_day']:.0f} (days since "
              "the start).", "", "![seasonal cycle](seasonal_cycle.png)", ""]
    if summary.get("scaling"):
        lines += ["Deformation scaling β(q) (gradient method, ice cells) pooled over the records of each lead window, "
                  "against the BBM's same records:", "", *scaling_markdown(summary["scaling"]), ""]
    return write_text_atomic("\n".join(lines), out / "report.md")


def bbm_cost(region_file: Path, forcing_file: Path, steps: int) -> dict:
    """Seconds per 12 h step of the BBM and the mEVP model on the region's grid (one untimed step first), with the
    load average around the measurement and the torch thread count the emulators ran with."""
    import torch

    from icecorr.base.config import load_config
    from training.data.arctic_cost import step_costs
    from training.data.config import RegionForcingConfig
    from training.data.geography import RegionGrid

    region = load_config(RegionGrid, region_file)
    forcing = load_config(RegionForcingConfig, forcing_file)
    before = os.getloadavg()
    cost = step_costs(region, forcing, "2001-01-15T00:00", steps, warmup=1)
    return {**cost, "steps": steps, "load_before": before, "load_after": os.getloadavg(),
            "torch_threads": torch.get_num_threads()}


def main(argv=None) -> int:
    """Run the emulators, score them against the BBM, write the report; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--truth", required=True, type=Path)
    ap.add_argument("--emulator", action="append", default=[], help="LABEL=checkpoint (repeatable)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--days", type=float, default=1095.0)
    ap.add_argument("--sampler-steps", type=int, default=None)
    ap.add_argument("--region", type=Path, help="the region's grid YAML: also time the BBM on this grid")
    ap.add_argument("--forcing", type=Path, default=Path("configs/region/arctic/forcing.yaml"),
                    help="the region's forcing YAML (with --region)")
    ap.add_argument("--bbm-steps", type=int, default=3, help="timed BBM steps (with --region)")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    with open_netcdf(a.truth, "truth file") as ds:
        n_windows, dx, mask = ds.sizes["time"], float(ds.attrs["grid_dx"]), ds["mask"].values
        grid = f"{ds.sizes['y']} x {ds.sizes['x']} at {dx / 1e3:g} km"
    steps = min(int(round(a.days / STEP_DAYS)), n_windows)
    truth_states = truth_trajectory(a.truth, steps)
    truth = extent_volume(truth_states, mask, dx)
    series = {"BBM": truth}
    runs = {}
    for spec in a.emulator:
        label, path = spec.split("=", 1)
        out_file = a.out / f"emulator_{label}.nc"
        t0 = time.perf_counter()
        try:
            run_emulator(a.truth, Path(path), out_file, steps, a.sampler_steps)
        except Exception as exc:  # noqa: BLE001 - a blow-up is a result
            runs[label] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        wall = time.perf_counter() - t0
        with open_netcdf(out_file, "emulator run") as ds:
            ds = ds.load()
        s = extent_volume(ds, mask, dx)
        series[label] = s
        runs[label] = {"wall_s": wall, "seconds_per_step": wall / steps, "checks": check_records(ds, mask),
                       "ice_on_land": ice_on_land(ds, mask), "cycle": compare(s, truth)}
    summary = {"truth": str(a.truth), "grid": grid, "days": steps * STEP_DAYS, "runs": runs,
               "truth_cycle": {k: annual_harmonic(truth[k], np.arange(len(truth[k])) * STEP_DAYS)
                               for k in ("extent", "volume")}}
    finished = {label: open_netcdf(a.out / f"emulator_{label}.nc", "emulator run") for label in runs
                if not runs[label].get("error")}
    try:  # deformation scaling at 15 and 50 days: only those records are read
        summary["scaling"] = scaling_by_lead(finished, truth_states, mask, dx, STEP_DAYS)
    finally:
        for ds in finished.values():
            ds.close()
    if a.region is not None:
        summary["bbm_cost"] = bbm_cost(a.region, a.forcing, a.bbm_steps)
    write_text_atomic(json.dumps(summary, indent=1, default=float), a.out / "arctic.json")
    plot(series, a.out / "seasonal_cycle.png")
    print(write_report(a.out, summary).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
