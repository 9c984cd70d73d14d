"""Command-line entry points: ``i2sb-train``, ``i2sb-sample`` (Hydra-style ``key=value``), ``i2sb-eval``.

Configs are composed with Hydra's compose API from ``i2sb/configs`` (also reachable as ``configs/`` at
the repository root), so config groups and overrides work as usual (``task=jpeg5 trainer.lr=1e-4``),
while errors are reported as one line and a non-zero exit status instead of a stack trace.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).parent / "configs"
EXIT_USAGE = 2


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose ``configs/{config_name}.yaml`` with Hydra overrides; one-line ``ValueError`` on failure."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

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
    from .train import TrainingError, train

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
    from .restore import run_sample

    argv = sys.argv[1:] if argv is None else argv
    sys.exit(_run("i2sb-sample", "sample", argv, run_sample))


def eval_main(argv: list[str] | None = None) -> None:
    """``i2sb-eval RESTORED [REFERENCE] [options]`` (argparse; see ``--help``)."""
    from .evaluate import main

    sys.exit(main(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    train_main()
