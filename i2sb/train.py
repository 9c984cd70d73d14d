"""Public alias: ``train(cfg)`` (:mod:`i2sb.training.loop`), and ``python -m i2sb.train key=value ...`` (also
under ``torchrun``), the same as ``i2sb-train``."""

from .cli import train_main
from .training.loop import train

__all__ = ["train"]

if __name__ == "__main__":
    train_main()
