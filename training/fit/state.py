"""Exact resume and the metrics log of a training run: the resume state (`resume.pt`: weights, optimiser, position,
schedule horizon and the RNG states of every rank), checked on load against the run, and `metrics.csv`.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Optional

import torch

from icecorr.base.config import first_difference, with_defaults
from icecorr.base.errors import InputError, RunError
from icecorr.base.files import atomic_path
from training.fit.config import TrainRunConfig
from training.fit.runtime import Env

RESUME_FORMAT = 1
METRIC_COLUMNS = ["step", "epoch", "lr", "train_loss", "train_coverage", "val_loss", "val_skill", "time_s"]


def rng_state(env: Env, loss_gen: torch.Generator) -> dict:
    """This rank's random-number states: torch's CPU generator, the loss-noise generator, and CUDA's on a GPU."""
    state = {"cpu": torch.get_rng_state(), "loss_gen": loss_gen.get_state().cpu()}
    if env.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(env.device)
    return state


def restore_rng_state(rng: dict, env: Env, loss_gen: torch.Generator) -> None:
    """Set this rank's generators back to the states saved by `rng_state`."""
    torch.set_rng_state(rng["cpu"])
    loss_gen.set_state(rng["loss_gen"].to(loss_gen.get_state().device))
    if "cuda" in rng and env.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], env.device)


def save_resume(path: Path, env: Env, state: dict, rng_states: list[dict]) -> None:
    """Rank 0 writes the resume state atomically (`<name>.tmp-<pid>` then rename)."""
    if not env.main:
        return
    try:
        with atomic_path(path) as tmp:
            torch.save({**state, "rng": rng_states, "world": env.world, "format": RESUME_FORMAT}, tmp)
    except (OSError, RuntimeError) as exc:  # a full disk: torch says "[enforce fail at inline_container.cc:…]"
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise RunError(f"{path}: the resume state cannot be written (disk full or not writable?): {text}") from None


def load_resume(path: Path, env: Env) -> dict:
    """The resume state, checked against this run's world size (its corrector: `check_resume_corrector`)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(str(path), None, f"cannot read resume state ({type(exc).__name__}: {exc}); delete it "
                                          f"or set train.resume=false to start afresh") from None
    if state.get("format") != RESUME_FORMAT:
        raise InputError(str(path), "format", f"resume format {state.get('format')!r}, expected {RESUME_FORMAT}")
    if state["world"] != env.world:
        raise InputError(str(path), "world", f"saved with {state['world']} ranks, now {env.world}: exact resume "
                                             f"needs the same number of ranks")
    return state


def check_resume_corrector(path: Path, state: dict, cfg: TrainRunConfig) -> None:
    """InputError naming the first differing key unless the resume state's corrector config is this run's, once
    resolved (a regression stage's network filled in from train.base_checkpoint); a field added since is no
    difference."""
    differs = first_difference(with_defaults(json.loads(state["corrector_config"]), cfg.corrector),
                               json.loads(cfg.corrector.model_dump_json()), prefix="corrector.")
    if differs:
        raise InputError(str(path), "corrector", f"the corrector config differs from the one this run was started "
                                                 f"with at {differs[:300]}; use a new train.out_dir or "
                                                 f"train.resume=false")


class MetricsLog:
    """metrics.csv on rank 0: one row per log/validation step, flushed at once. On resume, rows after the resumed
    step (written by the interrupted run after its last resume state) are dropped first."""

    def __init__(self, path: Path, env: Env, resume_step: Optional[int]):
        self.file = None
        if not env.main:
            return
        rows = []
        if resume_step is not None and path.exists():
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, METRIC_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        self.file = path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, METRIC_COLUMNS)

    def write(self, row: dict) -> None:
        """Append one row (missing columns left empty) and flush it."""
        if self.file is not None:
            self.writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in METRIC_COLUMNS})
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
