"""The authors' checkpoints (NVlabs/I2SB ``results/NAME/``): ``latest.pt`` + ``options.pkl``.

* ``options.pkl`` is a pickled ``argparse.Namespace``. A pickle can run code, so it is read with
  :class:`OptionsUnpickler`, which only lets ``argparse.Namespace``, ``pathlib`` paths and plain builtin
  values through.
* ``latest.pt`` = ``{"net", "ema", "optimizer", "sched"}``; ``net`` is ``Image256Net.state_dict()`` whose
  keys carry the prefix ``diffusion_model.``; ``ema`` is ``torch_ema.ExponentialMovingAverage.state_dict()``
  (``shadow_params``: a list in ``Image256Net.parameters()`` order, i.e. the U-Net's ``named_parameters()``
  order, which ``i2sb.unet.UNet`` reproduces).
* The U-Net configuration is not stored. It is ADM-256 (``i2sb.unet.adm256_kwargs``) with the structural
  arguments read off the weights' shapes (:func:`infer_unet_kwargs`), then the user's ``model.*`` overrides.
"""

from __future__ import annotations

import _compat_pickle
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .checkpoint import check_compatible
from .unet import UNet, adm256_kwargs

OPTIONS = "options.pkl"
PREFIX = "diffusion_model."

# The authors' --corrupt names (scripts/train.sh) -> i2sb.degrade tasks; "mixture" has no single operator.
CORRUPTIONS: dict[str, str | None] = {
    "jpeg-5": "jpeg5",
    "jpeg-10": "jpeg10",
    "sr4x-pool": "sr4x_pool",
    "sr4x-bicubic": "sr4x_bicubic",
    "blur-uni": "blur_uni",
    "blur-gauss": "blur_gauss",
    "inpaint-center": "inpaint_center",
    "inpaint-freeform1020": "inpaint_freeform1020",
    "inpaint-freeform2030": "inpaint_freeform2030",
    "mixture": None,
}

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
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
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
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path}: {err} (only argparse.Namespace, paths and plain values are allowed)") from None
    except Exception as err:  # truncated or not a pickle at all
        raise ValueError(f"{path}: cannot read options ({type(err).__name__}: {str(err)[:200]})") from None
    options = obj if isinstance(obj, dict) else getattr(obj, "__dict__", None)
    if not isinstance(options, dict):
        raise ValueError(f"{path}: expected a pickled argparse.Namespace, got {type(obj).__name__}")
    return options


def task_from_options(options: dict[str, Any], source: str) -> dict[str, Any]:
    """The authors' options -> an ``i2sb.config.TaskConfig`` dict (``interval`` is ``n_steps``)."""
    missing = [k for k in ("interval", "beta_max") if k not in options]
    if missing:
        raise ValueError(f"{source}: option '{missing[0]}' is missing; is this the authors' options.pkl?")
    corrupt = options.get("corrupt")
    return {
        "name": str(options.get("name") or corrupt or "authors"),
        "degradation": CORRUPTIONS.get(corrupt),
        "beta_max": float(options["beta_max"]),
        "ot_ode": bool(options.get("ot_ode", False)),
        "cond_x1": bool(options.get("cond_x1", False)),
        "add_x1_noise": bool(options.get("add_x1_noise", False)),
        "n_steps": int(options["interval"]),
        "t0": float(options.get("t0", 1e-4)),
        "T": float(options.get("T", 1.0)),
    }


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


# ---------------------------------------------------------------------------- architecture
def _block_count(state: dict[str, Tensor], group: str) -> int:
    pattern = re.compile(rf"^{group}\.(\d+)\.")
    indices = [int(m.group(1)) for k in state if (m := pattern.match(k))]
    return max(indices) + 1 if indices else 0


def _candidate(state: dict[str, Tensor], n_res: int, levels: int, model_channels: int) -> dict[str, Any]:
    """Structural U-Net arguments if the decoder has ``levels`` levels of ``n_res + 1`` blocks."""
    mult = []
    for level in range(levels):
        first = (levels - 1 - level) * (n_res + 1)  # first decoder block of this level
        width = state[f"output_blocks.{first}.0.out_layers.3.weight"].shape[0]
        mult.append(width // model_channels if width % model_channels == 0 else width / model_channels)
    down = 1 + n_res  # index of the first down-sampling input block
    updown = f"input_blocks.{down}.0.in_layers.0.weight" in state
    attention, ds, index = set(), 1, 1
    for level in range(levels):
        for _ in range(n_res):
            if f"input_blocks.{index}.1.qkv.weight" in state:
                attention.add(ds)
            index += 1
        if level < levels - 1:
            index, ds = index + 1, ds * 2
    first_res = "input_blocks.1.0"
    width = state[f"{first_res}.out_layers.3.weight"].shape[0]
    return dict(
        num_res_blocks=n_res, channel_mult=tuple(mult), attention_resolutions=tuple(sorted(attention)),
        resblock_updown=updown, conv_resample=updown or f"input_blocks.{down}.0.op.weight" in state or levels == 1,
        use_scale_shift_norm=state[f"{first_res}.emb_layers.1.weight"].shape[0] == 2 * width,
    )


def infer_unet_kwargs(state: dict[str, Tensor], source: str = "checkpoint") -> dict[str, Any]:
    """U-Net arguments that the shapes of a guided-diffusion state_dict determine.

    Returns ``model_channels``, ``in_channels``, ``out_channels``, ``num_res_blocks``, ``channel_mult``,
    ``attention_resolutions`` (down-sampling factors of the blocks holding attention), ``resblock_updown``,
    ``conv_resample``, ``use_scale_shift_norm`` and ``num_classes``. Head counts cannot be inferred (the
    ``qkv`` shapes do not depend on them). Each decoder split ``levels x (num_res_blocks + 1)`` is tried and
    the first whose U-Net has exactly the file's keys and shapes is returned.
    """
    try:
        base = dict(
            model_channels=state["time_embed.0.weight"].shape[1],
            in_channels=state["input_blocks.0.0.weight"].shape[1],
            out_channels=state["out.2.weight"].shape[0],
            num_classes=state["label_emb.weight"].shape[0] if "label_emb.weight" in state else None,
        )
    except KeyError as err:
        raise ValueError(f"{source}: not an ADM U-Net state_dict (no {err})") from None
    n_out = _block_count(state, "output_blocks")
    for n_res in range(1, n_out):
        if n_out % (n_res + 1):
            continue
        try:
            kwargs = {**base, **_candidate(state, n_res, n_out // (n_res + 1), base["model_channels"])}
            with torch.device("meta"):
                own = UNet(image_size=256, num_heads=1, **kwargs).state_dict()
            check_compatible(state, own, source)
        except (KeyError, ValueError):
            continue
        return kwargs
    raise ValueError(f"{source}: cannot infer the U-Net architecture from the weights; set model.* keys "
                     f"(channel_mult, num_res_blocks, attention_resolutions, ...)")


@dataclass
class NetworkSpec:
    """Everything needed to rebuild a trained network: U-Net arguments, weights, bridge task, training size."""

    unet_kwargs: dict[str, Any]
    weights: dict[str, Tensor]
    task: dict[str, Any]
    image_size: int
    default_nfe: int = 10


def authors_spec(ckpt: dict[str, Any], options_path: Path, use_ema: bool, overrides: dict[str, Any],
                 source: str) -> NetworkSpec:
    """The authors' ``latest.pt`` contents + ``options.pkl`` -> :class:`NetworkSpec`.

    Architecture: ``adm256_kwargs`` <- inferred from the ``net`` weights <- ``overrides``.
    """
    options = read_options(options_path)
    task = task_from_options(options, str(options_path))
    if not isinstance(ckpt.get("net"), dict):
        raise ValueError(f"{source}: no 'net' state_dict (expected the authors' latest.pt)")
    net = strip_prefix(ckpt["net"], source)
    kwargs = {**adm256_kwargs(task["cond_x1"]), **infer_unet_kwargs(net, source), **overrides}
    kwargs["image_size"] = int(overrides.get("image_size", options.get("image_size", 256)))
    if kwargs["in_channels"] != (6 if task["cond_x1"] else 3):
        raise ValueError(f"{source}: the network takes {kwargs['in_channels']} input channels but the options say "
                         f"cond_x1={task['cond_x1']} ({6 if task['cond_x1'] else 3} expected)")
    try:
        with torch.device("meta"):
            template = UNet(**kwargs)
    except ValueError as err:
        raise ValueError(f"{source}: {err}; the head layout is not stored in the weights: set "
                         f"model.num_head_channels (or model.num_heads with model.num_head_channels=-1)") from None
    check_compatible(net, template.state_dict(), source)
    weights = ema_weights(ckpt.get("ema"), template, source) if use_ema else net
    return NetworkSpec(kwargs, weights, task, kwargs["image_size"])
