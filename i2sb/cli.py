"""Command-line entry points: ``i2sb-train``, ``i2sb-sample`` (Hydra-style ``key=value``), ``i2sb-eval``.

Configs are composed with Hydra's compose API from ``i2sb/configs`` (also reachable as ``configs/`` at
the repository root), so config groups and overrides work as usual (``task=jpeg5 trainer.lr=1e-4``),
while errors are reported as one line and a non-zero exit status instead of a stack trace. Each entry
point parses its arguments and calls one function of the layers below; nothing else lives here.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .evaluation import metrics
from .evaluation.folders import EvaluationWarning, evaluate_folders
from .evaluation.report import MAX_TABLE_ROWS, format_table
from .restoration.folder import restore_folder
from .training.loop import TrainingError, train
from .utils.device import resolve_device
from .utils.files import write_json
from .utils.images import IMAGE_EXTENSIONS

CONFIG_DIR = Path(__file__).parent / "configs"
EXIT_USAGE = 2


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose ``configs/{config_name}.yaml`` with Hydra overrides; one-line ``ValueError`` on failure."""
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ValueError(_hydra_message(err, config_name)) from None


def _hydra_message(err: Exception, config_name: str) -> str:
    text = " ".join(line.strip() for line in str(err).strip().splitlines() if line.strip())
    if "You must specify" in text:  # a mandatory group such as task=???
        group = text.split("'")[1] if "'" in text else "?"
        options = ", ".join(group_options(group)) or "see configs/"
        return f"missing required config group '{group}': add {group}=<name>, one of: {options}"
    return f"{config_name} config: {text}"


def group_options(group: str) -> list[str]:
    """The YAML files of a config group, e.g. ``group_options("task")``."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _usage(prog: str, config_name: str, extra: str = "") -> str:
    groups = [p.name for p in sorted(CONFIG_DIR.iterdir()) if p.is_dir()]
    lines = [f"usage: {prog} [key=value ...] [--cfg]", extra] if extra else [f"usage: {prog} [key=value ...] [--cfg]"]
    for group in groups if config_name == "train" else []:
        lines.append(f"  {group}=<{'|'.join(group_options(group))}>")
    lines.append(f"Defaults and every key: {CONFIG_DIR / (config_name + '.yaml')} (print with --cfg).")
    return "\n".join(lines)


def _run(prog: str, config_name: str, argv: list[str], job: Callable[[DictConfig], Any], extra: str = "") -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(_usage(prog, config_name, extra))
        return 0
    show = "--cfg" in argv
    overrides = [a for a in argv if a != "--cfg"]
    try:
        cfg = compose(config_name, overrides)
        if show:
            print(OmegaConf.to_yaml(cfg))
            return 0
        result = job(cfg)
    except (ValueError, FileNotFoundError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return int(result) if isinstance(result, int) else 0


def _train_job(cfg: DictConfig) -> int:
    try:
        train(cfg)
    except TrainingError as err:
        print(f"i2sb-train: {err}", file=sys.stderr)
        return 1
    return 0


def train_main(argv: list[str] | None = None) -> None:
    """``i2sb-train task=jpeg5 [model=...] [data=...] [trainer=...] [key=value ...]``."""
    argv = sys.argv[1:] if argv is None else argv
    sys.exit(_run("i2sb-train", "train", argv, _train_job))


def sample_main(argv: list[str] | None = None) -> None:
    """``i2sb-sample ckpt=RUN_OR_FILE input=DIR output=DIR [nfe=...] [key=value ...]``."""
    argv = sys.argv[1:] if argv is None else argv
    sys.exit(_run("i2sb-sample", "sample", argv, restore_folder))


def eval_main(argv: list[str] | None = None) -> None:
    """``i2sb-eval RESTORED [REFERENCE] [options]`` (argparse; see ``--help``)."""
    sys.exit(run_eval(sys.argv[1:] if argv is None else argv))


# ---------------------------------------------------------------------------- i2sb-eval
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
        description="PSNR/SSIM against REFERENCE, FID (clean-fid legacy_pytorch), ResNet-50 top-1 accuracy.",
        epilog="Weights are read from local files, never downloaded.\n"
        + "\n".join(_weights_help(s) for s in (metrics.INCEPTION_WEIGHTS, metrics.RESNET50_WEIGHTS)),
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
