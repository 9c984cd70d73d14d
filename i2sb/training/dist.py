"""torch.distributed set-up from the launcher's environment (:mod:`.launchers`), rank helpers.

The rendezvous (every process reaching rank 0's store) has a deadline: ``I2SB_RDZV_TIMEOUT_S`` seconds
(default ``RDZV_TIMEOUT_S``); a missed deadline is a one-line :class:`~.launchers.LaunchError` instead of a hang.
Under torchrun its agent has met every process already. NCCL on CUDA (``cuda:LOCAL_RANK``, or ``cuda:0`` where
each task sees only its own GPU: :func:`~i2sb.utils.device.local_cuda`), gloo on CPU.
"""

from __future__ import annotations

import inspect
import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..utils.device import resolve_device
from .launchers import Launch, LaunchError, detect_launch

RDZV_TIMEOUT_S = 300.0
RDZV_TIMEOUT_ENV = "I2SB_RDZV_TIMEOUT_S"


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    launcher: str = "single"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group of this process's launcher (torchrun, submitit, srun; see :mod:`.launchers`).

    One process without a launcher runs undistributed. ``device`` ``auto`` / ``cuda`` become this process's GPU:
    ``cuda:LOCAL_RANK``, or ``cuda:0`` where the process sees one GPU (one bound per task).
    """
    launch = detect_launch()
    dev = resolve_device(device, launch.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if launch.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if launch.launcher == "torchrun":
            dist.init_process_group(backend=backend, rank=launch.rank, world_size=launch.world_size)
        else:
            store = rendezvous(launch, rdzv_timeout_s())
            dist.init_process_group(backend=backend, store=store, rank=launch.rank, world_size=launch.world_size)
    return DistInfo(launch.rank, launch.world_size, launch.local_rank, dev, launch.launcher)


def rdzv_timeout_s() -> float:
    """``$I2SB_RDZV_TIMEOUT_S`` (seconds, > 0) or ``RDZV_TIMEOUT_S``."""
    value = os.environ.get(RDZV_TIMEOUT_ENV, "")
    try:
        seconds = float(value) if value else RDZV_TIMEOUT_S
    except ValueError:
        raise LaunchError(f"{RDZV_TIMEOUT_ENV}={value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise LaunchError(f"{RDZV_TIMEOUT_ENV}={value!r} must be positive")
    return seconds


def rendezvous(launch: Launch, timeout_s: float) -> dist.TCPStore:
    """Rank 0 serves a TCP store at ``master_addr:master_port`` and waits for all ``world_size`` processes; the
    others connect to it. Raises :class:`LaunchError` when that does not happen within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    try:
        if launch.rank != 0:
            _wait_for_port(launch.master_addr, launch.master_port, deadline)
        return dist.TCPStore(launch.master_addr, launch.master_port, launch.world_size, is_master=launch.rank == 0,
                             timeout=timedelta(seconds=max(deadline - time.monotonic(), 1.0)), wait_for_workers=True)
    except (RuntimeError, TimeoutError, OSError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        waited = "for all processes to join" if launch.rank == 0 else "to reach rank 0"
        raise LaunchError(
            f"rendezvous failed ({launch.launcher}, rank {launch.rank} of {launch.world_size}): waited {timeout_s:g} s "
            f"{waited} at {launch.master_addr}:{launch.master_port} ({reason}); check that every process was "
            f"started and the address is reachable ({RDZV_TIMEOUT_ENV} sets the timeout)") from None


def _wait_for_port(host: str, port: int, deadline: float) -> None:
    """Quietly wait until ``host:port`` accepts connections (torch's store client logs every failed try)."""
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(min(deadline - time.monotonic(), 5.0), 0.1)):
                return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no store listening ({err.strerror or err})") from None
            time.sleep(0.2)


def wrap_ddp(module: nn.Module, device: torch.device, sync_buffers: bool, bucket_view: bool) -> DDP:
    """``module`` under DistributedDataParallel on ``device``; ``sync_buffers``: re-send the buffers from rank 0
    before every forward (torch's default; needless where no buffer changes); ``bucket_view``: gradients are
    views into the all-reduce buckets instead of a second copy (``gradient_as_bucket_view``)."""
    sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters else \
        "broadcast_buffers"  # its name in older torch
    return DDP(module, device_ids=[device] if device.type == "cuda" else None, gradient_as_bucket_view=bucket_view,
               **{sync: sync_buffers})


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
