"""``i2sb-train``: compose the training config and run :func:`i2sb.training.loop.train`."""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from ..training.loop import TrainingError, train
from .compose import run_config_tool


def _train_job(cfg: DictConfig) -> int:
    try:
        train(cfg)
    except TrainingError as err:
        print(f"i2sb-train: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    """``i2sb-train task=jpeg5 [model=...] [data=...] [trainer=...] [key=value ...]``."""
    argv = sys.argv[1:] if argv is None else argv
    sys.exit(run_config_tool("i2sb-train", "train", argv, _train_job))
