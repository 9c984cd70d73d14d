"""I2SB's training objective (Algorithm 1): X_t ~ q(X_t | X_0, X_1) (Eq. 11), regress Eq. 12's target."""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor, nn

from ..config import TaskConfig
from ..core.bridge import Bridge
from ..core.denoiser import Denoiser
from ..nets.unet import input_channels
from .base import Pair, draw_steps, regression_loss


class BridgeMethod:
    """``method=i2sb`` (the default): the bridge of ``task`` (its schedule and ``ot_ode``)."""

    name = "i2sb"

    def __init__(self, task: TaskConfig):
        self.task = task
        self.n_steps = task.n_steps
        self.in_channels = input_channels(task.cond_x1)

    @cached_property
    def bridge(self) -> Bridge:
        """The schedule, built on first use (a method is also asked only for its network's input width)."""
        return Bridge.symmetric(self.task.n_steps, self.task.beta_max)

    def denoiser(self, net: nn.Module) -> nn.Module:
        """``net`` with the authors' time input and optional x1 conditioning (:class:`Denoiser`)."""
        t = self.task
        return Denoiser(net, t.n_steps, t.t0, t.T, t.cond_x1)

    def loss(self, model: nn.Module, pair: Pair, g: torch.Generator, precision: str = "fp32",
             channels_last: bool = False, t_power: float = 1.0) -> Tensor:
        """Algorithm 1, lines 3–5: t ~ U (``t_power`` > 1: skewed toward t = 1, :func:`draw_steps`),
        X_t ~ q(X_t|X_0,X_1) (Eq. 11), MSE to Eq. 12; holes only for inpainting."""
        x0 = pair.x0
        step = draw_steps(0, self.n_steps, x0.shape[0], g, x0.device, t_power)
        xt = self.bridge.q_sample(step, x0, pair.x1, ot_ode=self.task.ot_ode, generator=g)
        target = self.bridge.target(step, x0, xt)
        return regression_loss(model, xt, step, pair.cond, target, pair.mask, precision, channels_last)
