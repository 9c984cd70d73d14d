"""The work of ``i2sb-eval`` (:mod:`.evaluate` holds its schema): check the values, score the folders, print the
table and write the metrics file."""

from __future__ import annotations

import sys
import warnings

from ..evaluation.evaluate_folders import EvaluationWarning, evaluate_folders
from ..evaluation.report import format_table
from ..utils.device import resolve_device
from ..utils.files import write_json
from ..utils.images import IMAGE_EXTENSIONS
from .evaluate import LPIPS_NETS, PROG, EvalOptions, json_path
from .usage import UsageError


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
            batch_size=options.batch_size, swd_seed=options.swd_seed,
        )  # fmt: skip


def run(options: EvalOptions) -> int:
    """Evaluate, print the table, write the JSON; exit status 1 for unreadable files or size mismatches."""
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
