"""Degrade a folder of clean photos of any size the way a task's training does: the library side of
``i2sb-degrade``.

Each image is read with :func:`i2sb.utils.images.load_image`, degraded alone at its own size
(:func:`i2sb.degrade.build_any_size`) and written under the output folder with its relative path and
name, the suffix replaced by the format's (``.png`` or ``.npy``):

* what is written is the task's stored measurement (:meth:`Degradation.measure`): x1 itself, except for
  super-resolution, which writes the true low-resolution image (H/4 x W/4; H and W must be divisible
  by 4, or ``crop=True`` centre-crops each photo to the nearest multiple of 4 below) whose nearest upsampling
  (:func:`i2sb.degrade.upsample_measurement`) is x1;
* inpainting also writes its mask (white = hole, 8-bit grey PNG) under the masks folder with the same
  relative name, the layout ``i2sb-sample mask=DIR`` reads;
* random draws (free-form masks) come from a generator seeded by (``seed``, a hash of the image's
  pixels): the same image gets the same mask whether it is degraded alone, in a folder or renamed;
* ``png`` clips to [-1, 1] and rounds to 8 bits (the paper's DDRM JPEG leaves [-1, 1]); ``npy`` stores
  the exact float32 array (H, W, 3) in [-1, 1] units (see :func:`i2sb.utils.images.save_array`).

Files are written atomically (a crash leaves the old file or the new one). An unreadable image or a
size the task cannot take is reported in one line and skipped; the others are still degraded.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from i2sb.degrade import TASKS, build_any_size, degradation_class, measurement_scale
from i2sb.degrade.base import Degradation
from i2sb.utils.images import load_image, save_array, save_image, scan_images
from i2sb.utils.seeds import mix_seed

FORMATS: dict[str, Callable[[Tensor, Path], Path]] = {"png": save_image, "npy": save_array}
PROBE_SIZE = (64, 64)  # a size every task accepts: parameters are checked on it before any image is read
CACHED_SIZES = 8  # degradations kept per image size (the DDRM blur's SVD is costly for large photos)


@dataclass
class Plan:
    """A checked run: the source files, the root their relative paths start from, and the folders."""

    task: str
    params: dict[str, Any]
    root: Path
    sources: list[Path]
    output: Path
    masks: Path | None
    fmt: str
    seed: int
    crop: bool = False  # centre-crop each image to sides divisible by the task's measurement scale (SR: 4)
    note: str | None = None  # files of the input folder left out (not images, symlinked duplicates), one line


@dataclass
class Result:
    """Counts of a run and one-line messages for the images that were skipped."""

    written: list[Path] = field(default_factory=list)
    masks: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def default_masks_folder(output: str | Path) -> Path:
    """``degraded`` -> ``degraded_masks`` (beside the output folder)."""
    output = Path(output)
    return output.parent / f"{output.name}_masks"


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def plan(task: str, input: str | Path, output: str | Path, masks: str | Path | None = None, seed: int = 0,
         fmt: str = "png", params: dict[str, Any] | None = None, crop: bool = False) -> Plan:
    """Check a run before any image is decoded; every problem is a one-line ValueError / FileNotFoundError
    naming the key. ``masks``: the inpainting masks folder (default ``<output>_masks``); an error for the
    other tasks. ``crop``: centre-crop SR inputs to sides divisible by 4 (an error for the other tasks). No output
    may overwrite an input."""
    params = dict(params or {})
    if task not in TASKS:
        raise ValueError(f"task={task}: unknown task; valid tasks: {', '.join(TASKS)}")
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt}: unknown format; valid formats: {', '.join(FORMATS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed}: must be a non-negative integer")
    try:  # the params checked by building the task once at a small size
        build_any_size(task, PROBE_SIZE, **params)
    except (TypeError, ValueError, FileNotFoundError) as err:  # TypeError: a keyword the task does not take
        raise ValueError(f"params: {' '.join(str(err).split())}") from None
    needs_mask = degradation_class(task).needs_mask
    if crop and measurement_scale(task) == 1:
        raise ValueError(f"crop=true: task {task} takes any size; crop applies to the super-resolution tasks")
    source = Path(input)
    if not source.exists():
        raise FileNotFoundError(f"input={source}: no such file or directory")
    listing = scan_images(source)
    sources = listing.images
    if not sources:
        raise ValueError(f"input={source}: no images found")
    if masks is not None and not needs_mask:
        raise ValueError(f"masks={masks}: task {task} has no masks (only the inpainting tasks write them)")
    folders = {"output": Path(output)}
    if needs_mask:
        folders["masks"] = Path(masks) if masks is not None else default_masks_folder(output)
    _check_folders(source, folders)
    checked = Plan(task, params, source if source.is_dir() else source.parent, sources, folders["output"],
                   folders.get("masks"), fmt, seed, crop, listing.note())
    inputs = {path.resolve(): path for path in sources}
    for path in sources:
        for (key, folder), target in zip(folders.items(), targets(checked, path)):
            if target.resolve() in inputs:
                raise ValueError(f"{key}={folder}: writing {target} would overwrite the input {path}; "
                                 f"choose another folder")
    return checked


def _check_folders(source: Path, folders: dict[str, Path]) -> None:
    """Each output folder is a folder (or missing), outside the input folder and outside the others."""
    for key, folder in folders.items():
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{key}={folder} exists and is not a folder")
        if source.is_dir() and _inside(folder, source):
            raise ValueError(f"{key}={folder} is inside input={source}; choose a folder outside it")
    if "masks" in folders and (_inside(folders["masks"], folders["output"]) or
                               _inside(folders["output"], folders["masks"])):
        raise ValueError(f"masks={folders['masks']} and output={folders['output']} must be separate folders "
                         f"(neither inside the other)")


def targets(p: Plan, source: Path) -> list[Path]:
    """The files written for ``source``: its degraded image, then its mask (inpainting)."""
    rel = source.relative_to(p.root)
    found = [p.output / rel.with_suffix("." + p.fmt)]
    return found + ([p.masks / rel.with_suffix(".png")] if p.masks is not None else [])


def image_seed(seed: int, image: Tensor) -> int:
    """The seed of one image's random draws: ``mix_seed(seed, <128-bit hash of its pixels as 4 words>)``."""
    digest = hashlib.sha256(image.detach().cpu().contiguous().numpy().tobytes()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return mix_seed(seed, *words)


def degrade_image(deg: Degradation, x0: Tensor, seed: int = 0) -> tuple[Tensor, Tensor | None]:
    """One image (3, H, W) in [-1, 1] -> (its stored measurement (3, h, w), mask (1, H, W) or None), the draws
    seeded by :func:`image_seed`."""
    generator = torch.Generator().manual_seed(image_seed(seed, x0))
    y, mask = deg.measure(x0[None], generator)
    return y[0], None if mask is None else mask[0]


class _Degradations:
    """The task's degradation per image size, the last few kept."""

    def __init__(self, task: str, params: dict[str, Any]) -> None:
        self.task, self.params = task, params
        self._cache: OrderedDict[tuple[int, int], Degradation] = OrderedDict()

    def get(self, size: tuple[int, int]) -> Degradation:
        if size not in self._cache:
            self._cache[size] = build_any_size(self.task, size, **self.params)
            while len(self._cache) > CACHED_SIZES:
                self._cache.popitem(last=False)
        self._cache.move_to_end(size)
        return self._cache[size]


def center_crop(x0: Tensor, multiple: int) -> Tensor:
    """(3, H, W) -> its centre (3, H - H % multiple, W - W % multiple) (an odd margin: the extra row or column
    comes off the bottom / right)."""
    height, width = x0.shape[-2:]
    top, left = height % multiple // 2, width % multiple // 2
    return x0[..., top:top + height - height % multiple, left:left + width - width % multiple]


def size_hint(task: str, size: tuple[int, int]) -> str:
    """What to do about a photo whose sides the task cannot take: for SR, the ``crop=true`` option."""
    scale = measurement_scale(task)
    if scale > 1 and (size[0] % scale or size[1] % scale):
        return f"; crop=true centre-crops each photo to sides divisible by {scale}"
    return ""


def mask_image(mask: Tensor) -> Tensor:
    """(1, H, W) {0, 1} -> (1, H, W) in [-1, 1], saved as an 8-bit grey PNG: white hole, black known pixels
    (what ``read_mask`` reads)."""
    return mask * 2 - 1


def run(p: Plan, log: Callable[[str], None] = print) -> Result:
    """Degrade every image of a checked :class:`Plan`; failures are logged (one line each) and skipped."""
    result = Result()
    if p.note:
        log(f"note: {p.note}")
    owners: dict[Path, Path] = {}
    degradations = _Degradations(p.task, p.params)

    def fail(message: str) -> None:
        result.failures.append(message)
        log(message)

    for source in p.sources:
        target, *mask_target = targets(p, source)
        if target in owners:
            fail(f"{source}: its output {target} is also the output of {owners[target]}; rename one (skipped)")
            continue
        owners[target] = source
        try:
            x0 = load_image(source)  # its errors name the file
        except (ValueError, OSError) as err:
            fail(f"{' '.join(str(err).split())} (skipped)")
            continue
        if p.crop:
            x0 = center_crop(x0, measurement_scale(p.task))
        try:
            deg = degradations.get(tuple(x0.shape[-2:]))
            y, mask = degrade_image(deg, x0, p.seed)
        except (ValueError, RuntimeError) as err:  # a size the task cannot take, a mask that cannot be drawn
            hint = size_hint(p.task, tuple(x0.shape[-2:]))
            fail(f"{source}: {' '.join(str(err).split())}{hint} (skipped)")
            continue
        try:
            result.written.append(FORMATS[p.fmt](y, target))
            if mask is not None and mask_target:
                result.masks.append(save_image(mask_image(mask), mask_target[0]))
        except (ValueError, OSError) as err:
            fail(f"{source}: cannot write its output: {' '.join(str(err).split())}")
    return result


def degrade_folder(task: str, input: str | Path, output: str | Path, masks: str | Path | None = None,
                   seed: int = 0, fmt: str = "png", params: dict[str, Any] | None = None,
                   log: Callable[[str], None] = print, crop: bool = False) -> Result:
    """Degrade every image under ``input`` (a folder, or one file) for ``task`` into ``output``.

    Checks everything first (:func:`plan`: one-line ValueError / FileNotFoundError, nothing written), then
    degrades image by image (:func:`run`); skipped images are in ``Result.failures``.
    """
    return run(plan(task, input, output, masks, seed, fmt, params, crop), log)
