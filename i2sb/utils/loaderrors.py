"""Why a checkpoint or pickle file did not load, as one line a user can act on.

torch's own messages run over many lines, carry ANSI colour codes, and advise re-running with
``weights_only=False``, which would run whatever code the file holds. Here every failure becomes one of:

* ``not a checkpoint (not a zip/pickle file)``: a text or HTML file, a Git LFS pointer, ...;
* ``truncated or corrupt (REASON)``: an interrupted copy or download;
* ``refusing unsafe global NAME (the file wants to run code at load; i2sb never loads such files)``.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import zipfile
from pathlib import Path

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TORCH_GLOBAL = re.compile(r"GLOBAL\s+([A-Za-z_][\w.]*[\w])")
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
PICKLE_STARTS = b"\x80(c}]"  # protocol >= 2, or protocols 0-1 (MARK, GLOBAL, EMPTY_DICT, EMPTY_LIST)
LFS_POINTER = b"version https://git-lfs"
HEAD_BYTES = 64
SCAN_LIMIT = 16 << 20  # bytes of a pickle scanned for the global it wants
NOISE = ("weights_only", "safe_globals", "trust", "documentation of torch.load", "Weights only load failed",
         "file an issue", "can still be loaded")  # torch's sentences that are advice, not the cause
REASON_LIMIT = 160
NOT_A_CHECKPOINT = "not a checkpoint (not a zip/pickle file)"


class UnreadableFile(ValueError):
    """A file that did not load; ``str()`` is ``"PATH: CAUSE"`` on one line, ``cause`` the part after the path."""

    def __init__(self, path: str | Path, cause: str):
        super().__init__(f"{path}: {cause}")
        self.path, self.cause = Path(path), cause


class UnsafeGlobal(pickle.UnpicklingError):
    """A pickle asked for a global (a class or function) that a restricted unpickler does not allow."""

    def __init__(self, name: str):
        super().__init__(f"refusing unsafe global {name}")
        self.name = name


def unsafe_global(name: str) -> str:
    """The cause for a file that names ``name`` (e.g. ``posix.system``): it would run code at load."""
    return f"refusing unsafe global {name} (the file wants to run code at load; i2sb never loads such files)"


def file_head(path: str | Path, size: int = HEAD_BYTES) -> bytes:
    """The first ``size`` bytes of ``path`` (empty when it cannot be read)."""
    try:
        with open(path, "rb") as stream:
            return stream.read(size)
    except OSError:
        return b""


def is_zip(head: bytes) -> bool:
    """Whether the bytes start a zip archive (torch.save's format since torch 1.6)."""
    return head[:4] in ZIP_MAGIC


def clean_reason(text: str, limit: int = REASON_LIMIT) -> str:
    """torch's message squeezed to its first useful sentence: no colour codes, no advice to disable
    ``weights_only``, one line of at most ``limit`` characters."""
    text = ANSI_ESCAPE.sub("", text).split("WeightsUnpickler error:")[-1]
    sentences = [" ".join(s.split()) for s in re.split(r"\n|(?<=[.!?])\s+", text) if s.strip()]
    useful = [s for s in sentences if not any(word in s for word in NOISE)]
    reason = (useful or [""])[0].rstrip(".").replace("PytorchStreamReader ", "")
    return reason if len(reason) <= limit else reason[: limit - 3].rstrip() + "..."


def _pickle_bytes(path: Path, head: bytes) -> bytes:
    """The pickle stream of ``path``: ``*/data.pkl`` of a zip checkpoint, else the file itself (capped)."""
    try:
        if is_zip(head):
            with zipfile.ZipFile(path) as archive:
                member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                return archive.read(member)[:SCAN_LIMIT] if member else b""
        with open(path, "rb") as stream:
            return stream.read(SCAN_LIMIT)
    except (OSError, zipfile.BadZipFile, KeyError):
        return b""


def _globals_of(stream: io.BytesIO) -> list[str]:
    """The globals one pickle in ``stream`` names, parsed (never executed) with ``pickletools``."""
    names: list[str] = []
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            if isinstance(arg, str) and ("UNICODE" in opcode.name or "STRING" in opcode.name):
                strings.append(str(arg))
            elif opcode.name in ("GLOBAL", "INST"):
                names.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # a damaged pickle: keep what was parsed
        pass
    return names


def foreign_globals(path: str | Path, head: bytes | None = None, max_pickles: int = 8) -> list[str]:
    """Globals outside torch and ``collections`` named by the pickles of ``path`` (a legacy torch file holds
    several), found by parsing only; what a weights-only load would refuse."""
    stream = io.BytesIO(_pickle_bytes(Path(path), file_head(path) if head is None else head))
    found: list[str] = []
    for _ in range(max_pickles):
        start = stream.tell()
        found += _globals_of(stream)
        if stream.tell() in (start, len(stream.getbuffer())):
            break
    return [n for n in found if n.split(".")[0] not in ("torch", "collections")]


def _not_a_format(head: bytes, text: str, not_format: str) -> str | None:
    """The cause when the file's first bytes are neither a zip nor a pickle (HTML, text, an LFS pointer); else None."""
    if head.startswith(LFS_POINTER):
        return f"{not_format.split(' (')[0]} (a Git LFS pointer: fetch the file with git lfs pull)"
    if head and not is_zip(head) and (head[0] not in PICKLE_STARTS or "invalid load key" in text):
        return not_format
    return None


def load_failure(err: BaseException, path: str | Path, not_format: str = NOT_A_CHECKPOINT) -> str:
    """The one-line cause of ``err``, raised while loading ``path`` with a weights-only or restricted unpickler."""
    if isinstance(err, UnsafeGlobal):
        return unsafe_global(err.name)
    text, head = ANSI_ESCAPE.sub("", str(err)), file_head(path)
    if not head:
        return "truncated or corrupt (empty file)"
    foreign = _not_a_format(head, text, not_format)
    if foreign:
        return foreign
    named = TORCH_GLOBAL.search(text)
    if named:
        return unsafe_global(named.group(1))
    if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in text:
        others = foreign_globals(path, head)
        if others:
            return unsafe_global(others[0])
        return f"refusing unsupported pickle content ({clean_reason(text)}); i2sb loads tensors and plain values only"
    reason = clean_reason(text) or ("unexpected end of file" if isinstance(err, EOFError) else type(err).__name__)
    return f"truncated or corrupt ({reason})"
