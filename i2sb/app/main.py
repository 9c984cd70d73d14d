"""``i2sb-app``: serve the restoration page (and its ``/restore`` API) for configured checkpoints.

Safe by default: binds 127.0.0.1, no public share link unless ``share=true``, only the checkpoints given as
``ckpt=`` can be chosen, uploads limited in bytes and pixels, one restoration at a time (a queue).
Exit status: 2 for a usage error (bad key, missing checkpoint, port taken), 130 on Ctrl-C.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING

from ..cli.keyvalue import Tool, run_tool
from ..cli.usage import UsageError
from ..utils.allocator import reuse_freed_memory
from .models import load_models
from .page import CSS, Settings, build_page, gr, theme

PROG = "i2sb-app"
DEFAULT_MAX_PIXELS = 4096 * 4096  # of a restored image (SR: 4x the photo's sides)


@dataclass
class AppOptions:
    ckpt: str = field(default=MISSING, metadata={
        "help": "checkpoints to serve, comma-separated: run directories, exported folders, the authors' "
                "results/NAME (anything i2sb-sample ckpt= reads); only these can be chosen in the page"})
    host: str = field(default="127.0.0.1", metadata={
        "help": "address to bind; 127.0.0.1 = this machine only (0.0.0.0: every network interface)"})
    port: int = field(default=7860, metadata={"help": "TCP port (0: a free one)"})
    device: str = field(default="auto", metadata={"help": "auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps"})
    precision: str = field(default="auto", metadata={"help": "auto | fp32 | bf16 | fp16, as i2sb-sample's"})
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, metadata={
        "help": "largest restored image in pixels (SR: 16x the photo's); larger photos are refused in one line"})
    max_upload_mb: int = field(default=50, metadata={"help": "largest upload in megabytes"})
    queue_size: int = field(default=64, metadata={"help": "requests waiting at most; one runs at a time"})
    share: bool = field(default=False, metadata={"help": "also a public gradio.live link (off unless asked)"})


TOOL = Tool(PROG, AppOptions,
            "Serve a page to restore photos in the browser (upload, NFE, sampler, seed, samples, before/after, "
            "download of the PNG i2sb-sample writes) and its /restore API for gradio_client. Needs the 'app' "
            "extra: pip install 'i2sb[app]'.",
            f"{PROG} ckpt=runs/demo/jpeg5,runs/demo/sr4x_pool port=7860")


def checkpoints(text: str) -> list[str]:
    """``ckpt=a,b`` -> ``[a, b]`` (every one must exist)."""
    paths = [p.strip() for p in str(text).split(",") if p.strip()]
    if not paths:
        raise UsageError("ckpt: give at least one checkpoint")
    for path in paths:
        if not Path(path).exists():
            raise UsageError(f"ckpt={path}: no such file or directory")
    return paths


def _check(options: AppOptions) -> AppOptions:
    checkpoints(options.ckpt)
    if not 0 <= options.port <= 65535:
        raise UsageError(f"port: must be in 0..65535, got {options.port}")
    for key in ("max_pixels", "max_upload_mb", "queue_size"):
        if getattr(options, key) <= 0:
            raise UsageError(f"{key}: must be positive, got {getattr(options, key)}")
    if gr is None:
        raise UsageError("gradio is not installed: pip install 'i2sb[app]'")
    return options


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def serve(options: AppOptions) -> int:
    """Load the checkpoints, build the page, serve until Ctrl-C."""
    reuse_freed_memory()  # faster CPU forwards (i2sb.utils.allocator)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        models = load_models(checkpoints(options.ckpt), options.device, options.precision)
    except (ValueError, FileNotFoundError) as err:  # a device this machine lacks is a ValueError too
        _log(f"{PROG}: error: {' '.join(str(err).split())}")
        return 2
    with tempfile.TemporaryDirectory(prefix="i2sb-app-") as work:
        settings = Settings(models, options.max_pixels, Path(work), log=_log)
        page = build_page(settings).queue(max_size=options.queue_size, default_concurrency_limit=1)
        port = options.port or None
        _log(f"{PROG}: serving {', '.join(models)} (Ctrl-C stops)")
        try:
            page.launch(server_name=options.host, server_port=port, share=options.share, ssr_mode=False,
                        max_file_size=f"{options.max_upload_mb}mb", theme=theme(), css=CSS, quiet=False,
                        footer_links=["api"], show_error=False)
        except OSError as err:  # the port is taken
            _log(f"{PROG}: error: {' '.join(str(err).split())}")
            return 2
    return 0


def app_main(argv: list[str]) -> int:
    """``i2sb-app ckpt=PATH[,PATH...] [host=127.0.0.1] [port=7860] [device=auto] [max_pixels=...]``."""
    return run_tool(TOOL, argv, serve, check=_check)


def main() -> None:
    sys.exit(app_main(sys.argv[1:]))
