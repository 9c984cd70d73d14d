"""guided-diffusion's checkpoint format: state_dict checks, architecture inference, the authors' ADM surgery.

guided-diffusion (Dhariwal & Nichol, 2021) saves a bare ``UNetModel.state_dict()``; :class:`~i2sb.nets.unet.UNet`
has the same keys. The ADM ImageNet-256 model (``256x256_diffusion_uncond.pt``) predicts eps and a variance
(6 output channels); the I2SB authors start from it (``ckpt_util.py``) and so can ``model.init``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..utils.torchfile import load_torch
from .unet import UNet

ADM_KEY = "input_blocks.0.0.weight"  # the first convolution: its weight's shape[1] is the input channels


def check_compatible(state: dict[str, Tensor], own: dict[str, Tensor], source: str) -> None:
    """Raise a one-line ``ValueError`` naming the first key or shape that differs."""
    for key, value in own.items():
        if key not in state:
            raise ValueError(f"{source}: does not match the configured U-Net: key '{key}' is missing from the file")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(
                f"{source}: does not match the configured U-Net: '{key}' has shape {tuple(state[key].shape)} "
                f"in the file but {tuple(value.shape)} in the model"
            )
    extra = [k for k in state if k not in own]
    if extra:
        raise ValueError(f"{source}: does not match the configured U-Net: unexpected key '{extra[0]}' in the file")


def adm_state_dict(obj: dict[str, Any], source: str) -> dict[str, Tensor]:
    """The U-Net state_dict inside a guided-diffusion checkpoint (plain, or under ``state_dict``)."""
    state = obj.get("state_dict", obj) if ADM_KEY not in obj else obj
    if not isinstance(state, dict) or ADM_KEY not in state:
        raise ValueError(f"{source}: not a guided-diffusion U-Net state_dict (no '{ADM_KEY}')")
    return state


def is_adm_checkpoint(obj: dict[str, Any]) -> bool:
    """True for a guided-diffusion checkpoint (a bare U-Net state_dict, or one under ``state_dict``)."""
    return ADM_KEY in obj or (isinstance(obj.get("state_dict"), dict) and ADM_KEY in obj["state_dict"])


# ---------------------------------------------------------------------------- ADM initialisation
def adm_surgery(adm: dict[str, Tensor], model: nn.Module, source: str = "ADM checkpoint") -> dict[str, Tensor]:
    """Adapt a guided-diffusion ADM state_dict to ``model`` the way the authors do (``ckpt_util.py``).

    * ``out.2``: keep the first ``out_channels`` rows (ADM predicts eps and variance: 6 -> 3 channels).
    * ``input_blocks.0.0.weight``: with more input channels (``cond_x1``: 3 -> 6), append the model's
      own freshly initialised weights for the extra channels.
    Then every key and shape must match; otherwise a ``ValueError`` names the first mismatch.
    """
    own = model.state_dict()
    state = dict(adm)
    for key in ("out.2.weight", "out.2.bias"):
        if key in state and key in own and state[key].shape[0] > own[key].shape[0]:
            state[key] = state[key][: own[key].shape[0]]
    key = ADM_KEY
    if key in state and key in own and state[key].ndim == 4 and state[key].shape[1] < own[key].shape[1]:
        extra = own[key][:, state[key].shape[1] :].to(state[key].dtype)
        state[key] = torch.cat([state[key], extra], dim=1)
    check_compatible(state, own, source)
    return state


def load_adm_init(model: nn.Module, path: str | Path) -> None:
    """Initialise ``model`` (an ``i2sb.unet.UNet``) from a guided-diffusion checkpoint file."""
    state = adm_surgery(adm_state_dict(load_torch(path), str(path)), model, source=str(path))
    model.load_state_dict(state, strict=True)


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
