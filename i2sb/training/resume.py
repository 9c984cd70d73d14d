"""Reading a run's ``latest.pt`` to resume training; when it is unreadable, the error says which kept
``ckpt_<step>.pt`` to resume from instead and how. What may change on a resume (:func:`check_resumable`), checked
by the trainer and, before Hydra writes anything into the run directory, by ``i2sb-train`` (:func:`check_resume`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..config import ConfigError
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


def read_latest(latest: Path, mmap: bool = False) -> dict[str, Any]:
    """``latest.pt`` as a dict (``mmap``: its tensors mapped, not read); :class:`ResumeError` (one line, with
    :func:`resume_advice`) when it does not load."""
    try:
        return load_torch(latest, mmap=mmap)
    except UnreadableFile as err:
        raise ResumeError(f"cannot resume: {err}; {resume_advice(Path(latest))}") from None


def check_resume(current: dict[str, Any], latest: Path) -> None:
    """Whether a run with config ``current`` (a plain dict) can resume from ``latest`` if it exists: the file loads
    (memory-mapped: only its pickled config and tensor headers are read) and :func:`check_resumable`. Raises
    :class:`ResumeError` or :class:`~i2sb.config.ConfigError` (both ``ValueError``, one line) otherwise."""
    if Path(latest).is_file():
        check_resumable(read_latest(latest, mmap=True).get("config", {}), current, str(latest))


def check_resumable(saved: dict[str, Any], current: dict[str, Any], source: str) -> None:
    """Resuming must keep the method, the network, the bridge and the kind of learning-rate schedule; the rest
    of the trainer section may change (e.g. max_steps)."""
    if "method" in saved and saved["method"] != current.get("method"):
        raise ConfigError(f"{source}: cannot resume: config key 'method' was {saved['method']!r} in the checkpoint "
                          f"but is {current.get('method')!r} now (use a new run_dir)")
    for section in ("model", "task"):
        for key, value in current.get(section, {}).items():
            if key in ("init",) or section not in saved:
                continue
            if saved[section].get(key) != value:
                raise _cannot_resume(source, f"{section}.{key}", saved[section].get(key), value)
    # the warm-up decides the scheduler's type (StepLR or LambdaLR), whose saved state holds the old value
    warmup = saved.get("trainer", {}).get("lr_warmup", 0)  # a checkpoint without the key trained without warm-up
    if warmup != current["trainer"]["lr_warmup"]:
        raise _cannot_resume(source, "trainer.lr_warmup", warmup, current["trainer"]["lr_warmup"])


def _cannot_resume(source: str, key: str, old: Any, new: Any) -> ConfigError:
    return ConfigError(f"{source}: cannot resume: config key '{key}' was {old!r} in the checkpoint but is "
                       f"{new!r} now (use a new run_dir, or resume=false to start over)")

