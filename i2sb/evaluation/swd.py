"""Sliced Wasserstein distance of Laplacian-pyramid patches (SWD; Karras et al., ICLR 2018, App. D): a perceptual
distance between two *sets* of images that needs no network weights.

Each image is split into a Laplacian pyramid (Burt & Adelson; 5-tap binomial filter, as ``cv2.pyrDown/pyrUp``):
``levels`` levels from the full resolution down while the smaller side is at least ``min_size`` (16) pixels,
level 0 the finest band-pass, the last one the low-pass residual (Karras: 1024 px -> levels 1024, 512, ..., 16).
From every level, 7x7 neighbourhoods ("patches", 3 x 7 x 7 = 147 numbers) are taken at random positions; each
set's descriptors are normalised per colour channel (mean 0, std 1 over all its patches of that level, as Karras'
``finalize_descriptors``), so SWD compares the *shape* of local statistics (edges, texture, noise, how pixels
co-vary), not the images' overall contrast. The distance of one level is the sliced Wasserstein-1 distance: the
patches of both sets are projected on ``repeats`` x ``projections`` random unit directions (4 x 128, Karras), and
for each direction the 1-D Wasserstein distance of the two projected samples -- the mean absolute difference of
their sorted values -- is averaged. Values are reported x 1e3 (Karras' ``SWDx1e3``), per level and averaged over
levels. **Lower = local statistics closer to the reference set**; 0 for identical sets.

Patches per image and level: ``patches_per_image`` if set (Karras: 128), otherwise ``ceil(patches_per_level /
N)`` for N reference images (default 2**14 per level in all: 14 demo images -> 1171 each, 1000 images -> 17),
never more than the level has positions (then every position is taken: small images are covered densely).
Positions depend only on (seed, level, the level's height and width): images of equal size are sampled at the
same positions, so the score does not depend on the order of the images, a restored image and its reference are
compared at the same places (less noise between rows of a table), and an identical set scores exactly 0. The
directions depend only on (seed, level). One seed gives the same value on every run.

Scale (the defaults; the demo's 14 held-out photos, 12 crops of 64 px and 2 photos of 128 px): the JPEG-5 input
scores 54 (seeds 0-3: 53.5-55.1), the nearest-upsampled 4x SR input 44, bicubic upsampling 55. The value depends
on how many patches are compared (an empirical distance is biased upward by sampling noise): with Karras' 128
patches per image the same JPEG input scores 69, and two independent draws of patches from the same clean photos
differ by 37 (11 at the defaults) -- the "clean vs itself ~20" of Karras' setting on a few images. So compare
values computed against the same reference set with the same settings, as FID. Memory: ``levels x
patches_per_level x 147`` float32 per set (2**14 per level: 9.6 MB per level).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..utils.images import image_size
from ..utils.seeds import seeded_generator

SCALE = 1e3  # Karras' SWDx1e3
POSITION_STREAM, DIRECTION_STREAM = 1, 2  # last seed word of the patch positions and of the directions
BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)  # cv2.pyrDown's 5-tap filter (/ 16 per axis)


@dataclass(frozen=True)
class SWDSettings:
    """How SWD samples (see the module docstring); the defaults are Karras et al.'s except the patch count."""

    patch: int = 7  # side of the neighbourhoods
    patches_per_image: int | None = None  # None: ceil(patches_per_level / N reference images)
    patches_per_level: int = 2**14  # descriptors per set and level when patches_per_image is None
    projections: int = 128  # directions per repeat
    repeats: int = 4  # independent draws of directions (4 x 128 = 512 directions)
    min_size: int = 16  # coarsest level's smaller side at least this many pixels
    seed: int = 0

    def __post_init__(self):
        for key in ("patch", "patches_per_level", "projections", "repeats", "min_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"SWD setting {key} must be positive, got {getattr(self, key)}")
        if self.patches_per_image is not None and self.patches_per_image < 1:
            raise ValueError(f"SWD setting patches_per_image must be positive, got {self.patches_per_image}")

    def per_image(self, n_images: int) -> int:
        """Patches per image and level for a reference set of ``n_images``."""
        if self.patches_per_image is not None:
            return self.patches_per_image
        return max(1, math.ceil(self.patches_per_level / max(n_images, 1)))


@dataclass(frozen=True)
class SWDResult:
    """SWD x 1e3 per pyramid level (0 = finest) and their mean; ``descriptors``: (set, reference) per level."""

    levels: tuple[float, ...]
    descriptors: tuple[tuple[int, int], ...]

    @property
    def mean(self) -> float:
        return sum(self.levels) / len(self.levels)

    def as_dict(self) -> dict:
        return {"swd": self.mean, "swd_levels": list(self.levels)}


# ---------------------------------------------------------------------------------------------
# Laplacian pyramid
# ---------------------------------------------------------------------------------------------


def level_count(height: int, width: int, min_size: int = 16, patch: int = 7) -> int:
    """Pyramid levels of an H x W image: halve (rounding up) while the smaller side stays >= ``min_size``;
    an image smaller than ``min_size`` (but at least ``patch``) has one level."""
    side = min(height, width)
    if side < patch:
        raise ValueError(f"SWD needs images of at least {patch}x{patch} pixels, got {width}x{height}")
    count = 1
    while math.ceil(side / 2) >= min_size:
        side, count = math.ceil(side / 2), count + 1
    return count


def _binomial_blur(x: Tensor, gain: float) -> Tensor:
    """``gain`` x the separable 5x5 binomial filter with mirror borders (scipy 'mirror' = torch 'reflect')."""
    c = x.shape[1]
    taps = torch.tensor(BINOMIAL, dtype=x.dtype, device=x.device) / 16
    rows = (taps * gain).view(1, 1, 5, 1).expand(c, 1, 5, 1)
    cols = taps.view(1, 1, 1, 5).expand(c, 1, 1, 5)
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    return F.conv2d(F.conv2d(x, rows, groups=c), cols, groups=c)


def pyr_down(x: Tensor) -> Tensor:
    """``cv2.pyrDown``: blur, keep every second pixel. (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2))."""
    return _binomial_blur(x, 1.0)[..., ::2, ::2]


def pyr_up(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``cv2.pyrUp``: zeros between pixels, blur x 4, cropped to ``size`` = (H, W). (B, C, h, w) -> (B, C, H, W)."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)
    up[..., ::2, ::2] = x
    return _binomial_blur(up, 4.0)[..., : size[0], : size[1]]


def laplacian_pyramid(images: Tensor, levels: int) -> list[Tensor]:
    """``levels`` tensors (B, C, ceil(H / 2^l), ceil(W / 2^l)): band-pass levels, then the low-pass residual
    (Karras' ``generate_laplacian_pyramid``)."""
    gaussians = [images]
    for _ in range(levels - 1):
        gaussians.append(pyr_down(gaussians[-1]))
    bands = [g - pyr_up(coarser, g.shape[-2:]) for g, coarser in zip(gaussians, gaussians[1:])]
    return bands + [gaussians[-1]]


# ---------------------------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------------------------


def patch_positions(height: int, width: int, count: int, patch: int, generator: torch.Generator) -> Tensor:
    """Top-left corners (K, 2) = (y, x) of ``count`` patches of an H x W level: every position when there
    are no more than ``count``, else ``count`` drawn uniformly (with replacement, as Karras)."""
    ny, nx = height - patch + 1, width - patch + 1
    flat = torch.arange(ny * nx) if count >= ny * nx else torch.randint(ny * nx, (count,), generator=generator)
    return torch.stack([flat // nx, flat % nx], dim=1)


def extract_patches(level: Tensor, positions: Tensor, patch: int) -> Tensor:
    """Patches of every image at ``positions`` (K, 2): (B, C, H, W) -> (B * K, C, patch, patch)."""
    b, c = level.shape[:2]
    offsets = torch.arange(patch, device=level.device)
    ys = positions[:, 0, None].to(level.device) + offsets  # (K, patch)
    xs = positions[:, 1, None].to(level.device) + offsets
    patches = level[:, :, ys[:, :, None], xs[:, None, :]]  # (B, C, K, patch, patch)
    return patches.permute(0, 2, 1, 3, 4).reshape(-1, c, patch, patch)


def normalize(descriptors: Tensor) -> Tensor:
    """Per channel: mean 0, std 1 over all patches of the set (Karras' ``finalize_descriptors``);
    (N, C, p, p) -> (N, C * p * p). A constant channel is only centred."""
    mean = descriptors.mean(dim=(0, 2, 3), keepdim=True)
    std = descriptors.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
    return ((descriptors - mean) / torch.where(std > 0, std, torch.ones_like(std))).flatten(1)


class PatchSet:
    """The descriptors of one image set, per pyramid level, gathered batch by batch with :meth:`add`.

    ``levels``: pyramid levels (:func:`level_count` of the set's smallest image); ``per_image``: patches per
    image and level (:meth:`SWDSettings.per_image`). Two sets compared with :func:`swd_between` must share
    ``levels``, ``per_image`` and the settings. The sorted projections of a level are kept once computed (a
    reference set scored against many restorations is projected and sorted once).
    """

    def __init__(self, levels: int, per_image: int, settings: SWDSettings = SWDSettings()):
        self.levels, self.per_image, self.settings = int(levels), int(per_image), settings
        self.parts: list[list[Tensor]] = [[] for _ in range(self.levels)]
        self._positions: dict[tuple[int, int, int], Tensor] = {}
        self._sorted: dict[int, Tensor] = {}

    def positions(self, level: int, height: int, width: int) -> Tensor:
        """Patch corners (K, 2) of ``level`` for images of that level's size: from (seed, level, size) only."""
        key = (level, height, width)
        if key not in self._positions:
            s = self.settings
            g = seeded_generator(s.seed, level, height, width, self.per_image, POSITION_STREAM)
            self._positions[key] = patch_positions(height, width, self.per_image, s.patch, g)
        return self._positions[key]

    def add(self, images: Tensor) -> None:
        """Add images (B, C, H, W), any range (the same for both sets); descriptors are kept in float32."""
        height, width = images.shape[-2:]
        if level_count(height, width, self.settings.min_size, self.settings.patch) < self.levels:
            raise ValueError(f"SWD over {self.levels} levels needs images of at least "
                             f"{self.settings.min_size * 2 ** (self.levels - 1)} px per side, got {width}x{height}")
        self._sorted.clear()
        for index, level in enumerate(laplacian_pyramid(images, self.levels)):
            where = self.positions(index, *level.shape[-2:])
            self.parts[index].append(extract_patches(level, where, self.settings.patch).float())

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts[0]) // max(self.per_image, 1)

    def descriptors(self, level: int) -> Tensor:
        """Normalised descriptors (N, C * patch * patch) of ``level``."""
        if not self.parts[level]:
            raise ValueError("SWD of an empty image set")
        return normalize(torch.cat(self.parts[level]))

    def sorted_projections(self, level: int) -> Tensor:
        """The descriptors of ``level`` projected on its directions, each direction sorted: (R * P, N)."""
        if level not in self._sorted:
            descriptors = self.descriptors(level)
            dirs = directions(descriptors.shape[1], self.settings, level).to(descriptors)
            self._sorted[level] = sort_rows(dirs.permute(0, 2, 1).flatten(0, 1) @ descriptors.T)
        return self._sorted[level]


# ---------------------------------------------------------------------------------------------
# Sliced Wasserstein distance
# ---------------------------------------------------------------------------------------------


def sort_rows(x: Tensor) -> Tensor:
    """Each row of (K, N) sorted ascending, in place where possible (on the CPU with numpy's vectorised sort,
    several times faster than torch's there)."""
    if x.device.type != "cpu":
        return x.sort(dim=1).values
    x = x.contiguous()
    x.numpy().sort(axis=1)
    return x


def wasserstein_sorted(a: Tensor, b: Tensor) -> Tensor:
    """Wasserstein-1 distance between the empirical distributions of the rows of ``a`` (K, n) and ``b`` (K, m),
    each row sorted -> (K,): the integral of |F_a^-1(u) - F_b^-1(u)| over u in (0, 1], exact for any n and m
    (equal sizes: the mean absolute difference of the sorted samples, Karras' computation)."""
    n, m = a.shape[1], b.shape[1]
    if n == m:
        return (a - b).abs().mean(dim=1)
    # quantile functions are constant between the breakpoints i/n and j/m; on the common scale n*m these are i*m, j*n
    ends = torch.cat([torch.arange(1, n + 1) * m, torch.arange(1, m + 1) * n]).sort().values
    widths = torch.diff(ends, prepend=ends.new_zeros(1)).to(device=a.device, dtype=a.dtype) / (n * m)
    ia = (torch.div(ends + m - 1, m, rounding_mode="floor") - 1).to(a.device)  # a's sample on (previous, end]
    ib = (torch.div(ends + n - 1, n, rounding_mode="floor") - 1).to(a.device)
    return ((a[:, ia] - b[:, ib]).abs() * widths).sum(dim=1)


def wasserstein_1d(a: Tensor, b: Tensor) -> Tensor:
    """:func:`wasserstein_sorted` of every column of ``a`` (n, K) and ``b`` (m, K), unsorted -> (K,)."""
    return wasserstein_sorted(sort_rows(a.T.clone()), sort_rows(b.T.clone()))


def directions(dim: int, settings: SWDSettings, level: int) -> Tensor:
    """Random unit directions (repeats, dim, projections), float64 on the CPU, from (seed, level)."""
    g = seeded_generator(settings.seed, level, DIRECTION_STREAM)
    dirs = torch.randn(settings.repeats, dim, settings.projections, generator=g, dtype=torch.float64)
    return dirs / dirs.norm(dim=1, keepdim=True)


def sliced_wasserstein(a: Tensor, b: Tensor, dirs: Tensor) -> float:
    """Mean over ``dirs`` (R, D, P) of the 1-D Wasserstein distance of the projections of ``a`` (n, D) and
    ``b`` (m, D) (Karras' ``sliced_wasserstein``: mean over directions, then over repeats of equal size)."""
    flat = dirs.to(a).permute(1, 0, 2).flatten(1)  # (D, R * P)
    return float(wasserstein_1d(a @ flat, b @ flat).mean())


def swd_between(images: PatchSet, reference: PatchSet) -> SWDResult:
    """SWD x 1e3 of two gathered sets, per level and averaged (:class:`SWDResult`)."""
    if (images.levels, images.per_image, images.settings) != (reference.levels, reference.per_image,
                                                               reference.settings):
        raise ValueError("SWD: the two patch sets were gathered with different levels or settings")
    values, counts = [], []
    for level in range(images.levels):
        a, b = images.sorted_projections(level), reference.sorted_projections(level)
        values.append(SCALE * float(wasserstein_sorted(a, b).mean()))
        counts.append((a.shape[1], b.shape[1]))
    return SWDResult(tuple(values), tuple(counts))


def patch_sets(n_reference: int, height: int, width: int, settings: SWDSettings = SWDSettings(),
               count: int = 2) -> list[PatchSet]:
    """``count`` empty, compatible :class:`PatchSet` for a reference set of ``n_reference`` images whose
    smallest sides are ``height`` x ``width`` (the first set is usually the restorations, the last the references)."""
    levels = level_count(height, width, settings.min_size, settings.patch)
    return [PatchSet(levels, settings.per_image(n_reference), settings) for _ in range(count)]


def swd(images: Tensor, reference: Tensor, settings: SWDSettings = SWDSettings()) -> SWDResult:
    """SWD x 1e3 between two image sets (B, C, H, W) and (B', C, H', W') in the same value range."""
    if images.dim() != 4 or reference.dim() != 4 or images.shape[1] != reference.shape[1]:
        raise ValueError(f"SWD takes two (B, C, H, W) sets with equal C, got {tuple(images.shape)} and "
                         f"{tuple(reference.shape)}")
    height = min(images.shape[-2], reference.shape[-2])
    width = min(images.shape[-1], reference.shape[-1])
    restored, clean = patch_sets(len(reference), height, width, settings)
    restored.add(images)
    clean.add(reference)
    return swd_between(restored, clean)


class PairedSets:
    """Restorations and their references gathered batch by batch (each reference once, however many
    restorations pair with it), for one SWD between the two sets: what ``i2sb-eval`` reports."""

    def __init__(self, n_reference: int, height: int, width: int, settings: SWDSettings = SWDSettings()):
        self.restored, self.reference = patch_sets(n_reference, height, width, settings)
        self.seen: set[str] = set()

    def add(self, restored: Tensor, references: Tensor, keys: list[str]) -> None:
        """Restored images (B, C, H, W), their references (B, C, H, W) and the references' names (B,)."""
        self.restored.add(restored)
        new = [i for i, key in enumerate(keys) if key not in self.seen and not self.seen.add(key)]
        if new:
            self.reference.add(references[new])

    def summary(self: PairedSets | None) -> dict:
        """``swd``, ``swd_levels`` (x 1e3, level 0 = finest) and ``swd_settings``; None values for no pairs
        (``PairedSets.summary(None)`` too: no SWD)."""
        if self is None:
            return {"swd": None, "swd_levels": None, "swd_settings": None}
        s = self.restored
        about = {**asdict(s.settings), "levels": s.levels, "patches_per_image_used": s.per_image}
        if not self.seen:
            return {"swd": None, "swd_levels": None, "swd_settings": about}
        result = swd_between(self.restored, self.reference)
        return {**result.as_dict(), "swd_settings": {**about, "descriptors": [list(c) for c in result.descriptors]}}


def sets_for_files(restored: list[Path], pairs: dict[str, tuple[str, int | None]], seed: int,
                   notes: list[str]) -> PairedSets | None:
    """:class:`PairedSets` for the ``restored`` files that pair (``pairs``: restored name -> (reference name,
    sample)), the pyramid's depth from the smallest of them (read from the headers; a pair's images have equal
    sizes); None without readable pairs, or with a note in ``notes`` when an image is too small."""
    sides = []
    for path in restored:
        try:
            sides.append(min(image_size(path)))
        except ValueError:
            continue  # unreadable: reported when the images are read
    settings = SWDSettings(seed=seed)
    if sides and min(sides) < settings.patch:
        notes.append(f"SWD skipped: it needs images of at least {settings.patch}x{settings.patch} pixels")
    if not sides or min(sides) < settings.patch:
        return None
    return PairedSets(len({ref for ref, _ in pairs.values()}), min(sides), min(sides), settings)
