"""`icecorr assimilate`: strong-constraint 4D-Var with a deterministic emulator and its adjoint (Durand et al. 2025).

The driver: reads the window, the truth and the background, minimises the cost (`training.assimilation.fourdvar`,
where the cost and the control-variable transform are described) and writes the outputs.

Inputs: a deterministic emulator checkpoint, an observation pair file (`training.data.observations`: `reference_*`
NaN where unobserved, `obs_error_*`; it also gives the forcing and the mask), the window start and length, and a
background: from a file, the file's `initial_*` at the start, or — for twin experiments — the truth perturbed by
noise drawn from B. With a truth file the analysis and both forecasts are scored against it.
Outputs in `out_dir`: `analysis.nc` (analysis, background, truth and their trajectories), `cost.csv` (J, J_b,
J_o, ‖∇J‖ per iteration), `assimilation.png` and `summary.json`.

Run: `icecorr assimilate configs/assimilate.yaml assimilate.start=2003-11-10T00:00 [--out runs/assimilate]`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from icecorr.base.errors import InputError
from icecorr.base.files import write_json_atomic
from training.assimilation.background import Correlation, perturbed
from training.assimilation.config import AssimilateConfig, AssimilateRunConfig
from training.assimilation.fourdvar import FourDVar, build_rollout
from training.assimilation.io import (Window, read_background_file, read_truth, read_window, write_analysis,
                                      write_history)
from training.assimilation.plots import plot
from training.assimilation.scores import scores


def background_state(cfg: AssimilateConfig, variables: Sequence[str], window: Window,
                     truth: np.ndarray | None) -> np.ndarray:
    """The background x_b (V, ny, nx) in the emulator's variable order, as `assimilate.background.kind` says: the
    truth's initial state perturbed by noise from B, the observation file's `initial_*`, or a background file
    (its fields replace the `initial_*` ones; every control variable must be in it)."""
    bg = cfg.background
    if bg.kind == "perturbed_truth":
        if truth is None:
            raise InputError(None, "assimilate.truth", "background.kind = perturbed_truth needs a truth file")
        return perturbed(truth[0], variables, bg, window.mask, window.dx)
    xb = window.initial.copy()
    if bg.kind == "initial":
        return xb
    fields = read_background_file(bg.file, variables, window.mask.shape)
    for k, v in enumerate(variables):
        if v in fields:
            xb[k] = fields[v]
        elif v in cfg.control:
            raise InputError(str(bg.file), v, "missing control variable in the background file")
    return xb


def run_assimilate(cfg: AssimilateConfig, out_dir: Path | None = None, log=print) -> dict:
    """Run one 4D-Var analysis; write the outputs; return the summary (also written as summary.json)."""
    import torch

    from corrector.checkpoint import CheckpointError
    from corrector.inference import Corrector

    torch.set_num_threads(cfg.threads)
    out = Path(out_dir or cfg.out_dir)
    c = Corrector.load(cfg.checkpoint, device="cpu")
    if c.mode != "emulator":
        raise CheckpointError(str(cfg.checkpoint), "4D-Var needs an emulator-mode checkpoint (the whole 12 h step); a "
                              "residual corrector needs the coarse model's adjoint, which does not exist")
    if c.kind != "deterministic":
        log("note: diffusion emulator — linearising one member with fixed noise (seed 0)")
    variables = c.variables
    missing = [v for v in cfg.control if v not in variables]
    if missing:
        raise InputError(str(cfg.checkpoint), "variables", f"control variable(s) {missing} are not emulated")
    fixed = [n for n in c.conditioning_names if n != "mask" and not n.startswith(("initial_", "forecast_"))]
    window = read_window(cfg, variables, fixed)
    ocean = window.mask
    truth = read_truth(cfg.truth, window.times, variables) if cfg.truth is not None else None
    xb = background_state(cfg, variables, window, truth)
    rollout = build_rollout(c, window.inputs, ocean)
    corr = Correlation(*ocean.shape, window.dx, (cfg.b.length_scale_km or 0.0) * 1e3)
    problem = FourDVar(rollout, xb, window.obs, window.obs_std, cfg.control, cfg.b.sigma, ocean, corr)
    n_obs = int(problem.observed.sum())
    log(f"assimilate: window {np.datetime_as_string(window.times[0], unit='m')} + {cfg.window_days:g} days "
        f"({cfg.n_steps} steps), control {cfg.control} ({problem.n_control} values), {n_obs} observations, "
        f"B {'diagonal' if corr.identity else f'Gaussian {cfg.b.length_scale_km:g} km'}")
    result = problem.minimise(cfg.minimizer, log=log)
    analysis_traj = rollout.forward(result.state)
    background_traj = rollout.forward(xb)
    summary = {"start": np.datetime_as_string(window.times[0], unit="m"), "window_days": cfg.window_days,
               "steps": cfg.n_steps, "control": list(cfg.control), "observations": n_obs,
               "iterations": len(result.history) - 1, "evaluations": result.evaluations,
               "seconds": round(result.seconds, 2), "message": result.message,
               "J_initial": result.history[0]["J"], "J_final": result.history[-1]["J"]}
    if truth is not None:
        summary["scores"] = scores(analysis_traj, background_traj, truth, variables, ocean)
    out.mkdir(parents=True, exist_ok=True)
    write_analysis(out / "analysis.nc", window, variables, analysis_traj, background_traj, truth,
                   {"producer": "icecorr assimilate", "checkpoint": str(cfg.checkpoint),
                    "observations": str(cfg.observations), "summary": summary})
    write_history(out / "cost.csv", result.history)
    plot(out / "assimilation.png", result.history, variables, analysis_traj, background_traj, truth, ocean,
         "sit" if "sit" in variables else variables[0])
    write_json_atomic(summary, out / "summary.json")
    return summary


def format_summary(summary: Mapping) -> str:
    """The summary of `run_assimilate` as a few printable lines: cost reduction, then the scores per variable."""
    lines = [f"4D-Var {summary['start']} + {summary['window_days']:g} d: J {summary['J_initial']:.5g} -> "
             f"{summary['J_final']:.5g} in {summary['iterations']} iterations ({summary['evaluations']} evaluations, "
             f"{summary['seconds']:.1f} s), {summary['observations']} observations"]
    for v, s in summary.get("scores", {}).items():
        red = s["initial_rmse_reduction"]
        initial = (f"initial RMSE background {s['initial_rmse_background']:.4g} -> analysis "
                   f"{s['initial_rmse_analysis']:.4g} ({100 * red:.0f} % lower)" if red is not None else
                   "initial state = background")
        lines.append(f"  {v}: {initial}; window forecast RMSE {s['forecast_rmse_background']:.4g} -> "
                     f"{s['forecast_rmse_analysis']:.4g}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`icecorr assimilate CONFIG.yaml [key.sub=value …] [--out DIR]`."""
    from corrector.checkpoint import CheckpointError
    from icecorr.base.config import ConfigError, dump_config, load_config

    p = argparse.ArgumentParser(prog="icecorr assimilate", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="YAML with an `assimilate:` section (configs/assimilate.yaml)")
    p.add_argument("overrides", nargs="*", help="key.sub=value, e.g. assimilate.start=2003-11-10T00:00")
    p.add_argument("--out", default=None, help="output folder (default assimilate.out_dir)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the resolved config")
    args, extra = p.parse_known_args(argv)
    bad = [a for a in extra if a.startswith("-") or "=" not in a]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)}")
    try:
        cfg = load_config(AssimilateRunConfig, args.config, list(args.overrides) + extra).assimilate
        if args.dry_run:
            print(dump_config(AssimilateRunConfig(assimilate=cfg)), end="")
            return 0
        summary = run_assimilate(cfg, Path(args.out) if args.out else None)
    except (ConfigError, InputError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(f"wrote {Path(args.out or cfg.out_dir)}/{{analysis.nc,cost.csv,assimilation.png,summary.json}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
