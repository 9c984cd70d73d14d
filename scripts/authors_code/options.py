"""What the authors' ``train.py`` would be given for one of our tasks: their ``argparse`` options (the task's
``--corrupt`` name from :data:`i2sb.restoration.registry.CORRUPTIONS`, its ``beta_max`` and ``ot_ode`` from our
``configs/task/``, which follow their ``scripts/train.sh``) and guided-diffusion ``create_model`` arguments."""

from __future__ import annotations

import os
import random
from argparse import Namespace
from pathlib import Path
from typing import Any

import torch
import yaml

from i2sb.restoration.registry import CORRUPTIONS

N_CLASSES = 1000  # guided-diffusion's NUM_CLASSES (class_cond)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# Freeform inpainting is left out: their masks come from a download (corruption/inpaint.py, load_freeform_masks).
LEFT_OUT = frozenset({"inpaint_freeform1020", "inpaint_freeform2030"})


def task_table(configs: Path = CONFIGS) -> dict[str, tuple[str, float, bool]]:
    """Our task names -> (their ``--corrupt``, ``--beta-max``, ``--ot-ode``) for every task both codes have."""
    table = {}
    for corrupt, task in CORRUPTIONS.items():
        if task is None or task in LEFT_OUT:
            continue
        config = yaml.safe_load((configs / "task" / f"{task}.yaml").read_text(encoding="utf-8"))
        table[task] = (corrupt, float(config["beta_max"]), bool(config["ot_ode"]))
    return table


TASKS = task_table()


def create_model_kwargs(unet_kwargs: dict[str, Any], in_channels: int) -> dict[str, Any]:
    """guided-diffusion ``UNetModel`` arguments (our ``i2sb.unet.UNet``'s) -> ``create_model`` arguments,
    the content of the pickle ``Image256Net`` reads (``attention_resolutions`` as pixel sizes, "16")."""
    kw = {k: v for k, v in unet_kwargs.items() if k not in ("name", "init", "in_channels")}
    size = int(kw["image_size"])
    if kw.pop("dims", 2) != 2 or not kw.pop("conv_resample", True):
        raise ValueError("the authors' create_model builds 2-D U-Nets with conv_resample=True only")
    out = int(kw.pop("out_channels", 3))
    if out not in (3, 6):
        raise ValueError(f"create_model has out_channels 3 (or 6 with learn_sigma), got {out}")
    mult = tuple(kw.pop("channel_mult"))
    if any(float(m) != int(m) for m in mult):
        raise ValueError(f"create_model parses integer channel multipliers only, got {mult}")
    ds = tuple(int(d) for d in kw.pop("attention_resolutions"))
    resolutions = [size // d for d in ds]
    if any(size // r != d for r, d in zip(resolutions, ds)):
        raise ValueError(f"attention down-sampling factors {ds} are not image_size // resolution for {size}")
    num_classes = kw.pop("num_classes", None)
    if num_classes not in (None, N_CLASSES):
        raise ValueError(f"create_model supports num_classes None or {N_CLASSES}, got {num_classes}")
    return dict(
        image_size=size, num_channels=int(kw.pop("model_channels")), num_res_blocks=int(kw.pop("num_res_blocks")),
        channel_mult=",".join(str(int(m)) for m in mult), learn_sigma=out == 6, class_cond=num_classes is not None,
        attention_resolutions=",".join(str(r) for r in resolutions), in_channels=in_channels,
        use_checkpoint=bool(kw.pop("use_checkpoint", False)), num_heads=int(kw.pop("num_heads", 1)),
        num_head_channels=int(kw.pop("num_head_channels", -1)), num_heads_upsample=int(kw.pop("num_heads_upsample", -1)),
        use_scale_shift_norm=bool(kw.pop("use_scale_shift_norm", False)), dropout=float(kw.pop("dropout", 0.0)),
        resblock_updown=bool(kw.pop("resblock_updown", False)), use_fp16=bool(kw.pop("use_fp16", False)),
        use_new_attention_order=bool(kw.pop("use_new_attention_order", False)),
        **_no_leftovers(kw),
    )


def _no_leftovers(kw: dict[str, Any]) -> dict[str, Any]:
    kw.pop("image_size", None)
    if kw:
        raise ValueError(f"unknown U-Net arguments for the authors' create_model: {sorted(kw)}")
    return {}


def options(task: str, image_size: int, batch_size: int, microbatch: int | None = None, lr: float = 5e-5,
            lr_gamma: float = 0.99, lr_step: int = 1000, l2_norm: float = 0.0, ema: float = 0.99,
            beta_max: float | None = None, ot_ode: bool | None = None, cond_x1: bool = False,
            clip_denoise: bool = False, seed: int = 0, device: str = "cpu", interval: int = 1000) -> Namespace:
    """The argparse Namespace their ``train.py`` would build (``create_training_options`` defaults), for one
    process (``global_size`` 1, not distributed)."""
    if task not in TASKS:
        raise ValueError(f"task '{task}' has no counterpart in the authors' code; known: {', '.join(TASKS)}")
    corrupt, default_beta, default_ot = TASKS[task]
    microbatch = microbatch or batch_size
    if batch_size % microbatch:
        raise ValueError(f"batch_size {batch_size} is not divisible by microbatch {microbatch}")
    return Namespace(
        seed=seed, name=task, image_size=image_size, corrupt=corrupt, t0=1e-4, T=1.0, interval=interval,
        beta_max=default_beta if beta_max is None else beta_max, ot_ode=default_ot if ot_ode is None else ot_ode,
        clip_denoise=clip_denoise, cond_x1=cond_x1, add_x1_noise=False, batch_size=batch_size,
        microbatch=microbatch, num_itr=10**9, lr=lr, lr_gamma=lr_gamma, lr_step=lr_step, l2_norm=l2_norm, ema=ema,
        device=device, distributed=False, use_fp16=False, load=None, global_rank=0, local_rank=0, global_size=1,
        log_writer=None, ckpt_path=None,
    )


def set_seed(seed: int) -> None:
    """Their ``train.set_seed`` (random, numpy, torch; PYTHONHASHSEED) without the CUDA calls."""
    import numpy as np

    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def our_unet_kwargs(model_yaml: dict[str, Any], size: int | None = None) -> dict[str, Any]:
    """Our ``configs/model/*.yaml`` -> UNetModel arguments (drops ``name``/``init``; optional size)."""
    kw = {k: v for k, v in model_yaml.items() if k not in ("name", "init")}
    if size is not None:
        kw["image_size"] = size
    return kw
