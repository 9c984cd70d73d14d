"""``i2sb-eval``: score a folder of restorations (:func:`i2sb.evaluation.evaluate_folders.evaluate_folders`).

``i2sb-eval restored=DIR reference=DIR [fid=true] [lpips=true] [json=FILE] [device=auto] ...``; the two folders
may also be given bare (``i2sb-eval DIR DIR``). The argparse flags of earlier versions (``--no-fid``,
``--json FILE``, ...) still work, with one deprecation line (:mod:`.eval_flags`). The schema lives here, the work in
:mod:`.eval_job` (imported by the job: ``--help`` loads no torch).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import MISSING

from ..evaluation.report import MAX_TABLE_ROWS
from ..evaluation.weights import BACKBONE_WEIGHTS, INCEPTION_WEIGHTS, RESNET50_WEIGHTS, WeightsSource
from .eval_flags import translate_flags
from .keyvalue import Tool, exit_with, run_tool
from .usage import EXIT_USAGE, UsageError

PROG = "i2sb-eval"
DEFAULT_JSON_SUFFIX = "_metrics.json"  # RESTORED_metrics.json beside the folder evaluated, never inside it
NO_FILE = "false"  # json=false: write no metrics file
LPIPS_NETS = tuple(sorted(BACKBONE_WEIGHTS))
FORMS = "auto | cpu | cuda | cuda:N | mps"  # what i2sb.utils.device.resolve_device takes (it imports torch)


@dataclass
class EvalOptions:
    """The keys of ``i2sb-eval``."""

    restored: str = field(default=MISSING, metadata={"help": "folder of restored images (searched recursively)"})
    reference: Optional[str] = field(default=None, metadata={
        "help": "folder of clean images; a restored image pairs with the reference of the same relative path "
                "(any extension; NAME_sK samples pair with NAME)"})
    fid: bool = field(default=True, metadata={"help": "FID (clean-fid legacy_pytorch Inception) against fid_ref, "
                                                      "else the reference folder"})
    fid_ref: Optional[str] = field(default=None, metadata={
        "help": "FID reference: an .npz with mu/sigma (clean-fid or ADM layout) or an image folder"})
    labels: Optional[str] = field(default=None, metadata={
        "help": "text/CSV file of NAME,CLASS_INDEX lines: enables ResNet-50 top-1 accuracy"})
    inception: Optional[str] = field(default=None, metadata={
        "help": f"{INCEPTION_WEIGHTS.filename} (FID); null: ${INCEPTION_WEIGHTS.env_var} "
                f"or the torch hub cache"})
    resnet: Optional[str] = field(default=None, metadata={
        "help": f"torchvision's {RESNET50_WEIGHTS.filename} (accuracy); null: "
                f"${RESNET50_WEIGHTS.env_var} or the torch hub cache"})
    lpips: bool = field(default=True, metadata={"help": "LPIPS v0.1 (needs the lpips package)"})
    lpips_net: str = field(default="alex", metadata={"help": f"LPIPS backbone: {' | '.join(LPIPS_NETS)}"})
    lpips_weights: Optional[str] = field(default=None, metadata={
        "help": "the LPIPS backbone's torchvision state_dict ("
                + ", ".join(f"{k}: {v.filename}" for k, v in sorted(BACKBONE_WEIGHTS.items()))
                + "); null: $I2SB_LPIPS_BACKBONE or the torch hub cache"})
    json: Optional[str] = field(default=None, metadata={
        "help": f"metrics file to write; null: RESTORED{DEFAULT_JSON_SUFFIX} beside the restored folder (never "
                f"inside it); {NO_FILE}: none"})
    per_image: bool = field(default=False, metadata={
        "help": f"list every image in the table (default: only when there are at most {MAX_TABLE_ROWS})"})
    device: str = field(default="auto", metadata={"help": f"{FORMS}; auto: cuda, then mps, then cpu"})
    batch_size: int = field(default=32, metadata={"help": "images per network batch"})
    swd_seed: int = field(default=0, metadata={
        "help": "seed of SWD's patch positions and projections (SWD is always computed for the pairs)"})


def _weights_note(source: WeightsSource) -> str:
    return (f"{source.what}:\n  get {source.url}\n  then {source.option}=PATH, or ${source.env_var}=PATH, "
            f"or {source.cache_path()}")


TOOL = Tool(
    PROG,
    EvalOptions,
    "PSNR/SSIM/LPIPS/SWD against REFERENCE, FID (clean-fid legacy_pytorch), ResNet-50 top-1 accuracy: a table on "
    f"stdout and RESTORED{DEFAULT_JSON_SUFFIX} beside the folder. Missing folders, unreadable files and pairs of "
    "different sizes exit 1 (the rest still scored), usage errors 2.",
    f"{PROG} restored=restored/ reference=clean/ fid=false lpips_weights=alexnet-owt-7be5be79.pth",
    positional=("restored", "reference"),
    notes="Weights are read from local files, never downloaded.\n" + "\n".join(
        _weights_note(s) for s in (INCEPTION_WEIGHTS, RESNET50_WEIGHTS,
                                   *BACKBONE_WEIGHTS.values())),
)


def json_path(options: EvalOptions) -> Path | None:
    """Where the metrics go: ``json``, by default ``RESTORED_metrics.json`` beside the restored folder (never into
    the folder evaluated), None for ``json=false``."""
    if options.json is None:
        folder = Path(options.restored)
        folder = folder.resolve() if folder.name in ("", ".", "..") else folder
        return folder.parent / f"{folder.name}{DEFAULT_JSON_SUFFIX}"
    return None if options.json.lower() == NO_FILE else Path(options.json)


def _check(options: EvalOptions) -> EvalOptions:
    from .eval_job import check_options  # lazy: the work imports torch; --help and usage errors need not

    return check_options(options)


def _run(options: EvalOptions) -> int:
    from .eval_job import run  # lazy: as above

    return run(options)


def run_eval(argv: list[str]) -> int:
    """``i2sb-eval restored=DIR [reference=DIR] [key=value ...]``; returns the exit status (0 ok, 1 bad input,
    2 usage). The old ``--flags`` are translated, with one deprecation line on stderr."""
    try:
        argv, written = translate_flags(argv)
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if written:
        print(f"{PROG}: warning: --flags are deprecated; write {' '.join(written)} (see {PROG} --help)",
              file=sys.stderr)
    return run_tool(TOOL, argv, _run, check=_check)


def main(argv: list[str] | None = None) -> None:
    """``i2sb-eval restored=DIR [reference=DIR] [key=value ...]`` (see ``--help``)."""
    exit_with(lambda: run_eval(sys.argv[1:] if argv is None else argv))
