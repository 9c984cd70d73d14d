"""Small shared builders for tests: tiny configs, parameter noise, toy predictors and restorers."""

from __future__ import annotations

import copy
import pickle
from argparse import Namespace
from pathlib import Path, PosixPath
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from i2sb.cli import sample_main
from i2sb.config import TaskConfig, to_container, to_train_config
from i2sb.core.bridge import Bridge
from i2sb.core.denoiser import BridgeDenoiser
from i2sb.restoration import Restorer
from i2sb.restoration.algorithms import BridgeRestoration
from i2sb.utils.file_formats import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, LATEST
from i2sb.training.trainer import build_unet
from i2sb.unet import UNet
from i2sb.utils.torchfile import save_torch

CONFIGS = Path(__file__).resolve().parents[1] / "i2sb" / "configs"


def group(name: str, option: str) -> dict[str, Any]:
    """The contents of ``configs/{name}/{option}.yaml``."""
    return yaml.safe_load((CONFIGS / name / f"{option}.yaml").read_text())


def tiny_config(run_dir: Path | str, task: str = "jpeg5", **sections: dict[str, Any]) -> dict[str, Any]:
    """A complete training config for a 16 px tiny U-Net on the demo photos, CPU, a few steps."""
    cfg = {
        "task": group("task", task),
        "model": group("model", "tiny"),
        "data": {"kind": "demo", "image_size": 16, "num_workers": 0, "params": {"length": 64}},
        "trainer": {
            **group("trainer", "cpu"),
            "batch_size": 4,
            "microbatch": 2,
            "lr": 1e-3,
            "max_steps": 4,
            "ckpt_every": 2,
            "eval_every": 1000,
            "log_every": 1,
            "eval_nfe": 2,
            "eval_batch": 2,
            "precision": "fp32",  # exactness tests; "auto" is tested on its own
        },
        "logging": {"progress": False},
        "run_dir": str(run_dir),
        "device": "cpu",
        "seed": 0,
    }
    for key, values in sections.items():
        cfg[key] = {**cfg.get(key, {}), **copy.deepcopy(values)}
    return cfg


def perturb(module: nn.Module, scale: float, seed: int) -> None:
    """Add seeded noise to every parameter (the zero-initialised output layers included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def toy_predictor(xt: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """A smooth, state-dependent x0 predictor, far from the identity at the clean end (for sampler tests)."""
    s = step.to(xt.dtype).view(-1, 1, 1, 1) / 1000.0
    return torch.tanh(0.7 * xt) * (1 - s) + 0.1 * s


def tiny_task(**changes: Any) -> TaskConfig:
    """A 100-step bridge task without a degradation (for restorers around toy networks)."""
    return TaskConfig(**{"name": "toy", "degradation": None, "beta_max": 0.3, "ot_ode": False, "n_steps": 100,
                         **changes})


def bridge_restorer(net: nn.Module, image_size: int = 16, **task: Any) -> Restorer:
    """The I2SB :class:`Restorer` of a toy network ``net(x, t)`` (with a ``config["channel_mult"]``)."""
    t = tiny_task(**task)
    bridge = Bridge.symmetric(t.n_steps, t.beta_max)
    denoiser = BridgeDenoiser(net, bridge, t.t0, t.T, t.cond_x1).eval()
    return Restorer(denoiser, BridgeRestoration(bridge, t), t, image_size)


# ---------------------------------------------------------------------------- the authors' checkpoint format
ARCH = dict(image_size=16, model_channels=32, out_channels=3, num_res_blocks=1, attention_resolutions=(2,),
            channel_mult=(1, 2), num_head_channels=64, use_scale_shift_norm=True, resblock_updown=True)


class Image256NetLike(nn.Module):
    """The authors' wrapper: the U-Net lives under ``diffusion_model`` (hence the key prefix)."""

    def __init__(self, unet: UNet):
        super().__init__()
        self.diffusion_model = unet


def authors_options(corrupt: str = "jpeg-5", **changes) -> dict:
    name = changes.pop("name", corrupt)
    opts = dict(seed=0, name=name, ckpt=None, gpu=None, n_gpu_per_node=1, master_address="localhost", node_rank=0,
                num_proc_node=1, image_size=16, corrupt=corrupt, t0=1e-4, T=1.0, interval=1000, beta_max=0.3,
                ot_ode=True, clip_denoise=False, cond_x1=False, add_x1_noise=False, batch_size=256, microbatch=2,
                num_itr=1000000, lr=5e-5, lr_gamma=0.99, lr_step=1000, l2_norm=0.0, ema=0.99,
                dataset_dir=PosixPath("/dataset"), log_dir=PosixPath(".log"), log_writer=None, wandb_api_key=None,
                wandb_user=None, device="cuda:0", distributed=False, use_fp16=False,
                ckpt_path=PosixPath("results") / name, load=None, global_rank=0, local_rank=0, global_size=1)
    opts.update(changes)
    return opts


def write_authors_dir(root: Path, options: dict, **arch) -> tuple[UNet, UNet]:
    """``root/latest.pt`` + ``root/options.pkl`` as the authors' Runner writes them; returns (raw, ema) U-Nets."""
    root.mkdir(parents=True, exist_ok=True)
    kwargs = {**ARCH, **arch, "in_channels": 6 if options["cond_x1"] else 3}
    raw = UNet(**kwargs)
    perturb(raw, 0.05, seed=1)
    ema = copy.deepcopy(raw)
    perturb(ema, 0.03, seed=2)
    net = Image256NetLike(raw)
    optimizer = torch.optim.AdamW(net.parameters(), lr=5e-5)
    sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1000, gamma=0.99)
    torch.save({
        "net": net.state_dict(),
        "ema": {"decay": 0.99, "num_updates": 7, "collected_params": None,  # torch_ema's state_dict()
                "shadow_params": [p.detach().clone() for p in Image256NetLike(ema).parameters()]},
        "optimizer": optimizer.state_dict(),
        "sched": sched.state_dict(),
    }, root / "latest.pt")
    with open(root / "options.pkl", "wb") as f:
        pickle.dump(Namespace(**options), f)
    return raw.eval(), ema.eval()


# ---------------------------------------------------------------------------- tiny runs and images
TINY = yaml.safe_load((CONFIGS / "model" / "tiny.yaml").read_text())  # 16 px, channel_mult [1, 1]


def train_config(task: dict | None = None, **model) -> dict:
    return {
        "task": {"name": "t", "degradation": "jpeg5", "beta_max": 0.3, "ot_ode": True, "n_steps": 100,
                 **(task or {})},
        "model": {**copy.deepcopy(TINY), **model},
        "data": {"kind": "demo", "image_size": 16},
        "trainer": {"batch_size": 4, "microbatch": 4, "max_steps": 2, "eval_every": 2, "ckpt_every": 2,
                    "eval_nfe": 3},
        "run_dir": "unused",
    }


def write_run(run_dir: Path, task: dict | None = None, random: bool = True, ema_shift: float = 0.05, **model) -> Path:
    """An i2sb run directory (config.yaml + latest.pt) whose EMA weights differ from the raw ones."""
    cfg = to_train_config(train_config(task, **model))
    torch.manual_seed(0)
    unet = build_unet(cfg)
    if random:
        perturb(unet, 0.05, seed=1)
    ema = build_unet(cfg)
    ema.load_state_dict(unet.state_dict())
    if ema_shift:
        perturb(ema, ema_shift, seed=2)
    ckpt = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": 2, "model": unet.state_dict(),
            "ema": {"decay": 0.99, "num_updates": 2, "warmup": True, "state_dict": ema.state_dict()},
            "config": to_container(cfg)}
    save_torch(ckpt, run_dir / LATEST)
    return run_dir


def random_image(h: int, w: int, seed: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    return Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        sample_main([*args, "progress=false"])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
