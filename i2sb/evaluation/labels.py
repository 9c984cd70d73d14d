"""Class labels of images for the accuracy metric: a ``NAME,CLASS_INDEX`` file read into ``{image_key: label}``, and
the lookup that gives a sample ``NAME_sK`` the label of ``NAME``."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from . import pairing
from .pairing import image_key

_LABEL_LINE = re.compile(r"(.+?)[\s,;]+(-?\d+)")


def read_labels(path: str | Path) -> dict[str, int]:
    """Class indices from a text/CSV file of ``NAME,INDEX`` (or ``NAME INDEX``) lines, ``{image_key: INDEX}``.

    ``NAME`` is an image path, relative or absolute, with or without extension. Lines starting with '#'
    and a header line are skipped. The authors' pair of files (``dataset/val_..._fn.txt`` and
    ``..._label.txt``) becomes one with ``paste -d, FN.txt LABEL.txt > labels.csv``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    lines = [(n, s.strip()) for n, s in enumerate(path.read_text().splitlines(), 1)]
    lines = [(n, s) for n, s in lines if s and not s.startswith("#")]
    labels: dict[str, int] = {}
    for i, (lineno, line) in enumerate(lines):
        match = _LABEL_LINE.fullmatch(line)
        if match is None and i == 0:
            continue  # header
        if match is None:
            raise ValueError(f"{path}:{lineno}: expected 'NAME,CLASS_INDEX', got {line!r}")
        key, label = image_key(match.group(1).strip()), int(match.group(2))
        if labels.get(key, label) != label:
            raise ValueError(f"{path}:{lineno}: {key!r} has two labels, {labels[key]} and {label}")
        labels[key] = label
    if not labels:
        raise ValueError(f"no 'NAME,CLASS_INDEX' lines in labels file {path}")
    return labels


def label_lookup(labels: dict[str, int]) -> Callable[[str], int | None]:
    """``image_key -> label``: by relative path, else by file name when that name is unambiguous."""
    by_name: dict[str, int | None] = {}
    for key, label in labels.items():
        name = key.rsplit("/", 1)[-1]
        by_name[name] = label if by_name.get(name, label) == label else None

    def find(key: str) -> int | None:
        return labels[key] if key in labels else by_name.get(key.rsplit("/", 1)[-1])

    def lookup(key: str) -> int | None:  # a sample NAME_sK without a label of its own takes NAME's
        label, sample = find(key), pairing.split_sample(key)
        return find(sample[0]) if label is None and sample is not None else label

    return lookup
