"""Importing the authors' modules from a clone of NVlabs/I2SB: their ``i2sb/`` under another name, the optional
modules their files import but the driven paths never use stubbed while they load."""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACKAGE = "authors_i2sb"  # their i2sb/ is loaded under this name
REQUIRED = ("i2sb/runner.py", "i2sb/diffusion.py", "i2sb/network.py", "guided_diffusion/unet.py", "corruption/jpeg.py")
CORRUPTION_MODULES = ("jpeg", "superresolution", "blur", "inpaint")


class AuthorsCodeError(RuntimeError):
    """PATH is not a usable clone of NVlabs/I2SB, or a module it needs is missing."""


def _stub(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    module.__authors_code_stub__ = True
    return module


class _Anything:
    """Placeholder class for names of stubbed modules (never instantiated on the paths we run)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AuthorsCodeError(f"{type(self).__name__}: stubbed by authors_code (not installed)")


def _stubs() -> dict[str, types.ModuleType]:
    """Stand-ins for modules their files import but that the benchmarked paths never use."""
    return {
        "ipdb": _stub("ipdb", set_trace=lambda *a, **k: None),
        "wandb": _stub("wandb", login=lambda *a, **k: False, init=lambda *a, **k: None, log=lambda *a, **k: None,
                       Image=_Anything),
        "torch.utils.tensorboard": _stub("torch.utils.tensorboard", SummaryWriter=_Anything),
        "torchmetrics": _stub("torchmetrics", Accuracy=_Anything),
        "gdown": _stub("gdown", download=lambda *a, **k: None),
        "prefetch_generator": _stub("prefetch_generator", BackgroundGenerator=iter),
        "easydict": _stub("easydict", EasyDict=dict),
    }


def _installed(name: str) -> bool:
    if name == "torch.utils.tensorboard":
        name = "tensorboard"
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def _stubbed_imports() -> Iterator[list[str]]:
    """Temporarily register stubs for the missing optional modules; removed again afterwards, so that
    other code in this process still sees them as missing (their modules keep the names they bound)."""
    added = []
    for name, module in _stubs().items():
        if name not in sys.modules and not _installed(name):
            sys.modules[name] = module
            added.append(name)
    try:
        yield added
    finally:
        for name in added:
            if getattr(sys.modules.get(name), "__authors_code_stub__", False):
                del sys.modules[name]


def check_path(path: str | os.PathLike) -> Path:
    """``path`` resolved, or AuthorsCodeError naming what is missing."""
    if path is None:
        raise AuthorsCodeError("no path to the authors' code: pass a clone of https://github.com/NVlabs/I2SB")
    root = Path(path).expanduser().resolve()
    missing = [p for p in REQUIRED if not (root / p).is_file()]
    if missing:
        raise AuthorsCodeError(f"{root}: not a clone of NVlabs/I2SB (missing {', '.join(missing)})")
    return root


@functools.lru_cache(maxsize=None)
def load_authors(path: str | os.PathLike) -> types.SimpleNamespace:
    """Their modules, imported from ``path``: ``runner``, ``diffusion``, ``network``, ``util``,
    ``script_util``, ``unet`` (guided-diffusion), ``corruption`` and the stub names used (``stubbed``)."""
    root = check_path(path)
    if importlib.util.find_spec("torch_ema") is None:
        raise AuthorsCodeError("the authors' Runner needs torch_ema: pip install torch-ema")
    for top in ("guided_diffusion", "corruption"):
        loaded = sys.modules.get(top)
        if loaded is not None and not str(getattr(loaded, "__file__", "")).startswith(str(root)):
            raise AuthorsCodeError(f"a different '{top}' is already imported ({loaded.__file__}); "
                                   "use a fresh process per authors' path")
    if str(root) not in sys.path:
        sys.path.append(str(root))  # appended: our own i2sb, earlier on sys.path, keeps the name i2sb
    if PACKAGE not in sys.modules:  # their i2sb/ as a package named authors_i2sb, without its __init__
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(root / "i2sb")]
        package.__package__ = PACKAGE
        package.__file__ = str(root / "i2sb" / "__init__.py")
        sys.modules[PACKAGE] = package
    elif sys.modules[PACKAGE].__path__ != [str(root / "i2sb")]:
        raise AuthorsCodeError(f"{PACKAGE} is already loaded from {sys.modules[PACKAGE].__path__}")
    with _stubbed_imports() as stubbed:
        try:
            modules = types.SimpleNamespace(
                root=root,
                runner=importlib.import_module(f"{PACKAGE}.runner"),
                diffusion=importlib.import_module(f"{PACKAGE}.diffusion"),
                network=importlib.import_module(f"{PACKAGE}.network"),
                util=importlib.import_module(f"{PACKAGE}.util"),
                script_util=importlib.import_module("guided_diffusion.script_util"),
                unet=importlib.import_module("guided_diffusion.unet"),
                corruption=importlib.import_module("corruption"),
                stubbed=tuple(stubbed),
            )
            for name in CORRUPTION_MODULES:  # build_corruption imports these lazily; load them while stubbed
                importlib.import_module(f"corruption.{name}")
        except ImportError as err:
            raise AuthorsCodeError(f"importing the authors' code from {root}: {err}") from err
    for name, module in vars(modules).items():
        file = getattr(module, "__file__", None)
        if file and not str(file).startswith(str(root)):
            raise AuthorsCodeError(f"{name} was imported from {file}, not from {root}")
    return modules
