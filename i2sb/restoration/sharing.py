"""Models shared through a mirror (``i2sb-download NAME mirror=URL``): a team's web server, or a ``file://`` folder,
serving ``URL/NAME/`` in any of the three layouts ``i2sb-sample ckpt=`` reads:

* an exported model folder (``i2sb-export``): ``config.json`` + ``model.safetensors`` (+ the model card ``README.md``);
* the authors' ``results/NAME/``: ``options.pkl`` + ``latest.pt`` (:mod:`.pretrained` supplies this layout);
* a run directory of ``i2sb-train``: ``latest.pt`` (+ ``config.yaml``, ``metrics.jsonl``).

The layout is found by asking the mirror for each layout's first (small) file in turn; then its files are staged
in a hidden ``ROOT/.NAME.*.partial/`` folder, verified (JSON and safetensors headers; ``latest.pt`` with
``torch.load(weights_only=True)``) and renamed into ``ROOT/NAME/`` together, so a failed download changes nothing.
Files already present and verified are not fetched again. Errors are one-line :class:`DownloadError`\\ s.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from ..utils.download import DownloadError, Log, check_file, download, url_exists
from ..utils.file_formats import CARD_FILE, CONFIG_FILE, LATEST, METRICS, MODEL_FORMAT, RUN_CONFIG, WEIGHTS_FILE
from ..utils.files import fix_mode
from ..utils.torchfile import load_torch
from .checkpoints import is_i2sb_checkpoint



@dataclass(frozen=True)
class SharedFile:
    """One file of a layout: its name, how it is verified (raises on a bad file), and whether it must be there."""

    name: str
    verify: Callable[[Path], None] | None = None
    required: bool = True


@dataclass(frozen=True)
class Layout:
    """A way a model folder is laid out; ``files[0]`` is small and tells the layout apart."""

    kind: str
    files: tuple[SharedFile, ...]

    @property
    def required(self) -> list[SharedFile]:
        return [f for f in self.files if f.required]


def verify_exported_config(path: Path) -> None:
    """Raise unless ``path`` is an ``i2sb-export`` ``config.json``."""
    config = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        raise ValueError(f"{Path(path).name}: not an i2sb model config (format={config.get('format')!r})")


def verify_safetensors(path: Path) -> None:
    """Raise unless ``path`` is a safetensors file holding tensors (its header is read, not the data)."""
    with safe_open(str(path), framework="pt") as weights:
        if not list(weights.keys()):
            raise ValueError(f"{Path(path).name}: holds no tensors")


def verify_run_checkpoint(path: Path) -> None:
    """Raise unless ``path`` is an ``i2sb-train`` checkpoint (loads with ``weights_only=True``)."""
    if not is_i2sb_checkpoint(load_torch(path, mmap=True)):
        raise ValueError(f"{Path(path).name}: not an i2sb training checkpoint (no format 'i2sb-checkpoint')")


EXPORTED = Layout("an exported model folder (i2sb-export)", (
    SharedFile(CONFIG_FILE, verify_exported_config), SharedFile(WEIGHTS_FILE, verify_safetensors),
    SharedFile(CARD_FILE, required=False)))
RUN = Layout("a run directory (i2sb-train)", (
    SharedFile(LATEST, verify_run_checkpoint), SharedFile(RUN_CONFIG, required=False),
    SharedFile(METRICS, required=False)))


# ---------------------------------------------------------------------------- staging
@contextmanager
def staging_folder(root: Path, name: str) -> Iterator[Path]:
    """A hidden ``root/.NAME.*.partial`` folder, removed afterwards (and any left by a killed run)."""
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f".{name}.*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=root))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install(files: dict[str, Path], target: Path) -> None:
    """Rename verified staged files into ``target`` with umask permissions (same file system: atomic each)."""
    target.mkdir(parents=True, exist_ok=True)
    for filename, staged in files.items():
        fix_mode(staged)
        os.replace(staged, target / filename)


# ---------------------------------------------------------------------------- finding and fetching
def problems(layout: Layout, folder: Path) -> dict[str, str]:
    """``{file: why it is unusable}`` for the required files of ``layout`` that ``folder`` lacks or fails."""
    found = {}
    for shared in layout.required:
        path = folder / shared.name
        problem = check_file(path, verify=shared.verify) if path.exists() else "missing"
        if problem is not None:
            found[shared.name] = problem
    return found


def local_layout(folder: Path, layouts: list[Layout]) -> Layout | None:
    """The first of ``layouts`` whose required files are all in ``folder`` and verified."""
    return next((layout for layout in layouts if not problems(layout, folder)), None)


def remote_layout(base: str, layouts: list[Layout]) -> Layout | None:
    """The first of ``layouts`` whose first file ``base/FILE`` exists (None: the mirror serves none)."""
    return next((layout for layout in layouts if url_exists(f"{base}/{layout.files[0].name}")), None)


def fetch(name: str, root: Path, mirror: str, layouts: list[Layout], progress: bool, log: Log) -> Path:
    """``mirror/NAME/`` into ``root/NAME/`` in the first of ``layouts`` the mirror serves (see the module doc)."""
    target, base = root / name, f"{mirror}/{name}"
    present = local_layout(target, layouts)
    if present is not None:
        log(f"{target}: {name} already present and verified ({present.kind}), not downloaded again")
        return target
    layout = remote_layout(base, layouts)
    if layout is None:
        served = "; ".join(f"{layout.kind}: {layout.files[0].name}" for layout in layouts)
        raise DownloadError(f"cannot download {name}: {base}/ serves none of the model layouts ({served}): HTTP 404; "
                            f"check the name and mirror=, or copy a model folder into {target}")
    unusable = problems(layout, target)
    for filename, problem in unusable.items():
        if problem != "missing":
            log(f"{target / filename}: present but unusable ({problem}); downloading it again")
    wanted = [f for f in layout.files if not f.required or f.name in unusable]
    try:
        with staging_folder(root, name) as staging:
            staged = {}
            for shared in wanted:
                url = f"{base}/{shared.name}"
                if not shared.required and not url_exists(url):
                    continue
                log(f"{target / shared.name}: downloading from {url}")
                staged[shared.name] = download(url, staging / shared.name, verify=shared.verify, progress=progress,
                                               manual=f"download {url} and save it as {target / shared.name}")
            install(staged, target)
    except OSError as err:
        raise DownloadError(f"cannot store {name} in {target}: {err.strerror or err} "
                            f"({err.filename or target})") from None
    log(f"{target}: {name} ready ({layout.kind})")
    return target
