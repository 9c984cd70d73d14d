"""Checkpoints: atomic save, safe load, run directories, and ADM (guided-diffusion) initialisation.

A training checkpoint is a plain dict loadable with ``torch.load(weights_only=True)``::

    {"format": "i2sb-checkpoint", "version": 1, "step": int,
     "model": U-Net state_dict (guided-diffusion keys), "ema": EMA.state_dict(),
     "optimizer": ..., "lr_scheduler": ..., "grad_scaler": ..., "rng": {...},
     "config": the resolved training config (nested dict), "stats": {...}}

A run directory holds ``config.yaml``, ``latest.pt``, optional ``ckpt_{step:09d}.pt`` and ``metrics.jsonl``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

FORMAT = "i2sb-checkpoint"
VERSION = 1
LATEST = "latest.pt"


# ---------------------------------------------------------------------------- files
def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``.

    A crash at any moment leaves either the old file or the new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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


def load_file(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on CPU with one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt zip, pickle with code, truncated file, ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: cannot read checkpoint ({reason[:200]})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a checkpoint dictionary (got {type(obj).__name__})")
    return obj


def is_i2sb_checkpoint(obj: dict[str, Any]) -> bool:
    return obj.get("format") == FORMAT


def find_latest(run_dir: str | Path) -> Path | None:
    """``run_dir/latest.pt`` if present."""
    path = Path(run_dir) / LATEST
    return path if path.is_file() else None


def cleanup_temp_files(run_dir: str | Path) -> list[Path]:
    """Remove temporary files left by a process killed during :func:`save_atomic`."""
    removed = []
    for tmp in Path(run_dir).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


# ---------------------------------------------------------------------------- ADM initialisation
def adm_surgery(adm: dict[str, Tensor], model: nn.Module, source: str = "ADM checkpoint") -> dict[str, Tensor]:
    """Adapt a guided-diffusion ADM state_dict to ``model`` the way the authors do (``ckpt_util.py``).

    * ``out.2``: keep the first ``out_channels`` rows (ADM predicts eps and variance: 6 -> 3 channels).
    * ``input_blocks.0.0.weight``: with more input channels (``cond_x1``: 3 -> 6), append the model's
      own freshly initialised weights for the extra channels.
    Then every key and shape must match; otherwise a ``ValueError`` names the first mismatch.
    """
    own = model.state_dict()
    state = dict(adm)
    for key in ("out.2.weight", "out.2.bias"):
        if key in state and key in own and state[key].shape[0] > own[key].shape[0]:
            state[key] = state[key][: own[key].shape[0]]
    key = "input_blocks.0.0.weight"
    if key in state and key in own and state[key].ndim == 4 and state[key].shape[1] < own[key].shape[1]:
        extra = own[key][:, state[key].shape[1] :].to(state[key].dtype)
        state[key] = torch.cat([state[key], extra], dim=1)
    check_compatible(state, own, source)
    return state


def check_compatible(state: dict[str, Tensor], own: dict[str, Tensor], source: str) -> None:
    """Raise a one-line ``ValueError`` naming the first key or shape that differs."""
    for key, value in own.items():
        if key not in state:
            raise ValueError(f"{source}: does not match the configured U-Net: key '{key}' is missing from the file")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(
                f"{source}: does not match the configured U-Net: '{key}' has shape {tuple(state[key].shape)} "
                f"in the file but {tuple(value.shape)} in the model"
            )
    extra = [k for k in state if k not in own]
    if extra:
        raise ValueError(f"{source}: does not match the configured U-Net: unexpected key '{extra[0]}' in the file")


def load_adm_init(model: nn.Module, path: str | Path) -> None:
    """Initialise ``model`` (an ``i2sb.unet.UNet``) from a guided-diffusion checkpoint file."""
    adm = load_file(path)
    adm = adm.get("state_dict", adm) if "input_blocks.0.0.weight" not in adm else adm
    state = adm_surgery(adm, model, source=str(path))
    model.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------- model weights
def model_weights(ckpt: dict[str, Any], use_ema: bool = True) -> dict[str, Tensor]:
    """The U-Net weights of an i2sb checkpoint: EMA-averaged by default, raw with ``use_ema=False``."""
    if not use_ema:
        return dict(ckpt["model"])
    if not ckpt.get("ema"):
        raise ValueError("checkpoint has no EMA weights: use use_ema=false")
    return dict(ckpt["ema"]["state_dict"])
