"""``i2sb-train`` and ``i2sb-sample`` as Hydra applications: Hydra's command line (``--help``, ``--cfg job|hydra|all``,
``--resolve``, ``--info``, ``-m``/``--multirun``, ``--shell-completion``, ``hydra.*`` overrides), with every job's
config composed and checked first (:func:`prepare`: the config, the files and folders it names, the run directory
it would resume, the launcher), so that a mistake is one line (``PROG: error: KEY: what is wrong``) and exit status
2 before anything is written; ``--cfg job`` runs the same checks and, when one fails, still prints the config.
Then Hydra runs the tool's task function, a plain top-level function (the submitit launcher pickles it), once or
once per job of a sweep."""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

# Hydra's own argument parser and runner, the ones hydra.main uses (hydra-core is pinned to 1.3.x).
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import _run_hydra, get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException, HydraException
from hydra.types import RunMode
from omegaconf import DictConfig

from .compose import CONFIG_DIR, SCHEMAS, compose, config_groups, register_schemas
from .hydra_errors import (describe, find_unknown_key, hydra_quote, key_message, keys_named, one_line, schema_keys,
                           unknown_key)
from .help_text import annotate
from .jobs import JobPlace, check_launcher, job_place, render, split_hydra
from .usage import EXIT_INTERRUPTED, EXIT_USAGE, UsageError

FREE_FORM = ("task.params.", "data.params.")  # dict keys: plain key=value adds them (Hydra alone needs ++)
HYDRA_PATHS = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir")  # text keys of Hydra's own
CFG_CHOICES = ("job", "hydra", "all")
NOT_SUPPORTED = {"--config-path", "-cp", "--config-name", "-cn"}  # the tools compose their own (--config-dir adds)


class JobFailed(CompactHydraException):
    """A job of a sweep that failed (its one-line reason is already printed); Hydra reports it after the batch."""


@dataclass(frozen=True)
class HydraTool:
    """A config-driven tool: its name, ``configs/<config_name>.yaml``, its task function (one job's work, given
    the composed config), how a job's config is validated, and what must hold before work starts (given the
    validated config and where the job will run)."""

    prog: str
    config_name: str
    task_function: Callable[[DictConfig], Any]
    validate: Callable[[DictConfig], Any]
    check_inputs: Callable[[Any, JobPlace], None] | None = None  # None: the job writes no run directory

    def keys(self) -> dict[str, Any]:
        """The tool's keys (dotted, -> type) and config groups (-> ``"group"``)."""
        return {**schema_keys(SCHEMAS[f"{self.config_name}_schema"]), **dict.fromkeys(config_groups(), "group")}


def run(tool: HydraTool, argv: list[str]) -> int:
    """Run ``tool`` with command-line arguments ``argv``; returns the exit status."""
    try:
        parser, args = prepare(tool, argv)
    except UsageError as err:
        if err.shown:
            sys.stdout.write(err.shown)
            sys.stdout.flush()
        print(f"{tool.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exit_:  # --version
        return _status(exit_.code)
    register_schemas()
    printed = io.StringIO()
    try:
        with _logging_restored(), _launcher_errors_raised(getattr(args, "remote", False)), \
                redirect_stdout(printed) if args.help else nullcontext():
            _run_hydra(args=args, args_parser=parser, task_function=tool.task_function,
                       config_path=str(CONFIG_DIR), config_name=tool.config_name)
    except SystemExit as exit_:
        return _status(exit_.code)
    except KeyboardInterrupt:
        print(f"{tool.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # only with a Slurm launcher (see _launcher_errors_raised)
        if type(err).__name__ != "FailedJobError":  # submitit's: sbatch refused the submission
            raise
        return _slurm_refusal(tool.prog, err)
    finally:
        if args.help:  # the keys Hydra lists, each with its description from the tool's YAML file
            print(annotate(printed.getvalue(), CONFIG_DIR / f"{tool.config_name}.yaml"), end="")
    return 0


def prepare(tool: HydraTool, argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Everything ``run`` does before Hydra starts (nothing is written): parse ``argv``, compose and check every
    job (:func:`preflight`). Returns the parser and the arguments to hand to Hydra; :class:`UsageError`."""
    parser = _parser(tool.prog)
    args = parser.parse_args(_bare_cfg_is_job(_check_options(argv, tool.keys())))
    args.overrides = preflight(tool, args)
    return parser, args


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = get_args_parser()
    parser.prog = prog

    def fail(message: str) -> None:
        raise UsageError(one_line(message))

    parser.error = fail  # type: ignore[method-assign]  # one line instead of usage + message
    return parser


def _check_options(argv: list[str], keys: dict[str, Any]) -> list[str]:
    """Refuse ``--key value`` habits with the ``key=value`` spelling that works: the full key (``--lr 1e-3`` ->
    ``trainer.lr=1e-3``), or the keys it may mean."""
    known = set(get_args_parser()._option_string_actions) - NOT_SUPPORTED
    for index, token in enumerate(argv):
        name = token.split("=", 1)[0]
        if not token.startswith("-") or name in known or token[1:2].isdigit():
            continue
        if name in NOT_SUPPORTED:
            raise UsageError(f"{name}: not supported; choose configs with group=option (see --help)")
        value = token.split("=", 1)[1] if "=" in token else \
            argv[index + 1] if index + 1 < len(argv) and "=" not in argv[index + 1] else "<value>"
        meant = keys_named(name.lstrip("-").replace("-", "_"), list(keys))
        spelt = [f"{key}={value}" for key in meant]
        hint = f"write {spelt[0]}" if len(spelt) == 1 else f"write one of {', '.join(spelt)}" if spelt else \
            "no key of that name (--help lists them)"
        raise UsageError(f"{name}: not an option; settings are key=value overrides: {hint}")
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
    """Compose and check every job ``args`` asks for (:func:`_check_job`; no two jobs of a sweep in one
    directory); returns the overrides to hand to Hydra (free-form ``*.params.KEY=V`` given as ``++`` where the
    key is new, text Hydra's grammar cannot read quoted). ``--help``/``--info`` check keys only."""
    commands = args.run + args.multirun + (args.cfg is not None) + args.shell_completion + (args.info is not None)
    if commands > 1:
        raise UsageError("only one of --run, --multirun, --cfg, --info, --shell-completion at a time")
    if args.resolve and args.cfg is None and not args.help:
        raise UsageError("--resolve: goes with --cfg or --help")
    if args.shell_completion or args.hydra_help:
        return args.overrides
    keys = tool.keys()
    overrides = [_quote_text(o, keys) for o in args.overrides]
    if args.multirun and any(o.split("=", 1)[0].lstrip("+") == "run_dir" for o in overrides):
        raise UsageError("run_dir: a sweep gives every job its own directory; set hydra.sweep.dir=... instead")
    keys_only = args.help or args.info is not None
    search = _config_dir(args.config_dir)
    directories: dict[Path, list[str]] = {}
    args.remote = False  # a Slurm launcher submits the jobs (:func:`run` reports its refusal in one line)
    for job in _jobs(overrides) if args.multirun else [overrides]:
        full, forced = compose_job(tool.config_name, job + search)
        overrides = [_force(o) if _key(o) in forced else o for o in overrides]
        if keys_only:
            continue
        place = _check_job(tool, args, full, job)
        args.remote = args.remote or (place is not None and place.remote)
        if place is not None and place.output_dir is not None and \
                directories.setdefault(place.output_dir, job) is not job:
            raise UsageError(_shared_directory(job, directories[place.output_dir], place.output_dir))
    return overrides


def _shared_directory(job: list[str], other: list[str], directory: Path) -> str:
    mine, theirs = [o for o in job if o not in other], [o for o in other if o not in job]
    keys = ", ".join(_key(o) for o in mine)
    return (f"{' '.join(theirs)} and {' '.join(mine)}: both jobs would run in {directory} ({keys} does not name a "
            f"sweep's directories, so that a sweep run again resumes); sweep {keys} in separate runs")


def _check_job(tool: HydraTool, args: argparse.Namespace, full: DictConfig, job: list[str]) -> JobPlace | None:
    """One job's checks: its config (``--cfg hydra``: that only), then what the job itself would check first,
    then the launcher (a run only); a failure under ``--cfg`` carries the config to print. Returns where the
    job will run (None for a tool without a run directory)."""
    cfg, _ = split_hydra(full)
    place = None
    try:
        checked = validate(tool, cfg, job)
        if tool.check_inputs is not None:
            place = _call(job_place, full, args.multirun)
            if args.cfg != "hydra":
                _call(tool.check_inputs, checked, place)
        if args.cfg is None:
            _call(check_launcher, full, args.multirun)
    except UsageError as err:
        if args.cfg is None:
            raise
        raise UsageError(str(err), render(full, args.cfg, args.package, args.resolve)) from None
    return place


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
    """Compose one job's config with its ``hydra`` node; free-form keys (``task.params.quality=5``) are added where
    new. Returns the config and the keys that had to be added (``++``)."""
    forced: set[str] = set()
    while True:
        job = [_force(o) if _key(o) in forced else o for o in overrides]
        try:
            return compose(config_name, job, with_hydra=True), forced
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


def _call(check: Callable[..., Any], *values: Any) -> Any:
    try:
        return check(*values)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(key_message(err)) from None


def _quote_text(override: str, keys: dict[str, Any]) -> str:
    """An override of a text key (a path: ``data.root=it's``, ``input=a=b``; free-form task parameters) whose value
    Hydra's grammar cannot read, with that value quoted; any other override as it is."""
    key, sep, value = override.partition("=")
    name = key.lstrip("+~")
    text = keys.get(name) is str or name.startswith(FREE_FORM) or name in HYDRA_PATHS
    if not (sep and value and text):
        return override
    try:
        OverridesParser.create().parse_override(override)
    except HydraException:
        return f"{key}={hydra_quote(value)}"
    return override


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _force(override: str) -> str:
    return "++" + override.lstrip("+")


def _jobs(overrides: list[str]) -> list[list[str]]:
    """The override lists of the jobs of a sweep (``a=1,2 b=x,y``: four), Hydra's basic sweeper's own (so that a
    job's directory, named after them, is the one it will have)."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        [jobs] = BasicSweeper.split_arguments(parsed, None)
    except HydraException as err:
        raise UsageError(describe(err, overrides, config_groups())) from None
    return jobs


def _slurm_refusal(prog: str, err: Exception) -> int:
    """One line for a submission Slurm refused (submitit's ``FailedJobError``: sbatch's own error); exit 1."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or ["no message"]
    reason = next((line for line in lines if "error" in line.lower()), lines[0])
    print(f"{prog}: error: Slurm refused the jobs: {reason} (check hydra.launcher.partition, account, qos, "
          f"timeout_min, ...)", file=sys.stderr)
    return 1


@contextmanager
def _launcher_errors_raised(slurm: bool) -> Iterator[None]:
    """With a Slurm launcher, let the launcher's exceptions reach :func:`run` (Hydra would print them as a
    traceback through itself, submitit and the subprocess: ``HYDRA_FULL_ERROR`` makes it re-raise them); the
    jobs run elsewhere, so no job's own error passes here."""
    if not slurm:
        yield
        return
    saved = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved


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
