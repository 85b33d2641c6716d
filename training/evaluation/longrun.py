"""Long-run stability check: a multi-year emulator rollout and a 1-year coupled run against a long truth run.

    python -m training.evaluation.longrun --truth runs/longrun/data/train.nc \\
        --emulator runs/demo/train/emulator/best.pt --diffusion runs/demo/train/diffusion/best.pt \\
        --out runs/longrun [--emulate-days 1095] [--couple-days 365] [--members 4] [--emulator-steps N]

The truth is a training-pair file of one contiguous run (e.g. `icecorr generate … generate.run_days=1095` with one
seed): its `initial_*` fields are the coarse-grained truth every 12 h and its `{f}_t0/{f}_t1` fields the forcing.
From its first state the script runs
  * the emulator (1 member, autoregressive, `--emulator-steps` sampler steps) for `--emulate-days`,
  * the coarse model coupled to each residual corrector (`--diffusion`, `--coupled LABEL=PATH`; `--members`
    members, one for a deterministic corrector) for `--couple-days`,
  * the uncorrected coarse model (zero corrector, 1 member) for `--couple-days`,
checks every record of every run for NaN/inf and for physical bounds, compares the seasonal cycle of each run of a
year or more with the truth's (`seasonal_cycle`: amplitude ratio and phase lag of domain-mean sic and volume) and
the emulators' deformation scaling β(q) with the truth's over lead windows (`longrun_scaling`), and writes
`<out>/report.md`, `<out>/longrun.json` (all numbers) and the figures `<out>/long_run_emulator.png`,
`<out>/long_run_coupled.png` (domain-mean concentration and ice volume per area against the truth, with
`training.evaluation.plots.plot_long_run`) plus `<out>/long_run_thickness.png` (domain-mean thickness over ice).
A run that blows up is reported with the step and field where it failed, not hidden.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Mapping

import numpy as np
import xarray as xr

from icecorr.base.files import atomic_path, open_netcdf, write_text_atomic
from icecorr.base.variables import ML_VARIABLES, STEP_HOURS
from training.data.provenance import run_physics
from training.evaluation.longrun_report import write_report
from training.evaluation.longrun_scaling import scaling_by_lead
from training.evaluation.longrun_seasons import seasonal_scores
from training.evaluation.seasonal_cycle import compare_cycles

#: one 12 h step in days
STEP_DAYS = STEP_HOURS / 24
#: hard physical bounds (bounds.py enforces them) and plausible ranges (prepare's PLAUSIBLE: outside = broken)
HARD = {"sic": (0.0, 1.0), "sit": (0.0, np.inf), "snt": (0.0, np.inf), "siu": (-np.inf, np.inf),
        "siv": (-np.inf, np.inf)}
PLAUSIBLE = {"sic": (0.0, 1.0), "sit": (0.0, 30.0), "snt": (0.0, 5.0), "siu": (-3.0, 3.0), "siv": (-3.0, 3.0)}
TOL = 1e-9


def truth_trajectory(path: Path, n_steps: int | None = None) -> xr.Dataset:
    """The truth as a (time, y, x) trajectory: initial_* at every window start plus the last reference_*."""
    with open_netcdf(path, "truth file") as ds:
        if "run" in ds and len(np.unique(ds["run"].values)) > 1:
            raise SystemExit(f"{path}: holds several runs; the long-run check needs one contiguous run")
        n = ds.sizes["time"] if n_steps is None else min(n_steps, ds.sizes["time"])
        init = ds[[f"initial_{v}" for v in ML_VARIABLES]].isel(time=slice(0, n)).load()
        last = ds[[f"reference_{v}" for v in ML_VARIABLES]].isel(time=n - 1).load()
        mask = ds["mask"].values if "mask" in ds else None
    traj = xr.Dataset({v: init[f"initial_{v}"] for v in ML_VARIABLES})
    end = xr.Dataset({v: last[f"reference_{v}"] for v in ML_VARIABLES}).expand_dims(
        time=[last["time"].values + np.timedelta64(STEP_HOURS, "h")])
    traj = xr.concat([traj, end], dim="time")
    if mask is not None:
        traj["mask"] = (("y", "x"), mask)
    return traj


def check_records(ds: xr.Dataset, mask: np.ndarray | None) -> dict:
    """Per run: first record with NaN/inf, hard-bound and plausible-range violations (count and first step),
    min/max of every variable over ocean cells."""
    ocean = np.ones(ds["sic"].shape[-2:], bool) if mask is None else np.asarray(mask) > 0.5
    out: dict = {"records": int(ds.sizes["time"]), "nonfinite_first_step": None, "hard_violations": {},
                 "plausible_violations": {}, "min": {}, "max": {}}
    for v in ML_VARIABLES:
        a = ds[v].values  # (time, [member,] y, x)
        a = a.reshape(a.shape[0], -1, *a.shape[-2:])[..., ocean]  # (time, member, ocean cells)
        finite = np.isfinite(a)
        if not finite.all():
            first = int(np.argwhere(~finite.all(axis=(1, 2)))[0][0])
            out["nonfinite_first_step"] = first if out["nonfinite_first_step"] is None else \
                min(first, out["nonfinite_first_step"])
        lo, hi = HARD[v]
        bad = finite & ((a < lo - TOL) | (a > hi + TOL))
        plo, phi = PLAUSIBLE[v]
        odd = finite & ((a < plo - TOL) | (a > phi + TOL))
        for key, arr in (("hard_violations", bad), ("plausible_violations", odd)):
            if arr.any():
                out[key][v] = {"count": int(arr.sum()), "first_step": int(np.argwhere(arr.any(axis=(1, 2)))[0][0])}
        out["min"][v] = float(np.nanmin(np.where(finite, a, np.nan))) if finite.any() else None
        out["max"][v] = float(np.nanmax(np.where(finite, a, np.nan))) if finite.any() else None
    return out


def domain_means(ds: xr.Dataset, mask: np.ndarray | None) -> dict[str, np.ndarray]:
    """Member-mean of the domain (ocean) means: sic, ice volume per area sic·sit, thickness over ice (sit where
    sic > 0.15), per record."""
    ocean = xr.DataArray(np.ones(ds["sic"].shape[-2:]) if mask is None else np.asarray(mask) > 0.5,
                         dims=("y", "x"))
    sic, sit = ds["sic"].where(ocean), ds["sit"].where(ocean)
    out = {"sic": sic.mean(("y", "x")), "volume": (sic * sit).mean(("y", "x")),
           "thickness": sit.where(sic > 0.15).mean(("y", "x"))}
    return {k: (v.mean("member") if "member" in v.dims else v).values for k, v in out.items()}


def trajectory_stats(run: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray]) -> dict:
    """Mean bias (run − truth) of the domain means over the run, and the values at the end."""
    n = min(len(run["sic"]), len(truth["sic"]))
    out = {}
    for k in ("sic", "volume", "thickness"):
        r, t = run[k][:n], truth[k][:n]
        ok = np.isfinite(r) & np.isfinite(t)
        out[k] = {"mean_bias": float(np.mean(r[ok] - t[ok])) if ok.any() else None,
                  "rmse_of_domain_mean": float(np.sqrt(np.mean((r[ok] - t[ok]) ** 2))) if ok.any() else None,
                  "final_run": float(r[n - 1]) if np.isfinite(r[n - 1]) else None, "final_truth": float(t[n - 1]),
                  "min_run": float(np.nanmin(r)) if ok.any() else None,
                  "max_run": float(np.nanmax(r)) if ok.any() else None}
    return out


def _run(label: str, fn) -> tuple[Path | None, float, str | None]:
    """Call fn() -> output path; (path, wall seconds, error text or None) — a failure is reported, not raised."""
    t0 = time.perf_counter()
    try:
        path = fn()
        return path, time.perf_counter() - t0, None
    except Exception as exc:  # noqa: BLE001 - a blow-up is a result of this check
        traceback.print_exc()
        return None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"


def run_emulator(truth: Path, checkpoint: Path, out: Path, steps: int, sampler_steps: int | None) -> Path:
    """A one-member emulator rollout of `steps` 12 h steps from the truth's first state, forced by the truth's
    forcing; returns its trajectory file `out`. Network batches of one: the default pads every batch to 8 samples
    (reproducible whatever the member count), which would cost a one-member run 8 network evaluations for one."""
    from coupling.config import CoupleConfig
    from coupling.emulate import run_emulate
    from coupling.forcing import FileForcing

    cfg = CoupleConfig(members=1, n_steps=steps, start_indices=[0], seed=0, checkpoint=str(checkpoint),
                       sampler_steps=sampler_steps, sampler={"network_batch": 1}, output=str(out),
                       restart_interval=0)
    return run_emulate(cfg, truth, FileForcing(truth), out, comm=None, command="training.evaluation.longrun (emulate)")[0]


def run_coupled(truth: Path, checkpoint: Path | None, out: Path, steps: int, members: int,
                sampler_steps: int | None, physics) -> Path:
    """The coarse model (`physics`) coupled to `checkpoint` (None: uncorrected) for `steps` 12 h steps from the
    truth's first state, `members` members, on the truth's grid; returns its trajectory file `out`."""
    from coupling.config import CoupleConfig
    from coupling.couple import run_couple
    from coupling.forcing import FileForcing
    from fortran_stub.config import GridConfig

    with open_netcdf(truth, "truth file") as ds:
        ny, nx = ds.sizes["y"], ds.sizes["x"]
        dx = float(ds.attrs.get("grid_dx", 16_000.0))
    cfg = CoupleConfig(members=members, n_steps=steps, start_indices=[0], seed=0,
                       checkpoint=str(checkpoint) if checkpoint else None, sampler_steps=sampler_steps,
                       output=str(out), restart_interval=0)
    return run_couple(cfg, truth, FileForcing(truth), out, comm=None, grid=GridConfig(nx=nx, ny=ny, dx=dx),
                      physics=physics, command="training.evaluation.longrun (couple)")[0]


def plot_zoomed(series: Mapping[str, dict], truth: dict, path: Path) -> Path:
    """Domain-mean sic, volume (sic·sit) and thickness over ice against the truth, y-axes limited to 2.5 × the
    truth's range so that a blow-up does not hide everything else (values beyond the axis are off the plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    labels = {"sic": "domain-mean sic (1)", "volume": "domain-mean volume sic·sit (m)",
              "thickness": "mean thickness over ice, sit (m)"}
    for ax, key in zip(axes, ("sic", "volume", "thickness")):
        t = np.asarray(truth[key], dtype=float)
        ax.plot(np.arange(t.size) * STEP_DAYS, t, color="k", lw=1.5, label="truth")
        for name, s in series.items():
            r = np.asarray(s[key], dtype=float)
            ax.plot(np.arange(r.size) * STEP_DAYS, r, lw=1, label=name)
        top = np.nanmax(t) * 2.5 if key != "sic" else 1.05
        ax.set_ylim(0, top)
        ax.set_xlabel("time (days)")
        ax.set_ylabel(labels[key])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:  # the temporary name has no image suffix: the format is given
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path


def main(argv=None) -> int:
    """`python -m training.evaluation.longrun …` (module docstring); 0 if every run completed, else 1."""
    ap = argparse.ArgumentParser(prog="python -m training.evaluation.longrun", description=__doc__.split("\n\n")[0])
    ap.add_argument("--truth", required=True, type=Path, help="pair file of one contiguous truth run")
    ap.add_argument("--emulator", action="append", default=[],
                    help="emulator-mode checkpoint, optionally LABEL=PATH; repeat for several (none: no emulator run)")
    ap.add_argument("--diffusion", type=Path, help="residual diffusion checkpoint (= --coupled diffusion=PATH)")
    ap.add_argument("--coupled", action="append", default=[],
                    help="residual checkpoint for a coupled run, LABEL=PATH; repeat for several (a deterministic "
                         "corrector runs one member)")
    ap.add_argument("--out", type=Path, default=Path("runs/longrun"))
    ap.add_argument("--emulate-days", type=float, default=1095.0)
    ap.add_argument("--couple-days", type=float, default=365.0)
    ap.add_argument("--members", type=int, default=4, help="members of the coupled run")
    ap.add_argument("--emulator-steps", type=int, default=None, help="sampler steps of the emulator (None: its own)")
    ap.add_argument("--couple-steps", type=int, default=None, help="sampler steps of the corrector (None: its own)")
    ap.add_argument("--note", action="append", default=[], help="a line for the report's notes")
    ap.add_argument("--reuse", action="store_true", help="keep a run whose complete output file already exists "
                                                         "(its wall time from the previous longrun.json)")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    with open_netcdf(a.truth, "truth file") as ds:
        n_windows = ds.sizes["time"]
        dx = float(ds.attrs.get("grid_dx", 16_000.0))
        grid = f"{ds.sizes['y']}×{ds.sizes['x']}, dx {dx / 1e3:g} km"
    em_steps = min(int(round(a.emulate_days / STEP_DAYS)), n_windows)
    cp_steps = min(int(round(a.couple_days / STEP_DAYS)), n_windows)
    truth = truth_trajectory(a.truth, max(em_steps, cp_steps))
    mask = truth["mask"].values if "mask" in truth else None
    truth_means = domain_means(truth, mask)
    summary = {"truth": str(a.truth), "truth_records": int(truth.sizes["time"]),
               "truth_days": (truth.sizes["time"] - 1) * STEP_DAYS, "grid": grid, "command": " ".join(sys.argv),
               "truth_checks": check_records(truth, mask), "runs": {}, "figures": {}, "notes": list(a.note)}
    results: dict[str, tuple[xr.Dataset, dict]] = {}
    plan = []
    files = {"coarse uncorrected": a.out / "coarse.nc"}
    emulators, couplings = [], []
    for spec in a.emulator:
        label, sep, path = spec.partition("=")
        label, path = (label, Path(path)) if sep else ("", Path(spec))
        name = f"emulator {label}".strip()
        files[name] = a.out / (f"emulator_{label}.nc" if label else "emulator.nc")
        emulators.append(name)
        plan.append((name, 1, em_steps, lambda p=path, f=files[name]: run_emulator(a.truth, p, f, em_steps,
                                                                                  a.emulator_steps)))
    from corrector.inference import Corrector

    coupled_specs = ([f"diffusion={a.diffusion}"] if a.diffusion is not None else []) + list(a.coupled)
    paths, correctors = {}, {}
    for spec in coupled_specs:
        label, sep, path = spec.partition("=")
        if not sep:
            ap.error(f"--coupled {spec!r}: expected LABEL=PATH")
        paths[label], correctors[label] = path, Corrector.load(path)
    physics, physics_source = run_physics(a.truth, correctors)  # every coarse run: the physics they learned
    summary["coarse_physics"] = {"source": physics_source, "p_star": physics.p_star}
    for label, path in paths.items():
        members = 1 if correctors[label].kind == "deterministic" else a.members
        name = f"coupled {label}"
        files[name] = a.out / ("coupled_" + re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_") + ".nc")
        couplings.append(name)
        plan.append((name, members, cp_steps, lambda p=Path(path), f=files[name], m=members:
                     run_coupled(a.truth, p, f, cp_steps, m, a.couple_steps, physics)))
    plan.append(("coarse uncorrected", 1, cp_steps,
                 lambda: run_coupled(a.truth, None, a.out / "coarse.nc", cp_steps, 1, None, physics)))
    from coupling.output import open_trajectory

    previous = {}
    if a.reuse and (a.out / "longrun.json").exists():
        previous = json.loads((a.out / "longrun.json").read_text()).get("runs", {})
    for name, members, steps, fn in plan:
        done, old = None, previous.get(name, {})
        if a.reuse and files[name].exists():
            with xr.open_dataset(files[name]) as ds:
                same = ds.sizes.get("member") == members and old.get("days") == steps * STEP_DAYS
                if same and ((ds.attrs.get("status") == "complete" and ds.sizes["time"] == steps + 1)
                             or (ds.attrs.get("status") == "failed" and old.get("error"))):
                    done = files[name]
        if done is not None:
            path, wall, error = done, float(old.get("wall_seconds", float("nan"))), old.get("error")
            print(f"longrun: {name}: reusing {done} (error: {error})", flush=True)
        else:
            print(f"longrun: {name}: {steps} steps × {members} member(s) …", flush=True)
            path, wall, error = _run(name, fn)
        entry = {"members": members, "days": steps * STEP_DAYS, "wall_seconds": wall, "error": error, "file": None,
                 "checks": None, "stats": None}
        out_file = path or files[name]
        if out_file.exists():  # also after a failure: the completed records are in the file
            ds = open_trajectory(out_file).load()
            entry["file"] = str(out_file)
            entry["checks"] = check_records(ds, mask)
            means = domain_means(ds, mask)
            entry["stats"] = trajectory_stats(means, truth_means)
            entry["cycle"] = compare_cycles(means, truth_means, ("sic", "volume"), STEP_DAYS)
            entry["domain_means"] = {k: [None if not np.isfinite(x) else float(x) for x in v]
                                     for k, v in means.items()}
            results[name] = (ds, means)
        summary["runs"][name] = entry
        print(f"longrun: {name}: {wall:.0f} s, error={error}, checks={entry['checks'] and {k: entry['checks'][k] for k in ('nonfinite_first_step', 'hard_violations', 'plausible_violations')}}", flush=True)

    from training.evaluation.plots import plot_long_run

    done_emulators = {k: results[k][0] for k in emulators if k in results}
    if done_emulators:
        summary["figures"][f"emulator (1 member) vs truth ({em_steps * STEP_DAYS:g} days): domain-mean sic and ice "
                           "volume"] = str(plot_long_run(done_emulators, truth.isel(time=slice(0, em_steps + 1)),
                                                         a.out / "long_run_emulator.png", mask))
    coupled = {k: results[k][0] for k in (*couplings, "coarse uncorrected") if k in results}
    if coupled:
        summary["figures"][f"coupled runs vs truth ({cp_steps * STEP_DAYS:g} days): domain-mean sic and ice volume"] = str(plot_long_run(
            coupled, truth.isel(time=slice(0, cp_steps + 1)), a.out / "long_run_coupled.png", mask))
    if results:
        summary["figures"]["all runs, axes limited to 2.5× the truth's range: domain-mean sic, volume sic·sit and "
                           "thickness over ice (sic > 0.15)"] = str(plot_zoomed(
            {k: v[1] for k, v in results.items()}, truth_means, a.out / "long_run_zoomed.png"))
    summary["truth_domain_means"] = {k: [float(x) for x in v] for k, v in truth_means.items()}
    summary["seasons"] = {k: seasonal_scores(results[k][0], truth, mask) for k in coupled}
    summary["scaling"] = scaling_by_lead({k: results[k][0] for k in emulators if k in results}, truth, mask, dx,
                                         STEP_DAYS)
    write_text_atomic(json.dumps(summary, indent=1, default=str), a.out / "longrun.json")
    report = write_report(a.out, summary)
    print(f"wrote {report}")
    return 0 if all(r["error"] is None for r in summary["runs"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
