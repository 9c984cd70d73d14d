"""``i2sb-export``: an inference-only model folder (safetensors + config.json + model card) from a checkpoint.

The schema lives here, the work in :mod:`.export_job` (imported by the job: ``--help`` loads no torch)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from omegaconf import MISSING

from ..config import ModelOverrides
from .keyvalue import Tool, exit_with, run_tool

PROG = "i2sb-export"


@dataclass
class ExportOptions:
    ckpt: str = field(default=MISSING, metadata={
        "help": "a run directory, a checkpoint file, or the authors' results/NAME/ (latest.pt + options.pkl)"})
    output: str = field(default=MISSING, metadata={
        "help": "the model folder to write (model.safetensors, config.json, README.md); an earlier export there "
                "is replaced, any other existing folder is refused"})
    use_ema: bool = field(default=True, metadata={"help": "the EMA weights (false: the raw ones)"})
    model: ModelOverrides = field(default_factory=ModelOverrides, metadata={
        "help": "U-Net overrides for the authors' checkpoints, e.g. model.num_head_channels=64"})


TOOL = Tool(PROG, ExportOptions,
            "Write an inference-only model folder: the weights as model.safetensors (no pickle), config.json "
            "(network, bridge, task, image size, default NFE) and a model card README.md, ready for a model hub. "
            "i2sb-sample ckpt=FOLDER and i2sb.load(FOLDER) read it. Exit status 2 for a checkpoint that does not "
            "load or an output that is not a new folder or an earlier export, 1 for a failure while writing.",
            f"{PROG} ckpt=results/jpeg-5 output=models/i2sb-jpeg5")


def _check(options: ExportOptions) -> ExportOptions:
    from .export_job import check  # lazy: the work imports torch; --help and usage errors need not

    return check(options)


def _run(options: ExportOptions) -> int:
    from .export_job import run  # lazy: as above

    return run(options)


def export_main(argv: list[str]) -> int:
    """``i2sb-export ckpt=RUN output=DIR [use_ema=true] [model.KEY=...]``; returns the exit status."""
    return run_tool(TOOL, argv, _run, check=_check)


def main() -> None:
    exit_with(lambda: export_main(sys.argv[1:]))
