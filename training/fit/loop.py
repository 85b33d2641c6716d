"""`icecorr train`: fit a corrector on training-pair files; exact resume, EMA, data-parallel over torchrun ranks.

Run: `python -m training.fit configs/train_tiny.yaml train.max_steps=50` (or `icecorr train …`), and for data
parallelism `torchrun --nproc_per_node 2 -m training.fit …` (gloo on CPU, nccl on GPU).

What a run directory holds (`train.out_dir`): `best.pt` (EMA weights of the best validation metric) and `last.pt`
(corrector checkpoints, loadable by `corrector.inference.Corrector.load`), `resume.pt` (everything needed to continue
bit-identically: raw + EMA weights, optimiser, step/epoch/position, schedule horizon, RNG states per rank),
`metrics.csv` and `config.yaml` (the resolved config).

Reproducibility: the batches are a pure function of (seed, epoch, position) (`training.fit.dataset.epoch_batches`),
the loss noise comes from a per-rank generator whose state is saved, so an interrupted and resumed run produces the
same weights bit for bit as an uninterrupted one (same world size, device and thread count).
"""
from __future__ import annotations

import contextlib
import copy
import csv
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from corrector.config import CorrectorConfig
from corrector.normalization import Normalization
from training.fit.dataset import PairDataset, collate, epoch_batches, split_windows
from training.fit.config import TrainConfig, TrainRunConfig

RESUME_FORMAT = 1
METRIC_COLUMNS = ["step", "epoch", "lr", "train_loss", "train_coverage", "val_loss", "val_skill", "time_s"]

ModelFactory = Callable[[CorrectorConfig, int], nn.Module]


# ----------------------------------------------------------------------------------------------------------------
# Run-time environment: ranks, device, threads
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Env:
    """Where this process runs: rank/world of the data-parallel group, device, whether it prints."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # this run created the process group (and destroys it at the end)

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_env(cfg: TrainConfig, device: Optional[str] = None) -> Env:
    """Join the torchrun process group if launched by torchrun (WORLD_SIZE > 1), choose the device and threads."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    wanted = device or cfg.device
    use_cuda = wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("train.device = cuda but no CUDA device is available")
    dev = torch.device("cuda", local_rank % torch.cuda.device_count()) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        owns = True
    if world > 1:
        rank, world = dist.get_rank(), dist.get_world_size()
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    return Env(rank, world, local_rank, dev, owns)


def _all_reduce(t: torch.Tensor, env: Env) -> torch.Tensor:
    if env.world > 1:
        dist.all_reduce(t)
    return t


# ----------------------------------------------------------------------------------------------------------------
# Optimisation pieces: parameter groups, learning-rate schedule, EMA, precision
# ----------------------------------------------------------------------------------------------------------------

def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """minGPT-style split: decay matrices/kernels (ndim ≥ 2), not biases, norm scales or 1-D embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "embed" not in name.lower() else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def learning_rate(step: int, cfg: TrainConfig, horizon: int) -> float:
    """lr for optimiser step `step` (0-based): linear warm-up to lr, then cosine to min_lr at `horizon`."""
    o = cfg.optim
    if o.warmup_steps and step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    span = max(horizon - o.warmup_steps, 1)
    progress = min(max(step - o.warmup_steps, 0) / span, 1.0)
    return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1.0 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of a model's parameters (buffers are copied), kept as a full module copy so it
    can be evaluated and checkpointed like the model. Decay warms up as min(decay, (1 + n) / (10 + n)) so short
    runs are not dominated by the random initialisation."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        ema_p = list(self.module.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1.0 - d)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)


def autocast_context(amp: str, device: torch.device) -> tuple[Callable[[], contextlib.AbstractContextManager], bool]:
    """(context factory for the forward pass, whether a GradScaler is needed) for train.amp."""
    if amp == "auto":
        if device.type != "cuda":
            amp = "off"
        else:
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "off":
        return contextlib.nullcontext, False
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return (lambda: torch.autocast(device.type, dtype=dtype)), amp == "fp16"


def batch_loss(net: nn.Module, batch: dict, world: int, generator: Optional[torch.Generator] = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to back-propagate, this rank's loss) for a batch; `net` is the model or its DDP wrapper (whose
    forward is the loss).

    The loss is a mean over valid (observed ocean) target values, and their number differs between ranks (gappy
    references, land moved by augmentation). DDP averages gradients over ranks, which would weight each rank's mean
    equally; scaling by world × local / global count makes the averaged gradient that of the mean over the whole
    global batch — the same as one process on that batch.
    """
    loss, stats = net(batch["target"], batch["cond"], batch["labels"], target_mask=batch["target_mask"],
                      generator=generator, return_stats=True)
    if world == 1:
        return loss, loss
    local = torch.tensor([float(stats["coverage"])], dtype=torch.float64, device=loss.device)
    total = local.clone()
    dist.all_reduce(total)
    scale = float(local * world / total) if float(total) > 0 else 1.0
    return loss * scale, loss


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Data:
    train: PairDataset
    val: Optional[PairDataset]
    normalization: Normalization
    coverage: np.ndarray  # observed share of ocean target cells per variable, train split


def build_data(cfg: TrainRunConfig, env: Env, normalization: Optional[Normalization] = None) -> Data:
    """Train/val datasets with the normalisation fitted on the train split (or the given one, when resuming).

    Only rank 0 fits the statistics (a streaming pass over the train split); the others receive them."""
    c, d = cfg.corrector, cfg.train.data
    train = PairDataset.for_config(c, d.train_file, cache_max_mb=0.0)
    train_idx, val_idx = np.arange(len(train)), None
    if d.val_file is None:
        train_idx, val_idx = split_windows(train.runs, d.val_fraction)
    if d.max_train_samples:
        train_idx = train_idx[: d.max_train_samples]
    train = PairDataset.for_config(c, d.train_file, indices=train_idx, cache_max_mb=d.cache_max_mb)
    if d.val_file is not None:
        val = PairDataset.for_config(c, d.val_file, cache_max_mb=0.0)
        val_idx = np.arange(len(val))
        val_path = d.val_file
    else:
        val_path = d.train_file
    if d.max_val_samples is not None and val_idx is not None:
        val_idx = val_idx[: d.max_val_samples]
    if d.val_file is not None:
        from icecorr.base.errors import InputError

        if (val.ny, val.nx) != (train.ny, train.nx):
            raise InputError(str(d.val_file), "grid", f"(y, x) = ({val.ny}, {val.nx}) differs from the train file's "
                                                      f"({train.ny}, {train.nx}) {d.train_file}")
        if np.isfinite(val.grid_dx) and np.isfinite(train.grid_dx) and not np.isclose(val.grid_dx, train.grid_dx):
            raise InputError(str(d.val_file), "grid_dx", f"{val.grid_dx:g} m differs from the train file's "
                                                         f"{train.grid_dx:g} m")
    val = (PairDataset.for_config(c, val_path, indices=val_idx, cache_max_mb=d.cache_max_mb)
           if val_idx is not None and len(val_idx) else None)
    payload = [None, None]
    if env.main:
        fitted, coverage = train.fit_normalization()
        payload = [(normalization or fitted).to_dict(), coverage]
    if env.world > 1:
        dist.broadcast_object_list(payload, src=0)
    norm = Normalization.from_dict(payload[0])
    return Data(train.with_normalization(norm), val.with_normalization(norm) if val is not None else None,
                norm, np.asarray(payload[1]))


def _loader(ds: PairDataset, batches: Sequence[list], workers: int) -> torch.utils.data.DataLoader:
    # an own generator: creating a DataLoader iterator draws a worker base seed, which would otherwise advance the
    # global RNG (dropout) at a resume but not in an uninterrupted run (items do not depend on worker seeds)
    return torch.utils.data.DataLoader(ds, batch_sampler=batches, collate_fn=collate, num_workers=workers,
                                       generator=torch.Generator().manual_seed(0))


def _to(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {k: v.to(device, non_blocking=True, memory_format=fmt) if v.ndim == 4 else v.to(device, non_blocking=True)
            for k, v in batch.items()}


# ----------------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------------

@torch.no_grad()
def validate(model: nn.Module, data: Data, cfg: TrainRunConfig, env: Env, autocast) -> dict[str, float]:
    """EMA-model validation loss (fixed noise, so successive validations are comparable) and the RMSE skill.

    skill = mean over variables of 1 − RMSE(corrected) / RMSE(uncorrected), physical units, observed ocean cells,
    on the first `skill_batches` validation batches. The uncorrected forecast has error = target (residual mode);
    in emulator mode the reference is persistence: a zero tendency, or the initial state (read from the `initial_{v}`
    conditioning channel) for the `emulator_state_variables`, whose target is the next state. The corrected
    prediction is the network output (deterministic) or the mean of `skill_members` samples with `skill_steps`
    sampler steps (diffusion).
    """
    t, val = cfg.train, data.val
    if val is None:
        return {}
    per_rank = max(1, t.batch_size // env.world)
    batches = epoch_batches(len(val), per_rank, seed=0, epoch=0, rank=env.rank, world=env.world,
                            augment=False, shuffle=False, drop_last=False)
    gen = torch.Generator(env.device).manual_seed(t.seed + 7919 * (env.rank + 1))
    loss_sum = torch.zeros(2, dtype=torch.float64, device=env.device)
    n_vars = len(cfg.corrector.variables)
    sse = torch.zeros(3, n_vars, dtype=torch.float64, device=env.device)  # corrected, uncorrected, count
    members = 1 if cfg.corrector.kind == "deterministic" else t.skill_members
    std = torch.as_tensor(data.normalization.target_std, device=env.device, dtype=torch.float32)[:, None, None]
    mean = torch.as_tensor(data.normalization.target_mean, device=env.device, dtype=torch.float32)[:, None, None]
    c = cfg.corrector
    persist = [(k, c.conditioning.index(f"initial_{v}")) for k, v in enumerate(c.variables)
               if v in c.emulator_state_variables]  # (target channel, conditioning channel of its initial state)
    cond_std, cond_mean = (torch.as_tensor(a, device=env.device, dtype=torch.float32)
                           for a in (data.normalization.cond_std, data.normalization.cond_mean))
    model.eval()
    for b, batch in enumerate(_loader(val, batches, 0)):
        if t.val_batches is not None and b >= t.val_batches and b >= t.skill_batches:
            break
        batch = _to(batch, env.device, t.channels_last)
        n = batch["target"].shape[0]
        if t.val_batches is None or b < t.val_batches:
            with autocast():
                loss = model.loss(batch["target"], batch["cond"], batch["labels"],
                                  target_mask=batch["target_mask"], generator=gen)
            loss_sum += torch.stack([loss.double() * n, torch.tensor(n, dtype=torch.float64, device=env.device)])
        if b < t.skill_batches:
            cond = batch["cond"].repeat_interleave(members, 0)
            labels = batch["labels"].repeat_interleave(members, 0)
            noise = torch.randn(cond.shape[0], n_vars, *cond.shape[-2:], generator=gen, device=env.device)
            with autocast():
                pred = model.sample_normalised(cond, labels, noise, t.skill_steps)
            pred = pred.float().reshape(n, members, n_vars, *cond.shape[-2:]).mean(1)
            m = batch["target_mask"]
            truth = batch["target"] * std + mean
            reference = torch.zeros_like(truth)  # persistence / the uncorrected forecast
            for k, j in persist:
                reference[:, k] = batch["cond"][:, j] * cond_std[j] + cond_mean[j]
            err_corr = (pred * std + mean - truth) * m
            err_ref = (reference - truth) * m
            sse += torch.stack([(err_corr ** 2).sum((0, 2, 3)).double(), (err_ref ** 2).sum((0, 2, 3)).double(),
                                m.sum((0, 2, 3)).double()])
    _all_reduce(loss_sum, env)
    _all_reduce(sse, env)
    out = {}
    if loss_sum[1] > 0:
        out["val_loss"] = float(loss_sum[0] / loss_sum[1])
    if sse[2].sum() > 0:
        ratio = torch.sqrt(sse[0] / sse[1].clamp_min(1e-300))
        out["val_skill"] = float((1.0 - ratio).mean())
        out.update({f"val_skill_{v}": float(1.0 - r) for v, r in zip(cfg.corrector.variables, ratio)})
    return out


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints and resume state
# ----------------------------------------------------------------------------------------------------------------

#: units of the ML variables when a pair file does not state them (docs/design.md)
DEFAULT_UNITS = {"sic": "1", "sit": "m", "snt": "m", "siu": "m s-1", "siv": "m s-1", "damage": "1"}


def _units(ds: PairDataset, variables: Sequence[str]) -> dict[str, str]:
    import xarray as xr

    with xr.open_dataset(ds.path) as f:
        return {v: str(f[f"reference_{v}"].attrs.get("units", DEFAULT_UNITS.get(v, "1")))
                if f"reference_{v}" in f.variables else DEFAULT_UNITS.get(v, "1") for v in variables}


def save_corrector(path: Path, model: nn.Module, ema: EMA, cfg: TrainRunConfig, data: Data, extra: dict) -> Path:
    """A corrector checkpoint (corrector.checkpoint format): raw + EMA weights, config, normalisation, grid."""
    from corrector.checkpoint import mask_hash, save_checkpoint

    ds = data.train
    grid = {"nx": ds.nx, "ny": ds.ny, "dx": ds.grid_dx if np.isfinite(ds.grid_dx) else 0.0,
            "mask_hash": mask_hash(ds.ocean)}
    return save_checkpoint(path, model_state=model.state_dict(), ema_state=ema.module.state_dict(),
                           config=cfg.corrector, normalization=data.normalization, grid=grid,
                           variables_units=_units(ds, cfg.corrector.variables), extra=extra)


def _gather(obj, env: Env) -> list:
    if env.world == 1:
        return [obj]
    out = [None] * env.world
    dist.all_gather_object(out, obj)
    return out


def _rng_state(env: Env, loss_gen: torch.Generator) -> dict:
    state = {"cpu": torch.get_rng_state(), "loss_gen": loss_gen.get_state().cpu()}
    if env.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(env.device)
    return state


def save_resume(path: Path, env: Env, state: dict, rng_states: list[dict]) -> None:
    """Rank 0 writes the resume state atomically (`<name>.tmp-<pid>` then rename)."""
    if not env.main:
        return
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    torch.save({**state, "rng": rng_states, "world": env.world, "format": RESUME_FORMAT}, tmp)
    os.replace(tmp, path)


def load_resume(path: Path, cfg: TrainRunConfig, env: Env) -> dict:
    """The resume state, checked against this run (same corrector config and world size)."""
    from icecorr.base.errors import InputError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(str(path), None, f"cannot read resume state ({type(exc).__name__}: {exc}); delete it "
                                          f"or set train.resume=false to start afresh") from None
    if state.get("format") != RESUME_FORMAT:
        raise InputError(str(path), "format", f"resume format {state.get('format')!r}, expected {RESUME_FORMAT}")
    if state["corrector_config"] != cfg.corrector.model_dump_json():
        raise InputError(str(path), "corrector", "the corrector config differs from the one this run was started "
                                                 "with; use a new train.out_dir or train.resume=false")
    if state["world"] != env.world:
        raise InputError(str(path), "world", f"saved with {state['world']} ranks, now {env.world}: exact resume "
                                             f"needs the same number of ranks")
    return state


# ----------------------------------------------------------------------------------------------------------------
# Metrics CSV
# ----------------------------------------------------------------------------------------------------------------

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
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, METRIC_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)
        self.file = path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, METRIC_COLUMNS)

    def write(self, row: dict) -> None:
        if self.file is not None:
            self.writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in METRIC_COLUMNS})
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


# ----------------------------------------------------------------------------------------------------------------
# The training run
# ----------------------------------------------------------------------------------------------------------------

def load_base_stage(cfg: TrainRunConfig, normalization: Normalization) -> tuple[TrainRunConfig, Optional[dict]]:
    """The frozen regression stage named by `train.base_checkpoint`: (config with `corrector.base_network` and
    `base_conditioning` set, {"weights": its EMA weights keyed for `CorrectorModel.base`, "adapter": the affine maps
    of `CorrectorModel.set_base_adapter`}), after checking it fits this run; (cfg, None) without one.

    The stage may read a subset of this run's channels (e.g. not `drift_steps`) and may have been trained on other
    windows (other normalisation statistics): the adapter maps this run's normalised channels to the stage's and
    its output back to this run's target units."""
    path = cfg.train.base_checkpoint
    if path is None:
        return cfg, None
    from icecorr.base.errors import InputError
    from corrector.checkpoint import load_checkpoint

    c = cfg.corrector
    if c.kind != "diffusion":
        raise InputError(str(path), "train.base_checkpoint", "only a diffusion corrector takes a regression stage")
    base = load_checkpoint(path)
    for what, mine, theirs in (("kind", "deterministic", base.config.kind), ("mode", c.mode, base.config.mode),
                               ("variables", c.variables, base.config.variables),
                               ("emulator_state_variables", c.emulator_state_variables,
                                base.config.emulator_state_variables)):
        if mine != theirs:
            raise InputError(str(path), what, f"regression stage has {theirs!r}, this run needs {mine!r}")
    base_names = list(base.config.conditioning)
    unknown = [n for n in base_names if n not in c.conditioning]
    if unknown:
        raise InputError(str(path), "conditioning", f"regression stage reads {unknown}, which this run lacks")
    idx = [c.conditioning.index(n) for n in base_names]
    # x_base = (x · std + mean − mean_base) / std_base for the stage's channels; y = (y_base · std_base + mean_base
    # − mean) / std for the targets (all per channel; the mask channel has mean 0, std 1 in both)
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    mean, std = f64(normalization.cond_mean)[idx], f64(normalization.cond_std)[idx]
    mean_b, std_b = f64(base.normalization.cond_mean), f64(base.normalization.cond_std)
    t_mean, t_std = f64(normalization.target_mean), f64(normalization.target_std)
    t_mean_b, t_std_b = f64(base.normalization.target_mean), f64(base.normalization.target_std)
    adapter = (std / std_b, (mean - mean_b) / std_b, t_std_b / t_std, (t_mean_b - t_mean) / t_std)
    weights = {k[len("network."):]: v for k, v in base.state(use_ema=True).items() if k.startswith("network.")}
    corrector = c.model_copy(update={"base_network": base.config.network,
                                     "base_conditioning": None if base_names == list(c.conditioning) else base_names})
    return cfg.model_copy(update={"corrector": corrector}), {"weights": weights, "adapter": adapter}


def default_model(cfg: CorrectorConfig, n_cond: int) -> nn.Module:
    from corrector.model import CorrectorModel

    return CorrectorModel(cfg, n_cond)


def run_train(cfg: TrainRunConfig, *, config_text: Optional[str] = None, device: Optional[str] = None,
              progress: Optional[bool] = None, stop_after_steps: Optional[int] = None,
              model_factory: Optional[ModelFactory] = None, verbose: bool = True) -> Path:
    """Train the corrector described by `cfg`; return the path of the selected checkpoint (best.pt when a
    validation ran, else last.pt).

    config_text: the resolved YAML to save in the run directory (default: dumped from cfg); device overrides
    train.device; progress overrides train.progress; stop_after_steps ends this invocation after that many steps
    (resume state written), like an interruption; model_factory(corrector_cfg, n_cond) replaces CorrectorModel.
    Under torchrun (WORLD_SIZE > 1) every rank calls this; rank 0 writes the files.
    """
    env = setup_env(cfg.train, device)
    try:
        return _Trainer(cfg, env, model_factory or default_model, progress, verbose).run(config_text,
                                                                                       stop_after_steps)
    finally:
        if env.owns_group:
            dist.destroy_process_group()


class _Trainer:
    def __init__(self, cfg: TrainRunConfig, env: Env, factory: ModelFactory, progress: Optional[bool],
                 verbose: bool):
        self.cfg, self.t, self.env = cfg, cfg.train, env
        self.out = Path(self.t.out_dir)
        self.verbose = verbose and env.main
        show = self.t.progress if progress is None else progress
        self.show_bar = bool(show and env.main and sys.stderr.isatty())
        self.bar = None
        if self.t.batch_size % env.world:
            raise ValueError(f"train.batch_size ({self.t.batch_size}) must be divisible by the number of ranks "
                             f"({env.world})")
        self.per_rank = self.t.batch_size // env.world
        self.factory = factory

    def say(self, msg: str) -> None:
        if not self.verbose:
            return
        if self.bar is not None:
            self.bar.write(msg)
        else:
            print(msg, flush=True)

    def run(self, config_text: Optional[str], stop_after_steps: Optional[int]) -> Path:
        t, env, cfg = self.t, self.env, self.cfg
        resume_path = self.out / "resume.pt"
        state = load_resume(resume_path, cfg, env) if (t.resume and resume_path.exists()) else None
        # the data are checked (and the statistics fitted) before anything is written: bad input leaves no files
        data = build_data(cfg, env, Normalization.from_dict(state["normalization"]) if state else None)
        cfg, base_weights = load_base_stage(cfg, data.normalization)
        self.cfg = cfg
        if env.main:
            self.out.mkdir(parents=True, exist_ok=True)
            text = config_text or _dump(cfg)
            tmp = self.out / f"config.yaml.tmp-{os.getpid()}"
            tmp.write_text(text)
            os.replace(tmp, self.out / "config.yaml")
        n_train = len(data.train)
        batches_per_epoch = n_train // t.batch_size
        if batches_per_epoch == 0:
            raise ValueError(f"{t.data.train_file}: {n_train} training windows, fewer than train.batch_size "
                             f"({t.batch_size})")
        square = data.train.nx == data.train.ny
        self.say(f"train: {n_train} windows ({batches_per_epoch} batches/epoch), val: "
                 f"{len(data.val) if data.val else 0}; target coverage "
                 + ", ".join(f"{v} {c:.3f}" for v, c in zip(cfg.corrector.variables, data.coverage))
                 + f"; {env.world} rank(s) on {env.device}, {torch.get_num_threads()} thread(s) each")

        torch.manual_seed(t.seed)  # identical initial weights on every rank
        model = self.factory(cfg.corrector, len(cfg.corrector.conditioning)).to(env.device)
        if base_weights is not None:
            model.base.load_state_dict(base_weights["weights"])
            model.set_base_adapter(*base_weights["adapter"])
            self.say(f"regression stage: {t.base_checkpoint} (frozen)")
        if t.channels_last:
            model = model.to(memory_format=torch.channels_last)
        ema = EMA(model, t.optim.ema_decay)
        opt = torch.optim.AdamW(param_groups(model, t.optim.weight_decay), lr=t.optim.lr, betas=t.optim.betas)
        autocast, needs_scaler = autocast_context(t.amp, env.device)
        scaler = torch.amp.GradScaler(env.device.type, enabled=needs_scaler)
        loss_gen = torch.Generator(env.device).manual_seed(t.seed * 1_000_003 + 7 + env.rank)
        torch.manual_seed(t.seed + 104_729 * (env.rank + 1))  # dropout etc.: independent per rank
        step, epoch, pos, horizon, elapsed0 = 0, 0, 0, t.max_steps, 0.0
        resumed_loss_acc = None
        best_value, best_step = None, None
        if state is not None:
            model.load_state_dict(state["model"])
            ema.module.load_state_dict(state["ema"])
            opt.load_state_dict(state["optimizer"])
            if needs_scaler and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            step, epoch, pos = state["step"], state["epoch"], state["position"]
            # keep the (possibly budget-fitted) cosine horizon unless max_steps was changed to extend the run
            horizon = state["horizon"] if state["max_steps"] == t.max_steps else t.max_steps
            best_value, best_step, elapsed0 = state["best_value"], state["best_step"], state["elapsed_s"]
            rng = state["rng"][env.rank]
            torch.set_rng_state(rng["cpu"])
            loss_gen.set_state(rng["loss_gen"].to(loss_gen.get_state().device))
            if "cuda" in rng and env.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], env.device)
            resumed_loss_acc = rng["loss_acc"]
            self.say(f"resumed from {resume_path} at step {step} (epoch {epoch}, batch {pos})")
        if env.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
        else:
            net = model
        log = MetricsLog(self.out / "metrics.csv", env, step if state is not None else None)
        if self.show_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=t.max_steps, initial=step, desc="train", dynamic_ncols=True)

        t_start = time.monotonic()
        steps_this_run, last_saved, last_validated = 0, None, None
        loss_acc = torch.zeros(3, dtype=torch.float64)  # loss sum, coverage sum, count
        if resumed_loss_acc is not None:
            loss_acc.copy_(resumed_loss_acc)
        stop = step >= t.max_steps or (t.max_epochs is not None and epoch >= t.max_epochs)
        timing_start = None
        ocean_share = max(float(data.train.ocean.mean()), 1e-12)

        def checkpoint() -> None:
            nonlocal last_saved
            # per-rank: RNG states and the train-loss sums of the current log interval
            rngs = _gather({**_rng_state(env, loss_gen), "loss_acc": loss_acc.clone()}, env)
            extra = {"step": step, "epoch": epoch, "best_step": best_step, "train_file": str(t.data.train_file),
                     "val_file": str(t.data.val_file), "train_windows": n_train,
                     "coverage": [float(c) for c in data.coverage], "train_config": _dump(cfg)}
            if env.main:
                save_corrector(self.out / "last.pt", model, ema, cfg, data, extra)
                save_resume(resume_path, env, {
                    "model": model.state_dict(), "ema": ema.module.state_dict(), "optimizer": opt.state_dict(),
                    "scaler": scaler.state_dict() if needs_scaler else {}, "step": step, "epoch": epoch,
                    "position": pos, "horizon": horizon, "max_steps": t.max_steps, "best_value": best_value, "best_step": best_step,
                    "elapsed_s": elapsed0 + time.monotonic() - t_start, "normalization": data.normalization.to_dict(),
                    "corrector_config": cfg.corrector.model_dump_json()}, rngs)
            last_saved = step

        def validation() -> dict:
            nonlocal best_value, best_step, last_validated
            metrics = validate(ema.module, data, cfg, env, autocast)
            last_validated = step
            key = t.best_metric if t.best_metric in metrics else "val_loss"
            if key in metrics:
                value = metrics[key]
                better = best_value is None or (value > best_value if key == "val_skill" else value < best_value)
                if better:
                    best_value, best_step = value, step
                    if env.main:
                        save_corrector(self.out / "best.pt", model, ema, cfg, data,
                                       {"step": step, key: value, **{k: v for k, v in metrics.items()},
                                        "train_config": _dump(cfg)})
            self.say(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
                     + (f" (best {best_value:.4g} at step {best_step})" if best_value is not None else ""))
            return metrics

        while not stop:
            batches = epoch_batches(n_train, self.per_rank, t.seed, epoch, env.rank, env.world,
                                    augment=t.data.augment, square=square)
            for batch in _loader(data.train, batches[pos:], t.num_workers):
                batch = _to(batch, env.device, t.channels_last)
                lr = learning_rate(step, t, horizon)
                for g in opt.param_groups:
                    g["lr"] = lr
                model.train()
                with autocast():
                    scaled, loss = batch_loss(net, batch, env.world, loss_gen)
                opt.zero_grad(set_to_none=True)
                scaler.scale(scaled).backward()
                if t.optim.grad_clip is not None:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.optim.grad_clip)
                scaler.step(opt)
                scaler.update()
                ema.update(model, step)
                step, pos, steps_this_run = step + 1, pos + 1, steps_this_run + 1
                covered = float(batch["target_mask"].mean()) / ocean_share  # observed share of ocean targets
                loss_acc += torch.tensor([float(loss.detach()), covered, 1.0], dtype=torch.float64)
                if self.bar is not None:
                    self.bar.update(1)
                    self.bar.set_postfix(loss=f"{float(loss):.4f}", lr=f"{lr:.2e}")
                row = None
                if step % t.log_every == 0 or step % t.val_every == 0 or step == t.max_steps:
                    acc = _all_reduce(loss_acc.clone().to(env.device), env).cpu()
                    row = {"step": step, "epoch": epoch, "lr": f"{lr:.6g}",
                           "train_loss": f"{acc[0] / acc[2]:.6g}", "train_coverage": f"{acc[1] / acc[2]:.4f}",
                           "time_s": f"{elapsed0 + time.monotonic() - t_start:.2f}"}
                    loss_acc.zero_()
                if step % t.val_every == 0 or step == t.max_steps:
                    m = validation()
                    row.update({k: f"{v:.6g}" for k, v in m.items() if k in ("val_loss", "val_skill")})
                if row is not None:
                    log.write(row)
                # stop conditions (decided on rank 0, shared so that every rank leaves the loop together)
                flag = 0
                if env.main:
                    elapsed = time.monotonic() - t_start
                    if t.time_budget_minutes is not None and elapsed > 60 * t.time_budget_minutes:
                        flag = 1
                        self.say(f"time budget of {t.time_budget_minutes} min reached at step {step}")
                    if t.fit_schedule_to_budget and t.time_budget_minutes and state is None and not flag:
                        if steps_this_run == 2:
                            timing_start = time.monotonic()
                        elif steps_this_run == 12:
                            per_step = (time.monotonic() - timing_start) / 10
                            fit = int(step + 0.9 * (60 * t.time_budget_minutes - elapsed) / per_step)
                            horizon = max(min(t.max_steps, fit), step + 1)
                            self.say(f"{per_step * 1000:.0f} ms/step: cosine horizon set to {horizon} steps")
                if stop_after_steps is not None and steps_this_run >= stop_after_steps:
                    flag = 1
                if step >= t.max_steps:
                    flag = 1
                if env.world > 1:
                    sync = torch.tensor([flag, horizon], dtype=torch.int64, device=env.device)
                    dist.broadcast(sync, src=0)
                    flag, horizon = int(sync[0]), int(sync[1])
                if step % t.checkpoint_every == 0 and not flag:
                    checkpoint()
                if flag:
                    stop = True
                    break
            if pos >= len(batches):
                epoch, pos = epoch + 1, 0
                if t.max_epochs is not None and epoch >= t.max_epochs:
                    stop = True
        if last_validated != step and data.val is not None and stop_after_steps is None:
            validation()
        if last_saved != step or state is None:
            checkpoint()
        log.close()
        if self.bar is not None:
            self.bar.close()
        if env.world > 1:
            dist.barrier()
        best = self.out / "best.pt"
        return best if best.exists() else self.out / "last.pt"


def _dump(cfg: TrainRunConfig) -> str:
    import yaml

    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m training.fit CONFIG.yaml [key.sub=value ...]` (also run by `icecorr train`)."""
    import argparse

    from icecorr.base.config import ConfigError, load_config

    p = argparse.ArgumentParser(prog="icecorr train", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="training YAML (configs/train_*.yaml)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.max_steps=100")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="validate config and inputs, then exit")
    args = p.parse_args(argv)
    overrides = list(args.overrides) + ([f"train.seed={args.seed}"] if args.seed is not None else [])
    try:
        cfg = load_config(TrainRunConfig, args.config, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from icecorr.base.errors import InputError

    try:
        if args.dry_run:
            for name in ("train_file", "val_file"):
                f = getattr(cfg.train.data, name)
                if f is not None:
                    PairDataset.for_config(cfg.corrector, f, cache_max_mb=0.0)
            print(_dump(cfg))
            return 0
        path = run_train(cfg, device=args.device, progress=False if args.no_progress else None)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"checkpoint: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
