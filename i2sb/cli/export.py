"""``i2sb-export``: an inference-only model folder (safetensors + config.json + model card) from a checkpoint."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING

from ..config import ModelOverrides
from ..restoration.export import check_output, export_model
from .keyvalue import EXIT_USAGE, Tool, UsageError, run_tool

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


def _export(options: ExportOptions) -> int:
    """Exit status 2 for what the command line asked wrongly (a checkpoint that does not load, an output that is
    not ours to replace), 1 for a failure while writing (disk full, permissions)."""
    try:
        folder = export_model(options.ckpt, options.output, options.use_ema, **options.model.given())
    except (ValueError, FileNotFoundError) as err:
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        print(f"{PROG}: error: cannot write {options.output}: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    print(folder)
    return 0


def _check(options: ExportOptions) -> ExportOptions:
    if not Path(options.ckpt).exists():
        raise UsageError(f"ckpt={options.ckpt}: no such file or directory")
    check_output(options.output)
    return options


def export_main(argv: list[str]) -> int:
    """``i2sb-export ckpt=RUN output=DIR [use_ema=true] [model.KEY=...]``; returns the exit status."""
    return run_tool(TOOL, argv, _export, check=_check)


def main() -> None:
    sys.exit(export_main(sys.argv[1:]))
