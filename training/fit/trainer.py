"""The training run of one rank (`Trainer`): data, model, optimiser and resume state prepared, then epochs of
optimiser steps with logging, validation, checkpoints and a stop decision shared by all ranks.

The file layout of a run directory and the reproducibility contract are described in `training.fit.loop`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch import nn

from corrector.config import CorrectorConfig
from corrector.normalization import Normalization
from icecorr.base.config import dump_config
from icecorr.base.errors import RunError
from icecorr.base.files import write_text_atomic
from icecorr.base.progress import is_terminal, progress
from training.fit.checkpoints import load_base_stage, load_initial_weights, save_corrector
from training.fit.config import TrainRunConfig
from training.fit.cross_fit import CrossFittedStages
from training.fit.dataset import epoch_batches
from training.fit.inputs import build_data, loader, to_device
from training.fit.optim import EMA, autocast_context, batch_loss, learning_rate, param_groups
from training.fit.runtime import Env, all_reduce, gather
from training.fit.state import MetricsLog, check_resume_corrector, load_resume, restore_rng_state, rng_state, save_resume
from training.fit.validation import validate

ModelFactory = Callable[[CorrectorConfig, int], nn.Module]


class Trainer:
    """One training run on this rank: `run` prepares the data, the model and the optimiser (restored from the resume
    state if there is one), then trains epoch by epoch until a stop condition; every piece of the run's state is an
    attribute, and each step of the run is a method. `prepare_data` sets `init_checkpoint`, `data`, `n_train`,
    `square`, `ocean_share`; `build` sets `model`, `ema`, `opt`, `autocast`, `needs_scaler`, `scaler`, `loss_gen`;
    `start_logging` sets `net` (the model or its DDP wrapper) and `log`."""

    def __init__(self, cfg: TrainRunConfig, env: Env, factory: ModelFactory, progress: Optional[bool],
                 verbose: bool):
        self.cfg, self.t, self.env = cfg, cfg.train, env
        self.out = Path(self.t.out_dir)
        self.resume_path = self.out / "resume.pt"
        self.verbose = verbose and env.main
        show = self.t.progress if progress is None else progress
        self.show_bar = bool(show and env.main and is_terminal())
        self.bar = None
        if self.t.batch_size % env.world:
            raise ValueError(f"train.batch_size ({self.t.batch_size}) must be divisible by the number of ranks "
                             f"({env.world})")
        self.per_rank = self.t.batch_size // env.world
        self.factory = factory
        self.resumed = False  # continued from resume.pt
        # position in the run: optimiser steps done, epoch and batch within it, cosine horizon (steps)
        self.step, self.epoch, self.pos, self.horizon = 0, 0, 0, self.t.max_steps
        self.best_value: Optional[float] = None  # best validation metric so far and its step
        self.best_step: Optional[int] = None
        self.elapsed0 = 0.0  # seconds trained before this invocation (resumed runs)
        self.t_start = time.monotonic()
        self.steps_this_run = 0
        self.last_saved: Optional[int] = None  # steps at the last checkpoint / validation of this invocation
        self.last_validated: Optional[int] = None
        self.timing_start: Optional[float] = None  # monotonic time after the 2nd step (fit_schedule_to_budget)
        self.loss_acc = torch.zeros(3, dtype=torch.float64)  # loss sum, coverage sum, count of the log interval

    def say(self, msg: str) -> None:
        """Print a progress line on rank 0 (through the progress bar when one is shown)."""
        if not self.verbose:
            return
        if self.bar is not None:
            self.bar.write(msg)
        else:
            print(msg, flush=True)

    def elapsed(self) -> float:
        """Training seconds of the whole run so far, earlier invocations included."""
        return self.elapsed0 + time.monotonic() - self.t_start

    # --- setting up ------------------------------------------------------------------------------------------------
    def run(self, config_text: Optional[str], stop_after_steps: Optional[int]) -> Path:
        """Train (or continue) the run; return best.pt when a validation ran, else last.pt.

        stop_after_steps ends this invocation after that many steps (resume state written), like an interruption."""
        t = self.t
        state = load_resume(self.resume_path, self.env) if (t.resume and self.resume_path.exists()) else None
        self.resumed = state is not None
        # the data are checked (and the statistics fitted) before anything is written: bad input leaves no files
        base_weights = self.prepare_data(state, config_text)
        self.build(base_weights)
        if state is not None:
            self.restore(state)
        self.start_logging()
        self.train(stop_after_steps)
        return self.finish(stop_after_steps)

    def prepare_data(self, state: Optional[dict], config_text: Optional[str]) -> Optional[dict]:
        """Datasets and normalisation (the saved one when resuming, else `train.init_checkpoint`'s if given, else
        fitted), the regression stage if any, `config.yaml`; returns the stage's weights (None without one)."""
        t, env = self.t, self.env
        self.init_checkpoint = None if state else load_initial_weights(self.cfg)
        normalization = Normalization.from_dict(state["normalization"]) if state else \
            self.init_checkpoint.normalization if self.init_checkpoint is not None else None
        self.data = build_data(self.cfg, env, normalization)
        self.cfg, base_weights = load_base_stage(self.cfg, self.data.normalization)
        if state is not None:  # the corrector as resolved (a regression stage's network filled in), as it was saved
            check_resume_corrector(self.resume_path, state, self.cfg)
        if env.main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(config_text or dump_config(self.cfg), self.out / "config.yaml")
        self.n_train = len(self.data.train)
        batches_per_epoch = self.n_train // t.batch_size
        if batches_per_epoch == 0:
            raise ValueError(f"{t.data.train_file}: {self.n_train} training windows, fewer than train.batch_size "
                             f"({t.batch_size})")
        self.square = self.data.train.nx == self.data.train.ny
        self.ocean_share = max(float(self.data.train.ocean.mean()), 1e-12)
        if self.data.train.drift_windows_left_out:  # a DAgger file given to a corrector that cannot use it
            self.say(f"train: {self.data.train.drift_windows_left_out} drift windows of {t.data.train_file} left out: "
                     "the corrector has no drift_steps channel (set corrector.max_drift_steps to train on them)")
        self.say(f"train: {self.n_train} windows ({batches_per_epoch} batches/epoch), val: "
                 f"{len(self.data.val) if self.data.val else 0}; target coverage "
                 + ", ".join(f"{v} {c:.3f}" for v, c in zip(self.cfg.corrector.variables, self.data.coverage))
                 + f"; {env.world} rank(s) on {env.device}, {torch.get_num_threads()} thread(s) each")
        return base_weights

    def build(self, base_weights: Optional[dict]) -> None:
        """Model (identical initial weights on every rank), EMA, optimiser, precision, loss-noise generator.

        The order of the random draws here is part of the exact-resume contract: do not reorder."""
        t, env, cfg = self.t, self.env, self.cfg
        torch.manual_seed(t.seed)  # identical initial weights on every rank
        model = self.factory(cfg.corrector, len(cfg.corrector.conditioning)).to(env.device)
        if self.init_checkpoint is not None:  # fine-tuning: the checkpoint's (EMA) weights, a fresh optimiser
            model.load_state_dict(self.init_checkpoint.state(use_ema=True))
            self.say(f"initial weights: {t.init_checkpoint}")
        if cfg.corrector.loss_bounded or t.rollout_steps > 1:
            model.set_normalization(self.data.normalization)
        if base_weights is not None:
            model.base.load_state_dict(base_weights["weights"])
            model.set_base_adapter(*base_weights["adapter"])
            self.say(f"regression stage: {t.base_checkpoint} (frozen)")
        self.cross_fit = None
        if t.cross_fit:  # its stages' random initial weights are overwritten, and the global seed is reset below
            train = self.data.train
            self.cross_fit = CrossFittedStages(cfg, self.data.normalization, self.factory, env.device,
                                               train.runs[train.indices])
            self.say("cross-fitted regression stages: " + ", ".join(f"run {r}: {p}" for r, p in t.cross_fit.items()))
        if t.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = EMA(model, t.optim.ema_decay)
        self.opt = torch.optim.AdamW(param_groups(model, t.optim.weight_decay), lr=t.optim.lr, betas=t.optim.betas)
        self.autocast, self.needs_scaler = autocast_context(t.amp, env.device)
        self.scaler = torch.amp.GradScaler(env.device.type, enabled=self.needs_scaler)
        self.loss_gen = torch.Generator(env.device).manual_seed(t.seed * 1_000_003 + 7 + env.rank)
        torch.manual_seed(t.seed + 104_729 * (env.rank + 1))  # dropout etc.: independent per rank

    def restore(self, state: dict) -> None:
        """Continue from a resume state: weights, optimiser, position, best metric, RNG states, loss sums."""
        t = self.t
        self.model.load_state_dict(state["model"])
        self.ema.module.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        if self.needs_scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.pos = state["step"], state["epoch"], state["position"]
        # keep the (possibly budget-fitted) cosine horizon unless max_steps was changed to extend the run
        self.horizon = state["horizon"] if state["max_steps"] == t.max_steps else t.max_steps
        self.best_value, self.best_step, self.elapsed0 = state["best_value"], state["best_step"], state["elapsed_s"]
        rng = state["rng"][self.env.rank]
        restore_rng_state(rng, self.env, self.loss_gen)
        self.loss_acc.copy_(rng["loss_acc"])
        self.say(f"resumed from {self.resume_path} at step {self.step} (epoch {self.epoch}, batch {self.pos})")

    def start_logging(self) -> None:
        """The DDP wrapper (several ranks), metrics.csv and the progress bar; starts this invocation's clock."""
        env, t = self.env, self.t
        if env.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.net = DDP(self.model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
        else:
            self.net = self.model
        self.log = MetricsLog(self.out / "metrics.csv", env, self.step if self.resumed else None)
        if self.show_bar:
            self.bar = progress(total=t.max_steps, initial=self.step, desc="train", unit="step", enabled=True)
        self.t_start = time.monotonic()

    # --- training ----------------------------------------------------------------------------------------------
    def train(self, stop_after_steps: Optional[int]) -> None:
        """Train epoch by epoch until max_steps, max_epochs, the time budget or `stop_after_steps`."""
        t = self.t
        stop = self.step >= t.max_steps or (t.max_epochs is not None and self.epoch >= t.max_epochs)
        while not stop:
            stop = self.train_epoch(stop_after_steps)

    def train_epoch(self, stop_after_steps: Optional[int]) -> bool:
        """Train from the current batch to the end of the epoch or to a stop; True when the run is to stop."""
        t, env = self.t, self.env
        batches = epoch_batches(self.n_train, self.per_rank, t.seed, self.epoch, env.rank, env.world,
                                augment=t.data.augment, square=self.square)
        stop = False
        for batch in loader(self.data.train, batches[self.pos:], t.num_workers):
            lr, _ = self.train_step(to_device(batch, env.device, t.channels_last))
            self.log_and_validate(lr)
            flag = self.should_stop(stop_after_steps)
            if self.step % t.checkpoint_every == 0 and not flag:
                self.checkpoint()
            if flag:
                stop = True
                break
        if self.pos >= len(batches):
            self.epoch, self.pos = self.epoch + 1, 0
            if t.max_epochs is not None and self.epoch >= t.max_epochs:
                stop = True
        return stop

    def train_step(self, batch: dict) -> tuple[float, torch.Tensor]:
        """One optimiser step on `batch` (EMA updated, position advanced, loss added to the log interval's sums);
        returns (learning rate, this rank's loss)."""
        t, model, opt, scaler = self.t, self.model, self.opt, self.scaler
        lr = learning_rate(self.step, t, self.horizon)
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        if self.cross_fit is not None:
            batch = {**batch, "base": self.cross_fit(batch)}
        with self.autocast():
            scaled, loss = batch_loss(self.net, batch, self.env.world, self.loss_gen)
        self.stop_if_diverged(loss, lr)
        opt.zero_grad(set_to_none=True)
        scaler.scale(scaled).backward()
        if t.optim.grad_clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.optim.grad_clip)
        scaler.step(opt)
        scaler.update()
        self.ema.update(model, self.step)
        self.step, self.pos, self.steps_this_run = self.step + 1, self.pos + 1, self.steps_this_run + 1
        covered = float(batch["target_mask"].mean()) / self.ocean_share  # observed share of ocean targets
        self.loss_acc += torch.tensor([float(loss.detach()), covered, 1.0], dtype=torch.float64)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{float(loss):.4f}", lr=f"{lr:.2e}")
        return lr, loss

    def stop_if_diverged(self, loss: torch.Tensor, lr: float) -> None:
        """Stop the run, before the step is applied, when the loss is NaN or infinite on any rank: a diverged
        training must not end with exit 0 and non-finite weights in best.pt (the flag is summed over ranks, so
        every rank stops at the same step)."""
        bad = torch.tensor([0.0 if torch.isfinite(loss.detach()).all() else 1.0], device=self.env.device)
        if float(all_reduce(bad, self.env)) == 0.0:
            return
        if self.bar is not None:
            self.bar.close()
        self.log.close()
        saved = [p.name for p in (self.out / "best.pt", self.out / "last.pt") if p.exists()]
        raise RunError(f"{self.out}: the training diverged at step {self.step + 1}: the loss is "
                       f"{float(loss.detach()):g} (learning rate {lr:.3g}); lower train.optim.lr or lengthen "
                       f"train.optim.warmup_steps. "
                       + (f"{', '.join(saved)} hold the last finite state" if saved else "no checkpoint was written"))

    def log_and_validate(self, lr: float) -> None:
        """At log and validation steps: a metrics.csv row with the interval's mean train loss (over ranks) and
        the validation metrics."""
        t, env, step = self.t, self.env, self.step
        row = None
        if step % t.log_every == 0 or step % t.val_every == 0 or step == t.max_steps:
            acc = all_reduce(self.loss_acc.clone().to(env.device), env).cpu()
            row = {"step": step, "epoch": self.epoch, "lr": f"{lr:.6g}",
                   "train_loss": f"{acc[0] / acc[2]:.6g}", "train_coverage": f"{acc[1] / acc[2]:.4f}",
                   "time_s": f"{self.elapsed():.2f}"}
            self.loss_acc.zero_()
        if step % t.val_every == 0 or step == t.max_steps:
            m = self.validation()
            row.update({k: f"{v:.6g}" for k, v in m.items() if k in ("val_loss", "val_skill")})
        if row is not None:
            self.log.write(row)

    def should_stop(self, stop_after_steps: Optional[int]) -> bool:
        """Whether to stop after this step; decided on rank 0 (with the cosine horizon, which it may fit to the
        time budget) and shared, so that every rank leaves the loop together."""
        t, env = self.t, self.env
        flag = 0
        if env.main:
            elapsed = time.monotonic() - self.t_start
            if t.time_budget_minutes is not None and elapsed > 60 * t.time_budget_minutes:
                flag = 1
                self.say(f"time budget of {t.time_budget_minutes} min reached at step {self.step}")
            if t.fit_schedule_to_budget and t.time_budget_minutes and not self.resumed and not flag:
                self.fit_horizon(elapsed)
        if stop_after_steps is not None and self.steps_this_run >= stop_after_steps:
            flag = 1
        if self.step >= t.max_steps:
            flag = 1
        if env.world > 1:
            sync = torch.tensor([flag, self.horizon], dtype=torch.int64, device=env.device)
            dist.broadcast(sync, src=0)
            flag, self.horizon = int(sync[0]), int(sync[1])
        return bool(flag)

    def fit_horizon(self, elapsed: float) -> None:
        """train.fit_schedule_to_budget: time steps 3 to 12 of this run, then end the cosine schedule at the step
        90 % of the remaining budget reaches. `elapsed`: seconds since this invocation started."""
        t = self.t
        if self.steps_this_run == 2:
            self.timing_start = time.monotonic()
        elif self.steps_this_run == 12:
            per_step = (time.monotonic() - self.timing_start) / 10
            fit = int(self.step + 0.9 * (60 * t.time_budget_minutes - elapsed) / per_step)
            self.horizon = max(min(t.max_steps, fit), self.step + 1)
            self.say(f"{per_step * 1000:.0f} ms/step: cosine horizon set to {self.horizon} steps")

    # --- validation and checkpoints ------------------------------------------------------------------------------
    def validation(self) -> dict:
        """Validate the EMA model; write best.pt when the selected metric improved; return the metrics."""
        t, env, step = self.t, self.env, self.step
        metrics = validate(self.ema.module, self.data, self.cfg, env, self.autocast)
        self.last_validated = step
        key = t.best_metric if t.best_metric in metrics else "val_loss"
        if key in metrics:
            value = metrics[key]
            best = self.best_value
            better = best is None or (value > best if key == "val_skill" else value < best)
            if better:
                self.best_value, self.best_step = value, step
                if env.main:
                    save_corrector(self.out / "best.pt", self.model, self.ema, self.cfg, self.data,
                                   {"step": step, key: value, **{k: v for k, v in metrics.items()},
                                    "train_config": dump_config(self.cfg)})
        self.say(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
                 + (f" (best {self.best_value:.4g} at step {self.best_step})" if self.best_value is not None else ""))
        return metrics

    def checkpoint(self) -> None:
        """last.pt and resume.pt (rank 0 writes; every rank contributes its RNG states and loss sums)."""
        t, env, cfg, data, step = self.t, self.env, self.cfg, self.data, self.step
        rngs = gather({**rng_state(env, self.loss_gen), "loss_acc": self.loss_acc.clone()}, env)
        extra = {"step": step, "epoch": self.epoch, "best_step": self.best_step,
                 "train_file": str(t.data.train_file), "val_file": str(t.data.val_file),
                 "train_windows": self.n_train, "coverage": [float(c) for c in data.coverage],
                 "train_config": dump_config(cfg)}
        if env.main:
            save_corrector(self.out / "last.pt", self.model, self.ema, cfg, data, extra)
            save_resume(self.resume_path, env, {
                "model": self.model.state_dict(), "ema": self.ema.module.state_dict(),
                "optimizer": self.opt.state_dict(), "scaler": self.scaler.state_dict() if self.needs_scaler else {},
                "step": step, "epoch": self.epoch, "position": self.pos, "horizon": self.horizon,
                "max_steps": t.max_steps, "best_value": self.best_value, "best_step": self.best_step,
                "elapsed_s": self.elapsed(), "normalization": data.normalization.to_dict(),
                "corrector_config": cfg.corrector.model_dump_json()}, rngs)
        self.last_saved = step

    def finish(self, stop_after_steps: Optional[int]) -> Path:
        """Final validation and checkpoint unless just done; close the log; the checkpoint to return."""
        if self.last_validated != self.step and self.data.val is not None and stop_after_steps is None:
            self.validation()
        if self.last_saved != self.step or not self.resumed:
            self.checkpoint()
        self.log.close()
        if self.bar is not None:
            self.bar.close()
        if self.env.world > 1:
            dist.barrier()
        best = self.out / "best.pt"
        return best if best.exists() else self.out / "last.pt"
