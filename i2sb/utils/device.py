"""The one device resolver of every tool and of ``i2sb.load``."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:{local_rank}`` when CUDA is available, else ``cpu``; ``cuda`` gets the local rank.

    A name that is not a device, or CUDA where there is none, is a one-line ``ValueError``.
    """
    name = str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"device={device!r} is not a device (auto | cpu | cuda | cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available here (use device=cpu)")
    return dev
