"""The work of ``i2sb-download`` (:mod:`.download` holds its schema and ``list``): download a checkpoint, a shared
model or the ADM weights, verified."""

from __future__ import annotations

import sys

from ..restoration.pretrained import DEFAULT_ADM_DIR, DEFAULT_ROOT, download_adm, download_checkpoint
from ..utils.download import DownloadError
from .download import PROG, DownloadOptions, say


def run(options: DownloadOptions) -> int:
    """Download ``options.name`` (a checkpoint, or ``adm``); exit status 1 with one line when it fails."""
    try:
        if options.name == "adm":
            print(download_adm(options.dir or DEFAULT_ADM_DIR, options.mirror, options.progress, log=say))
            return 0
        folder = download_checkpoint(options.name, options.dir or DEFAULT_ROOT, options.mirror, options.progress,
                                     log=say)
    except DownloadError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    print(folder)
    say(f"restore with: i2sb-sample ckpt={folder} input=DIR output=DIR")
    return 0
