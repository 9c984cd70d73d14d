"""Gaussian draws from one generator, or from one generator per image.

Every random draw of restoration goes through :func:`randn`. With a single ``torch.Generator`` (or None) it is
``torch.randn``; with a sequence of generators, one per image of the batch, image ``i`` draws from generator
``i`` only, so an image's result does not depend on which other images share its batch (``i2sb-sample`` seeds
one generator per (seed, file, sample)).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Generators = torch.Generator | Sequence[torch.Generator] | None
"""A generator for the whole batch, one per image (B of them), or None (torch's default generator)."""


def randn(like: Tensor, generator: Generators) -> Tensor:
    """N(0, I) of ``like``'s shape (B, ...), dtype and device, from ``generator`` (see :data:`Generators`)."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    if len(generator) != like.shape[0]:
        raise ValueError(f"one generator per image: got {len(generator)} generators for a batch of {like.shape[0]}")
    return torch.stack([torch.randn(like.shape[1:], generator=g, device=like.device, dtype=like.dtype)
                        for g in generator])
