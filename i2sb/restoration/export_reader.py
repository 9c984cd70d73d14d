"""Reading an inference-only model folder (``i2sb-export``): ``config.json`` and ``model.safetensors``, no pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from ..config import TaskConfig
from ..utils.file_formats import CONFIG_FILE, MODEL_FORMAT, WEIGHTS_FILE
from .trained_network import TrainedNetwork


def is_exported(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by :func:`export_model`."""
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def exported_spec(folder: str | Path, overrides: dict[str, Any] | None = None) -> TrainedNetwork:
    """Read an exported folder (JSON and safetensors only, no pickle) into a :class:`TrainedNetwork`."""
    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{folder / CONFIG_FILE}: cannot read ({' '.join(str(err).split())})") from None
    if config.get("format") != MODEL_FORMAT:
        raise ValueError(f"{folder / CONFIG_FILE}: not an i2sb model config (format={config.get('format')!r})")
    try:
        weights = load_file(str(folder / WEIGHTS_FILE))
    except Exception as err:  # safetensors raises its own error types for truncated or foreign files
        raise ValueError(f"{folder / WEIGHTS_FILE}: cannot read ({' '.join(str(err).split())})") from None
    network = {**config["network"], **(overrides or {})}
    return TrainedNetwork(network, weights, TaskConfig(**config["task"]), int(network.get("image_size",
                          config["image_size"])), int(config["default_nfe"]), config["method"],
                          config.get("validation"), config.get("student"))
