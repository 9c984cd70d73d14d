"""Common interface of every degradation: a clean image x0 in [-1, 1] -> the I2SB input x1.

A degradation is called on a batch, ``x1, mask = deg(x0, generator)``; linear ones also expose their
measurement operator (``deg.operator()``: ``A``, ``A_pinv``, ``lift``), which DDRM/DDNM-style
baselines and data-consistency steps use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


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
    """A corruption x0 -> x1 of (B, 3, image_size, image_size) images in [-1, 1].

    Subclasses implement ``_degrade`` on float32/float64 tensors; ``__call__`` validates the input and
    restores the caller's dtype (half and bf16 inputs are processed in float32).
    """

    needs_mask: bool = False
    is_linear: bool = False

    def __init__(self, image_size: int, name: str) -> None:
        if not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"{name}: image_size must be a positive int, got {image_size!r}")
        self.image_size = image_size
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, image_size={self.image_size})"

    def __call__(self, x0: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """x0: (B, 3, S, S) in [-1, 1] -> (x1 of the same shape/device/dtype, mask (B, 1, S, S) or None)."""
        self.check_image(x0)
        x1, mask = self._degrade(x0.to(working_dtype(x0.dtype)), generator)
        return x1.to(x0.dtype), None if mask is None else mask.to(x0.dtype)

    def check_image(self, x: Tensor) -> None:
        """Raise ValueError unless x is a floating (B, 3, image_size, image_size) batch."""
        size = self.image_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2:] != (size, size) or not x.is_floating_point():
            raise ValueError(
                f"{self.name}: expected a floating (B, 3, {size}, {size}) batch, got {tuple(x.shape)} {x.dtype}"
            )

    @abstractmethod
    def _degrade(self, x0: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        """x0 (B, 3, S, S) float32/float64 -> (x1, mask or None)."""

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
