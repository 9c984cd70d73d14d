"""Free-form inpainting masks: Palette's mask file, or random brush strokes with a target hole ratio.

``PaletteMasks`` reads ``imagenet_freeform_masks.npz`` of Palette (Saharia et al., 2022), as the authors'
``load_masks``: per key ("10-20% freeform", "20-30% freeform", ...) 10 000 bit-packed 256x256 masks
(``np.packbits`` of the flat array, most significant bit first). Masks stay packed (8 KiB each) and are
unpacked on the fly; other image sizes (H x W, not only square) get a nearest-neighbour resize.

``BrushStrokeMasks`` draws masks like the free-form generator of DeepFill v2 (Yu et al., 2019,
Algorithm 1): zig-zag polylines of 4-12 segments, 12-40 px wide at 256 px (scaled with the image size),
mean segment length diagonal / 8. On an H x W image, widths and lengths scale with sqrt(H W) (the side
of a square of the same area; the square case is exactly the above) and vertices stay inside the image. Each mask gets a target ratio drawn uniformly in the hole range;
segments are added until the hole reaches it (stepping back one segment on overshoot), and masks
that miss the range are redrawn. All random numbers come from the CPU (or the given generator's
device), rasterisation runs batched on the images' device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from i2sb.degrade.base import ImageSize, image_shape

PALETTE_MASK_SIZE = 256


def _generator_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


class PaletteMasks:
    """Masks of one key of a Palette-format ``.npz`` file, drawn uniformly at random with replacement."""

    fixed_mask = None

    def __init__(self, path: str | Path, key: str, image_size: ImageSize) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"freeform mask file not found: {self.path}")
        with np.load(self.path) as npz:
            if key not in npz.files:
                raise ValueError(f"{self.path}: no key {key!r} (keys: {', '.join(npz.files)})")
        self.key = key
        self.size = image_shape(image_size, "freeform masks")

    @cached_property
    def packed(self) -> Tensor:
        """(N, 256*256/8) uint8, one bit-packed mask per row."""
        per_mask = PALETTE_MASK_SIZE**2 // 8
        with np.load(self.path) as npz:
            flat = np.asarray(npz[self.key], dtype=np.uint8).reshape(-1)
        count = flat.size // per_mask
        if count == 0:
            raise ValueError(f"{self.path}: key {self.key!r} holds no complete {PALETTE_MASK_SIZE}px mask")
        return torch.from_numpy(flat[: count * per_mask].reshape(count, per_mask).copy())

    def sample(self, batch: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        """(batch, 1, H, W) float masks, 1 = hole."""
        index = torch.randint(len(self.packed), (batch,), generator=generator, device=_generator_device(generator))
        rows = self.packed[index.cpu()].to(device)
        shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=device)  # np.unpackbits: MSB first
        bits = (rows[..., None] >> shifts) & 1
        masks = bits.view(batch, 1, PALETTE_MASK_SIZE, PALETTE_MASK_SIZE).float()
        if self.size != (PALETTE_MASK_SIZE, PALETTE_MASK_SIZE):
            masks = F.interpolate(masks, size=self.size, mode="nearest")
        return masks


@dataclass(frozen=True)
class BrushStyle:
    """Stroke geometry (DeepFill v2's free-form defaults at 256 px), sizes as fractions of the image side
    (of sqrt(H W) for an H x W image)."""

    segments: tuple[int, int] = (4, 12)
    width: tuple[float, float] = (12 / 256, 40 / 256)
    mean_length: float = math.sqrt(2) / 8
    turn: float = 2 * math.pi / 5
    turn_jitter: float = 2 * math.pi / 15


class BrushStrokeMasks:
    """Random brush-stroke masks whose hole ratio lies in ``hole_range`` = (low, high)."""

    fixed_mask = None

    def __init__(
        self,
        image_size: ImageSize,
        hole_range: tuple[float, float],
        style: BrushStyle = BrushStyle(),
        max_strokes: int = 16,
        max_rounds: int = 32,
    ) -> None:
        if not 0 < hole_range[0] < hole_range[1] < 1:
            raise ValueError(f"hole_range must satisfy 0 < low < high < 1, got {hole_range}")
        self.size = image_shape(image_size, "freeform masks")
        height, width = self.size
        self.scale = height if height == width else math.sqrt(height * width)  # stroke sizes scale with it
        self.hole_range = hole_range
        self.style = style
        self.max_strokes = max_strokes
        self.max_rounds = max_rounds

    def sample(self, batch: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        """(batch, 1, H, W) float masks, 1 = hole; masks that miss the ratio range are redrawn."""
        height, width = self.size
        masks = torch.zeros(batch, height * width, dtype=torch.bool, device=device)
        pending = torch.arange(batch)
        for _ in range(self.max_rounds):
            drawn, ok = self._draw(len(pending), device, generator)
            ok = ok.cpu()
            masks[pending[ok].to(device)] = drawn[ok.to(device)]
            pending = pending[~ok]
            if len(pending) == 0:
                return masks.view(batch, 1, height, width).float()
        raise RuntimeError(f"could not draw masks with hole ratio in {self.hole_range} at {width}x{height} px")

    def _draw(self, n: int, device: torch.device, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """One attempt for n masks: (masks (n, H*W) bool, ok (n,) bool)."""
        low, high = self.hole_range
        pixels = self.size[0] * self.size[1]
        target = (low + (high - low) * self._rand((n,), generator)).to(device) * pixels
        union = torch.zeros(n, pixels, dtype=torch.bool, device=device)
        result = torch.zeros_like(union)
        ok = torch.zeros(n, dtype=torch.bool, device=device)
        done = torch.zeros_like(ok)
        for _ in range(self.max_strokes):
            vertices, radius2 = self._stroke(n, generator)  # drawn for all n: reproducible consumption
            live = (~done).nonzero()[:, 0]
            segments = capsules(vertices.to(device)[live], radius2.to(device)[live], self.size)
            chosen, good, hit, union[live] = self._grow(union[live], segments, target[live])
            result[live] = torch.where(good[:, None], chosen, result[live])
            ok[live], done[live] = good, hit
            if bool(done.all()):
                break
        return result, ok

    def _grow(self, union: Tensor, segments: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Add one stroke's segments (n, K, P) to the holes ``union`` (n, P), one segment at a time.

        Returns the hole at the first prefix with >= ``target`` (n,) pixels (one segment earlier if that
        overshoots the range), whether it lies in the range, whether the target was reached, and the
        union with the whole stroke.
        """
        low, high = (r * union.shape[1] for r in self.hole_range)
        prefixes = [union]
        for k in range(segments.shape[1]):
            prefixes.append(prefixes[-1] | segments[:, k])
        prefixes = torch.stack(prefixes, 1)  # (n, K + 1, P): hole after 0, 1, ..., K segments
        cover = prefixes.sum(-1)
        reached = cover >= target[:, None]
        first = reached.to(torch.uint8).argmax(1)
        rows = torch.arange(len(union), device=union.device)
        pick = first - (cover[rows, first] > high).long()
        good = reached.any(1) & (cover[rows, pick] >= low) & (cover[rows, pick] <= high)
        return prefixes[rows, pick], good, reached.any(1), prefixes[:, -1]

    def _rand(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        return torch.rand(shape, generator=generator, device=_generator_device(generator))

    def _stroke(self, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """One zig-zag stroke per mask, on the generator's device: vertices (n, K+1, 2) in pixels and the
        squared half-width of each segment (n, K), -1 for segments past the stroke's length."""
        style, scale = self.style, self.scale
        most = style.segments[1]
        gen_device = _generator_device(generator)
        bounds = torch.tensor(self.size[::-1], dtype=torch.float32, device=gen_device)  # (x, y) <= (W, H)
        count = torch.randint(style.segments[0], most + 1, (n, 1), generator=generator, device=gen_device)
        position = self._rand((n, 2), generator) * bounds
        heading = self._rand((n, 1), generator) * 2 * math.pi
        turns = style.turn + (2 * self._rand((n, most), generator) - 1) * style.turn_jitter
        zigzag = torch.tensor([(-1.0) ** k for k in range(most)], device=gen_device)
        angles = heading + zigzag * turns
        mean = style.mean_length * scale
        normal = torch.randn((n, most), generator=generator, device=gen_device)
        lengths = (mean + mean / 2 * normal).clamp(0, 2 * mean)
        widths = style.width[0] + (style.width[1] - style.width[0]) * self._rand((n, 1), generator)
        points = [position]
        for k in range(most):  # each vertex is clipped to the image, as DeepFill does
            step = lengths[:, k, None] * torch.stack([angles[:, k].cos(), angles[:, k].sin()], 1)
            points.append(torch.minimum((points[-1] + step).clamp_min(0), bounds))
        active = torch.arange(most, device=gen_device) < count
        radius2 = torch.where(active, (widths * scale / 2) ** 2, -1.0)
        return torch.stack(points, 1), radius2


def capsules(vertices: Tensor, radius2: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Pixels within a distance sqrt(radius2) of each polyline segment (a line with round caps).

    vertices: (n, K+1, 2) as (x, y) in pixels; radius2: (n, K) squared radii; size: S or (H, W). Returns
    (n, K, H*W) bool for pixel centres (j + 1/2, i + 1/2). With u the unclamped projection of pixel p on segment
    a -> a + d and t = clamp(u, 0, 1): |p - a - t d|^2 = |p - a|^2 + |d|^2 t (t - 2u).
    """
    start = vertices[:, :-1, :, None, None]  # (n, K, 2, 1, 1)
    delta = (vertices[:, 1:] - vertices[:, :-1])[..., None, None]
    length2 = delta.square().sum(2).clamp_min(1e-12)  # (n, K, 1, 1)
    height, width = (size, size) if isinstance(size, int) else size
    cols = torch.arange(width, device=vertices.device, dtype=vertices.dtype) + 0.5
    rows = torch.arange(height, device=vertices.device, dtype=vertices.dtype) + 0.5
    rel_x, rel_y = cols[None, :] - start[:, :, 0], rows[:, None] - start[:, :, 1]  # (n,K,1,W), (n,K,H,1)
    u = rel_x * (delta[:, :, 0] / length2) + rel_y * (delta[:, :, 1] / length2)
    t = u.clamp(0, 1)
    dist2 = torch.sub(t, u, alpha=2).mul_(t).mul_(length2)
    dist2 += rel_x.square() + rel_y.square()
    return (dist2 <= radius2[:, :, None, None]).flatten(2)
