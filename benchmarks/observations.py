"""The "must show" experiments of learning from observations and 4D-Var, on twin data (`icecorr generate` output).

    OMP_NUM_THREADS=1 python -m benchmarks.observations --data data --out runs/observations [--steps 800] [--reuse]

1. Synthetic observations (`training.data.observations.synthesize`, default gaps and noise) of train/val/test.
2. Two deterministic residual correctors with the same network and steps (`configs/train_det_obs.yaml`): one on the
   complete truth (train.nc / val.nc), one on the gappy, noisy observations (train_obs.nc / val_obs.nc).
   Both are scored on the held-out test run against the complete truth: RMSE reduction of the corrected 12 h
   forecast vs the uncorrected one per variable; recovery = reduction(observations) / reduction(truth).
3. A deterministic emulator (same network, emulator mode, complete truth), then 4D-Var twins on held-out test
   windows (`training.assimilation.runner`): background = truth + noise drawn from B, observations from test_obs.nc; the
   analysis' initial-thickness RMSE and the window forecast RMSE vs those of the background.

Prints the figures and writes `results.json` to `--out`. Timings on a shared machine are noisy.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parent.parent
VARIABLES = ("sic", "sit", "snt", "siu", "siv")


def obs_suffix(noise_scale: float) -> str:
    """File-name suffix of the observation files made with noise std × `noise_scale` ('' for the default noise)."""
    return "" if noise_scale == 1.0 else f"_noise{noise_scale:g}"


def make_observations(data: Path, out: Path, reuse: bool, noise_scale: float = 1.0) -> dict:
    """Observation files of the three splits (default gaps; default noise std × noise_scale)."""
    from training.data.observation_config import ObservationConfig
    from training.data.observations import synthesize

    base = ObservationConfig()
    variables = {v: vc.model_copy(update={"noise_std": vc.noise_std * noise_scale})
                 for v, vc in base.variables.items()}
    cov = {}
    for k, split in enumerate(("train", "val", "test")):
        target = out / f"{split}_obs{obs_suffix(noise_scale)}.nc"
        if reuse and target.exists():
            with xr.open_dataset(target) as ds:
                cov[split] = dict(kv.split("=") for kv in ds.attrs["observation_coverage"].split())
                cov[split] = {v: float(c) for v, c in cov[split].items()}
            continue
        cov[split] = synthesize(data / f"{split}.nc", target, ObservationConfig(seed=k + 1, variables=variables))
    return cov


def train(run_dir: Path, train_file: Path, val_file: Path, steps: int, mode: str, reuse: bool,
          balanced: bool = False) -> Path:
    """Train one network of the comparison in `run_dir` for `steps` steps (or reuse its best.pt); its checkpoint."""
    from icecorr.base.config import load_config
    from training.fit.loop import run_train
    from training.fit.config import TrainRunConfig

    best = run_dir / "best.pt"
    if reuse and best.exists():
        return best
    cfg = load_config(TrainRunConfig, ROOT / "configs" / "train_det_obs.yaml",
                      [f"train.data.train_file={train_file}", f"train.data.val_file={val_file}",
                       f"train.out_dir={run_dir}", f"train.max_steps={steps}", f"corrector.mode={mode}",
                       "train.resume=false", f"corrector.loss_balance={'per_variable' if balanced else 'pooled'}"])
    t = time.perf_counter()
    path = run_train(cfg, progress=False, verbose=True)
    print(f"  trained {run_dir.name}: {steps} steps in {time.perf_counter() - t:.0f} s", flush=True)
    return path


def correction_rmse(checkpoint: Path, test_file: Path, batch: int = 32) -> dict[str, dict[str, float]]:
    """Per variable: RMSE of the uncorrected and of the corrected (bounded) 12 h forecast vs the complete truth,
    over every test window and ocean cell (velocities: every face, walls are 0 in both)."""
    from corrector.inference import Corrector

    c = Corrector.load(checkpoint, device="cpu")
    sse = {v: np.zeros(2) for v in c.variables}
    count = 0
    with xr.open_dataset(test_file) as ds:
        ocean = np.asarray(ds["mask"].values) > 0.5
        n = ds.sizes["time"]
        for lo in range(0, n, batch):
            sl = slice(lo, min(lo + batch, n))
            cond = {name: np.asarray(ds[name].isel(time=sl).values, np.float32)
                    for name in c.conditioning_names if name != "mask"}
            cond["mask"] = ocean.astype(np.float32)
            pred = c.sample(cond, members=1)
            base = {v: np.asarray(ds[f"forecast_{v}"].isel(time=sl).values, np.float64) for v in c.variables}
            corrected = c.apply(base, pred, mask=ocean)
            for v in c.variables:
                ref = np.asarray(ds[f"reference_{v}"].isel(time=sl).values, np.float64)
                sse[v] += [np.sum((base[v] - ref)[:, ocean] ** 2), np.sum((corrected[v][:, 0] - ref)[:, ocean] ** 2)]
            count += (sl.stop - sl.start) * int(ocean.sum())
    out = {}
    for v, (fc, corr) in sse.items():
        r_fc, r_corr = np.sqrt(fc / count), np.sqrt(corr / count)
        out[v] = {"rmse_forecast": float(r_fc), "rmse_corrected": float(r_corr),
                  "reduction": float(1.0 - r_corr / r_fc)}
    return out


def assimilation_twins(emulator: Path, data: Path, out: Path, windows: int, window_days: float,
                       max_iterations: int, suffix: str = "") -> list[dict]:
    """4D-Var twin experiments with `emulator` on `windows` windows of the test run (backgrounds = truth + noise
    drawn from B); their summaries."""
    from training.assimilation.config import AssimilateConfig
    from training.assimilation.runner import format_summary, run_assimilate

    obs = out / f"test_obs{suffix}.nc"
    with xr.open_dataset(obs) as ds:
        n = ds.sizes["time"]
    steps = int(round(window_days * 2))
    starts = np.linspace(1, n - steps - 1, windows).astype(int)
    results = []
    for k, i in enumerate(starts):
        cfg = AssimilateConfig(checkpoint=emulator, observations=obs, truth=data / "test.nc",
                               start=str(int(i)), window_days=window_days, obs_variables=["sic", "sit", "snt"],
                               background={"kind": "perturbed_truth", "seed": k,
                                           "perturbation": {"sigma": {"sit": 0.3, "sic": 0.05},
                                                            "length_scale_km": 100.0}},
                               b={"sigma": {"sit": 0.3, "sic": 0.05}, "length_scale_km": 100.0},
                               minimizer={"max_iterations": max_iterations}, out_dir=out / f"assimilate_{k}")
        summary = run_assimilate(cfg, log=lambda *_: None)
        print(format_summary(summary), flush=True)
        results.append(summary)
    return results


def main(argv=None) -> int:
    """Command line: observation files, the trained networks, their scores and the 4D-Var twins (see the module
    docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("data"), help="folder with train.nc, val.nc, test.nc")
    p.add_argument("--out", type=Path, default=Path("runs/observations"))
    p.add_argument("--steps", type=int, default=800, help="training steps of every network")
    p.add_argument("--windows", type=int, default=3, help="4D-Var twin windows on the test run")
    p.add_argument("--window-days", type=float, default=5.0)
    p.add_argument("--iterations", type=int, default=40, help="L-BFGS iterations per 4D-Var")
    p.add_argument("--noise-scale", type=float, default=1.0,
                   help="multiplies the default observation-noise std (0 = gaps only)")
    p.add_argument("--balanced-loss", action="store_true",
                   help="train the observation corrector with corrector.loss_balance=per_variable")
    p.add_argument("--reuse", action="store_true", help="reuse observation files and trained checkpoints")
    p.add_argument("--skip", choices=["training-experiment", "assimilation"], action="append", default=[])
    args = p.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"data": str(args.data), "steps": args.steps, "noise_scale": args.noise_scale}
    suffix = obs_suffix(args.noise_scale)
    t0 = time.perf_counter()
    print("1. synthetic observations", flush=True)
    results["coverage"] = make_observations(args.data, out, args.reuse, args.noise_scale)
    for split, cov in results["coverage"].items():
        print(f"  {split}{suffix}: observed share " + ", ".join(f"{v} {c:.3f}" for v, c in cov.items()), flush=True)

    if "training-experiment" not in args.skip:
        print("2. residual correctors: complete truth vs gappy observations", flush=True)
        truth_ckpt = train(out / "corrector_truth", args.data / "train.nc", args.data / "val.nc", args.steps,
                           "residual", args.reuse)
        tag = suffix + ("_balanced" if args.balanced_loss else "")
        obs_ckpt = train(out / f"corrector_obs{tag}", out / f"train_obs{suffix}.nc", out / f"val_obs{suffix}.nc",
                         args.steps, "residual", args.reuse, args.balanced_loss)
        truth_scores = correction_rmse(truth_ckpt, args.data / "test.nc")
        obs_scores = correction_rmse(obs_ckpt, args.data / "test.nc")
        rows = {}
        print(f"  {'var':4s} {'RMSE fc':>9s} {'truth-trained':>14s} {'obs-trained':>12s} {'recovery':>9s}")
        for v in truth_scores:
            a, b = truth_scores[v], obs_scores[v]
            rec = b["reduction"] / a["reduction"] if a["reduction"] > 0 else float("nan")
            rows[v] = {"truth": a, "observations": b, "recovery": rec}
            print(f"  {v:4s} {a['rmse_forecast']:9.4g} {a['rmse_corrected']:9.4g} ({100 * a['reduction']:3.0f}%) "
                  f"{b['rmse_corrected']:9.4g} ({100 * b['reduction']:3.0f}%) {100 * rec:7.0f}%")
        mean_truth = float(np.mean([r["truth"]["reduction"] for r in rows.values()]))
        mean_obs = float(np.mean([r["observations"]["reduction"] for r in rows.values()]))
        results["correction"] = {"per_variable": rows, "mean_reduction_truth": mean_truth,
                                 "mean_reduction_observations": mean_obs, "recovery": mean_obs / mean_truth}
        print(f"  mean RMSE reduction: truth-trained {100 * mean_truth:.1f} %, obs-trained {100 * mean_obs:.1f} % "
              f"-> recovery {100 * mean_obs / mean_truth:.0f} % (target >= 80 %)", flush=True)

    if "assimilation" not in args.skip:
        print("3. 4D-Var twins with a deterministic emulator", flush=True)
        emulator = train(out / "emulator", args.data / "train.nc", args.data / "val.nc", args.steps, "emulator",
                         args.reuse)
        twins = assimilation_twins(emulator, args.data, out, args.windows, args.window_days, args.iterations,
                                   suffix)
        red = [s["scores"]["sit"]["initial_rmse_reduction"] for s in twins]
        better = [s["scores"]["sit"]["forecast_rmse_analysis"] < s["scores"]["sit"]["forecast_rmse_background"]
                  for s in twins]
        results["assimilation"] = {"windows": twins, "sit_initial_rmse_reduction": red,
                                   "forecast_beats_background": better}
        print(f"  initial sit RMSE reduction per window: {', '.join(f'{100 * r:.0f} %' for r in red)} "
              f"(target >= 50 %); forecast from analysis better: {better}", flush=True)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    name = f"results{suffix}{'_balanced' if args.balanced_loss else ''}.json"
    (out / name).write_text(json.dumps(results, indent=2, default=float))
    print(f"wrote {out / name} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
