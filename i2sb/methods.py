"""Training methods the trainer can run: the I2SB bridge (default) and, registered by other modules, baselines.

A method turns a batch of boundary pairs into a loss (training) and a degraded batch into a restoration
(validation / sampling). The trainer only talks to this interface, so baselines trained "with the same
trainer" (e.g. a DDPM prior or Palette) plug in through :data:`METHODS` without touching the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bridge import Bridge
from .denoiser import Denoiser, autocast, make_predictor


@dataclass
class Pair:
    """One microbatch of boundary pairs on the device. Shapes (B, 3, H, W); mask (B, 1, H, W), 1 = hole."""

    x0: Tensor
    x1: Tensor
    mask: Tensor | None
    cond: Tensor | None


def regression_loss(model: nn.Module, xt: Tensor, step: Tensor, cond: Tensor | None, target: Tensor,
                    mask: Tensor | None, trainer: Any) -> Tensor:
    """MSE of ``model(xt, step, cond)`` (autocast per ``trainer.precision``, float32 loss) to ``target``;
    on the hole only when ``mask`` (B, 1, H, W) is given. ``xt``/``target`` (B, 3, H, W), ``step`` (B,)."""
    if trainer.channels_last:
        xt = xt.contiguous(memory_format=torch.channels_last)
    with autocast(xt.device, trainer.precision):
        pred = model(xt, step, cond)
    pred = pred.float()
    if mask is not None:
        pred, target = mask * pred, mask * target
    return F.mse_loss(pred, target)


class Method(Protocol):
    name: str
    n_steps: int
    in_channels: int  # network input channels

    def denoiser(self, net: nn.Module) -> nn.Module: ...

    def loss(self, model: nn.Module, pair: Pair, g: torch.Generator) -> Tensor: ...

    def restore(self, model: nn.Module, pair: Pair, nfe: int, g: torch.Generator) -> Tensor: ...


class BridgeMethod:
    """I2SB: Algorithm 1 for training, Algorithm 2 for restoration."""

    name = "i2sb"

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.bridge = Bridge.symmetric(cfg.task.n_steps, cfg.task.beta_max)
        self.n_steps = cfg.task.n_steps
        self.in_channels = 6 if cfg.task.cond_x1 else 3

    def denoiser(self, net: nn.Module) -> nn.Module:
        """``net`` with the authors' time input and optional x1 conditioning (:class:`Denoiser`)."""
        t = self.cfg.task
        return Denoiser(net, t.n_steps, t.t0, t.T, t.cond_x1)

    def loss(self, model: nn.Module, pair: Pair, g: torch.Generator) -> Tensor:
        """Algorithm 1, lines 3–5: t ~ U, X_t ~ q(X_t|X_0,X_1) (Eq. 11), MSE to Eq. 12; holes only for inpainting."""
        x0, trainer = pair.x0, self.cfg.trainer
        step = torch.randint(0, self.n_steps, (x0.shape[0],), generator=g, device=x0.device)
        xt = self.bridge.q_sample(step, x0, pair.x1, ot_ode=self.cfg.task.ot_ode, generator=g)
        return regression_loss(model, xt, step, pair.cond, self.bridge.target(step, x0, xt), pair.mask, trainer)

    @torch.no_grad()
    def restore(self, model: nn.Module, pair: Pair, nfe: int, g: torch.Generator) -> Tensor:
        predictor = make_predictor(model, self.bridge, pair.cond, precision=self.cfg.trainer.precision)
        return self.bridge.sample(predictor, pair.x1, nfe, ot_ode=self.cfg.task.ot_ode, mask=pair.mask, generator=g)


def _ddpm(cfg: Any) -> Method:
    """The unconditional DDPM prior of DDNM (``i2sb.baselines.methods``, imported on first use)."""
    from .baselines.methods import DDPMMethod

    return DDPMMethod(cfg)


def _palette(cfg: Any) -> Method:
    """Palette-style conditional diffusion (``i2sb.baselines.methods``, imported on first use)."""
    from .baselines.methods import PaletteMethod

    return PaletteMethod(cfg)


METHODS: dict[str, Callable[[Any], Method]] = {"i2sb": BridgeMethod, "ddpm": _ddpm, "palette": _palette}


def build_method(cfg: Any) -> Method:
    """The method named ``cfg.method`` (registry :data:`METHODS`)."""
    if cfg.method not in METHODS:
        raise ValueError(f"config key 'method': unknown method '{cfg.method}'; valid: {', '.join(METHODS)}")
    return METHODS[cfg.method](cfg)
