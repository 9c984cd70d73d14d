"""The authors' checkpoints (NVlabs/I2SB ``results/NAME/``): ``latest.pt`` + ``options.pkl``.

* ``options.pkl`` is a pickled ``argparse.Namespace``. A pickle can run code, so it is read with
  :class:`OptionsUnpickler`, which only lets ``argparse.Namespace``, ``pathlib`` paths and plain builtin
  values through.
* ``latest.pt`` = ``{"net", "ema", "optimizer", "sched"}``; ``net`` is ``Image256Net.state_dict()`` whose
  keys carry the prefix ``diffusion_model.``; ``ema`` is ``torch_ema.ExponentialMovingAverage.state_dict()``
  (``shadow_params``: a list in ``Image256Net.parameters()`` order, i.e. the U-Net's ``named_parameters()``
  order, which ``i2sb.unet.UNet`` reproduces).
* The U-Net configuration is not stored. It is ADM-256 (``i2sb.unet.adm256_kwargs``) with the structural
  arguments read off the weights' shapes (:func:`i2sb.nets.guided_diffusion.infer_unet_kwargs`), then the user's ``model.*`` overrides.
"""

from __future__ import annotations

import _compat_pickle
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import TaskConfig
from ..nets.guided_diffusion import check_compatible, infer_unet_kwargs
from ..nets.unet import UNet, adm256_kwargs, input_channels
from ..utils.loaderrors import UnreadableFile, UnsafeGlobal, load_failure
from .registry import CORRUPTIONS
from .trained_network import TrainedNetwork

NOT_OPTIONS = "not an options file (not a pickle file)"
PREFIX = "diffusion_model."

_PATH_CLASSES = ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath")
_BUILTINS = ("set", "frozenset", "complex", "bytearray", "slice", "range", "bytes", "str", "int", "float",
             "bool", "tuple", "list", "dict", "object")
ALLOWED_GLOBALS = frozenset(
    [("argparse", "Namespace")]
    # protocols 0 and 1 rebuild objects with copyreg._reconstructor(cls, base, state): it only calls
    # base.__new__/__init__ of classes that themselves had to pass this list
    + [("copyreg", "_reconstructor"), ("_codecs", "encode")]  # ... and bytes as _codecs.encode(str, "latin1")
    + [(module, name) for module in ("pathlib", "pathlib._local") for name in _PATH_CLASSES]  # 3.13: _local
    + [("builtins", name) for name in _BUILTINS]
)


class OptionsUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS`; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names of protocols 0-2 (__builtin__, copy_reg), mapped as pickle.Unpickler does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafeGlobal(f"{module}.{name}")
        if module == "pathlib._local":  # written by Python >= 3.13; the same classes live in pathlib
            module = "pathlib"
        return super().find_class(module, name)


def read_options(path: str | Path) -> dict[str, Any]:
    """The authors' ``options.pkl`` as a dict, read without running code; one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: options file not found")
    try:
        with open(path, "rb") as f:
            obj = OptionsUnpickler(f).load()
    except Exception as err:  # a refused global, truncated, or not a pickle at all
        cause = load_failure(err, path, not_format=NOT_OPTIONS)
        if isinstance(err, UnsafeGlobal):
            cause += "; options.pkl may hold only argparse.Namespace, paths and plain values"
        raise UnreadableFile(path, cause) from None
    options = obj if isinstance(obj, dict) else getattr(obj, "__dict__", None)
    if not isinstance(options, dict):
        raise ValueError(f"{path}: expected a pickled argparse.Namespace, got {type(obj).__name__}")
    return options


def task_from_options(options: dict[str, Any], source: str) -> TaskConfig:
    """The authors' options -> :class:`~i2sb.config.TaskConfig` (``interval`` is ``n_steps``)."""
    missing = [k for k in ("interval", "beta_max") if k not in options]
    if missing:
        raise ValueError(f"{source}: option '{missing[0]}' is missing; is this the authors' options.pkl?")
    corrupt = options.get("corrupt")
    return TaskConfig(
        name=str(options.get("name") or corrupt or "authors"),
        degradation=CORRUPTIONS.get(corrupt),
        beta_max=float(options["beta_max"]),
        ot_ode=bool(options.get("ot_ode", False)),
        cond_x1=bool(options.get("cond_x1", False)),
        add_x1_noise=bool(options.get("add_x1_noise", False)),
        n_steps=int(options["interval"]),
        t0=float(options.get("t0", 1e-4)),
        T=float(options.get("T", 1.0)),
    )


# ---------------------------------------------------------------------------- weights
def strip_prefix(state: dict[str, Tensor], source: str, prefix: str = PREFIX) -> dict[str, Tensor]:
    """``Image256Net`` keys ``diffusion_model.X`` -> U-Net keys ``X``."""
    foreign = [k for k in state if not k.startswith(prefix)]
    if foreign:
        raise ValueError(f"{source}: key '{foreign[0]}' of 'net' lacks the authors' prefix '{prefix}'")
    return {k[len(prefix):]: v for k, v in state.items()}


def ema_weights(ema: dict[str, Any], unet: UNet, source: str) -> dict[str, Tensor]:
    """torch_ema's ``shadow_params`` (``parameters()`` order) -> a U-Net state_dict by ``named_parameters()``."""
    shadow = ema.get("shadow_params") if isinstance(ema, dict) else None
    if not isinstance(shadow, (list, tuple)):
        raise ValueError(f"{source}: 'ema' has no torch_ema shadow_params: use use_ema=false")
    named = list(unet.named_parameters())
    if len(shadow) != len(named):
        raise ValueError(f"{source}: 'ema' holds {len(shadow)} shadow_params but the U-Net has {len(named)} parameters")
    for (name, param), value in zip(named, shadow):
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"{source}: EMA shadow param for '{name}' has shape {tuple(value.shape)}, "
                             f"expected {tuple(param.shape)}")
    return {name: value for (name, _), value in zip(named, shadow)}


def authors_spec(ckpt: dict[str, Any], options_path: Path, use_ema: bool, overrides: dict[str, Any],
                 source: str) -> TrainedNetwork:
    """The authors' ``latest.pt`` contents + ``options.pkl`` -> :class:`TrainedNetwork`.

    Architecture: ``adm256_kwargs`` <- inferred from the ``net`` weights <- ``overrides``.
    """
    options = read_options(options_path)
    task = task_from_options(options, str(options_path))
    if not isinstance(ckpt.get("net"), dict):
        raise ValueError(f"{source}: no 'net' state_dict (expected the authors' latest.pt)")
    net = strip_prefix(ckpt["net"], source)
    kwargs = {**adm256_kwargs(task.cond_x1), **infer_unet_kwargs(net, source), **overrides}
    kwargs["image_size"] = int(overrides.get("image_size", options.get("image_size", 256)))
    expected = input_channels(task.cond_x1)
    if kwargs["in_channels"] != expected:
        raise ValueError(f"{source}: the network takes {kwargs['in_channels']} input channels but the options say "
                         f"cond_x1={task.cond_x1} ({expected} expected)")
    try:
        with torch.device("meta"):
            template = UNet(**kwargs)
    except ValueError as err:
        raise ValueError(f"{source}: {err}; the head layout is not stored in the weights: set "
                         f"model.num_head_channels (or model.num_heads with model.num_head_channels=-1)") from None
    check_compatible(net, template.state_dict(), source)
    weights = ema_weights(ckpt.get("ema"), template, source) if use_ema else net
    return TrainedNetwork(kwargs, weights, task, kwargs["image_size"])
