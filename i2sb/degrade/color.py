"""Colorization corruption (task ``colorize``): the grey image, luminance replicated to 3 channels."""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor

from i2sb.degrade.base import ImageSize, LinearDegradation, LinearOperator
from i2sb.degrade.linear import TensorCache

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma


class LuminanceOperator(LinearOperator):
    """A(x) = sum_c w_c x_c, (B, 3, H, W) -> (B, 1, H, W); the weights sum to 1, so [-1, 1] maps to [-1, 1].

    A_pinv(y) = w y / |w|^2 (the minimum-norm colour image with luminance y); lift(y) = y in all channels.
    """

    def __init__(self, weights: tuple[float, float, float] = LUMA_WEIGHTS) -> None:
        w = torch.tensor(weights, dtype=torch.float64).view(1, 3, 1, 1)
        self._w = TensorCache(w=w, w_pinv=w / w.square().sum())

    def A(self, x: Tensor) -> Tensor:
        w = self._w.like(x)["w"]
        return (x.to(w.dtype) * w).sum(1, keepdim=True).to(x.dtype)

    def A_pinv(self, y: Tensor) -> Tensor:
        return (y * self._w.like(y)["w_pinv"]).to(y.dtype)

    def lift(self, y: Tensor) -> Tensor:
        return y.expand(-1, 3, -1, -1).contiguous()


class Colorize(LinearDegradation):
    """x1 = luminance of x0 (ITU-R 601 weights) replicated to 3 channels."""

    def __init__(self, image_size: ImageSize, name: str = "colorize") -> None:
        super().__init__(image_size, name)

    @cached_property
    def _operator(self) -> LinearOperator:
        return LuminanceOperator()


def colorize(image_size: ImageSize) -> Colorize:
    """Grey input (ITU-R 601 luminance in all three channels)."""
    return Colorize(image_size)
