"""The one home of image files <-> tensors: listing (:mod:`.listing`), robust decoding to RGB, and atomic writing.

Pixel convention everywhere in i2sb: float32 tensors of shape (3, H, W) with values in [-1, 1]
(the authors' `ToTensor()` followed by `t * 2 - 1`). Training, restoration and evaluation all list and
read images here, so they accept the same files and skip the same hidden ones.

Besides image files, `load_image` reads `.npy` arrays written by `save_array`: float32 (H, W, 3) in the
same [-1, 1] units, unclipped and unrounded (a degraded image that leaves [-1, 1], as the paper's
DDRM JPEG does, survives the round trip exactly). `list_images` lists them only with `arrays=True`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from .files import atomic_write
from .limits import DEFAULT_MAX_PIXELS
from .listing import (ARRAY_EXTENSIONS, IMAGE_EXTENSIONS, Listing, extensions_text, list_images,  # noqa: F401
                      require_images, require_listing, scan_images)  # re-exported: the listing's historical home

EXIF_ORIENTATION = 0x0112
EXIF_IFD = 0x8769  # the Exif sub-IFD, holding the pixel dimensions below
EXIF_PIXEL_WIDTH, EXIF_PIXEL_HEIGHT = 0xA002, 0xA003
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
SWAPPED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the image by 90 degrees

# Pillow modes holding more than 8 bits per sample; decoded to float via numpy instead of
# `Image.convert("RGB")`, which would clip them at 255.
_HIGH_DEPTH_SCALE = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0,
                     "I": 65535.0, "F": 1.0}


def is_image_file(path: str | Path) -> bool:
    """True when `path` has a supported image extension (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


class PixelLimitError(ValueError):
    """An image (or a forged header) with more pixels than the ``max_pixels`` the caller allows."""


@contextmanager
def _opened(path: Path, max_pixels: int) -> Iterator[Image.Image]:
    """``Image.open`` under our own pixel limit instead of Pillow's (no DecompressionBombWarning, one-line error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # ours is checked below instead
        try:
            image = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = pillow_limit
    with image:
        width, height = image.size
        if max_pixels and width * height > max_pixels:
            raise PixelLimitError(f"{path}: {width}x{height} is {width * height / 1e6:.1f} megapixels, over "
                                  f"max_pixels={max_pixels} (raise max_pixels to read it)")
        yield image


def _failed(path: Path, exc: Exception) -> ValueError:
    if isinstance(exc, PixelLimitError):
        return exc
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return ValueError(f"{path}: cannot read image: {reason}")


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation, from the header only (a PNG's eXIf after its pixels would need a full decode)."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    return image.getexif().get(EXIF_ORIENTATION, 1)


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says: its size as shown (EXIF orientation applied) and whether it has an alpha
    channel (that :func:`load_image` drops)."""

    height: int
    width: int
    alpha: bool = False

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width


def read_header(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """The :class:`ImageHeader` of an image (for a ``.npy`` array, from the array's header), without decoding
    the pixels; one-line ValueError for an unreadable file or one over ``max_pixels``."""
    path = Path(path)
    if path.suffix.lower() in ARRAY_EXTENSIONS:
        return ImageHeader(*_array_size(path, max_pixels))
    try:
        with _opened(path, max_pixels) as image:
            width, height = image.size
            orientation = _orientation(image)
            alpha = image.mode in ALPHA_MODES or "transparency" in image.info
    except Exception as exc:  # Pillow raises OSError, SyntaxError, struct/zlib errors, ...
        raise _failed(path, exc) from None
    swapped = orientation in SWAPPED_ORIENTATIONS
    return ImageHeader(width if swapped else height, height if swapped else width, alpha)


def image_size(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(height, width)`` of the image as shown (EXIF orientation applied), from its header only (for a
    ``.npy`` array, from the array's header)."""
    return read_header(path, max_pixels).size


def _array_size(path: Path, max_pixels: int) -> tuple[int, int]:
    try:
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError, ... for broken files
        raise ValueError(f"{path}: cannot read array: {' '.join(str(exc).split()) or type(exc).__name__}") from None
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"{path}: expected a float (H, W, 3) image array, got shape {shape}")
    if max_pixels and shape[0] * shape[1] > max_pixels:
        raise PixelLimitError(f"{path}: {shape[1]}x{shape[0]} is {shape[0] * shape[1] / 1e6:.1f} megapixels, "
                              f"over max_pixels={max_pixels} (raise max_pixels to read it)")
    return shape[0], shape[1]


def _decode(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image file, turned upright by its EXIF orientation (phone photos); any failure
    becomes a one-line ValueError."""
    try:
        with _opened(path, max_pixels) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            return image if image.mode in _HIGH_DEPTH_SCALE else image.convert("RGB")
    except Exception as exc:  # Pillow raises OSError, SyntaxError, struct/zlib errors, ...
        raise _failed(path, exc) from None


def _high_depth_to_unit(image: Image.Image) -> np.ndarray:
    """16-bit / 32-bit integer or float single-channel image -> float32 (H, W, 3) in [0, 1]."""
    values = np.asarray(image, dtype=np.float32) / _HIGH_DEPTH_SCALE[image.mode]
    return np.repeat(np.clip(values, 0.0, 1.0)[..., None], 3, axis=-1)


def read_rgb(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode `path` to an 8-bit RGB Pillow image (what the dataset transforms consume).

    Grey, palette, CMYK and RGBA images are converted with `Image.convert("RGB")` (alpha is
    dropped, as in the authors' loader); 16-bit grey is scaled to 8 bits, not clipped.
    The EXIF orientation is applied (a phone photo comes out upright, as viewers show it). Images with more
    than ``max_pixels`` pixels (0: no limit) are refused from their header, before decoding.
    Raises ValueError("<path>: cannot read image: ...") for unreadable, truncated or non-image files.
    """
    image = _decode(Path(path), max_pixels)
    if image.mode in _HIGH_DEPTH_SCALE:
        return Image.fromarray(np.round(_high_depth_to_unit(image) * 255.0).astype(np.uint8))
    return image


def read_uint8(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode `path` to an 8-bit RGB array (H, W, 3), as `read_rgb` (what the metrics compare)."""
    return np.asarray(read_rgb(path, max_pixels), dtype=np.uint8)


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Read an image file as a float32 tensor (3, H, W) in [-1, 1].

    Same conversions as `read_rgb` (EXIF orientation, pixel limit), except that 16-bit grey keeps its full
    precision. A `.npy` file is read with `load_array` (exact values, not clipped).
    Raises FileNotFoundError for a missing file and ValueError for an undecodable one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() in ARRAY_EXTENSIONS:
        return load_array(path)
    image = _decode(path, max_pixels)
    if image.mode in _HIGH_DEPTH_SCALE:
        unit = _high_depth_to_unit(image)
    else:
        unit = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(unit)).permute(2, 0, 1) * 2.0 - 1.0


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (1, H, W) or (H, W) tensor in [-1, 1] -> uint8 array (H, W, 3) or (H, W).

    Rounds half up after mapping to [0, 255], like torchvision's `save_image` applied to (x + 1) / 2.
    A uint8 tensor is taken as pixel values already.
    """
    if image.dim() == 3 and image.shape[0] in (1, 3):
        image = image.permute(1, 2, 0).squeeze(-1)
    elif image.dim() != 2:
        raise ValueError(f"expected an image tensor (3, H, W), (1, H, W) or (H, W); got {tuple(image.shape)}")
    image = image.detach().to("cpu")
    if image.dtype == torch.uint8:
        return image.numpy()
    if not image.is_floating_point():
        raise ValueError(f"expected a float tensor in [-1, 1] or uint8; got dtype {image.dtype}")
    scaled = ((image.float() + 1.0) * 127.5 + 0.5).clamp_(0.0, 255.0)
    return scaled.to(torch.uint8).numpy()


@dataclass(frozen=True)
class ImageMetadata:
    """What a photo carries besides its pixels: EXIF (camera, date, ...) and the ICC colour profile, as bytes."""

    exif: bytes | None = None
    icc_profile: bytes | None = None


def read_metadata(path: str | Path, size: tuple[int, int] | None = None) -> ImageMetadata:
    """The EXIF and ICC profile of an image file, for an output made from it (empty for ``.npy`` arrays).

    The EXIF orientation is reset to 1, since :func:`load_image` already turned the pixels upright; with ``size``
    (the output's (H, W)) the Exif pixel dimensions, where present, are set to it. Unreadable metadata: empty.
    """
    path = Path(path)
    if path.suffix.lower() in ARRAY_EXTENSIONS:
        return ImageMetadata()
    try:
        with _opened(path, 0) as image:
            exif, icc = image.getexif(), image.info.get("icc_profile")
            if EXIF_ORIENTATION in exif:
                exif[EXIF_ORIENTATION] = 1
            dims = exif.get_ifd(EXIF_IFD)
            if size is not None and EXIF_PIXEL_WIDTH in dims:
                dims[EXIF_PIXEL_WIDTH], dims[EXIF_PIXEL_HEIGHT] = size[1], size[0]
            return ImageMetadata(exif.tobytes() if len(exif) else None, icc or None)
    except Exception:  # Pillow raises many types for odd EXIF blocks; metadata is a courtesy, never fatal
        return ImageMetadata()


def save_image(image: torch.Tensor, path: str | Path, *, metadata: ImageMetadata | None = None,
               **options: Any) -> Path:
    """Write an image tensor (3, H, W) in [-1, 1] (or (1, H, W): grey) to `path`, atomically.

    The format follows the suffix (".png" expected; any Pillow-writable suffix works); ``options`` go to Pillow's
    encoder (``quality=95``, ...), ``metadata`` adds EXIF / ICC profile. The data goes to a temporary file in the
    same folder that is then renamed over `path` (`os.replace`), so a crash never leaves a half-written image.
    Parent folders are created. Returns the path.
    """
    path = Path(path)
    file_format = Image.registered_extensions().get(path.suffix.lower())
    if file_format is None:
        raise ValueError(f"{path}: unknown image suffix {path.suffix!r} (use .png)")
    if metadata is not None:
        options.update({k: v for k, v in (("exif", metadata.exif), ("icc_profile", metadata.icc_profile)) if v})
    pixels = Image.fromarray(to_uint8(image))
    return atomic_write(path, lambda stream: pixels.save(stream, format=file_format, **options))


def save_array(image: torch.Tensor, path: str | Path) -> Path:
    """Write an image tensor (3, H, W) in [-1, 1] units to `path` (".npy") as a float32 (H, W, 3) array,
    exactly (no clipping, no rounding), atomically. Returns the path."""
    path = Path(path)
    if path.suffix.lower() not in ARRAY_EXTENSIONS:
        raise ValueError(f"{path}: arrays are written as .npy, got suffix {path.suffix!r}")
    if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
        raise ValueError(f"expected a float image tensor (3, H, W); got {tuple(image.shape)} {image.dtype}")
    array = np.ascontiguousarray(image.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy())
    return atomic_write(path, lambda stream: np.save(stream, array, allow_pickle=False))


def load_array(path: str | Path) -> torch.Tensor:
    """Read a `.npy` image array, float (H, W, 3) in [-1, 1] units (as `save_array` writes), as a float32
    tensor (3, H, W), values as stored. Raises ValueError("<path>: ...") for anything else."""
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError, ... for broken files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"{path}: cannot read array: {reason}") from exc
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype.kind != "f" or 0 in array.shape:
        raise ValueError(f"{path}: expected a float (H, W, 3) image array, got {array.dtype} {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: the image array holds NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1).contiguous()
