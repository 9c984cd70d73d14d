"""Which files of a folder are images: the one folder scan of i2sb (training, ``i2sb-sample``, ``i2sb-eval``,
``i2sb-degrade`` all list their inputs here, so they accept the same files and skip the same ones).

Rules, in order:

* hidden files and folders (names starting with ".", e.g. macOS ``._x.png`` or ``.ipynb_checkpoints``) are ignored;
* every real folder is visited once: symlinked folders are followed, after the real ones, and a folder already
  visited (a loop such as ``sub/up -> ..``, or two links to one place) is not entered again;
* every file is listed once: two paths that reach the same file (a symlink beside its target) count once, the
  path without a symlink on its way winning; the others are :attr:`Listing.duplicates`;
* files without a supported extension (``.heic``, ``.gif``, ``.txt``, ...) are :attr:`Listing.skipped`, so a tool
  can say how many it left out (:meth:`Listing.note`) instead of ignoring them silently.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# clean-fid's extensions (cleanfid/utils.py), compared case-insensitively
IMAGE_EXTENSIONS = frozenset({".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"})
ARRAY_EXTENSIONS = frozenset({".npy"})  # float arrays in [-1, 1] units (`images.save_array`)
NAMED = 3  # files named in a note (then "...")


def extensions_text(arrays: bool = False) -> str:
    """The accepted extensions, for messages."""
    return ", ".join(sorted(IMAGE_EXTENSIONS | (ARRAY_EXTENSIONS if arrays else frozenset())))


@dataclass
class Listing:
    """What a folder scan found: the images (sorted by relative path), the other files it skipped and the
    paths that reach an image already listed (through symlinks), both sorted."""

    root: Path
    images: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)
    arrays: bool = False

    def note(self) -> str | None:
        """One line saying what was left out (None when nothing was): ``skipped 2 file(s) that are not supported
        images: a.heic, b.gif (supported: ...); 1 path reaching an image already listed, through a symlink: ...``."""
        parts = []
        if self.skipped:
            parts.append(f"skipped {len(self.skipped)} file(s) that are not supported images: "
                         f"{self._names(self.skipped)} (supported: {extensions_text(self.arrays)})")
        if self.duplicates:
            parts.append(f"{len(self.duplicates)} path(s) reaching an image already listed, through a symlink, "
                         f"counted once: {self._names(self.duplicates)}")
        return "; ".join(parts) or None

    def _names(self, paths: list[Path]) -> str:
        shown = [_relative(p, self.root) for p in paths[:NAMED]]
        return ", ".join(shown) + (", ..." if len(paths) > NAMED else "")


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def walk_once(root: Path) -> Iterator[tuple[Path, bool]]:
    """``(file, reached through a symlink)`` for every non-hidden file under ``root``; each real folder is read once.

    Breadth first: the real folders of ``root`` before any symlinked one, so a file's own path wins over a link's.
    A broken symlink is yielded as a file (reading it then fails, naming it).
    """
    visited: set[str] = set()
    real_folders: deque[tuple[Path, bool]] = deque([(root, False)])
    linked_folders: deque[tuple[Path, bool]] = deque()
    while real_folders or linked_folders:
        folder, via_link = real_folders.popleft() if real_folders else linked_folders.popleft()
        real = os.path.realpath(folder)
        if real in visited:
            continue
        visited.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:  # unreadable folder: as os.walk, left out
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            link = entry.is_symlink()
            if entry.is_dir():
                (linked_folders if link else real_folders).append((Path(entry.path), via_link or link))
            else:
                yield Path(entry.path), via_link or link


def scan_images(root: str | Path, arrays: bool = False) -> Listing:
    """The images under ``root`` (recursively; see the module's rules), or ``root`` itself if it is an image file.

    ``arrays=True`` also lists ``.npy`` arrays. Raises FileNotFoundError for a missing path, ValueError for a
    file of another type.
    """
    root = Path(root)
    accepted = (IMAGE_EXTENSIONS | ARRAY_EXTENSIONS) if arrays else IMAGE_EXTENSIONS
    if root.is_file():
        if root.suffix.lower() not in accepted:
            raise ValueError(f"{root}: not an image file (supported: {extensions_text(arrays)})")
        return Listing(root.parent, [root], arrays=arrays)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or directory")
    listing = Listing(root, arrays=arrays)
    chosen: dict[str, tuple[bool, Path]] = {}  # real path -> (reached through a link, the path listed)
    for path, via_link in walk_once(root):
        if path.suffix.lower() not in accepted:
            listing.skipped.append(path)
            continue
        real = os.path.realpath(path)
        if real not in chosen:
            chosen[real] = (via_link, path)
            continue
        if chosen[real][0] and not via_link:  # the path without a symlink wins
            listing.duplicates.append(chosen[real][1])
            chosen[real] = (via_link, path)
        else:
            listing.duplicates.append(path)
    order = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    listing.images = sorted((path for _, path in chosen.values()), key=order)
    listing.skipped.sort(key=order)
    listing.duplicates.sort(key=order)
    return listing


def list_images(root: str | Path, arrays: bool = False) -> list[Path]:
    """The images under ``root`` (:func:`scan_images`), sorted by their path relative to ``root``; [] for a folder
    without images. A single supported image file is returned as a one-element list."""
    return scan_images(root, arrays).images


def has_images(folder: str | Path) -> bool:
    """Whether ``folder`` holds at least one image (recursively, as :func:`scan_images` lists them); the scan stops
    at the first, so a check before a long run costs little even on a data set of millions of files."""
    return any(path.suffix.lower() in IMAGE_EXTENSIONS for path, _ in walk_once(Path(folder)))


def require_listing(root: str | Path, arrays: bool = False) -> Listing:
    """:func:`scan_images`, raising a one-line ValueError when the folder holds no images."""
    listing = scan_images(root, arrays)
    if not listing.images:
        others = f"; {listing.note()}" if listing.skipped else ""
        raise ValueError(f"{root}: no images found (supported extensions: {extensions_text(arrays)}){others}")
    return listing


def require_images(root: str | Path, arrays: bool = False) -> list[Path]:
    """:func:`list_images`, raising a one-line ValueError when the folder holds no images."""
    return require_listing(root, arrays).images
