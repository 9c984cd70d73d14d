"""Small shared builders for tests: tiny configs, parameter noise, toy predictors and restorers."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from i2sb.config import TaskConfig
from i2sb.core.bridge import Bridge
from i2sb.core.denoiser import Denoiser
from i2sb.restoration import Restorer
from i2sb.restoration.algorithms import BridgeRestoration

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
    denoiser = Denoiser(net, t.n_steps, t.t0, t.T, t.cond_x1).eval()
    return Restorer(denoiser, BridgeRestoration(Bridge.symmetric(t.n_steps, t.beta_max), t), t, image_size)
