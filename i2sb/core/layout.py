"""The memory layout in which restoration hands images to the network.

On CPUs restoration feeds the network channels-last (NHWC) images: oneDNN's inference convolutions are faster
on them than on NCHW ones (the measurements: scripts/README.md, bench.py). The weights keep their layout
(oneDNN reorders them either way). Training keeps NCHW (``trainer.channels_last``): there the backward of the
high-resolution convolutions is slower in NHWC. Other devices get the images unchanged.
"""
from __future__ import annotations

import torch
from torch import Tensor


def restoration_layout(x: Tensor | None) -> Tensor | None:
    """``x`` (B, C, H, W) in channels-last memory on CPU; unchanged on other devices, if not 4-D, or None."""
    if x is None or x.device.type != "cpu" or x.dim() != 4:
        return x
    return x.contiguous(memory_format=torch.channels_last)
