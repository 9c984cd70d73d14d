"""``i2sb-train`` and ``i2sb-sample`` as Hydra applications: Hydra's command line (``--help``, ``--cfg job|hydra|all``,
``--resolve``, ``--info``, ``-m``/``--multirun``, ``--shell-completion``, ``hydra.*`` overrides), with every job's
config composed and validated first, so that a mistake is one line (``PROG: error: KEY: what is wrong``) and exit
status 2 before anything is written. Then Hydra runs the tool's task function, a plain top-level function (the
submitit launcher pickles it), once or once per job of a sweep."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

# Hydra's own argument parser and runner, the ones hydra.main uses (hydra-core is pinned to 1.3.x).
from hydra._internal.utils import _run_hydra, get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException, HydraException
from hydra.types import RunMode
from omegaconf import DictConfig

from .compose import CONFIG_DIR, EXIT_USAGE, compose, register_schemas
from .hydra_errors import find_unknown_key, key_message, one_line, unknown_key

FREE_FORM = ("task.params.", "data.params.")  # dict keys: plain key=value adds them (Hydra alone needs ++)
CFG_CHOICES = ("job", "hydra", "all")
NOT_SUPPORTED = {"--config-path", "-cp", "--config-name", "-cn"}  # the tools compose their own (--config-dir adds)


class UsageError(ValueError):
    """A mistake on the command line or in the config: one line, exit status 2, nothing written."""


class JobFailed(CompactHydraException):
    """A job of a sweep that failed (its one-line reason is already printed); Hydra reports it after the batch."""


@dataclass(frozen=True)
class HydraTool:
    """A config-driven tool: its name, ``configs/<config_name>.yaml``, its task function (one job's work, given
    the composed config), how a job's config is validated, and what must exist before work starts."""

    prog: str
    config_name: str
    task_function: Callable[[DictConfig], Any]
    validate: Callable[[DictConfig], Any]
    check_inputs: Callable[[Any], None] = lambda cfg: None


def run(tool: HydraTool, argv: list[str]) -> int:
    """Run ``tool`` with command-line arguments ``argv``; returns the exit status."""
    try:
        parser = _parser(tool.prog)
        args = parser.parse_args(_bare_cfg_is_job(_check_options(argv)))
        args.overrides = preflight(tool, args)
    except UsageError as err:
        print(f"{tool.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exit_:  # --version
        return _status(exit_.code)
    return _hand_over(tool, parser, args)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = get_args_parser()
    parser.prog = prog

    def fail(message: str) -> None:
        raise UsageError(one_line(message))

    parser.error = fail  # type: ignore[method-assign]  # one line instead of usage + message
    return parser


def _check_options(argv: list[str]) -> list[str]:
    """Refuse ``--key value`` habits with the ``key=value`` spelling that works."""
    known = set(get_args_parser()._option_string_actions) - NOT_SUPPORTED
    for index, token in enumerate(argv):
        name = token.split("=", 1)[0]
        if not token.startswith("-") or name in known or token[1:2].isdigit():
            continue
        if name in NOT_SUPPORTED:
            raise UsageError(f"{name}: not supported; choose configs with group=option (see --help)")
        key = name.lstrip("-").replace("-", "_")
        value = token.split("=", 1)[1] if "=" in token else \
            argv[index + 1] if index + 1 < len(argv) and "=" not in argv[index + 1] else "<value>"
        raise UsageError(f"{name}: not an option; settings are key=value overrides: write {key}={value}")
    return argv


def _bare_cfg_is_job(argv: list[str]) -> list[str]:
    """``--cfg`` / ``-c`` without ``job|hydra|all`` prints the job's config, as ``--cfg job``."""
    out: list[str] = []
    for index, token in enumerate(argv):
        out.append(token)
        if token in ("--cfg", "-c") and (index + 1 == len(argv) or argv[index + 1] not in CFG_CHOICES):
            out.append("job")
    return out


def preflight(tool: HydraTool, args: argparse.Namespace) -> list[str]:
    """Compose and validate the config of every job ``args`` asks for; returns the overrides to hand to Hydra
    (free-form ``*.params.KEY=V`` given as ``++`` where the key is new). ``--help``/``--info`` check keys only."""
    commands = args.run + args.multirun + (args.cfg is not None) + args.shell_completion + (args.info is not None)
    if commands > 1:
        raise UsageError("only one of --run, --multirun, --cfg, --info, --shell-completion at a time")
    if args.resolve and args.cfg is None and not args.help:
        raise UsageError("--resolve: goes with --cfg or --help")
    if args.shell_completion or args.hydra_help:
        return args.overrides
    overrides = list(args.overrides)
    if args.multirun and any(o.split("=", 1)[0].lstrip("+") == "run_dir" for o in overrides):
        raise UsageError("run_dir: a sweep gives every job its own directory; set hydra.sweep.dir=... instead")
    keys_only = args.help or args.info is not None
    working = not keys_only and args.cfg is None
    search = _config_dir(args.config_dir)
    for job in _jobs(overrides) if args.multirun else [overrides]:
        cfg, forced = compose_job(tool.config_name, job + search)
        overrides = [_force(o) if _key(o) in forced else o for o in overrides]
        if not keys_only:
            checked = validate(tool, cfg, job)
            if working:
                _call(tool.check_inputs, checked)
    return overrides


def _config_dir(folder: str | None) -> list[str]:
    """``--config-dir D`` (configs of your own, e.g. ``D/experiment/mine.yaml``) as the override that makes the
    checks before work see it too."""
    if folder is None:
        return []
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise UsageError(f"--config-dir: {folder}: no such folder")
    return [f"hydra.searchpath=[file://{path}]"]


def compose_job(config_name: str, overrides: list[str]) -> tuple[DictConfig, set[str]]:
    """Compose one job's config; free-form keys (``task.params.quality=5``) are added where new. Returns the
    config and the keys that had to be added (``++``)."""
    forced: set[str] = set()
    while True:
        job = [_force(o) if _key(o) in forced else o for o in overrides]
        try:
            return compose(config_name, job), forced
        except ValueError as err:
            new = [_key(o) for o in job if _key(o).startswith(FREE_FORM) and _key(o) not in forced
                   and str(err).startswith(_key(o) + ":")]
            if not new:
                raise UsageError(str(err)) from None
            forced.update(new)


def validate(tool: HydraTool, cfg: DictConfig, overrides: list[str]) -> Any:
    """The tool's validation of a composed config, after a check for keys added with ``+`` that the schema
    does not have (Hydra lets them through)."""
    unknown = find_unknown_key(cfg)
    if unknown:
        raise UsageError(unknown_key(*unknown, overrides))
    return _call(tool.validate, cfg)


def _call(check: Callable[[Any], Any], value: Any) -> Any:
    try:
        return check(value)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(key_message(err)) from None


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _force(override: str) -> str:
    return "++" + override.lstrip("+")


def _jobs(overrides: list[str]) -> list[list[str]]:
    """The override lists of the jobs of a sweep (``a=1,2 b=x,y``: four), as Hydra's basic sweeper makes them."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise UsageError(one_line(err)) from None
    jobs: list[list[str]] = [[]]
    for override in parsed:
        items = [f"{override.get_key_element()}={value}" for value in override.sweep_string_iterator()] \
            if override.is_sweep_override() else [override.input_line]
        jobs = [job + [item] for job in jobs for item in items]
    return jobs


def _hand_over(tool: HydraTool, parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    register_schemas()
    try:
        with _logging_restored():
            _run_hydra(args=args, args_parser=parser, task_function=tool.task_function,
                       config_path=str(CONFIG_DIR), config_name=tool.config_name)
    except SystemExit as exit_:
        return _status(exit_.code)
    except KeyboardInterrupt:
        print(f"{tool.prog}: interrupted", file=sys.stderr)
        return 130
    return 0


@contextmanager
def _logging_restored() -> Iterator[None]:
    """Undo Hydra's logging set-up afterwards (handlers on the streams of the time), for callers in-process."""
    loggers = [logging.getLogger()] + [v for v in logging.Logger.manager.loggerDict.values()
                                       if isinstance(v, logging.Logger)]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    try:
        yield
    finally:
        for lg, handlers, level, propagate, disabled in saved:
            lg.handlers[:], lg.level, lg.propagate, lg.disabled = handlers, level, propagate, disabled


def _status(code: Any) -> int:
    return code if isinstance(code, int) else 0 if code is None else 1


def output_dir() -> str:
    """Hydra's output directory of the running job (``hydra.run.dir``, or ``hydra.sweep.dir/subdir``)."""
    return HydraConfig.get().runtime.output_dir


def job_failed(prog: str, status: int, message: str | None = None) -> None:
    """End a job that failed: print ``message``; a single run exits with ``status``, a sweep's job raises so that
    Hydra runs the other jobs and reports this one."""
    if message:
        print(f"{prog}: {message}", file=sys.stderr, flush=True)
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise JobFailed(f"{prog}: job failed (status {status}){': ' + message if message else ''}")
    raise SystemExit(status)
