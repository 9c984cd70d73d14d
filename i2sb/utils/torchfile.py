"""``torch.save`` through the atomic writer and a safe ``torch.load`` (``weights_only=True``) with one-line errors."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from .files import atomic_write
from .loaderrors import UnreadableFile, file_head, is_zip, load_failure


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically and durably (a crash leaves the old file or the new one)."""
    return atomic_write(path, lambda stream: torch.save(obj, stream), durable=True)


def load_torch(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on CPU -> dict, with one-line errors naming the file.

    ``mmap`` maps the tensors instead of reading them (large optimizer states stay on disk) where the
    file's format allows it (zip checkpoints); other files are read normally. A file that does not load raises
    :class:`~.loaderrors.UnreadableFile` (a ``ValueError``): not a checkpoint, truncated or corrupt, or refused
    because it wants to run code (never with the advice to disable ``weights_only``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        with warnings.catch_warnings():  # torch warns, over several lines, about pickle protocols > 2
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and is_zip(file_head(path)))
    except Exception as err:  # corrupt zip, pickle with code, truncated file, not a checkpoint at all, ...
        raise UnreadableFile(path, load_failure(err, path)) from None
    if not isinstance(obj, dict):
        raise UnreadableFile(path, f"not a checkpoint dictionary (got {type(obj).__name__})")
    return obj
