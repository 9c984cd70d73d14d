"""The memory layout in which restoration hands images to the network.

On CPUs oneDNN's convolutions run faster on channels-last (NHWC) activations than on NCHW ones in inference:
1.10-1.24x for a whole U-Net forward, fp32 and bf16, batch 8 at 64 px and one 256-px image (AMD EPYC, with and
without its kernels capped at AVX2; side by side: ``scripts/bench.py --sections sample``, rows ``fp32`` and
``fp32 nchw``), so restoration feeds the network channels-last images there; the weights keep their layout
(oneDNN reorders them either way). Training keeps NCHW (``trainer.channels_last``), where the backward of the
high-resolution convolutions is slower in NHWC. On other devices nothing changes: unmeasured here.
"""

from __future__ import annotations

import torch
from torch import Tensor


def restoration_layout(x: Tensor | None) -> Tensor | None:
    """``x`` (B, C, H, W) in channels-last memory on CPU; unchanged on other devices, if not 4-D, or None."""
    if x is None or x.device.type != "cpu" or x.dim() != 4:
        return x
    return x.contiguous(memory_format=torch.channels_last)
