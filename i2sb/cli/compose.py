"""Composing ``i2sb/configs`` with Hydra's compose API for the config-driven tools (``i2sb-train``, ``i2sb-sample``),
with one-line errors and a non-zero exit status instead of a stack trace."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
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


def run_config_tool(prog: str, config_name: str, argv: list[str], job: Callable[[DictConfig], Any],
                    extra: str = "") -> int:
    """Parse ``key=value`` overrides (``--cfg`` prints the composed config, ``--help`` the usage), compose, run
    ``job``; returns the exit status (usage and config errors: one line, 2)."""
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
