"""``i2sb-sample``: a Hydra application on ``configs/sample.yaml`` whose task function restores a folder
(:func:`i2sb.restoration.folder.restore_folder`); it writes nothing but the restorations (no Hydra outputs)."""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from ..config import to_sample_config
from ..utils.allocator import reuse_freed_memory
from .hydra_app import HydraTool, job_failed, run
from .hydra_errors import key_message

PROG = "i2sb-sample"


def sample_job(cfg: DictConfig) -> None:
    """Restore one folder (a plain top-level function, as Hydra's launchers need); exit status 1 when some
    images failed (each already reported), 2 for a usage error."""
    from ..restoration.folder import restore_folder  # lazy: --help and --cfg do not import torch

    reuse_freed_memory()  # faster CPU forwards (i2sb.utils.allocator)
    try:
        status = restore_folder(cfg)
    except (ValueError, FileNotFoundError) as err:
        job_failed(PROG, 2, f"error: {key_message(err)}")
        return
    if status:
        job_failed(PROG, status)


TOOL = HydraTool(PROG, "sample", sample_job, to_sample_config)


def main(argv: list[str] | None = None) -> None:
    """``i2sb-sample ckpt=RUN_OR_FILE input=DIR output=DIR [nfe=...] [key=value ...]`` and Hydra's flags."""
    sys.exit(run(TOOL, sys.argv[1:] if argv is None else argv))
