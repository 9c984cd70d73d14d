"""Inpainting corruptions (tasks ``inpaint_center``, ``inpaint_freeform1020``, ``inpaint_freeform2030``).

As in the authors' ``corruption/inpaint.py`` (after Palette): the hole (mask = 1) is filled with white,
x1 = x0 * (1 - mask) + mask. The centre hole is the box (h/4, w/4, h/2, w/2) (top, left, height, width),
so on an H x W image it scales with each side (the authors' ``get_center_mask`` takes (h, w) too).
Free-form masks come from Palette's ``imagenet_freeform_masks.npz`` when a file is given
(``mask_file=`` or the environment variable ``I2SB_FREEFORM_MASKS``), otherwise they are drawn as random
brush strokes with the same hole ratios (see ``i2sb.degrade.freeform``).
"""

from __future__ import annotations

import os
from typing import Protocol

import torch
from torch import Tensor

from i2sb.degrade.base import Degradation, ImageSize, LinearOperator, image_shape, working_dtype
from i2sb.degrade.freeform import BrushStrokeMasks, PaletteMasks

MASK_FILE_ENV = "I2SB_FREEFORM_MASKS"


class MaskSampler(Protocol):
    """Draws inpainting masks: (batch, 1, H, W) float on ``device``, 1 = hole.

    ``fixed_mask`` is the (1, 1, H, W) mask if every draw is the same, else None.
    """

    fixed_mask: Tensor | None

    def sample(self, batch: int, device: torch.device, generator: torch.Generator | None) -> Tensor: ...


class CenterMask:
    """The fixed centre box (h//4, w//4, h//2, w//2) of the authors' ``get_center_mask``."""

    def __init__(self, image_size: ImageSize) -> None:
        h, w = image_shape(image_size, "inpaint_center")
        self.fixed_mask = torch.zeros(1, 1, h, w)
        self.fixed_mask[..., h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = 1

    def sample(self, batch: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        return self.fixed_mask.to(device).repeat(batch, 1, 1, 1)


class MaskOperator(LinearOperator):
    """Inpainting as a linear operator: A(x) = x * (1 - mask) keeps the known pixels (image-shaped);
    A is an orthogonal projection, so A_pinv = A; lift fills the hole white: y * (1 - mask) + mask."""

    def __init__(self, mask: Tensor) -> None:
        self.mask = mask

    def _keep(self, x: Tensor) -> Tensor:
        return 1 - self.mask.to(device=x.device, dtype=x.dtype)

    def A(self, x: Tensor) -> Tensor:
        return x * self._keep(x)

    def A_pinv(self, y: Tensor) -> Tensor:
        return y * self._keep(y)

    def lift(self, y: Tensor) -> Tensor:
        keep = self._keep(y)
        return y * keep + (1 - keep)


class Inpaint(Degradation):
    """x1 = x0 * (1 - mask) + mask, mask (B, 1, H, W) drawn by a ``MaskSampler`` and returned with x1."""

    needs_mask = True
    is_linear = True

    def __init__(self, image_size: ImageSize, sampler: MaskSampler, name: str) -> None:
        super().__init__(image_size, name)
        self.sampler = sampler

    def _degrade(self, x0: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        mask = self.sampler.sample(x0.shape[0], x0.device, generator).to(x0.dtype)
        op = MaskOperator(mask)
        return op.lift(op.A(x0)), mask

    def operator(self, mask: Tensor | None = None) -> LinearOperator:
        """The operator for ``mask`` (B or 1, 1, H, W); without one only the centre task has a default."""
        mask = self.sampler.fixed_mask if mask is None else mask
        if mask is None:
            raise ValueError(f"{self.name}: operator() needs the mask returned by deg(x0)")
        height, width = self.size
        if mask.ndim != 4 or mask.shape[1:] != (1, height, width):
            raise ValueError(f"{self.name}: mask must be (B, 1, {height}, {width}), got {tuple(mask.shape)}")
        return MaskOperator(mask.to(working_dtype(mask.dtype)))


def inpaint_center(image_size: ImageSize) -> Inpaint:
    """Centre box hole: a quarter of the image (the authors' ``inpaint-center``)."""
    return Inpaint(image_size, CenterMask(image_size), "inpaint_center")


def _freeform(image_size: ImageSize, name: str, key: str, hole_range: tuple[float, float], mask_file: str | None):
    path = mask_file or os.environ.get(MASK_FILE_ENV) or None
    if path is None:
        return Inpaint(image_size, BrushStrokeMasks(image_size, hole_range), name)
    return Inpaint(image_size, PaletteMasks(path, key, image_size), name)


def inpaint_freeform1020(image_size: ImageSize, mask_file: str | None = None) -> Inpaint:
    """Free-form holes covering 10-20 % (Palette's "10-20% freeform" masks, or generated strokes)."""
    return _freeform(image_size, "inpaint_freeform1020", "10-20% freeform", (0.1, 0.2), mask_file)


def inpaint_freeform2030(image_size: ImageSize, mask_file: str | None = None) -> Inpaint:
    """Free-form holes covering 20-30 % (Palette's "20-30% freeform" masks, or generated strokes)."""
    return _freeform(image_size, "inpaint_freeform2030", "20-30% freeform", (0.2, 0.3), mask_file)
