"""``torch.save`` through the atomic writer and a safe ``torch.load`` (``weights_only=True``) with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .files import atomic_write


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically and durably (a crash leaves the old file or the new one)."""
    return atomic_write(path, lambda stream: torch.save(obj, stream), durable=True)


def load_torch(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on CPU -> dict, with one-line errors naming the file.

    ``mmap`` maps the tensors instead of reading them (large optimizer states stay on disk) where the
    file's format allows it; other files are read normally.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # corrupt zip, pickle with code, truncated file, legacy format with mmap, ...
        if mmap:
            return load_torch(path, mmap=False)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: cannot read checkpoint ({reason[:200]})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a checkpoint dictionary (got {type(obj).__name__})")
    return obj
