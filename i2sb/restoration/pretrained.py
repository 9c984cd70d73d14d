"""The authors' released I2SB checkpoints and guided-diffusion's ADM ImageNet-256 weights, for users.

* :data:`PRETRAINED`: the nine checkpoints of NVlabs/I2SB (``scripts/download_checkpoint.sh``), each with
  its Google-Drive folder, the i2sb task it restores and the paper's FID. :func:`download_checkpoint` puts
  one into ``ROOT/NAME/{latest.pt, options.pkl}``, the layout ``i2sb-sample ckpt=ROOT/NAME`` reads.
  Sources: Google Drive through the optional ``gdown`` package, or a plain-HTTP mirror
  (``mirror=URL`` / ``$I2SB_MIRROR``) serving ``URL/NAME/latest.pt`` and ``URL/NAME/options.pkl`` -- or, for any
  model a team shares, an exported model folder or a run directory (:mod:`.sharing`).
* :func:`download_adm`: ``256x256_diffusion_uncond.pt`` (the training initialisation and DDNM's prior)
  through ``torch.hub.download_url_to_file``, checked against its SHA-256, size and tensor shapes.

Files are staged in a hidden ``ROOT/.NAME.*.partial/`` folder, verified (``latest.pt`` loads with
``torch.load(weights_only=True)`` and holds ``net`` and ``ema``; ``options.pkl`` reads with the restricted
unpickler of :mod:`i2sb.restoration.authors`), then renamed into ``ROOT/NAME/`` together: a failed download leaves
``ROOT/NAME/`` as it was. Files already present and verified are not downloaded again. A staging folder
left by a killed process is removed by the next call (restartable, not resumable). Errors are
:class:`~i2sb.utils.download.DownloadError` with a one-line message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..utils.download import DownloadError, Log, check_file, download, one_line
from ..utils.torchfile import load_torch
from .authors import read_options
from ..utils.file_formats import LATEST, OPTIONS_FILE
from .registry import (ALL_CHECKPOINTS_URL, DEFAULT_ADM_DIR, DEFAULT_ROOT, DRIVE_FOLDER,  # noqa: F401
                       FILES, LICENSE, MIRROR_ENV, PRETRAINED, Pretrained, check_name, checkpoint_dir,
                       known, local_state, lookup, resolve_mirror)  # re-exported: the registry's historical home
from .sharing import EXPORTED, RUN, Layout, SharedFile, fetch, install, problems, staging_folder

__all__ = ["Pretrained", "PRETRAINED", "download_checkpoint", "download_adm", "lookup", "resolve_mirror",
           "local_state", "verify_checkpoint_file", "verify_options_file", "verify_adm", "ADM_FILE", "ADM_URL"]

NET_PREFIX = "diffusion_model."

# guided-diffusion's unconditional ImageNet-256 ADM, as NVlabs/I2SB i2sb/ckpt_util.py fetches it. SHA-256 and
# size: the Disco Diffusion model map (v5.6+) and two independent local measurements of the file (2,211,383,297
# bytes, 552,814,086 parameters, the count the shapes below give); the hash is checked by torch.hub.
ADM_FILE = "256x256_diffusion_uncond.pt"
ADM_URL = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/" + ADM_FILE
ADM_SHA256 = "a37c32fffd316cd494cf3f35b339936debdc1576dad13fe57c42399a5dbc78b1"
ADM_SIZE = 2_211_383_297
ADM_TENSORS = 566
ADM_NUMEL = 552_814_086
ADM_SHAPES = {
    "input_blocks.0.0.weight": (256, 3, 3, 3),
    "time_embed.0.weight": (1024, 256),
    "middle_block.1.qkv.weight": (3072, 1024, 1),
    "out.2.weight": (6, 256, 3, 3),  # learn_sigma: 3 mean + 3 variance channels
    "out.2.bias": (6,),
}


# ---------------------------------------------------------------------------- verification
def _load_dict(path: Path) -> dict[str, Any]:
    """The file as a dict via the one safe loader (``weights_only=True``, memory-mapped); ValueError otherwise."""
    try:
        return load_torch(path, mmap=True)
    except (ValueError, FileNotFoundError) as err:  # already one line, naming the file and the cause
        raise ValueError(str(err)) from None


def verify_checkpoint_file(path: Path) -> None:
    """Raise ValueError unless ``path`` is the authors' ``latest.pt``: ``net`` (prefixed keys) and ``ema``."""
    ckpt = _load_dict(Path(path))
    missing = [key for key in ("net", "ema") if key not in ckpt]
    if missing:
        raise ValueError(f"{Path(path).name}: no '{missing[0]}' entry (keys: {', '.join(map(str, ckpt))[:100]})")
    net, ema = ckpt["net"], ckpt["ema"]
    if not isinstance(net, dict) or not net or not all(str(k).startswith(NET_PREFIX) for k in net):
        raise ValueError(f"{Path(path).name}: 'net' is not an Image256Net state dict (keys '{NET_PREFIX}...')")
    if not isinstance(ema, dict):
        raise ValueError(f"{Path(path).name}: 'ema' is a {type(ema).__name__}, not torch_ema's state dict")


def verify_options_file(path: Path, name: str | None = None) -> None:
    """Raise ValueError unless ``path`` is an ``options.pkl`` (restricted unpickler) for checkpoint ``name``."""
    try:
        options = read_options(path)
    except (ValueError, FileNotFoundError) as err:
        raise ValueError(str(err)) from None
    missing = [key for key in ("interval", "beta_max") if key not in options]
    if missing:
        raise ValueError(f"{Path(path).name}: option '{missing[0]}' is missing")
    corrupt = options.get("corrupt")
    if name is not None and corrupt is not None and corrupt != name:
        raise ValueError(f"{Path(path).name}: options are for corrupt={corrupt}, not {name}")


def verify_adm(path: Path) -> None:
    """Raise ValueError unless ``path`` has the tensors of guided-diffusion's unconditional ADM-256."""
    state = _load_dict(Path(path))
    for key, shape in ADM_SHAPES.items():
        value = state.get(key)
        if value is None or tuple(getattr(value, "shape", ())) != shape:
            found = "missing" if value is None else f"shape {tuple(getattr(value, 'shape', ()))}"
            raise ValueError(f"{Path(path).name}: '{key}' is {found}, expected {shape} (not {ADM_FILE})")
    numel = sum(getattr(v, "numel", lambda: 0)() for v in state.values())
    if len(state) != ADM_TENSORS or numel != ADM_NUMEL:
        raise ValueError(f"{Path(path).name}: {len(state)} tensors / {numel} values, expected "
                         f"{ADM_TENSORS} / {ADM_NUMEL} (not {ADM_FILE})")


def authors_layout(entry: Pretrained | None) -> Layout:
    """The authors' ``results/NAME/`` as a :class:`~.sharing.Layout`; ``options.pkl`` checked to be ``entry``'s."""
    return Layout("the authors' results/NAME (options.pkl + latest.pt)", (
        SharedFile(OPTIONS_FILE, lambda path: verify_options_file(path, entry.name if entry else None)),
        SharedFile(LATEST, verify_checkpoint_file)))


def _find(folder: Path, filename: str) -> Path | None:
    """``folder/filename``, or ``folder/*/filename`` when the Drive folder arrived inside a subfolder."""
    direct = folder / filename
    if direct.is_file():
        return direct
    nested = sorted(folder.glob(f"*/{filename}"))
    return nested[0] if len(nested) == 1 else None


# ---------------------------------------------------------------------------- sources
def _import_gdown(entry: Pretrained) -> Any:
    try:
        import gdown  # optional: pip install 'i2sb[download]'
    except ImportError:
        raise DownloadError(f"downloading {entry.name} from Google Drive needs the 'gdown' package: "
                            f"pip install 'i2sb[download]' (or pip install gdown), or use mirror=URL") from None
    return gdown


def _gdown_reason(err: Exception) -> str:
    """gdown's (often multi-line) error as a short reason; connection failures said plainly."""
    text = one_line(f"{type(err).__name__}: {err}", 200)
    if type(err).__name__ in ("ConnectionError", "ConnectTimeout", "ReadTimeout", "SSLError", "ProxyError"):
        return f"cannot reach Google Drive (offline?): {text}"
    return f"gdown failed ({text})"


def _from_drive(entry: Pretrained, filenames: list[str], staging: Path, target: Path,
                progress: bool) -> dict[str, Path]:
    checks = {f.name: f.verify for f in authors_layout(entry).files}
    gdown = _import_gdown(entry)
    url = entry.drive_url
    manual = f"to get it by hand, download {' and '.join(FILES)} from {url} into {target}{os.sep}"
    try:
        listed = gdown.download_folder(url=url, output=str(staging), quiet=not progress)
    except Exception as err:  # gdown raises its own errors, requests' and ValueError; old versions return None
        raise DownloadError(f"cannot download {entry.name} from {url}: {_gdown_reason(err)}; {manual}") from None
    if listed is None:
        raise DownloadError(f"cannot download {entry.name} from {url}: gdown could not list the folder; {manual}")
    staged = {}
    for filename in filenames:
        path = _find(staging, filename)
        problem = "not in the Drive folder" if path is None else check_file(path, verify=checks[filename])
        if problem is not None:
            raise DownloadError(f"cannot download {entry.name} from {url}: {filename} {problem}; {manual}")
        staged[filename] = path
    return staged


# ---------------------------------------------------------------------------- public entry points
def download_checkpoint(name: str, root: str | Path = DEFAULT_ROOT, mirror: str | None = None,
                        progress: bool = True, log: Log | None = None) -> Path:
    """Fetch the model ``name`` into ``root/NAME/`` and return that folder.

    Without a mirror, ``name`` is one of the authors' checkpoints, fetched from Google Drive. ``mirror`` (or
    ``$I2SB_MIRROR``) serves ``{mirror}/{NAME}/`` over plain HTTP(S) (or ``file://``) in any layout
    ``i2sb-sample ckpt=`` reads (:mod:`.sharing`): the authors' files, an exported model folder or a run
    directory, so ``name`` may then be any model folder name. Files already there and verified are kept; the
    others are staged, verified and renamed in together. Raises ``ValueError`` for an unknown name,
    ``DownloadError`` otherwise.
    """
    entry, say, root = known(name), log or (lambda message: None), Path(root).expanduser()
    mirror = resolve_mirror(mirror)
    if mirror:
        authors = authors_layout(entry)
        layouts = [authors, EXPORTED, RUN] if entry is not None else [EXPORTED, RUN, authors]
        return fetch(entry.name if entry is not None else check_name(name), root, mirror, layouts, progress, say)
    entry = lookup(name)
    target = root / entry.name
    missing = problems(authors_layout(entry), target)
    for filename, problem in missing.items():
        if problem != "missing":
            say(f"{target / filename}: present but unusable ({problem}); downloading it again")
    if not missing:
        say(f"{target}: {entry.name} already present and verified, not downloaded again")
        return target
    try:
        with staging_folder(root, entry.name) as staging:
            say(f"{target}: downloading {entry.name} from Google Drive ({entry.drive_url})")
            install(_from_drive(entry, list(missing), staging, target, progress), target)
    except OSError as err:
        raise DownloadError(f"cannot store {entry.name} in {target}: {err.strerror or err} "
                            f"({err.filename or target})") from None
    say(f"{target}: {entry.name} ready ({', '.join(FILES)})")
    return target


def download_adm(dest_dir: str | Path = DEFAULT_ADM_DIR, mirror: str | None = None, progress: bool = True,
                 log: Log | None = None) -> Path:
    """Fetch ``256x256_diffusion_uncond.pt`` into ``dest_dir`` via ``torch.hub.download_url_to_file``.

    Checked against :data:`ADM_SHA256` (by torch.hub), :data:`ADM_SIZE` and :func:`verify_adm`; a verified
    file already there is kept. ``mirror`` (or ``$I2SB_MIRROR``) serves ``{mirror}/256x256_diffusion_uncond.pt``.
    """
    mirror = resolve_mirror(mirror)
    url = f"{mirror}/{ADM_FILE}" if mirror else ADM_URL
    return download(url, Path(dest_dir).expanduser() / ADM_FILE, sha256=ADM_SHA256, size=ADM_SIZE,
                    verify=verify_adm, progress=progress, backend="torch.hub", log=log)
