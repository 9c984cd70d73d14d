"""Any image size with a fixed-size network: reflection padding, and overlapping tiles blended without seams.

Sides are padded by reflection to a multiple of the U-Net's total down-sampling ``2**(len(channel_mult) - 1)``
and cropped back. Images larger than the training size are denoised in overlapping tiles of the training
size at every sampling step; the tiles' network outputs are blended with a raised-cosine window whose
weights are normalised to sum to one, so the state stays one image and no seams appear.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.types import StepCallback


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad (B, C, H, W) at the bottom/right to sides divisible by ``multiple``: reflection, or edge
    replication where the image is too small to reflect. Crop back with ``[..., :H, :W]``."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Offsets of tiles of length ``tile`` covering ``[0, size)`` with at least ``overlap`` shared pixels."""
    if size <= tile:
        return [0]
    count = math.ceil((size - tile) / (tile - overlap)) + 1
    return [round(i * (size - tile) / (count - 1)) for i in range(count)]


def raised_cosine(length: int, taper: bool = True) -> Tensor:
    """1-D window ``sin^2(pi (i + 0.5) / length)`` (positive everywhere), or ones without ``taper``."""
    if not taper:
        return torch.ones(length, dtype=torch.float64)
    i = torch.arange(length, dtype=torch.float64)
    return torch.sin(math.pi * (i + 0.5) / length) ** 2


class TiledDenoiser:
    """``denoiser(xt, step, cond)`` evaluated on overlapping tiles and blended without seams.

    Each tile's output is weighted by a separable raised-cosine window; the weighted sum is divided by the
    sum of the weights, so the blend is a convex combination at every pixel (a constant output stays
    exactly that constant, an identity stays the identity). Shapes: (B, C, H, W) -> (B, 3, H, W).
    """

    def __init__(self, denoiser: Callable[..., Tensor], tile: int, overlap: int):
        if not 0 <= overlap < tile:
            raise ValueError(f"tile_overlap must be in 0..{tile - 1} for tile={tile}, got {overlap}")
        self.denoiser, self.tile, self.overlap = denoiser, tile, overlap

    def windows(self, height: int, width: int) -> list[tuple[slice, slice, Tensor]]:
        """``(rows, cols, weight (h, w) float64)`` of every tile of an image of ``height x width``."""
        th, tw = min(self.tile, height), min(self.tile, width)
        wy, wx = raised_cosine(th, th < height), raised_cosine(tw, tw < width)
        return [(slice(y, y + th), slice(x, x + tw), wy[:, None] * wx[None, :])
                for y in tile_starts(height, self.tile, self.overlap)
                for x in tile_starts(width, self.tile, self.overlap)]

    def __call__(self, xt: Tensor, step: Tensor, cond: Tensor | None = None) -> Tensor:
        height, width = xt.shape[-2:]
        tiles = self.windows(height, width)
        if len(tiles) == 1:
            return self.denoiser(xt, step, cond)
        total, norm = None, torch.zeros((height, width), dtype=xt.dtype, device=xt.device)
        for rows, cols, weight in tiles:
            part = self.denoiser(xt[..., rows, cols], step, None if cond is None else cond[..., rows, cols])
            weight = weight.to(device=xt.device, dtype=xt.dtype)
            if total is None:
                total = xt.new_zeros((*part.shape[:2], height, width))
            total[..., rows, cols] += part.to(xt.dtype) * weight
            norm[rows, cols] += weight
        return total / norm


def cropped_callback(callback: StepCallback | None, height: int, width: int) -> StepCallback | None:
    """``callback`` seeing the states and x0 predictions of padded images cropped back to ``height x width``."""
    if callback is None:
        return None

    def crop(prev_step: int, step: int, xt: Tensor, pred_x0: Tensor) -> None:
        callback(prev_step, step, xt[..., :height, :width], pred_x0[..., :height, :width])

    return crop
