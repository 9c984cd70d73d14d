"""Common interface of every degradation: a clean image x0 in [-1, 1] -> the I2SB input x1.

A degradation is built for one image size, an int S (S x S, the training crops) or a pair (H, W) (any
photo), and called on a batch, ``x1, mask = deg(x0, generator)``; linear ones also expose their
measurement operator (``deg.operator()``: ``A``, ``A_pinv``, ``lift``), which DDRM/DDNM-style
baselines and data-consistency steps use. ``deg.measure(x0)`` is what is stored as the degraded image
(the low-resolution image for super-resolution, x1 otherwise) and ``deg.lift_image(y)`` turns that
back into x1 exactly as training made it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Union

import torch
from torch import Tensor


ImageSize = Union[int, tuple[int, int]]


def image_shape(image_size: ImageSize, name: str = "degradation") -> tuple[int, int]:
    """``S`` -> (S, S); ``(H, W)`` (any length-2 sequence of ints) -> (H, W). ValueError unless positive ints."""
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        height, width = image_size  # type: ignore[misc]
    except (TypeError, ValueError):
        height = width = None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width)):
        raise ValueError(f"{name}: image_size must be a positive int or a (height, width) pair, got {image_size!r}")
    return height, width


def size_text(size: tuple[int, int]) -> str:
    """(H, W) for messages: ``"64"`` for a square, ``"500x333 (width x height)"`` otherwise."""
    height, width = size
    return str(height) if height == width else f"{width}x{height} (width x height)"


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """Precision the maths runs in: float64 stays float64, everything else (half, bf16, float32) is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class LinearOperator(ABC):
    """A linear measurement y = A x of an image x in [-1, 1] units, its pseudo-inverse and the lift to x1.

    ``lift(A(x0))`` equals the degradation's ``x1`` for the same ``x0`` (and mask).
    """

    @abstractmethod
    def A(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> measurement y (task-specific shape)."""

    @abstractmethod
    def A_pinv(self, y: Tensor) -> Tensor:
        """Moore–Penrose pseudo-inverse: measurement y -> (B, 3, H, W)."""

    @abstractmethod
    def lift(self, y: Tensor) -> Tensor:
        """Measurement y -> the image-shaped I2SB input x1, (B, 3, H, W)."""


class Degradation(ABC):
    """A corruption x0 -> x1 of (B, 3, H, W) images in [-1, 1], built for one size (``image_size``: S or (H, W)).

    ``size`` is (H, W); ``image_size`` is S for square sizes, else (H, W). Subclasses implement ``_degrade``
    on float32/float64 tensors; ``__call__`` validates the input and restores the caller's dtype (half and
    bf16 inputs are processed in float32). ``scale`` is how many times smaller (per side) the stored
    measurement of ``measure`` is than x1: 4 for 4x super-resolution, 1 for every other task.
    """

    needs_mask: bool = False
    is_linear: bool = False
    scale: int = 1

    def __init__(self, image_size: ImageSize, name: str) -> None:
        self.size = image_shape(image_size, name)
        self.height, self.width = self.size
        self.image_size: ImageSize = self.height if self.height == self.width else self.size
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, image_size={self.image_size})"

    def __call__(self, x0: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """x0: (B, 3, H, W) in [-1, 1] -> (x1 of the same shape/device/dtype, mask (B, 1, H, W) or None)."""
        self.check_image(x0)
        x1, mask = self._degrade(x0.to(working_dtype(x0.dtype)), generator)
        return x1.to(x0.dtype), None if mask is None else mask.to(x0.dtype)

    def check_image(self, x: Tensor, size: tuple[int, int] | None = None) -> None:
        """Raise ValueError unless x is a floating (B, 3, H, W) batch of ``size`` (default: this size)."""
        height, width = size or self.size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2:] != (height, width) or not x.is_floating_point():
            raise ValueError(
                f"{self.name}: expected a floating (B, 3, {height}, {width}) batch, got {tuple(x.shape)} {x.dtype}"
            )

    @property
    def measurement_size(self) -> tuple[int, int]:
        """(H, W) of the stored measurement: the image size divided by ``scale``."""
        return self.height // self.scale, self.width // self.scale

    def measure(self, x0: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """What a degraded photo is stored as: (y (B, 3, H/scale, W/scale), mask or None).

        x1 itself for every task but super-resolution, which stores the true low-resolution image A x0;
        ``lift_image(y)`` equals x1 (for the same draws).
        """
        return self(x0, generator)

    def lift_image(self, y: Tensor) -> Tensor:
        """A stored measurement (B, 3, H/scale, W/scale) -> x1 (B, 3, H, W), as training made it.

        The identity (after the shape check) for every task but super-resolution.
        """
        self.check_image(y, self.measurement_size)
        return y

    @abstractmethod
    def _degrade(self, x0: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        """x0 (B, 3, H, W) float32/float64 -> (x1, mask or None)."""

    def operator(self, mask: Tensor | None = None) -> LinearOperator:
        """The linear measurement operator; only linear degradations have one."""
        raise ValueError(f"{self.name} is not a linear degradation and has no operator()")


class LinearDegradation(Degradation):
    """A degradation that is exactly x1 = lift(A(x0)) for a mask-free linear operator."""

    is_linear = True

    def _degrade(self, x0: Tensor, generator: torch.Generator | None) -> tuple[Tensor, None]:
        op = self.operator()
        return op.lift(op.A(x0)), None

    def operator(self, mask: Tensor | None = None) -> LinearOperator:
        if mask is not None:
            raise ValueError(f"{self.name} takes no mask; operator() must be called without one")
        return self._operator

    @property
    @abstractmethod
    def _operator(self) -> LinearOperator:
        """The (cached) operator of this task."""
