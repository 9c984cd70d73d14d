"""The one atomic file writer: data goes to a temporary file beside the target, then renamed over it.

A crash (or ``kill -9``) at any moment leaves either the old file or the new one, never a partial file;
at worst a hidden ``.NAME.<hex>.tmp`` remains, which :func:`remove_temp_files` clears. Files are created
with ``open(..., "xb")``, so their permissions follow the user's umask (as any other file they write).
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

TEMP_PATTERN = ".*.tmp"  # what atomic_write leaves behind when killed mid-write


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], *, durable: bool = False) -> Path:
    """Call ``write(stream)`` on a temporary file beside ``path``, then rename it over ``path``.

    ``durable`` also fsyncs the file and its folder (checkpoints: the rename survives a power cut).
    Parent folders are created. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as stream:  # "x": never clobbers; mode follows the umask
            write(stream)
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic set-and-restore
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new regular file under the current umask (``0o644`` for umask ``0o022``)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """Mode of a new directory under the current umask (``0o755`` for umask ``0o022``)."""
    return 0o777 & ~current_umask()


def fix_mode(path: Path) -> None:
    """Give ``path`` the mode the umask gives new files or directories (temp files are often ``0600``)."""
    os.chmod(path, dir_mode() if path.is_dir() else file_mode())


def json_safe(value: Any) -> Any:
    """JSON has no inf/nan: non-finite floats become the strings 'inf', '-inf', 'nan' (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(data: Any, path: str | Path) -> Path:
    """``data`` as indented JSON (non-finite floats as strings) written atomically to ``path``."""
    text = json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n"
    return atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))


def remove_temp_files(folder: str | Path) -> list[Path]:
    """Remove the temporary files that a process killed inside :func:`atomic_write` left in ``folder``."""
    removed = []
    for tmp in Path(folder).glob(TEMP_PATTERN):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed
