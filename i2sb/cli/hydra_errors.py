"""One-line messages for what Hydra and OmegaConf report over several lines: ``KEY: what is wrong``, with the
closest valid key or option as a complete override that works when pasted (``did you mean trainer.lr=1e-4?``)."""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import fields, is_dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

_QUOTED = re.compile(r"'([^']+)'")
_NOT_FOUND = re.compile(r"Could not find '(.+?)'(?:\s|$)")
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
        return unreadable_override(err.override, text)
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
    hint = f"did you mean {group}={close}? " if close else ""
    return f"{group}={option}: no such option; {hint}one of: {', '.join(options)}"


_GRAMMAR_LINK = re.compile(r"\s*See https://hydra\.cc\S*\s+for details\.?")
_QUOTE_BEFORE = re.compile(r"(\\+)(?='|$)")


def hydra_quote(value: str) -> str:
    """``value`` as a quoted string of Hydra's override grammar (read back as exactly ``value``): in single quotes,
    quotes escaped, backslashes doubled where they precede a quote or end the value."""
    return "'" + _QUOTE_BEFORE.sub(lambda m: m.group(1) * 2, value).replace("'", "\\'") + "'"


def unreadable_override(override: str, text: str) -> str:
    """One line for an override that Hydra's grammar cannot read, saying how to quote its value."""
    reason = _GRAMMAR_LINK.sub("", one_line(text)).replace(f"Error parsing override '{override}'", "").strip()
    reason = "a character it cannot read" if reason.startswith("LexerNoViableAltException") else reason
    key, sep, value = override.partition("=")
    if not sep or not value or value[0] in "[{":  # no value, or a list or dict: quotes would make it text
        return f"{override}: not a key=value override Hydra can read ({reason})"
    quoted = f'{key}="{value}"' if '"' not in value else f"{key}={hydra_quote(value)}"
    return (f"{override}: Hydra cannot read this value ({reason}); a value with = , ' ( ) [ ] {{ }} or non-ASCII "
            f"letters goes in quotes: {shlex.quote(quoted)}")


def schema_keys(schema: Any, prefix: str = "") -> dict[str, Any]:
    """Every key of a dataclass schema, dotted (``trainer.lr``) -> its type (``Optional[X]`` read as ``X``)."""
    keys: dict[str, Any] = {}
    for name, kind in get_type_hints(schema).items():
        args = [a for a in get_args(kind) if a is not type(None)]
        kind = args[0] if get_origin(kind) is Union and len(args) == 1 else kind
        if is_dataclass(kind):
            keys.update(schema_keys(kind, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = kind
    return keys


def keys_named(name: str, keys: list[str]) -> list[str]:
    """The keys (``trainer.lr``) or groups (``hydra/launcher``) that ``--NAME`` may mean: NAME itself where it is
    one, else every one whose last part is NAME."""
    if name in keys:
        return [name]
    return sorted({k for k in keys if re.split(r"[./]", k)[-1] == name})
