"""``i2sb-sample``: compose the sampling config and restore a folder (:func:`i2sb.restoration.folder.restore_folder`)."""

from __future__ import annotations

import sys

from ..restoration.folder import restore_folder
from .compose import run_config_tool


def main(argv: list[str] | None = None) -> None:
    """``i2sb-sample ckpt=RUN_OR_FILE input=DIR output=DIR [nfe=...] [key=value ...]``."""
    argv = sys.argv[1:] if argv is None else argv
    sys.exit(run_config_tool("i2sb-sample", "sample", argv, restore_folder))
