"""What the page's Restore button (and the ``/restore`` API endpoint) does, without any web framework.

Each photo is read, lifted and seeded exactly as ``i2sb-sample`` reads, lifts and seeds the single file
``input=PHOTO`` (:mod:`i2sb.restoration.inputs`, :func:`i2sb.utils.seeds.image_generator` named by the file's name,
:func:`i2sb.utils.images.save_image`), so for the same model, photo, seed, NFE and sampler the PNG written here
equals ``i2sb-sample``'s output file byte for byte. A photo that cannot be restored is one line in the report;
the others are still restored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from ..restoration import OptionError, SamplingOptions
from ..restoration.folder import sample_names
from ..restoration.inputs import lift_inputs, read_input, read_mask
from ..utils.files import atomic_write
from ..utils.images import image_size, save_image
from ..utils.seeds import image_generator
from .models import ServedModel

MAX_PHOTOS = 32  # photos per request
MAX_SAMPLES = 8  # restorations per photo per request
Progress = Callable[[float, str], None]  # (fraction done, what is running)


@dataclass(frozen=True)
class Request:
    """One press of Restore: the settings every photo of the request is restored with."""

    nfe: int
    sampler: str
    seed: int
    n_samples: int


@dataclass
class Restoration:
    """The outcome of a request: the restored PNGs (``i2sb-sample``'s names), a (before, after) pair per PNG for
    the comparison slider (before: x1, the photo as the model sees it, SR photos upscaled), one line per photo."""

    outputs: list[Path] = field(default_factory=list)
    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    failures: int = 0


def whole_number(value: object, key: str, low: int, high: int | None = None) -> int:
    """An integer setting from the page or the API (sliders may send ``10.0``), in ``low..high``; else a one-line
    ``ValueError`` naming ``key``."""
    if isinstance(value, Real) and not isinstance(value, (bool, Integral)) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{key}: must be a whole number in {span}, got {value!r}")
    return int(value)


def check_request(model: ServedModel, nfe: object, sampler: object, seed: object,
                  n_samples: object) -> tuple[Request, SamplingOptions]:
    """The request's settings checked against the model, once; one-line ``ValueError`` naming the setting."""
    request = Request(whole_number(nfe, "nfe", 1, model.max_nfe), str(sampler), whole_number(seed, "seed", 0, 2**63 - 1),
                      whole_number(n_samples, "samples", 1, MAX_SAMPLES))
    if request.sampler not in model.samplers:
        raise ValueError(f"sampler: {model.name} runs {', '.join(model.samplers)}, got {sampler!r}")
    try:
        options = model.restorer.options(nfe=request.nfe, sampler=request.sampler, precision=model.precision)
    except OptionError as err:
        raise ValueError(str(err)) from None
    return request, options


def mask_from_layers(layers: list[np.ndarray], path: Path) -> Path | None:
    """Strokes drawn on the photo (RGBA layers (H, W, 4) of the page's editor) -> a mask PNG at ``path``, white
    where anything was drawn (the holes); None when nothing was drawn."""
    drawn = [layer for layer in layers if layer is not None and layer.ndim == 3 and layer.shape[-1] == 4]
    if not drawn:
        return None
    holes = np.logical_or.reduce([layer[..., 3] > 0 for layer in drawn])
    if not holes.any():
        return None
    image = Image.fromarray(np.where(holes, 255, 0).astype(np.uint8), "L")
    return atomic_write(path, lambda stream: image.save(stream, format="PNG"))


def _pixel_check(model: ServedModel, photo: Path, size: tuple[int, int], max_pixels: int) -> None:
    height, width = size[0] * model.scale, size[1] * model.scale
    if max_pixels and height * width > max_pixels:
        grown = f" (restored {model.scale}x: {width}x{height})" if model.scale > 1 else ""
        raise ValueError(f"{photo.name}: {size[1]}x{size[0]}{grown} is {height * width / 1e6:.3g} megapixels, over "
                         f"this server's max_pixels={max_pixels}")


def read_photo(model: ServedModel, photo: Path, mask: Path | None, max_pixels: int) -> tuple[Tensor, Tensor | None]:
    """``(x1 (1, 3, H, W), mask (1, 1, H, W) or None)`` of an uploaded photo, as ``i2sb-sample`` reads it."""
    size = image_size(photo, 0)  # the header only: refused below before any decoding
    _pixel_check(model, photo, size, max_pixels)
    x1 = read_input(photo, size, 0)[None]
    if model.scale > 1:
        x1 = lift_inputs(model.restorer, x1)
    if not model.needs_mask:
        return x1, None
    if mask is None:
        raise ValueError(f"{photo.name}: {model.name} fills holes: draw them on the photo or upload a mask "
                         f"(white = hole)")
    return x1, read_mask(mask, tuple(x1.shape[-2:]))[None]


def _one_line(err: Exception, photo: Path, mask: Path | None) -> str:
    text = " ".join(str(err).split())
    for path in (photo, mask):  # uploads live in temporary folders: name the file as the user knows it
        if path is not None:
            text = text.replace(str(path), path.name)
    return text


class Restorations:
    """Restores the photos of one request into ``folder`` and reports progress per network evaluation."""

    def __init__(self, model: ServedModel, request: Request, options: SamplingOptions, folder: Path,
                 progress: Progress | None = None):
        self.model, self.request, self.options, self.folder = model, request, options, folder
        self.progress = progress
        self.steps = max(1, len(options.steps) - 1)
        self.runs, self.done = 1, 0

    def _tick(self, *_step_values: object) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(min(1.0, self.done / (self.steps * self.runs)), "restoring")

    def photo(self, photo: Path, x1: Tensor, mask: Tensor | None) -> tuple[list[Path], Path]:
        """Restore one photo ``n_samples`` times; returns (its PNGs, the before image)."""
        restorer, device = self.model.restorer, self.model.restorer.device
        names = sample_names(Path(photo.name), self.request.n_samples, ".png")
        outputs = []
        for k, name in enumerate(names):
            generator = [image_generator(self.request.seed, photo.name, k, device)]
            out = restorer.restore(x1, mask=mask, generator=generator, callback=self._tick, options=self.options)
            outputs.append(save_image(out[0], self.folder / name))
        before = save_image(x1[0], self.folder / "before" / Path(photo.name).with_suffix(".png"))
        return outputs, before

    def all(self, photos: list[Path], mask: Path | None, max_pixels: int) -> Restoration:
        """Every photo of the request; a photo that fails is one line and the rest go on."""
        result, seen = Restoration(), set()
        self.runs = max(1, len(photos) * self.request.n_samples)
        for photo in photos:
            start = time.perf_counter()
            try:
                if photo.name in seen:
                    raise ValueError(f"{photo.name}: two photos have this name; rename one")
                x1, holes = read_photo(self.model, photo, mask, max_pixels)
                outputs, before = self.photo(photo, x1, holes)
            except (ValueError, OSError, RuntimeError) as err:  # unreadable, too large, out of memory: one line
                result.lines.append(_one_line(err, photo, mask))
                result.failures += 1
                continue
            seen.add(photo.name)
            seconds = (time.perf_counter() - start) / len(outputs)
            height, width = x1.shape[-2:]
            result.outputs += outputs
            result.pairs += [(before, out) for out in outputs]
            result.lines.append(f"{photo.name}: {width}x{height}, {seconds:.2f} s per image")
        return result


def restore_photos(model: ServedModel, photos: list[Path], folder: Path, *, mask: Path | None = None,
                   nfe: object = None, sampler: object = "ddpm", seed: object = 0, n_samples: object = 1,
                   max_pixels: int = 0, progress: Progress | None = None) -> Restoration:
    """Restore uploaded ``photos`` with ``model`` into ``folder`` (``nfe`` None: the model's default).

    Settings that do not fit raise one-line ``ValueError``; photos that cannot be restored are lines of the
    returned :class:`Restoration`.
    """
    if not photos:
        raise ValueError("no photo: upload one or more photos")
    if len(photos) > MAX_PHOTOS:
        raise ValueError(f"{len(photos)} photos: at most {MAX_PHOTOS} per request")
    request, options = check_request(model, model.restorer.default_nfe if nfe is None else nfe, sampler, seed,
                                     n_samples)
    return Restorations(model, request, options, folder, progress).all(photos, mask, max_pixels)
