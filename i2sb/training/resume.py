"""Reading a run's ``latest.pt`` to resume training; when it is unreadable, the error says which kept
``ckpt_<step>.pt`` to resume from instead and how."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..utils.loaderrors import UnreadableFile
from ..utils.torchfile import load_torch

KEPT = re.compile(r"ckpt_(\d+)\.pt")


class ResumeError(ValueError):
    """The run's ``latest.pt`` cannot be read; the message names the file, the cause and the way out."""


def kept_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """The run's ``ckpt_<step>.pt`` files as ``(step, path)``, newest first."""
    found = ((KEPT.fullmatch(p.name), p) for p in run_dir.glob("ckpt_*.pt"))
    return sorted(((int(m.group(1)), p) for m, p in found if m and p.is_file()), reverse=True)


def newest_readable(run_dir: Path) -> tuple[int, Path] | None:
    """The newest ``ckpt_<step>.pt`` that loads (memory-mapped: its tensors are not read), or None."""
    for step, path in kept_checkpoints(run_dir):
        try:
            load_torch(path, mmap=True)
        except ValueError:
            continue
        return step, path
    return None


def resume_advice(latest: Path) -> str:
    """How to go on when ``latest`` is unreadable: copy the newest readable kept checkpoint over it."""
    found = newest_readable(latest.parent)
    if found is None:
        return (f"no readable ckpt_*.pt in {latest.parent} to resume from: move {latest} away, or set "
                f"resume=false, to start over")
    step, path = found
    return f"to resume from step {step}, copy {path} to {latest} (or set resume=false to start over)"


def read_latest(latest: Path) -> dict[str, Any]:
    """``latest.pt`` as a dict; :class:`ResumeError` (one line, with :func:`resume_advice`) when it does not load."""
    try:
        return load_torch(latest)
    except UnreadableFile as err:
        raise ResumeError(f"cannot resume: {err}; {resume_advice(Path(latest))}") from None

