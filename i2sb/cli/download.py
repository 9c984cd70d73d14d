"""``i2sb-download``: the authors' pretrained checkpoints and the ADM ImageNet-256 weights.

Exit status: 0 done (or already present), 1 a download failed (one-line message), 2 usage error. The schema and
``list`` live here, a download in :mod:`.download_job` (``--help`` and ``list`` load no torch).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import MISSING

from ..restoration.registry import (DEFAULT_ADM_DIR, DEFAULT_ROOT, MIRROR_ENV, PRETRAINED, check_name, local_state,
                                    lookup, resolve_mirror)
from .keyvalue import Tool, exit_with, run_tool
from .usage import UsageError

PROG = "i2sb-download"
COMMANDS = ("list", "adm")  # besides a checkpoint name


@dataclass
class DownloadOptions:
    name: str = field(default=MISSING, metadata={
        "help": f"a checkpoint ({', '.join(PRETRAINED)}; or the task name, e.g. jpeg5), with mirror= any model "
                f"folder the mirror serves, 'list' (the table, what is here) or 'adm' (256x256_diffusion_uncond.pt, "
                f"the training init and DDNM's prior)"})
    dir: Optional[str] = field(default=None, metadata={
        "help": f"target folder (null: {DEFAULT_ROOT}/ for checkpoints, {DEFAULT_ADM_DIR}/ for adm)"})
    mirror: Optional[str] = field(default=None, metadata={
        "help": f"base URL (http(s):// or file://) serving NAME/ as the authors' files (options.pkl + latest.pt), an "
                f"exported model folder (i2sb-export: config.json + model.safetensors) or a run directory "
                f"(latest.pt), and 256x256_diffusion_uncond.pt (null: ${MIRROR_ENV}, else Google Drive via gdown: "
                f"pip install 'i2sb[download]')"})
    progress: bool = field(default=True, metadata={"help": "progress bars on stderr"})


TOOL = Tool(PROG, DownloadOptions,
            "Download the I2SB authors' checkpoints into DIR/NAME/ (latest.pt + options.pkl, the layout "
            "i2sb-sample ckpt= reads), a model a team shares on a mirror (an exported model folder or a run "
            "directory), or guided-diffusion's ADM ImageNet-256 weights into DIR/.",
            f"{PROG} jpeg-5 && i2sb-sample ckpt={DEFAULT_ROOT}/jpeg-5 input=degraded/ output=restored/",
            positional=("name",))


def say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def list_table(root: str | Path) -> str:
    """One row per checkpoint: name, i2sb task, the paper's FID (which table), present in ``root``."""
    rows = [("name", "task", "paper FID", "local")]
    for entry in PRETRAINED.values():
        fid = f"{entry.fid:.1f} ({entry.fid_kind}, Table {entry.table})"
        rows.append((entry.name, entry.task, fid, local_state(entry.name, root)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.append(f"local = both latest.pt and options.pkl in {Path(root) / 'NAME'} (not verified; "
                 f"'{PROG} NAME' verifies). ADM init: '{PROG} adm'.")
    return "\n".join(lines)


def _download(options: DownloadOptions) -> int:
    """``list`` here (no torch); a download in :mod:`.download_job`."""
    if options.name == "list":
        print(list_table(options.dir or DEFAULT_ROOT))
        return 0
    from .download_job import run  # lazy: a download imports torch; --help and list need not

    return run(options)


def _check_name(options: DownloadOptions) -> DownloadOptions:
    """The nine checkpoints' names (or their tasks'); with a mirror, any model folder name."""
    if options.name in COMMANDS:
        return options
    try:
        if resolve_mirror(options.mirror):
            check_name(options.name)
        else:
            lookup(options.name)
    except ValueError as err:
        hint = "" if resolve_mirror(options.mirror) else " (or, with mirror=URL, a model folder the mirror serves)"
        raise UsageError(f"{err}{hint}") from None
    return options


def download_main(argv: list[str]) -> int:
    """``i2sb-download NAME|list|adm [dir=...] [mirror=URL] [progress=true]``; returns the exit status."""
    return run_tool(TOOL, argv, _download, check=_check_name)


def main() -> None:
    exit_with(lambda: download_main(sys.argv[1:]))
