"""Super-resolution corruptions (tasks ``sr4x_pool``, ``sr4x_bicubic``).

Both follow DDRM (Kawar et al., 2022) as used by I2SB: a separable downsampling y = H X H^T per channel
(``SuperResolution``: f x f average pooling; ``SRConv``: the 4f-tap bicubic kernel, a = -0.5, with
reflective padding and stride f), then nearest upsampling back to full size (``torch.nn.Upsample(
scale_factor=4, mode="nearest")`` in the authors' ``corruption/superresolution.py``, for both filters).
DDRM applies H through its SVD with singular values < 3e-2 zeroed; here that truncated 1-D factor is
formed once as a matrix (for the bicubic kernel no singular value is that small, so it equals the plain
filter). The authors' operators are square; an H x W image gets its own factor per side (the square
case is unchanged), so any H and W divisible by 4 work.

``measure`` gives the true low-resolution image A x0 (B, 3, H/4, W/4) and ``lift_image`` its nearest
upsampling, the x1 the model was trained on: ``lift_image(measure(x0)) == deg(x0)``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import torch
from torch import Tensor

from i2sb.degrade.base import ImageSize, LinearDegradation, LinearOperator, size_text, working_dtype
from i2sb.degrade.linear import SeparableOperator, banded_matrix, nearest_upsample, truncated_factor, truncated_pinv


SR_FACTOR = 4  # the paper's tasks are 4x super-resolution


def keys_cubic(x: Tensor, a: float = -0.5) -> Tensor:
    """Keys (1981) cubic convolution kernel, the "bicubic" kernel with parameter a (elementwise)."""
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def bicubic_taps(factor: int) -> Tensor:
    """The 4*factor taps of DDRM's bicubic downsampler: the cubic sampled at (k - 2f + 1/2) / f, summing
    to one. float64, shape (4 * factor,)."""
    positions = (torch.arange(4 * factor, dtype=torch.float64) - 2 * factor + 0.5) / factor
    taps = keys_cubic(positions)
    return taps / taps.sum()


def pool_matrix(n: int, factor: int) -> Tensor:
    """(n/f, n) 1-D factor of f x f average pooling (DDRM's ``SuperResolution``). float64."""
    taps = torch.full((factor,), 1.0 / factor, dtype=torch.float64)
    return banded_matrix(taps, n, torch.arange(0, n, factor), 0, symmetric=False)


def bicubic_matrix(n: int, factor: int) -> Tensor:
    """(n/f, n) 1-D factor of DDRM's ``SRConv`` bicubic downsampler: output o is centred between
    input pixels f*o + f/2 - 1 and f*o + f/2, taps at offsets -2f .. 2f-1, reflective padding. float64."""
    centers = torch.arange(factor // 2, n + factor // 2, factor)
    return banded_matrix(bicubic_taps(factor), n, centers, -2 * factor, symmetric=True)


class SuperResolution(LinearDegradation):
    """x1 = nearest_upsample(H_t X H_t^T): f-times downsampling by a separable filter, back to full size.

    ``operator()``: A (B, 3, H, W) -> (B, 3, H/f, W/f); A_pinv: the truncated factors' pseudo-inverses on
    both sides; lift: nearest upsampling (so ``lift(A(x0)) == x1``). ``measure``: (A x0, None);
    ``lift_image``: the nearest upsampling of a low-resolution image.
    """

    scale = SR_FACTOR  # the class's factor, what the task registry reports; an instance keeps its own

    def __init__(
        self, image_size: ImageSize, matrix: Callable[[int, int], Tensor], name: str, factor: int = 4
    ) -> None:
        super().__init__(image_size, name)
        if factor < 1 or self.height % factor or self.width % factor:
            raise ValueError(f"{name}: image_size {size_text(self.size)} is not a multiple of the factor {factor}")
        self.factor = self.scale = factor
        self._matrix = matrix

    @cached_property
    def _operator(self) -> LinearOperator:
        rows = self._matrix(self.height, self.factor)
        if self.width == self.height:
            return SeparableOperator(truncated_factor(rows), truncated_pinv(rows))
        cols = self._matrix(self.width, self.factor)
        return SeparableOperator(truncated_factor(rows), truncated_pinv(rows), truncated_factor(cols), truncated_pinv(cols))

    def measure(self, x0: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, None]:
        """x0 (B, 3, H, W) -> (the low-resolution image A x0 (B, 3, H/f, W/f), None), in x0's dtype."""
        self.check_image(x0)
        return self._operator.A(x0.to(working_dtype(x0.dtype))).to(x0.dtype), None

    def lift_image(self, y: Tensor) -> Tensor:
        """Low-resolution y (B, 3, H/f, W/f) -> x1 (B, 3, H, W): nearest upsampling, as the authors' training."""
        self.check_image(y, self.measurement_size)
        return nearest_upsample(y, self.factor)


def sr4x_pool(image_size: ImageSize) -> SuperResolution:
    """DDRM ``SuperResolution``: 4x4 average pooling, then nearest upsampling."""
    return SuperResolution(image_size, pool_matrix, "sr4x_pool", SR_FACTOR)


def sr4x_bicubic(image_size: ImageSize) -> SuperResolution:
    """DDRM ``SRConv`` with the bicubic kernel (a = -0.5, 16 taps, stride 4), then nearest upsampling."""
    return SuperResolution(image_size, bicubic_matrix, "sr4x_bicubic", SR_FACTOR)
