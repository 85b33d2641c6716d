"""Measure the rectification at the bounds in one-process coupled runs over windows of a pair file, beside the
truth's per-step change, the coarse model's 12 h error and the run's drift from the truth.

    python -m training.evaluation.rectification_run --pairs runs/demo/data/test.nc \\
        --checkpoint runs/demo/train/diffusion/best.pt --windows 4 --days 15 --members 4 --out rect.json \\
        [--bounds clip|ridge|conserve (corrector.bounds.BOUNDS_MODES)] [--train-pairs train.nc] [--sampler-steps N] [--seed S]

Writes `--out` (JSON, all numbers) and prints a table. Everything is a domain mean over ocean cells per 12 h step:
  * rectification (`training.evaluation.rectification`): raw correction and bounded − raw, by ice state and lead;
  * truth: the mean and mean |·| of the truth's 12 h change, reference − initial, over the same windows and steps;
  * coarse: the mean and mean |·| of the coarse model's 12 h error from the truth, forecast − reference;
  * drift: the hybrid's ensemble-mean minus the truth, at each lead, averaged over windows;
  * monthly (with `--train-pairs`): the mean raw and applied correction of sic, sit and sivol per month of the run
    against the mean truth − coarse residual (reference − forecast) of the training pairs of that month.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from icecorr.base.files import open_netcdf, write_text_atomic
from .rectification import ICE_STATES, RectificationProbe, quantities, summarise

#: lead ranges (steps) the summary splits: the first step, the rest of the first 5 days, then the rest
LEADS = ((0, 1), (1, 10), (10, 10**9))


def window_starts(pairs: Path, windows: int, steps: int) -> list[int]:
    """`windows` start indices evenly spread over the pair file, each window inside one run (as the demo does)."""
    with open_netcdf(pairs, "pair file") as ds:
        n = ds.sizes["time"]
        runs = ds["run"].values if "run" in ds else None
    cand = [s for s in range(n - steps) if runs is None or runs[s] == runs[s + steps - 1]]
    if not cand:
        raise SystemExit(f"{pairs}: no window of {steps} steps inside one run")
    return sorted({cand[round(i * (len(cand) - 1) / max(windows - 1, 1))] for i in range(windows)})


def pair_quantities(ds: xr.Dataset, prefix: str, idx) -> dict[str, np.ndarray]:
    """Domain means over ocean cells of `quantities` of the `{prefix}_{v}` fields at time indices `idx`."""
    sub = ds.isel(time=idx)
    fields = {v: sub[f"{prefix}_{v}"].values.astype(np.float64) for v in ("sic", "sit", "snt")}
    ocean = (ds["mask"].values > 0.5) if "mask" in ds else np.ones(fields["sic"].shape[-2:], bool)
    return {q: a[..., ocean].mean(axis=-1) for q, a in quantities(fields).items()}


def truth_terms(pairs: Path, starts: list[int], steps: int) -> tuple[dict, dict, np.ndarray]:
    """(truth change and coarse error stats {quantity: {mean, mean_abs}}, truth domain means (windows, steps + 1)
    per quantity, the time of every window step (windows, steps))."""
    idx = np.array([[s + n for n in range(steps)] for s in starts])
    with open_netcdf(pairs, "pair file") as ds:
        ini, ref, fc = (pair_quantities(ds, p, idx.ravel()) for p in ("initial", "reference", "forecast"))
        times = ds["time"].values[idx.ravel()].reshape(idx.shape)
    stats = {"truth_change": {}, "coarse_error": {}}
    traj = {}
    for q in ini:
        for key, d in (("truth_change", ref[q] - ini[q]), ("coarse_error", fc[q] - ref[q])):
            stats[key][q] = {"mean": float(d.mean()), "mean_abs": float(np.abs(d).mean())}
        traj[q] = np.concatenate([ini[q].reshape(idx.shape), ref[q].reshape(idx.shape)[:, -1:]], axis=1)
    return stats, traj, times


def monthly_residuals(train_pairs: Path) -> dict[int, dict[str, float]]:
    """{month: {quantity: mean over the month's training pairs of the domain-mean reference − forecast}}."""
    with open_netcdf(train_pairs, "training pair file") as ds:
        months = ds["time"].dt.month.values
        idx = np.arange(ds.sizes["time"])
        ref, fc = (pair_quantities(ds, p, idx) for p in ("reference", "forecast"))
    return {int(mo): {q: float((ref[q] - fc[q])[months == mo].mean()) for q in ref} for mo in np.unique(months)}


def run(pairs: Path, checkpoint: Path | None, starts: list[int], steps: int, members: int, seed: int,
        sampler_steps: int | None, bounds: str, out_nc: Path) -> RectificationProbe:
    """The coupled run (one process) of every window with a probe on the corrector; returns the probe."""
    from coupling.config import CoupleConfig
    from coupling.couple import run_couple
    from coupling.ensemble import load_corrector
    from coupling.forcing import FileForcing
    from fortran_stub.config import GridConfig
    from training.data.provenance import run_physics

    with open_netcdf(pairs, "pair file") as ds:
        ny, nx = ds.sizes["y"], ds.sizes["x"]
        dx = float(ds.attrs.get("grid_dx", 16_000.0))
        geography = "lat" in ds.variables  # a region: the model's land mask and Coriolis latitudes are the file's
    grid = GridConfig(nx=nx, ny=ny, dx=dx, **({"mask": str(pairs), "latitude": str(pairs)} if geography else {}))
    corrector = load_corrector(str(checkpoint) if checkpoint else None, "residual", (ny, nx))
    rebound = None
    if bounds != "clip":
        from corrector.bounds import rebound as rebound_in_mode

        names = list(corrector.variables)

        def rebound(base, sample, out, mask):
            raw = {v: np.asarray(base[v], dtype=np.float64)[:, None] + sample[:, :, k] for k, v in enumerate(names)}
            return rebound_in_mode(bounds, raw, out, mask)
    probe = RectificationProbe(corrector, rebound)
    cfg = CoupleConfig(members=members, n_steps=steps, start_indices=starts, seed=seed,
                       sampler_steps=sampler_steps, output=str(out_nc), restart_interval=0)
    run_couple(cfg, pairs, FileForcing(pairs), out_nc, comm=None, grid=grid,
               physics=run_physics(pairs, {"": corrector})[0], corrector=probe, command="training.evaluation.rectification_run")
    return probe


def skill(pairs: Path, out_nc: Path, starts: list[int], steps: int) -> dict:
    """{variable: {"rmse": [...], "spread": [...]}} per output record (lead 0 … steps): the RMSE of the ensemble mean
    against the truth and the ensemble spread (√ of the mean member variance, ddof 1; 0 for one member) over ocean
    cells, pooled over the windows (root of the mean square)."""
    from coupling.ensemble_output import output_paths

    se: dict = {}
    with open_netcdf(pairs, "pair file") as ds:
        ocean = (ds["mask"].values > 0.5) if "mask" in ds else None
        for start, path in zip(starts, output_paths(out_nc, starts)):
            with open_netcdf(path, "run output") as run_ds:
                for v in ("sic", "sit", "snt", "siu", "siv"):
                    truth = np.concatenate([ds[f"initial_{v}"].isel(time=slice(start, start + steps)).values,
                                            ds[f"reference_{v}"].isel(time=[start + steps - 1]).values])
                    ens = run_ds[v].values.astype(np.float64)           # (time, member, y, x)
                    sel = np.ones(truth.shape[-2:], bool) if ocean is None else ocean
                    err = ((ens.mean(axis=1) - truth) ** 2)[:, sel].mean(axis=-1)
                    var = (ens.var(axis=1, ddof=1) if ens.shape[1] > 1 else np.zeros_like(truth))[:, sel].mean(-1)
                    acc = se.setdefault(v, [0.0, 0.0])
                    acc[0] = acc[0] + err / len(starts)
                    acc[1] = acc[1] + var / len(starts)
    return {v: {"rmse": np.sqrt(a[0]).tolist(), "spread": np.sqrt(a[1]).tolist()} for v, a in se.items()}


def drift_and_monthly(probe: RectificationProbe, truth: dict, times: np.ndarray, members: int,
                      monthly_train: dict | None) -> tuple[dict, dict]:
    """(drift {quantity: ensemble-mean − truth per lead, mean over windows}, monthly corrections vs training
    residuals)."""
    recs = probe.records
    n_w = times.shape[0]
    drift = {}
    for q in truth:
        hyb = np.array([r["bounded_mean"][q].reshape(n_w, members).mean(axis=1) for r in recs])  # (steps, windows)
        drift[q] = (hyb.T - truth[q][:, 1:len(recs) + 1]).mean(axis=0).tolist()
    monthly: dict = {}
    months = xr.DataArray(times.ravel()).dt.month.values.reshape(times.shape)
    for mo in np.unique(months):
        sel = months == mo   # (windows, steps)
        row = {}
        for q in ("sic", "sit", "sivol"):
            raw = np.array([(r["raw_mean"][q] - r["forecast_mean"][q]).reshape(n_w, members).mean(axis=1)
                            for r in recs]).T
            app = np.array([(r["bounded_mean"][q] - r["forecast_mean"][q]).reshape(n_w, members).mean(axis=1)
                            for r in recs]).T
            row[q] = {"raw": float(raw[sel].mean()), "applied": float(app[sel].mean()),
                      "train_residual": None if monthly_train is None or int(mo) not in monthly_train
                      else monthly_train[int(mo)][q]}
        monthly[int(mo)] = {"steps": int(sel.sum()), **row}
    return drift, monthly


def print_table(res: dict) -> None:
    """The headline figures of a result, one line per quantity (m or 1 per 12 h step)."""
    print(f"# {res['label']}: {len(res['starts'])} windows × {res['steps']} steps × {res['members']} members, "
          f"bounds={res['bounds']}")
    print(f"{'quantity':8s} {'lead':>8s} {'raw':>10s} {'rectified':>10s} " +
          " ".join(f"{'rect_' + s:>10s}" for s in ICE_STATES))
    for lead, terms in res["rectification"].items():
        for q, r in terms["rectified"].items():
            print(f"{q:8s} {lead:>8s} {terms['raw'][q]['all']:10.2e} {r['all']:10.2e} " +
                  " ".join(f"{r[s]:10.2e}" for s in ICE_STATES))
    for q, t in res["truth_change"].items():
        c = res["coarse_error"][q]
        d = res["drift"][q]
        print(f"{q:8s} truth Δ mean {t['mean']:.2e} |Δ| {t['mean_abs']:.2e}; coarse err mean {c['mean']:.2e} "
              f"|err| {c['mean_abs']:.2e}; drift day1 {d[1]:.3e} end {d[-1]:.3e}")
    leads = sorted({min(n, res["steps"]) for n in (2, 10, 30, res["steps"])})
    for v, sk in res["skill"].items():
        print(f"{v:8s} RMSE/spread at records {leads}: " +
              "  ".join(f"{sk['rmse'][n]:.4g}/{sk['spread'][n]:.3g}" for n in leads))


def main(argv=None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, default=None, help="residual corrector; none = uncorrected")
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--starts", type=str, default=None, help="comma-separated start indices (overrides --windows)")
    p.add_argument("--days", type=float, default=15.0)
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler-steps", type=int, default=None)
    p.add_argument("--bounds", default="clip", help="clip (the corrector's bounds) or a corrector.bounds.BOUNDS_MODES")
    p.add_argument("--train-pairs", type=Path, default=None)
    p.add_argument("--label", default=None)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    steps = round(a.days * 2)
    starts = [int(s) for s in a.starts.split(",")] if a.starts else window_starts(a.pairs, a.windows, steps)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    probe = run(a.pairs, a.checkpoint, starts, steps, a.members, a.seed, a.sampler_steps, a.bounds,
                a.out.with_suffix(".nc"))
    stats, truth, times = truth_terms(a.pairs, starts, steps)
    drift, monthly = drift_and_monthly(probe, truth, times, a.members,
                                       monthly_residuals(a.train_pairs) if a.train_pairs else None)
    res = {"label": a.label or (a.checkpoint.name if a.checkpoint else "coarse"), "checkpoint": str(a.checkpoint),
           "pairs": str(a.pairs), "starts": starts, "steps": steps, "members": a.members, "seed": a.seed,
           "bounds": a.bounds, "rectification": summarise(probe.records, LEADS), **stats, "drift": drift,
           "monthly": monthly, "skill": skill(a.pairs, a.out.with_suffix(".nc"), starts, steps)}
    write_text_atomic(json.dumps(res, indent=1), a.out)
    print_table(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
