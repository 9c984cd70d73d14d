"""torch.distributed set-up from the torchrun / Slurm environment, rank helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..utils.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(*names: str, default: int) -> int:
    for name in names:
        if os.environ.get(name, "") != "":
            return int(os.environ[name])
    return default


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) or Slurm.

    One process without those variables runs undistributed. NCCL is used on CUDA, gloo on CPU.
    """
    world_size = _env_int("WORLD_SIZE", "SLURM_NTASKS", default=1)
    rank = _env_int("RANK", "SLURM_PROCID", default=0)
    local_rank = _env_int("LOCAL_RANK", "SLURM_LOCALID", default=0)
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise ValueError("distributed run without MASTER_ADDR/MASTER_PORT: launch with torchrun (see README)")
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def barrier(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean over ranks (no-op for one process)."""
    if info.distributed and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= info.world_size
    return value


def shutdown(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def print0(info: DistInfo, *args, **kwargs) -> None:
    """``print`` on rank 0 only."""
    if info.is_main:
        print(*args, **kwargs, flush=True)
