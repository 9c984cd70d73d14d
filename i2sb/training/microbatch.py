"""``trainer.microbatch=auto``: the largest microbatch that fits, chosen once at the start of a run.

The global batch and the loss stay what they are (the gradient is the mean over ``batch_size`` images
whatever the microbatch); only the number of sequential forward/backward passes per step changes. On CUDA
each candidate (a divisor of the per-rank batch) is tried with a forward and backward pass on random images
while the optimiser's state that the first step will allocate and a margin of the GPU's memory are held
back; the largest that runs without running out of memory is kept (a binary search: the fit is monotone).
All ranks then take the smallest rank's choice. Elsewhere (CPU, MPS) memory is the host's and speed gains
little from larger passes: the largest divisor up to :data:`HOST_MICROBATCH`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.distributed as dist
from torch import nn

from ..config import TrainConfig
from ..core.denoiser import Denoiser
from ..methods import Method, make_pair, task_degradation
from .dist import DistInfo

AUTO = "auto"
HOST_MICROBATCH = 8  # auto on CPU / MPS: the largest divisor of the per-rank batch up to this
MARGIN = 0.1  # share of the GPU's memory held back while probing (validation, fragmentation)


class Trainer(Protocol):
    """What the probe reads of a :class:`~i2sb.training.trainer.Trainer` (which imports this module)."""

    cfg: TrainConfig
    info: DistInfo
    device: torch.device
    unet: nn.Module
    method: Method
    denoiser: Denoiser


def divisors(n: int) -> list[int]:
    """The divisors of ``n``, ascending: the microbatches that split a per-rank batch evenly."""
    return [d for d in range(1, n + 1) if n % d == 0]


def largest_fitting(sizes: list[int], fits: Callable[[int], bool]) -> int:
    """The largest of ``sizes`` (ascending) for which ``fits`` holds, assuming that whatever fits a larger size
    fits every smaller one (binary search); the smallest size when none fits."""
    low, high = 0, len(sizes) - 1  # sizes[low] is taken to fit; the answer lies in [low, high]
    while low < high:
        mid = (low + high + 1) // 2
        if fits(sizes[mid]):
            low = mid
        else:
            high = mid - 1
    return sizes[low]


def probe_fits(trainer: Trainer, microbatch: int) -> bool:
    """Whether a forward and backward pass of ``microbatch`` random images runs on the trainer's device without
    running out of memory, with the optimiser's state (AdamW: two moments of every parameter) and
    :data:`MARGIN` of the device's memory held back. Leaves no gradient and no allocation behind."""
    device, cfg = trainer.device, trainer.cfg
    held = None
    try:
        held = torch.empty(_held_bytes(trainer), dtype=torch.uint8, device=device)
        g = torch.Generator(device=device).manual_seed(0)
        size = cfg.data.image_size
        batch = {"x0": torch.rand(microbatch, 3, size, size, generator=g, device=device) * 2 - 1}
        deg = task_degradation(cfg.task, size)
        if deg is None:  # paired data: x1 comes with the batch
            batch["x1"] = batch["x0"].clone()
        pair = make_pair(batch, deg, cfg.task, g, device)
        trainer.method.loss(trainer.denoiser, pair, g).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        del held
        trainer.unet.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _held_bytes(trainer: Trainer) -> int:
    """The optimiser's state to come (two float32 moments per parameter) and :data:`MARGIN` of the device."""
    state = 2 * 4 * sum(p.numel() for p in trainer.unet.parameters())
    total = torch.cuda.get_device_properties(trainer.device).total_memory if trainer.device.type == "cuda" else 0
    return state + int(MARGIN * total)


def choose_microbatch(trainer: Trainer, per_rank: int, fits: Callable[[int], bool] | None = None) -> int:
    """The microbatch of ``trainer.microbatch=auto`` for a per-rank batch of ``per_rank`` images: probed with
    ``fits`` (default :func:`probe_fits`) on CUDA, the smallest over ranks; up to :data:`HOST_MICROBATCH` elsewhere."""
    sizes = divisors(per_rank)
    if trainer.device.type != "cuda" and fits is None:
        return max(d for d in sizes if d <= HOST_MICROBATCH)
    chosen = largest_fitting(sizes, fits or (lambda m: probe_fits(trainer, m)))
    if trainer.info.distributed and dist.is_initialized():
        value = torch.tensor([chosen], device=trainer.device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        chosen = int(value)
    return chosen
