"""``i2sb-eval``: score a folder of restorations (:func:`i2sb.evaluation.folders.evaluate_folders`).

``i2sb-eval restored=DIR reference=DIR [fid=true] [lpips=true] [json=FILE] [device=auto] ...``; the two folders
may also be given bare (``i2sb-eval DIR DIR``). The argparse flags of earlier versions (``--no-fid``,
``--json FILE``, ...) still work, with one deprecation line (:mod:`.eval_flags`).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import MISSING

from ..evaluation import metrics, perceptual
from ..evaluation.folders import EvaluationWarning, evaluate_folders
from ..evaluation.report import MAX_TABLE_ROWS, format_table
from ..utils.device import FORMS, resolve_device
from ..utils.files import write_json
from ..utils.images import IMAGE_EXTENSIONS
from .eval_flags import translate_flags
from .keyvalue import EXIT_USAGE, Tool, UsageError, run_tool

PROG = "i2sb-eval"
DEFAULT_JSON_SUFFIX = "_metrics.json"  # RESTORED_metrics.json beside the folder evaluated, never inside it
NO_FILE = "false"  # json=false: write no metrics file
LPIPS_NETS = tuple(sorted(perceptual.BACKBONE_WEIGHTS))


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
        "help": f"{metrics.INCEPTION_WEIGHTS.filename} (FID); null: ${metrics.INCEPTION_WEIGHTS.env_var} "
                f"or the torch hub cache"})
    resnet: Optional[str] = field(default=None, metadata={
        "help": f"torchvision's {metrics.RESNET50_WEIGHTS.filename} (accuracy); null: "
                f"${metrics.RESNET50_WEIGHTS.env_var} or the torch hub cache"})
    lpips: bool = field(default=True, metadata={"help": "LPIPS v0.1 (needs the lpips package)"})
    lpips_net: str = field(default="alex", metadata={"help": f"LPIPS backbone: {' | '.join(LPIPS_NETS)}"})
    lpips_weights: Optional[str] = field(default=None, metadata={
        "help": "the LPIPS backbone's torchvision state_dict ("
                + ", ".join(f"{k}: {v.filename}" for k, v in sorted(perceptual.BACKBONE_WEIGHTS.items()))
                + "); null: $I2SB_LPIPS_BACKBONE or the torch hub cache"})
    json: Optional[str] = field(default=None, metadata={
        "help": f"metrics file to write; null: RESTORED{DEFAULT_JSON_SUFFIX} beside the restored folder (never "
                f"inside it); {NO_FILE}: none"})
    per_image: bool = field(default=False, metadata={
        "help": f"list every image in the table (default: only when there are at most {MAX_TABLE_ROWS})"})
    device: str = field(default="auto", metadata={"help": f"{FORMS}; auto: cuda, then mps, then cpu"})
    batch_size: int = field(default=32, metadata={"help": "images per network batch"})


def _weights_note(spec: metrics.WeightsSpec) -> str:
    return (f"{spec.what}:\n  get {spec.url}\n  then {spec.option}=PATH, or ${spec.env_var}=PATH, "
            f"or {spec.cache_path()}")


TOOL = Tool(
    PROG,
    EvalOptions,
    "PSNR/SSIM/LPIPS against REFERENCE, FID (clean-fid legacy_pytorch), ResNet-50 top-1 accuracy: a table on "
    f"stdout and RESTORED{DEFAULT_JSON_SUFFIX} beside the folder. Missing folders, unreadable files and pairs of "
    "different sizes exit 1 (the rest still scored), usage errors 2.",
    f"{PROG} restored=restored/ reference=clean/ fid=false lpips_weights=alexnet-owt-7be5be79.pth",
    positional=("restored", "reference"),
    notes="Weights are read from local files, never downloaded.\n" + "\n".join(
        _weights_note(s) for s in (metrics.INCEPTION_WEIGHTS, metrics.RESNET50_WEIGHTS,
                                   *perceptual.BACKBONE_WEIGHTS.values())),
)


def json_path(options: EvalOptions) -> Path | None:
    """Where the metrics go: ``json``, by default ``RESTORED_metrics.json`` beside the restored folder (never into
    the folder evaluated), None for ``json=false``."""
    if options.json is None:
        folder = Path(options.restored)
        folder = folder.resolve() if folder.name in ("", ".", "..") else folder
        return folder.parent / f"{folder.name}{DEFAULT_JSON_SUFFIX}"
    return None if options.json.lower() == NO_FILE else Path(options.json)


def check_options(options: EvalOptions) -> EvalOptions:
    """Values beyond the schema's types, before any work (usage errors, exit 2); resolves ``device``."""
    if options.batch_size < 1:
        raise UsageError(f"batch_size={options.batch_size}: must be a positive integer")
    if options.lpips_net not in LPIPS_NETS:
        raise UsageError(f"lpips_net={options.lpips_net}: must be one of {', '.join(LPIPS_NETS)}")
    path = json_path(options)
    if path is not None and path.suffix.lower() in IMAGE_EXTENSIONS:
        raise UsageError(f"json={path}: refusing to write metrics to a file with an image extension")
    options.device = str(resolve_device(options.device))
    return options


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _evaluate(options: EvalOptions) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("always", EvaluationWarning)
        warnings.showwarning = _print_warning  # one line per skipped file, restored on exit
        return evaluate_folders(
            options.restored, options.reference, fid_ref=options.fid_ref, labels=options.labels,
            inception=options.inception, resnet=options.resnet, fid=options.fid, lpips=options.lpips,
            lpips_net=options.lpips_net, lpips_weights=options.lpips_weights, device=options.device,
            batch_size=options.batch_size,
        )  # fmt: skip


def _job(options: EvalOptions) -> int:
    path = json_path(options)
    try:
        result = _evaluate(options)
        if path is not None:
            write_json(result, path)
    except (OSError, ValueError, RuntimeError) as err:
        message = str(err).strip().splitlines() or [type(err).__name__]
        print(f"{PROG}: error: {message[0]}", file=sys.stderr)
        return 1
    print(format_table(result, per_image=options.per_image))
    if path is not None:
        print(f"metrics written to {path}")
    return 1 if result["num_unreadable"] or result["num_size_mismatch"] else 0


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
    return run_tool(TOOL, argv, _job, check=check_options)


def main(argv: list[str] | None = None) -> None:
    """``i2sb-eval restored=DIR [reference=DIR] [key=value ...]`` (see ``--help``)."""
    sys.exit(run_eval(sys.argv[1:] if argv is None else argv))
