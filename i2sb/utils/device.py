"""The one device resolver of every tool, of ``i2sb.load`` and of the evaluation API.

``auto`` picks CUDA, then Apple's MPS, then the CPU. A device this machine does not have (``cuda`` without
CUDA, ``mps`` without MPS, ``cuda:3`` with one GPU) or a name that is no device (``tpu``) is a one-line
:class:`DeviceError` naming the key and the devices available here. It is a ``ValueError``, so every command
line reports it as a usage error (exit status 2). :func:`backend_flags` sets the kernel choices of a run
(cuDNN benchmarking, deterministic algorithms).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

AUTO = "auto"
SUPPORTED_TYPES = ("cpu", "cuda", "mps")
FORMS = "auto | cpu | cuda | cuda:N | mps"


class DeviceError(ValueError):
    """A device that does not exist, or that this machine does not have."""


def mps_available() -> bool:
    """Whether Apple's Metal (MPS) backend can run here."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def cuda_count() -> int:
    """The number of CUDA devices this process can use (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def available_devices() -> list[str]:
    """The device names this machine accepts, ``auto`` first: e.g. ``["auto", "cpu", "cuda:0", "cuda:1"]``."""
    return [AUTO, "cpu", *(f"cuda:{i}" for i in range(cuda_count())), *(["mps"] if mps_available() else [])]


def local_cuda(local_rank: int = 0) -> torch.device:
    """The GPU of the process with ``local_rank`` on its node: ``cuda:{local_rank}`` where the process sees the
    node's GPUs (torchrun, ``srun`` with every GPU visible to every task), ``cuda:0`` where it sees exactly one
    (one GPU bound per task: Slurm ``--gpus-per-task=1`` / ``--gpu-bind``, cgroups, per-rank
    ``CUDA_VISIBLE_DEVICES``)."""
    return torch.device("cuda", 0 if cuda_count() == 1 else local_rank)


def auto_device(local_rank: int = 0) -> torch.device:
    """:func:`local_cuda` when CUDA is available, else ``mps`` when MPS is, else ``cpu``."""
    if torch.cuda.is_available():
        return local_cuda(local_rank)
    return torch.device("mps") if mps_available() else torch.device("cpu")


def _parse(device: str | torch.device, local_rank: int) -> torch.device | None:
    """The name as a ``torch.device`` (``auto`` resolved, ``cuda`` -> :func:`local_cuda`); None if no device."""
    name = str(device).strip().lower()
    if name == AUTO:
        return auto_device(local_rank)
    try:
        parsed = torch.device(name)
    except (RuntimeError, ValueError):
        return None
    if parsed.type == "cuda" and parsed.index is None:
        return local_cuda(local_rank)
    return parsed


def _unavailable(dev: torch.device, local_rank: int, explicit: bool) -> str | None:
    """Why this machine cannot run ``dev``; None when it can. ``explicit``: the name gave the GPU's index."""
    if dev.type == "cuda":
        count = cuda_count()
        if count == 0:
            return "CUDA is not available here"
        if dev.index >= count and not explicit:
            return (f"local rank {local_rank} but this process sees {count} CUDA devices (cuda:0 to "
                    f"cuda:{count - 1}): give each task one GPU (e.g. srun --gpus-per-task=1) or every task "
                    f"all of its node's GPUs")
        if dev.index >= count:
            return f"this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})"
    if dev.type == "mps":
        if not mps_available():
            return "MPS (Apple GPU) is not available here"
        if dev.index not in (None, 0):
            return "there is one MPS device (mps)"
    return None


def resolve_device(device: str | torch.device, local_rank: int = 0, key: str = "device") -> torch.device:
    """``device`` (``auto | cpu | cuda | cuda:N | mps`` or a ``torch.device``) -> a ``torch.device`` this machine has.

    ``cuda`` (and ``auto`` on a CUDA machine) means this process's own GPU, :func:`local_cuda`: ``cuda:{local_rank}``
    under torchrun, ``cuda:0`` where one GPU is bound to each task.
    Raises :class:`DeviceError` (one line naming ``key`` and the devices available) otherwise.
    """
    dev = _parse(device, local_rank)
    available = ", ".join(available_devices())
    if dev is None or dev.type not in SUPPORTED_TYPES:
        raise DeviceError(f"{key}={device}: not a device i2sb runs on ({FORMS}); available here: {available}")
    reason = _unavailable(dev, local_rank, explicit=dev.type == "cuda" and ":" in str(device))
    if reason is not None:
        shown = str(device) if str(device) == str(dev) else f"{device} ({dev})"
        raise DeviceError(f"{key}={shown}: {reason}; available here: {available}")
    return dev


CUBLAS_WORKSPACE = ":4096:8"  # what cuBLAS needs for reproducible results (CUDA's documentation)


@contextlib.contextmanager
def backend_flags(device: torch.device, benchmark: bool = True, deterministic: bool = False) -> Iterator[None]:
    """Process-wide kernel choices for a run on ``device``, restored on exit.

    ``benchmark`` (CUDA only): cuDNN times its convolution algorithms for each new shape and keeps the fastest
    (the first steps are slower; fixed shapes, as in training, gain). ``deterministic``: the same bits on every
    run of the same program on the same hardware and software: ``torch.use_deterministic_algorithms``
    (an op without a deterministic kernel is an error), cuDNN deterministic and not benchmarking, TF32 off
    for matrix products and convolutions, ``CUBLAS_WORKSPACE_CONFIG`` set (when not set already; it must be
    set before cuBLAS starts, i.e. before the first matrix product of the process).
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    try:
        cudnn.benchmark = benchmark and device.type == "cuda" and not deterministic
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
            torch.use_deterministic_algorithms(True)
            cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32 = True, False, False
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32 = saved[:4]
        torch.use_deterministic_algorithms(saved[4], warn_only=saved[5])
        if saved[6] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
