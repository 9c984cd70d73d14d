"""I2SB's training objective (Algorithm 1): X_t ~ q(X_t | X_0, X_1) (Eq. 11), regress Eq. 12's target."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch
from torch import Tensor, nn

from ..config import TaskConfig
from ..core.bridge import Bridge
from ..core.denoiser import BridgeDenoiser, Denoiser
from ..nets.unet import input_channels
from .base import Pair, draw_steps, regression_loss


class BridgeMethod:
    """``method=i2sb`` (the default): the bridge of ``task`` (its schedule and ``ot_ode``), training steps drawn
    with ``t_power`` (:func:`draw_steps`)."""

    name = "i2sb"

    def __init__(self, task: TaskConfig, t_power: float = 1.0):
        self.task, self.t_power = task, t_power
        self.n_steps = task.n_steps
        self.in_channels = input_channels(task.cond_x1)

    @cached_property
    def bridge(self) -> Bridge:
        """The schedule, built on first use (a method is also asked only for its network's input width)."""
        return Bridge.symmetric(self.task.n_steps, self.task.beta_max)

    def denoiser(self, net: nn.Module, **settings: Any) -> BridgeDenoiser:
        """``net`` with the authors' time input and optional x1 conditioning (:class:`BridgeDenoiser`)."""
        t = self.task
        return BridgeDenoiser(net, self.bridge, t.t0, t.T, t.cond_x1, **settings)

    def loss(self, denoiser: Denoiser, pair: Pair, generator: torch.Generator) -> Tensor:
        """Algorithm 1, lines 3–5: t ~ U (``t_power`` > 1: skewed toward t = 1, :func:`draw_steps`),
        X_t ~ q(X_t|X_0,X_1) (Eq. 11), MSE of the network's ε to Eq. 12; holes only for inpainting."""
        x0 = pair.x0
        step = draw_steps(0, self.n_steps, x0.shape[0], generator, x0.device, self.t_power)
        xt = self.bridge.q_sample(step, x0, pair.x1, ot_ode=self.task.ot_ode, generator=generator)
        target = self.bridge.target(step, x0, xt)
        return regression_loss(denoiser.raw(xt, step, pair.cond), target, pair.mask)
