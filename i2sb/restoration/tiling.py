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


TILE_BATCH = 8  # default images per network call when tiling off the CPU: max(batch, TILE_BATCH)


class TiledDenoiser:
    """``denoiser(xt, step, cond)`` evaluated on overlapping tiles and blended without seams: the
    :class:`~i2sb.core.denoiser.Tiles` of a restoration, around the network's output
    (:meth:`~i2sb.core.denoiser.Denoiser.net_call`), so that x0 is computed once from the blend.

    Each tile's output is weighted by a separable raised-cosine window; the weighted sum is divided by the
    sum of the weights, so the blend is a convex combination at every pixel (a constant output stays
    exactly that constant, an identity stays the identity). Shapes: (B, C, H, W) -> (B, 3, H, W).

    The tiles of a batch go through the network together, at most ``tile_batch`` images per call
    (``tile_batch <= B``: one tile per call, one after another), in tile order, so the blend adds the same
    numbers in the same order whatever the grouping; only the network's own kernels may round differently
    at another batch size. None: one tile per call on the CPU (not launch-bound; its kernels for a batch of
    one are not those for a larger batch, so grouping would move the last bits), ``max(B, TILE_BATCH)``
    images per call on GPUs. The windows and their sum are built once per image size and kept on the
    device (one host-to-device copy per restoration).
    """

    def __init__(self, denoiser: Callable[..., Tensor], tile: int, overlap: int, tile_batch: int | None = None):
        if not 0 <= overlap < tile:
            raise ValueError(f"tile_overlap must be in 0..{tile - 1} for tile={tile}, got {overlap}")
        if tile_batch is not None and tile_batch < 1:
            raise ValueError(f"tile_batch must be at least 1, got {tile_batch}")
        self.denoiser, self.tile, self.overlap, self.tile_batch = denoiser, tile, overlap, tile_batch
        self._blend: dict[tuple, tuple[list[tuple[slice, slice]], Tensor, Tensor]] = {}

    def windows(self, height: int, width: int) -> list[tuple[slice, slice, Tensor]]:
        """``(rows, cols, weight (h, w) float64)`` of every tile of an image of ``height x width``."""
        th, tw = min(self.tile, height), min(self.tile, width)
        wy, wx = raised_cosine(th, th < height), raised_cosine(tw, tw < width)
        return [(slice(y, y + th), slice(x, x + tw), wy[:, None] * wx[None, :])
                for y in tile_starts(height, self.tile, self.overlap)
                for x in tile_starts(width, self.tile, self.overlap)]

    def blend_weights(self, like: Tensor) -> tuple[list[tuple[slice, slice]], Tensor, Tensor]:
        """``(tiles, weights (n, h, w), norm (H, W))`` for images like ``like`` (B, C, H, W), on its device and
        in its dtype: the windows copied to the device once, their sum accumulated there tile by tile."""
        height, width = like.shape[-2:]
        key = (height, width, like.device, like.dtype)
        if key not in self._blend:
            tiles = self.windows(height, width)
            weights = torch.stack([w for _, _, w in tiles]).to(device=like.device, dtype=like.dtype)
            norm = torch.zeros((height, width), dtype=like.dtype, device=like.device)
            for (rows, cols, _), weight in zip(tiles, weights):
                norm[rows, cols] += weight
            self._blend[key] = ([(rows, cols) for rows, cols, _ in tiles], weights, norm)
        return self._blend[key]

    def whole(self, x: Tensor) -> bool:
        """Whether ``x`` (B, C, H, W) fits in one tile: the network then sees the image itself."""
        return x.shape[-2] <= self.tile and x.shape[-1] <= self.tile

    def __call__(self, xt: Tensor, step: Tensor, cond: Tensor | None = None) -> Tensor:
        if self.whole(xt):
            return self.denoiser(xt, step, cond)
        height, width = xt.shape[-2:]
        tiles, weights, norm = self.blend_weights(xt)
        total = None
        for first, parts in self._evaluate(tiles, xt, step, cond):
            for (rows, cols), weight, part in zip(tiles[first:], weights[first:], parts):
                if total is None:
                    total = xt.new_zeros((*part.shape[:2], height, width))
                total[..., rows, cols] += part.to(xt.dtype) * weight
        return total / norm

    def _evaluate(self, tiles: list[tuple[slice, slice]], xt: Tensor, step: Tensor, cond: Tensor | None):
        """``(index of the group's first tile, its outputs (B, 3, h, w) one per tile)`` per network call."""
        batch = xt.shape[0]
        per_call = max(1, default_tile_batch(xt.device, batch, self.tile_batch) // batch)
        for first in range(0, len(tiles), per_call):
            group = tiles[first:first + per_call]
            out = self.denoiser(_gather(xt, group), step.repeat(len(group)), _gather(cond, group))
            yield first, out.split(batch)


def default_tile_batch(device: torch.device, batch: int, tile_batch: int | None) -> int:
    """Images per network call when tiling: ``tile_batch``, or by default ``batch`` (one tile per call) on the
    CPU and ``max(batch, TILE_BATCH)`` elsewhere."""
    if tile_batch is not None:
        return tile_batch
    return batch if device.type == "cpu" else max(batch, TILE_BATCH)


def _gather(x: Tensor | None, tiles: list[tuple[slice, slice]]) -> Tensor | None:
    """The crops ``tiles`` of ``x`` (B, C, H, W) stacked tile after tile: (len(tiles) * B, C, h, w)."""
    if x is None:
        return None
    if len(tiles) == 1:
        return x[..., tiles[0][0], tiles[0][1]]
    return torch.cat([x[..., rows, cols] for rows, cols in tiles])


def cropped_callback(callback: StepCallback | None, height: int, width: int) -> StepCallback | None:
    """``callback`` seeing the states and x0 predictions of padded images cropped back to ``height x width``."""
    if callback is None:
        return None

    def crop(prev_step: int, step: int, xt: Tensor, pred_x0: Tensor) -> None:
        callback(prev_step, step, xt[..., :height, :width], pred_x0[..., :height, :width])

    return crop
