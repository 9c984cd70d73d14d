"""Reading any checkpoint into a :class:`~i2sb.restoration.trained_network.TrainedNetwork`: the project's runs,
the authors' ``results/NAME/`` and guided-diffusion's unconditional ADM (a prior for DDNM).

A training checkpoint of this project is a plain dict loadable with ``torch.load(weights_only=True)``::

    {"format": "i2sb-checkpoint", "version": 1, "step": int,
     "model": U-Net state_dict (guided-diffusion keys), "ema": EMA.state_dict(),
     "optimizer": ..., "lr_scheduler": ..., "grad_scaler": ..., "rng": {...},
     "config": the resolved training config (nested dict), "stats": {...},
     "validation": the last validation's PSNR and SWD per NFE (i2sb.evaluation.record; {} before one),
     "student": a distilled student's {"z_channels", "steps"} (i2sb-distill; method "ibmd"), absent otherwise}

A run directory holds ``config.yaml``, ``latest.pt``, optional ``ckpt_{step:09d}.pt`` and ``metrics.jsonl``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from torch import Tensor

from ..config import ConfigError, TaskConfig, to_train_config
from ..nets.guided_diffusion import ADM_KEY, adm_state_dict, infer_unet_kwargs, is_adm_checkpoint
from ..nets.unet import IMAGE_CHANNELS, UNet, adm256_kwargs
from ..utils.file_formats import CHECKPOINT_FORMAT, LATEST, OPTIONS_FILE
from ..utils.torchfile import load_torch
from .authors import authors_spec
from .export_reader import exported_spec, is_exported
from .trained_network import TrainedNetwork

UNET_KEYS = frozenset(inspect.signature(UNet).parameters)
ADM_STEPS = 1000  # guided-diffusion's models: 1000 linear steps
ADM_DEFAULT_NFE = 100  # DDNM's default T_sampling


def is_i2sb_checkpoint(obj: dict[str, Any]) -> bool:
    return obj.get("format") == CHECKPOINT_FORMAT


def model_weights(ckpt: dict[str, Any], use_ema: bool = True) -> dict[str, Tensor]:
    """The U-Net weights of an i2sb checkpoint: EMA-averaged by default, raw with ``use_ema=False``."""
    if not use_ema:
        return dict(ckpt["model"])
    if not ckpt.get("ema"):
        raise ValueError("checkpoint has no EMA weights: use use_ema=false")
    return dict(ckpt["ema"]["state_dict"])


def locate(ckpt: str | Path) -> Path:
    """The checkpoint file of a run directory (its ``latest.pt``) or a file path, checked to exist."""
    path = Path(ckpt)
    if path.is_dir():
        if not (path / LATEST).is_file():
            raise FileNotFoundError(f"{path}: no {LATEST} in this checkpoint directory")
        return path / LATEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (give a run directory, a .pt file, an exported "
                                f"model folder, or the authors' results/NAME/ with {LATEST} and {OPTIONS_FILE})")
    return path


def own_spec(ckpt: dict[str, Any], use_ema: bool, overrides: dict[str, Any], source: str) -> TrainedNetwork:
    """An i2sb training checkpoint -> :class:`TrainedNetwork` (its stored config, then ``overrides``)."""
    try:
        cfg = to_train_config(ckpt.get("config") or {})
        weights = model_weights(ckpt, use_ema)
    except (ConfigError, KeyError, ValueError) as err:
        raise ValueError(f"{source}: {err}") from None
    kwargs = cfg.model.unet_kwargs()
    if ADM_KEY in weights:
        kwargs["in_channels"] = int(weights[ADM_KEY].shape[1])
    kwargs.update(overrides)
    image_size = int(overrides.get("image_size", cfg.data.image_size))
    return TrainedNetwork(kwargs, weights, cfg.task, image_size, cfg.trainer.eval_nfe, cfg.method,
                          ckpt.get("validation") or None, ckpt.get("student"))


def adm_prior_spec(obj: dict[str, Any], overrides: dict[str, Any], source: str) -> TrainedNetwork:
    """A guided-diffusion checkpoint as the spec of a ``method=ddpm`` prior: ADM-256 <- read off the weights
    <- ``overrides``, eps rows of the output layer only, ADM's 1000-step schedule, no task of its own."""
    state = adm_state_dict(obj, source)
    kwargs = {**adm256_kwargs(False), **infer_unet_kwargs(state, source), **overrides, "out_channels": IMAGE_CHANNELS}
    if kwargs.get("num_classes") is not None:
        raise ValueError(f"{source}: a class-conditional ADM ({kwargs['num_classes']} classes); DDNM here needs "
                         f"the unconditional one (256x256_diffusion_uncond.pt)")
    if kwargs["in_channels"] != IMAGE_CHANNELS:
        raise ValueError(f"{source}: the network takes {kwargs['in_channels']} input channels; a prior takes 3")
    weights = {k: (v[:IMAGE_CHANNELS] if k in ("out.2.weight", "out.2.bias") else v) for k, v in state.items()}
    task = TaskConfig(name="adm_prior", n_steps=ADM_STEPS)
    return TrainedNetwork(kwargs, weights, task, int(kwargs["image_size"]), ADM_DEFAULT_NFE, "ddpm")


def network_spec(ckpt: str | Path, use_ema: bool = True, overrides: dict[str, Any] | None = None) -> TrainedNetwork:
    """Read a run directory, a checkpoint file, the authors' ``results/NAME/``, an ADM checkpoint or an exported
    model folder (``i2sb-export``; its EMA or raw weights are the ones chosen at export, ``use_ema`` is moot)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - UNET_KEYS)
    if unknown:
        raise ValueError(f"unknown model key '{unknown[0]}'; valid keys: {', '.join(sorted(UNET_KEYS))}")
    if is_exported(ckpt):
        return exported_spec(ckpt, overrides)
    file = locate(ckpt)
    state = load_torch(file, mmap=True)
    if is_i2sb_checkpoint(state):
        return own_spec(state, use_ema, overrides, str(file))
    if is_adm_checkpoint(state):  # guided-diffusion's unconditional ADM: a prior for DDNM
        return adm_prior_spec(state, overrides, str(file))
    options = file.parent / OPTIONS_FILE
    if "net" in state and options.is_file():
        return authors_spec(state, options, use_ema, overrides, str(file))
    if "net" in state:
        raise FileNotFoundError(f"{options}: missing; the authors' {LATEST} needs the options.pkl written beside it")
    raise ValueError(f"{file}: not an i2sb checkpoint, the authors' or a guided-diffusion U-Net (no 'format', "
                     f"'net' or '{ADM_KEY}' entry)")
