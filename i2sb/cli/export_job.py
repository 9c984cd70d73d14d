"""The work of ``i2sb-export`` (:mod:`.export` holds its schema): check the checkpoint and the output, write the
model folder."""

from __future__ import annotations

import sys
from pathlib import Path

from ..restoration.export_writer import check_output, export_model
from .export import PROG, ExportOptions
from .usage import EXIT_USAGE, UsageError


def run(options: ExportOptions) -> int:
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


def check(options: ExportOptions) -> ExportOptions:
    """A checkpoint that exists and an output an export may go to (usage errors, before any work)."""
    if not Path(options.ckpt).exists():
        raise UsageError(f"ckpt={options.ckpt}: no such file or directory")
    check_output(options.output)
    return options
