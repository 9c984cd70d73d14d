"""``key=value`` command lines for the tools that are not Hydra apps (``i2sb-eval``, ``i2sb-download``,
``i2sb-export``, ``i2sb-degrade``): a dataclass is the schema, its fields' ``help`` metadata the usage.

    @dataclass
    class Options:
        input: str = field(default=MISSING, metadata={"help": "folder of clean images"})
        seed: int = field(default=0, metadata={"help": "base seed"})

    TOOL = Tool("i2sb-degrade", Options, "degrade a folder", "i2sb-degrade task=jpeg5 input=clean output=x1")
    exit_with(lambda: run_tool(TOOL, argv, job))      # job(options) -> exit status

Values are parsed as YAML (``nfe=10``, ``ot_ode=true``, ``model.channel_mult=[1,2]``) and checked against the
schema: an unknown key, a wrong type or a missing required key is one line naming it, exit status 2.
``-h``/``--help`` prints the keys with their defaults and one example.

A tool keeps its schema light and imports its work inside its job (``# lazy:``), so ``--help`` and a usage error
cost no more than this module and the schema's (no torch). A closed stdout (``i2sb-download list | head``) ends
the tool quietly (:func:`exit_with`).
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any, NoReturn

from omegaconf import OmegaConf

from ..config import ConfigError, validated
from .usage import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_USAGE, UsageError

WIDTH = 110  # of the --help text


@dataclass(frozen=True)
class Tool:
    """A command: its name, schema (a dataclass), one-line summary, one example, positional keys (keys that
    may be given as bare values, in order, e.g. ``i2sb-download NAME``) and notes printed as they are after
    the keys (e.g. where to get weights files, one URL a line)."""

    prog: str
    schema: type
    summary: str
    example: str
    positional: tuple[str, ...] = ()
    notes: str = ""


def _yaml(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _default_text(f: Any) -> str:
    if f.default is not MISSING:
        return "required" if f.default == "???" else _yaml(f.default)
    if f.default_factory is not MISSING:
        value = f.default_factory()
        return "(see below)" if is_dataclass(value) else _yaml(value)
    return "required"


def usage(tool: Tool) -> str:
    """The ``--help`` text: usage line, summary, every key with its default and help, one example."""
    bare = " ".join(f"[{k.upper()}]" if i else k.upper() for i, k in enumerate(tool.positional))
    lines = [f"usage: {tool.prog} {bare + ' ' if bare else ''}[key=value ...]", "", *textwrap.wrap(tool.summary, WIDTH), "",
             f"  {'key=':<16} {'default':<14} meaning"]
    for f in fields(tool.schema):
        help_text = textwrap.wrap(f.metadata.get("help", ""), width=WIDTH - 34) or [""]
        lines.append(f"  {f.name + '=':<16} {_default_text(f):<14} {help_text[0]}".rstrip())
        lines += [" " * 34 + line for line in help_text[1:]]
    lines += ["", *([tool.notes, ""] if tool.notes else []), f"example: {tool.example}"]
    return "\n".join(lines)


def parse(tool: Tool, argv: list[str]) -> Any:
    """``argv`` -> an instance of ``tool.schema``; :class:`UsageError` (one line) for anything that does not fit."""
    dotlist, bare = [], []
    for arg in argv:
        if arg.startswith("-"):
            raise UsageError(f"unknown option '{arg}'; keys are written key=value (see {tool.prog} --help)")
        (dotlist if "=" in arg else bare).append(arg)
    if len(bare) > len(tool.positional):
        extra = bare[len(tool.positional)]
        raise UsageError(f"unexpected argument '{extra}'; write key=value (see {tool.prog} --help)")
    if not argv:
        raise UsageError(f"nothing to do; see {tool.prog} --help")
    given = {a.split("=", 1)[0] for a in dotlist}
    for key, value in zip(tool.positional, bare):
        if key in given:
            raise UsageError(f"'{key}' is given twice: as '{value}' and as {key}=...")
        dotlist.append(f"{key}={value}")
    try:
        return validated(tool.schema, OmegaConf.from_dotlist(dotlist))
    except ConfigError as err:
        raise UsageError(str(err)) from None
    except Exception as err:  # a malformed value OmegaConf cannot parse
        raise UsageError(" ".join(str(err).split())) from None


def run_tool(tool: Tool, argv: list[str], job: Callable[[Any], int],
             check: Callable[[Any], Any] | None = None) -> int:
    """Parse ``argv`` (``--help``: print the usage, 0), run ``job(options)``; returns the exit status.

    ``check(options)`` (optional) validates values beyond the schema's types before any work, raising
    :class:`UsageError` or ``ValueError``. Usage errors: one line on stderr, status 2. ``job`` reports its own
    failures and returns 1 for them; Ctrl-C: status 130.
    """
    if any(a in ("-h", "--help") for a in argv):
        print(usage(tool))
        return 0
    try:
        options = parse(tool, argv)
        if check is not None:
            options = check(options) or options
    except (UsageError, ValueError) as err:
        print(f"{tool.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(job(options) or 0)
    except KeyboardInterrupt:
        print(f"{tool.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def exit_with(status: Callable[[], int]) -> NoReturn:
    """``sys.exit(status())``; when the reader of stdout went away (``i2sb-download list | head``), quietly with
    :data:`EXIT_BROKEN_PIPE` instead of a BrokenPipeError traceback."""
    try:
        code = status()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit must not fail again
        code = EXIT_BROKEN_PIPE
    sys.exit(code)
