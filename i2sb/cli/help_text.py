"""``--help`` of the Hydra tools: the keys and defaults Hydra prints, each with the comment that describes it in
the tool's YAML file (``configs/sample.yaml``, ``configs/train.yaml``), the one place where keys are documented."""

from __future__ import annotations

import re
from pathlib import Path

KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?P<value>[^#]*?)\s*(?:#\s?(?P<note>.*))?$")
CONTINUATION = re.compile(r"^ +#\s?(?P<note>.*)$")
GROUP_LINE = re.compile(r"^ +- (?P<key>[A-Za-z_][A-Za-z0-9_]*): *[^#]*?\s*#\s?(?P<note>.*)$")  # ``- task: null  # ...``
COMMENT_COLUMN = 22  # where the YAML files start their comments


def key_notes(yaml_text: str) -> dict[str, list[str]]:
    """``{"nfe": [line, ...], "model.image_size": [...]}``: the comment on each key's line of a config file and
    the comment-only lines indented below it; a config group's from its ``defaults:`` entry; ``hydra:`` left out."""
    notes: dict[str, list[str]] = {}
    path: list[tuple[int, str]] = []  # (indent, key) of the enclosing keys
    current: list[str] | None = None
    for line in yaml_text.splitlines():
        group = GROUP_LINE.match(line)
        if group and path and path[0][1] == "defaults":
            current = notes.setdefault(group["key"], [group["note"]])
            continue
        match = KEY_LINE.match(line)
        if match:
            indent = len(match["indent"])
            path = [(i, k) for i, k in path if i < indent] + [(indent, match["key"])]
            current = None
            if path[0][1] not in ("defaults", "hydra") and match["note"]:
                current = notes.setdefault(".".join(k for _, k in path), [match["note"]])
            continue
        more = CONTINUATION.match(line)
        if more and current is not None:
            current.append(more["note"])
        elif not more:
            current = None
    return notes


def annotate(help_text: str, yaml_file: Path) -> str:
    """``help_text`` with every ``key: value`` line of its keys section followed by the key's comment from
    ``yaml_file``, laid out as in that file (``# ...`` from column 22, continuation lines below)."""
    notes = key_notes(yaml_file.read_text(encoding="utf-8"))
    out: list[str] = []
    path: list[tuple[int, str]] = []
    in_keys = False
    for line in help_text.splitlines():
        if line.startswith("== "):
            in_keys = line.startswith("== Keys")
        match = KEY_LINE.match(line) if in_keys else None
        if match is None:
            out.append(line)
            continue
        indent = len(match["indent"])
        path = [(i, k) for i, k in path if i < indent] + [(indent, match["key"])]
        note = notes.get(".".join(k for _, k in path))
        if not note:
            out.append(line)
            continue
        out.append(f"{line.rstrip():<{COMMENT_COLUMN - 1}} # {note[0]}")
        out.extend(f"{'':<{COMMENT_COLUMN - 1}} # {more}" for more in note[1:])
    return "\n".join(out) + ("\n" if help_text.endswith("\n") else "")
