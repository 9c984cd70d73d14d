"""``i2sb-eval``: score a folder of restorations (:func:`i2sb.evaluation.folders.evaluate_folders`)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ..evaluation import metrics, perceptual
from ..evaluation.folders import EvaluationWarning, evaluate_folders
from ..evaluation.report import MAX_TABLE_ROWS, format_table
from ..utils.device import resolve_device
from ..utils.files import write_json
from ..utils.images import IMAGE_EXTENSIONS

DEFAULT_JSON_NAME = "metrics.json"  # written inside RESTORED; never an image name


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _weights_help(spec: metrics.WeightsSpec) -> str:
    return f"{spec.what}:\n  get {spec.url}\n  then {spec.option} PATH, or ${spec.env_var}=PATH, or {spec.cache_path()}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="i2sb-eval",
        description="PSNR/SSIM/LPIPS against REFERENCE, FID (clean-fid legacy_pytorch), ResNet-50 top-1 accuracy.",
        epilog="Weights are read from local files, never downloaded.\n"
        + "\n".join(_weights_help(s) for s in (metrics.INCEPTION_WEIGHTS, metrics.RESNET50_WEIGHTS))
        + "\n" + "\n".join(_weights_help(s) for s in perceptual.BACKBONE_WEIGHTS.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the URLs on one line
    )
    add = p.add_argument
    add("restored", type=Path, help="folder of restored images")
    add("reference", type=Path, nargs="?", help="folder of clean images; pairs share the relative path")
    add("--fid-ref", type=Path, help="FID reference: .npz with mu/sigma (clean-fid or ADM) or image folder")
    add("--labels", type=Path, help="text/CSV file of NAME,CLASS_INDEX lines (enables accuracy)")
    add("--inception", type=Path, help=f"{metrics.INCEPTION_WEIGHTS.filename} (clean-fid legacy_pytorch)")
    add("--resnet", type=Path, help=f"torchvision ResNet-50 state_dict, {metrics.RESNET50_WEIGHTS.filename}")
    add("--no-fid", action="store_true", help="do not compute FID")
    add("--lpips-net", choices=sorted(perceptual.BACKBONE_WEIGHTS), default="alex", help="LPIPS backbone")
    add("--lpips-weights", type=Path, help="the LPIPS backbone's torchvision state_dict (alex: "
        f"{perceptual.BACKBONE_WEIGHTS['alex'].filename}, vgg: {perceptual.BACKBONE_WEIGHTS['vgg'].filename})")
    add("--no-lpips", action="store_true", help="do not compute LPIPS")
    add("--json", type=Path, help=f"metrics file to write (default: RESTORED/{DEFAULT_JSON_NAME})")
    add("--no-json", action="store_true", help="write no metrics file")
    add("--per-image", action="store_true", help=f"list every image (default: only up to {MAX_TABLE_ROWS})")
    add("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    add("--batch-size", type=_positive_int, default=32)
    return p


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"i2sb-eval: warning: {message}", file=sys.stderr)


def _evaluate(args: argparse.Namespace) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("always", EvaluationWarning)
        warnings.showwarning = _print_warning  # one line per skipped file, restored on exit
        return evaluate_folders(
            args.restored, args.reference, fid_ref=args.fid_ref, labels=args.labels,
            inception=args.inception, resnet=args.resnet, fid=not args.no_fid,
            lpips=not args.no_lpips, lpips_net=args.lpips_net, lpips_weights=args.lpips_weights,
            device=resolve_device(args.device), batch_size=args.batch_size,
        )  # fmt: skip


def run_eval(argv: list[str]) -> int:
    """``i2sb-eval RESTORED [REFERENCE] [options]``; returns the exit status (0 ok, 1 bad input, 2 usage)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage or help
        return int(exit_.code or 0)
    json_path = args.json if args.json is not None else args.restored / DEFAULT_JSON_NAME
    try:
        if not args.no_json and json_path.suffix.lower() in IMAGE_EXTENSIONS:  # checked before the long run
            raise ValueError(f"refusing to write metrics to {json_path}: it has an image extension")
        result = _evaluate(args)
        if not args.no_json:
            write_json(result, json_path)
    except (OSError, ValueError, RuntimeError) as err:
        message = str(err).strip().splitlines() or [type(err).__name__]
        print(f"i2sb-eval: error: {message[0]}", file=sys.stderr)
        return 1
    print(format_table(result, per_image=args.per_image))
    if not args.no_json:
        print(f"metrics written to {json_path}")
    return 0


def main(argv: list[str] | None = None) -> None:
    """``i2sb-eval RESTORED [REFERENCE] [options]`` (argparse; see ``--help``)."""
    sys.exit(run_eval(sys.argv[1:] if argv is None else argv))
