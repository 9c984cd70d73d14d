"""The degraded boundary x1 as the network sees it, and the known region of inpainting.

The authors' data pipeline (``Runner.sample_batch`` for training, ``compute_batch`` + ``ddpm_sampling`` for
restoration; paper App. C.1): the hole of an inpainting input is filled with N(0, I); with ``cond_x1`` the
network also sees that x1; with ``add_x1_noise`` x1 then gets N(0, I) added. Training, restoration and the
samplers all build their inputs with these functions, so the random draws come in one order everywhere.
"""

from __future__ import annotations

from torch import Tensor

from .noise import Generators, randn


def fill_hole(x1: Tensor, mask: Tensor | None, generator: Generators) -> Tensor:
    """``x1`` (B, C, H, W) with its hole (``mask`` (B or 1, 1, H, W) = 1) replaced by N(0, I); unchanged without a mask."""
    if mask is None:
        return x1
    mask = mask.to(device=x1.device, dtype=x1.dtype)
    return (1.0 - mask) * x1 + mask * randn(x1, generator)


def keep_known(xt: Tensor, known: Tensor, mask: Tensor | None) -> Tensor:
    """Inpainting: the hole from ``xt``, the rest from ``known``; ``xt`` itself without a mask."""
    return xt if mask is None else (1.0 - mask) * known + mask * xt


def bridge_boundary(x1: Tensor, mask: Tensor | None, cond_x1: bool, add_x1_noise: bool,
                    generator: Generators) -> tuple[Tensor, Tensor | None]:
    """``(x1, cond)``: the hole filled with noise (:func:`fill_hole`), ``cond`` = that image when ``cond_x1``
    (else None), then ``x1 + N(0, I)`` when ``add_x1_noise`` (the authors' colorization setup)."""
    x1 = fill_hole(x1, mask, generator)
    cond = x1 if cond_x1 else None
    if add_x1_noise:
        x1 = x1 + randn(x1, generator)
    return x1, cond
