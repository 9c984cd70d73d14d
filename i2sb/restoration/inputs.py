"""The inputs of a restoration read as ``i2sb-sample`` reads them, for every front end that must give the same bits
(``i2sb-sample``'s folders, ``i2sb-app``'s uploads): one photo, its inpainting mask, and super-resolution's
low-resolution photos lifted to x1 as training made it."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from .. import degrade
from ..utils.images import DEFAULT_MAX_PIXELS, load_image
from .restorer import Restorer


def read_input(path: Path, size: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS) -> Tensor:
    """Decode the photo whose header said ``size`` (H, W) -> (3, H, W) in [-1, 1]; a one-line ``ValueError`` when
    the decoded pixels differ from the header (e.g. an EXIF orientation stored after a PNG's pixels)."""
    image = load_image(path, max_pixels)
    if tuple(image.shape[-2:]) != size:
        raise ValueError(f"{path}: decoded as {image.shape[-1]}x{image.shape[-2]}, its header said "
                         f"{size[1]}x{size[0]}; re-save the image to restore it")
    return image


def read_mask(path: Path, size: tuple[int, int]) -> Tensor:
    """Mask file -> (1, H, W) float {0, 1}; white (mean grey >= 0.5) = hole."""
    grey = (load_image(path).mean(0, keepdim=True) + 1.0) / 2.0
    if tuple(grey.shape[-2:]) != size:
        raise ValueError(f"{path}: mask is {grey.shape[-1]}x{grey.shape[-2]} but its image is {size[1]}x{size[0]}")
    return (grey >= 0.5).float()


def input_scale(restorer: Restorer) -> int:
    """How many times smaller per side the task's measurements are than x1: 4 for super-resolution, else 1."""
    task = restorer.task.degradation
    return degrade.measurement_scale(task) if task in degrade.TASKS else 1


def lift_inputs(restorer: Restorer, images: Tensor) -> Tensor:
    """Low-resolution photos (B, 3, h, w) of a super-resolution task -> x1 (B, 3, s*h, s*w) as training made it
    (nearest upsampling for pool and bicubic alike, as the authors' code)."""
    return degrade.upsample_measurement(restorer.task.degradation, images, **dict(restorer.task.params))
