"""One-line messages for what Hydra and OmegaConf report over several lines: ``KEY: what is wrong``, with the
closest valid key or option as a complete override that works when pasted (``did you mean trainer.lr=1e-4?``)."""

from __future__ import annotations

import difflib
import re
from dataclasses import fields, is_dataclass
from typing import Any

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

_QUOTED = re.compile(r"'([^']+)'")
_NOT_FOUND = re.compile(r"Could not find '([^']+)'")
_CONFIG_KEY = re.compile(r"^config key '([^']+)': ")  # i2sb.config.ConfigError's prefix
_MISSING_VALUE = re.compile(r"^([\w.]+): (?:Missing mandatory value|Structured config .* has missing mandatory value)"
                            r": \S+$")


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of blanks folded into single spaces."""
    return " ".join(str(text).split())


def key_message(text: str) -> str:
    """``config key 'k': reason`` (i2sb.config's style) -> ``k: reason``, on one line; a missing value says
    what to add."""
    message = _CONFIG_KEY.sub(r"\1: ", one_line(text))
    return _MISSING_VALUE.sub(r"\1: missing; add \1=<value>", message)


def override_for(key: str, overrides: list[str]) -> str | None:
    """The command-line override that sets ``key`` (``+``/``++``/``~`` prefixes ignored), if any."""
    for override in overrides:
        if override.split("=", 1)[0].lstrip("+~") == key:
            return override
    return None


def _closest(word: str, choices: list[str]) -> str | None:
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return found[0] if found else None


def field_names(kind: Any) -> list[str]:
    """The keys a structured node of type ``kind`` (a dataclass) may hold."""
    return [f.name for f in fields(kind)] if is_dataclass(kind) else []


def unknown_key(key: str, valid: list[str], overrides: list[str], depth: int | None = None) -> str:
    """``key: unknown key; did you mean K=V?``: the override of ``key`` with its misspelt part (part ``depth``,
    1-based; default the last) replaced by the closest of ``valid``; the valid keys when none is close."""
    parts = key.split(".")
    depth = len(parts) if depth is None else depth
    close = _closest(parts[depth - 1], valid)
    if close is None:
        parent = ".".join(parts[:depth - 1])
        return f"{key}: unknown key; valid keys{' under ' + parent if parent else ''}: {', '.join(valid)}"
    meant = ".".join(parts[:depth - 1] + [close] + parts[depth:])
    override = override_for(key, overrides)
    value = f"={override.split('=', 1)[1]}" if override and "=" in override else ""
    return f"{key}: unknown key; did you mean {meant}{value}?"


def find_unknown_key(node: DictConfig, prefix: str = "") -> tuple[str, list[str]] | None:
    """The first key of a composed config that its structured type does not have (``+key=`` adds such keys
    without complaint), with the valid keys beside it; None if every key is known."""
    valid = field_names(OmegaConf.get_type(node))
    for key in node.keys():
        if valid and key not in valid:
            return f"{prefix}{key}", valid
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            found = find_unknown_key(child, f"{prefix}{key}.")
            if found:
                return found
    return None


def describe(err: Exception, overrides: list[str], groups: dict[str, list[str]]) -> str:
    """One line for a composition error: the key or option at fault first, then what is wrong.

    ``groups``: config group -> its options (for misspelt group names and options)."""
    text = str(err)
    if isinstance(err, MissingConfigException) and _NOT_FOUND.search(text):
        return _missing_option(_NOT_FOUND.search(text).group(1), groups)
    if isinstance(err, OverrideParseException):
        return f"{text.split(':', 1)[-1].splitlines()[0].strip()}: not a key=value override ({one_line(text)})"
    cause = err.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and "Could not override '" in text:
        key = _QUOTED.search(text).group(1)
        depth = len(str(cause.full_key).split("."))
        valid = field_names(cause.object_type) + (list(groups) if depth == 1 else [])
        return unknown_key(key, valid, overrides, depth)
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        return f"{cause.full_key}: {str(cause).splitlines()[0]}"
    if "You must specify" in text:  # a mandatory group left at ???
        group = _QUOTED.search(text).group(1) if _QUOTED.search(text) else "?"
        return f"{group}: missing; add {group}=<option>, one of: {', '.join(groups.get(group, []))}"
    return one_line(text)


def _missing_option(path: str, groups: dict[str, list[str]]) -> str:
    group, _, option = path.rpartition("/")
    options = groups.get(group, [])
    close = _closest(option, options)
    hint = f"did you mean {group}={close}?" if close else f"one of: {', '.join(options)}"
    return f"{group}={option}: no such option; {hint}"
