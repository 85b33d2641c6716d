"""The demo's `summary.md`: its headline figures against the product goals, from the test split, the predictability
floor, the evaluation report and the training logs."""
from __future__ import annotations

import csv
from pathlib import Path

import yaml

from icecorr.base.variables import ML_VARIABLES
from training.evaluation.calibration_check import calibration_markdown
from training.evaluation.floor_file import floor_scores
from training.evaluation.metrics_file import read_metrics_netcdf
from training.evaluation.offline_skill import offline_skill


def demo_summary(self) -> str:
    """The headline figures of the demo run `self` (an `icecorr.cli.demo.Demo`) against the product goals
    (markdown), from the test split, the floor and the report."""
    lines = ["# icecorr demo: headline figures", "",
             f"Twin experiment in `{self.out}`; held-out test split `{self.data / 'test.nc'}`; "
             f"{self.plan.windows} windows of {self.plan.window_days:g} days, {self.plan.members} members"
             + (f" (the diffusion ensemble's coarse physics perturbed per member: log-normal σ "
                f"{', '.join(f'{k} {v:g}' for k, v in self.plan.physics_perturbation.items())})"
                if self.plan.physics_perturbation else "")
             + ". Full report: `report/report.md`.", ""]
    skill = {name: offline_skill(self.checkpoint(name), self.data / "test.nc", members=self.plan.members)
             for name in ("deterministic", "diffusion")}
    # the truth ensembles' spread / coarse RMSE (icecorr floor): no corrector's ratio can be below it
    floor = floor_scores(self.data / "floor.nc", ML_VARIABLES, [12.0]) if (self.data / "floor.nc").is_file() else {}

    def at12(name: str, v: str) -> float:
        return float(floor[name].sel(variable=v, lead=12.0)) if floor else float("nan")

    lines += ["## Offline 12 h correction of every test window (ensemble mean of the diffusion corrector)", "",
              "| variable | RMSE coarse | RMSE deterministic | RMSE diffusion | reduction det. | reduction diff. "
              "| max. reduction (floor) | CRPS diff. | MAE det. |", "|---|---|---|---|---|---|---|---|---|"]
    for v, d in skill["diffusion"].items():
        det = skill["deterministic"][v]
        lines.append(f"| {v} | {d['rmse_forecast']:.4g} | {det['rmse_corrected']:.4g} | {d['rmse_corrected']:.4g} "
                     f"| {det['reduction']:.0%} | {d['reduction']:.0%} | {1 - at12('floor_ratio_pairs', v):.0%} "
                     f"| {d['crps']:.4g} | {det['mae_corrected']:.4g} |")
    rows = list(csv.DictReader((self.out / "report" / "metrics.csv").open()))

    def value(model, variable, lead, metric):
        for r in rows:
            if (r["model"], r["variable"], r["metric"]) == (model, variable, metric) and \
                    (lead is None or (r["lead_hours"] and float(r["lead_hours"]) == lead)):
                return float(r["value"])
        return float("nan")

    last = self.plan.window_days * 24
    lines += ["", "## Coupled runs (ensemble mean for ensembles)", "",
              "| variable | 12 h RMSE hybrid / coarse | 12 h RMSE deterministic / coarse | 12 h floor (truth "
              f"spread / coarse) | spread/RMSE range (all leads) | {last:g} h RMSE hybrid / deterministic |",
              "|---|---|---|---|---|---|"]
    leads = sorted({float(r["lead_hours"]) for r in rows if r["lead_hours"] and float(r["lead_hours"]) > 0})
    for v in ("sic", "sit", "snt", "siu", "siv"):
        coarse = value("coarse", v, 12.0, "rmse")
        ss = [value("diffusion", v, lead, "spread_skill_ratio") for lead in leads]
        lines.append(f"| {v} | {value('diffusion', v, 12.0, 'rmse') / coarse:.2f} | "
                     f"{value('deterministic', v, 12.0, 'rmse') / coarse:.2f} | "
                     f"{at12('floor_ratio', v):.2f} | "
                     f"{min(ss):.2f}–{max(ss):.2f} | "
                     f"{value('diffusion', v, last, 'rmse') / value('deterministic', v, last, 'rmse'):.2f} |")
    lines += ["", "## Emulator (no physics) against the uncorrected coarse model", "",
              f"| variable | 12 h RMSE emulator / coarse | {last:g} h RMSE emulator / coarse | spread/RMSE range "
              "(all leads) |", "|---|---|---|---|"]
    for v in ("sic", "sit", "snt", "siu", "siv"):
        ss = [value("emulator", v, lead, "spread_skill_ratio") for lead in leads]
        lines.append(f"| {v} | {value('emulator', v, 12.0, 'rmse') / value('coarse', v, 12.0, 'rmse'):.2f} | "
                     f"{value('emulator', v, last, 'rmse') / value('coarse', v, last, 'rmse'):.2f} | "
                     f"{min(ss):.2f}–{max(ss):.2f} |")
    lines += ["", "## Ensemble calibration goals (diffusion hybrid; `training.evaluation.calibration_check`)", ""]
    lines += calibration_markdown(read_metrics_netcdf(self.out / "report" / "metrics.nc"),
                                  floor_ratio_12h={v: at12("floor_ratio", v) for v in ML_VARIABLES} if floor else None)
    if any(r["metric"] == "rmse_coastal" for r in rows):
        lines += ["", "Coastal band (ocean cells within 2 cells of land) and open sea, 12 h RMSE hybrid / coarse "
                  "and spread/RMSE of the hybrid:", "", "| variable | coastal | open | spread/RMSE coastal | "
                  "spread/RMSE open |", "|---|---|---|---|---|"]
        for v in ("sic", "sit", "snt", "siu", "siv"):
            lines.append(f"| {v} | " + " | ".join(
                f"{value('diffusion', v, 12.0, 'rmse_' + g) / value('coarse', v, 12.0, 'rmse_' + g):.2f}"
                for g in ("coastal", "open")) + " | " + " | ".join(
                f"{value('diffusion', v, 12.0, 'spread_skill_ratio_' + g):.2f}" for g in ("coastal", "open")) + " |")
    lines += ["", f"nRMSE at {last:g} h: " + ", ".join(
        f"{m} {value(m, '', last, 'nrmse'):.3f}" for m in ("coarse", "deterministic", "diffusion", "emulator",
                                                           "persistence", "climatology")), ""]
    lines += ["| deformation scaling | β(1) | β(2) | β(3) |", "|---|---|---|---|"]
    for m in ("truth", "coarse", "deterministic", "diffusion", "emulator"):
        lines.append(f"| {m} | " + " | ".join(f"{value(m, 'deformation', None, f'beta_q{q}_gradient'):.3f}"
                                              for q in (1, 2, 3)) + " |")
    lines += ["", f"Small-scale power ratio to the truth at {last:g} h (1 = truth; ±30 % is the goal):", ""]
    for m in ("coarse", "deterministic", "diffusion"):
        lines.append(f"- {m}: " + ", ".join(f"{v} {value(m, v, last, 'small_scale_power_ratio'):.2f}"
                                            for v in ("sic", "sit", "velocity")))
    lines += ["", "Training steps (fixed counts, so figures do not depend on the machine's load): " + ", ".join(
        training_steps(self.out / "train"))]
    lines += ["", "Wall time per stage (min): " + ", ".join(f"{k} {t / 60:.1f}" for k, t in self.timings.items())]
    return "\n".join(lines) + "\n"

def training_steps(train_dir: Path) -> list[str]:
    """`name done/max` for every model trained under `train_dir` (one folder each), flagged where its time guard
    stopped it early (then the figures are one draw of the machine's load, not reproducible)."""
    out = []
    for folder in sorted(p for p in train_dir.iterdir() if (p / "metrics.csv").is_file()) if train_dir.is_dir() else []:
        name = folder.name
        rows = list(csv.DictReader((folder / "metrics.csv").open()))
        done = int(rows[-1]["step"]) if rows else 0
        planned = yaml.safe_load((folder / "config.yaml").read_text())["train"]["max_steps"]
        out.append(f"{name} {done}/{planned}" + ("" if done >= planned else " (STOPPED BY THE TIME GUARD)"))
    return out
