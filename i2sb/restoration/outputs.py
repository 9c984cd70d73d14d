"""What ``i2sb-sample`` writes and where: file formats, the output folder checked before any work, and which
existing files it leaves alone.

* Formats (:data:`ENCODERS`): ``png`` (lossless, the default: Pillow's PNG of the 8-bit restoration),
  ``jpg`` and ``webp`` at ``quality`` (default :data:`DEFAULT_QUALITY`). Measured on four scikit-image photos
  (astronaut, chelsea, coffee, rocket), against their lossless PNG: JPEG quality 95 with full-resolution chroma
  (4:4:4, as set here) is 40-46 dB PSNR away at 29-38 % of the PNG's size (Pillow's 4:2:0 default: 35-41 dB; quality
  90: 37-40 dB); WebP quality 95 is 35-42 dB at about 19 %. Restorations differ from the truth by 25-30 dB, so
  quality 95 adds an error an order of magnitude below the model's own while saving most of the space; lower
  qualities start to add the blocking a JPEG model was trained to remove.
* ``keep_exif``: the input's EXIF and ICC profile are written into the output (orientation reset to 1, since
  the pixels were turned upright when read; the Exif pixel dimensions set to the output's).
* Nothing that exists is replaced unless ``overwrite=true``: :func:`existing_outputs` and :func:`decision_line`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from ..utils.files import atomic_write
from ..utils.images import save_image, to_uint8

DEFAULT_QUALITY = 95
ENCODERS: dict[str, dict[str, Any]] = {  # format -> Pillow encoder options (quality added for jpg / webp)
    "png": {},
    "jpg": {"subsampling": 0},  # 4:4:4: full-resolution colour (see the module docstring)
    "webp": {},
}


def suffix(fmt: str) -> str:
    """The file suffix of an output format: ``.png``, ``.jpg``, ``.webp``."""
    return "." + fmt


def encoder_options(fmt: str, quality: int | None) -> dict[str, Any]:
    """Pillow's save options for ``fmt``; PNG gets none (byte-identical to a plain ``Image.save``)."""
    if fmt == "png":
        return {}
    return {**ENCODERS[fmt], "quality": DEFAULT_QUALITY if quality is None else int(quality)}


def check_writable(folder: Path, key: str = "output") -> None:
    """A one-line ValueError unless files can be created in ``folder`` or, while it does not exist, in the
    nearest existing folder above it (where it will be created). Tried with a temporary file, removed at once."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{key}={folder}: {probe} is not a folder")
    try:
        handle, name = tempfile.mkstemp(prefix=".i2sb-write-test.", dir=probe)
        os.close(handle)
        os.unlink(name)
    except OSError as err:
        raise ValueError(f"{key}={folder}: cannot write into {probe} ({err.strerror or err}); "
                         f"choose a writable folder") from None


def existing_outputs(paths: list[Path]) -> list[Path]:
    """The files (or links, even dangling) already at ``paths``."""
    return [p for p in paths if os.path.lexists(p)]


def decision_line(output: Path, existing: list[Path], skipped_images: int, overwrite: bool,
                  why: str | None) -> str | None:
    """What happens to the files already in ``output`` (None when there are none): kept and their images skipped,
    or replaced (``why``: the key that asked for it)."""
    if not existing:
        return None
    example = existing[0].relative_to(output).as_posix() if output in existing[0].parents else existing[0]
    if overwrite:
        return f"{why}: replacing {len(existing)} existing output file(s) in {output} (e.g. {example})"
    return (f"{len(existing)} output file(s) already in {output} (e.g. {example}) are kept, not overwritten: "
            f"{skipped_images} image(s) skipped; overwrite=true replaces them")


def save_gif(xs: Tensor, pred_x0s: Tensor, path: Path) -> None:
    """Animation of T frames, each ``[state | x0 prediction]``; ``xs``, ``pred_x0s``: (T, 3, H, W).

    (The GIF encoder merges a frame identical to the previous one into it.)
    """
    frames = [Image.fromarray(to_uint8(torch.cat([x, p], dim=-1))) for x, p in zip(xs, pred_x0s)]
    atomic_write(path, lambda f: frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:],
                                                duration=250, loop=0))


def save_strip(xs: Tensor, pred_x0s: Tensor, path: Path) -> None:
    """PNG strip (2H, T*W): states on top, x0 predictions below; ``xs``, ``pred_x0s``: (T, 3, H, W)."""
    rows = [torch.cat(list(xs), dim=-1), torch.cat(list(pred_x0s), dim=-1)]
    save_image(torch.cat(rows, dim=-2), path)


TRAJECTORY_WRITERS: dict[str, Callable[[Tensor, Tensor, Path], None]] = {"gif": save_gif, "png": save_strip}
