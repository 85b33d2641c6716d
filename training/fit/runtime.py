"""Where a training process runs: rank and world of the torchrun data-parallel group, device, threads; and the two
collective operations the trainer needs (sum over ranks, gather from ranks), which are no-ops on one rank.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.distributed as dist

from training.fit.config import TrainConfig


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



def all_reduce(t: torch.Tensor, env: Env) -> torch.Tensor:
    """Sum `t` over the ranks in place (nothing on one rank); returns `t`."""
    if env.world > 1:
        dist.all_reduce(t)
    return t


def gather(obj, env: Env) -> list:
    """[obj of rank 0, obj of rank 1, …] on every rank (picklable objects); [obj] on one rank."""
    if env.world == 1:
        return [obj]
    out = [None] * env.world
    dist.all_gather_object(out, obj)
    return out
