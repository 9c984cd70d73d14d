"""What a checkpoint of any kind reads into: the network's arguments and weights, its task and how it was trained."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..config import TaskConfig
from ..nets.guided_diffusion import check_compatible
from ..nets.unet import UNet


@dataclass
class TrainedNetwork:
    """Everything needed to rebuild a trained network for restoration.

    ``unet_kwargs``: :class:`~i2sb.nets.unet.UNet` arguments; ``weights``: its state_dict; ``task``: the bridge
    and degradation it was trained for; ``image_size``: the training size (default tile); ``default_nfe``: the
    checkpoint's setting (``trainer.eval_nfe``); ``method``: the training method (``i2sb`` | ``palette`` | ``ddpm``),
    which decides how it restores; ``validation``: the record of its training validation (PSNR, SWD per NFE;
    :mod:`i2sb.evaluation.record`), None for checkpoints without one; ``student``: a distilled student's
    ``{"z_channels", "steps"}`` (:class:`~i2sb.restoration.student.StudentInfo`; ``method`` ``ibmd``), else None.
    """

    unet_kwargs: dict[str, Any]
    weights: dict[str, Tensor]
    task: TaskConfig
    image_size: int
    default_nfe: int = 10
    method: str = "i2sb"
    validation: dict[str, Any] | None = None
    student: dict[str, Any] | None = None


ALIGNMENT = 64  # bytes; what torch's allocator and its checkpoint files give every tensor


def _aligned(tensor: Tensor) -> Tensor:
    """``tensor``, copied where its data is not 64-byte aligned (safetensors packs tensors back to back): CPU
    kernels take other code paths on unaligned data and round differently, so one network would restore the
    same image to other bits depending on the file it came from."""
    return tensor if tensor.data_ptr() % ALIGNMENT == 0 else tensor.clone()


def build_network(spec: TrainedNetwork, device: torch.device | str = "cpu", source: str = "checkpoint") -> UNet:
    """Instantiate the U-Net of ``spec`` with its weights (float32, eval mode, no gradients) on ``device``."""
    try:
        with torch.device("meta"):
            unet = UNet(**spec.unet_kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: cannot build the U-Net: {err}") from None
    check_compatible(spec.weights, unet.state_dict(), source)
    unet.load_state_dict({k: _aligned(v.to(torch.float32)) for k, v in spec.weights.items()}, assign=True)
    return unet.to(device).eval().requires_grad_(False)
