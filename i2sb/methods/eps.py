"""The baselines as training methods of the I2SB trainer (``i2sb-train method=ddpm|palette task=...``).

* ``ddpm``: an unconditional ε-model on clean images (Ho et al. 2020, Algorithm 1, L_simple of Eq. 14); x1 is
  ignored. It is the prior of DDNM (:func:`i2sb.restoration.algorithms.ddnm_restoration`).
* ``palette``: the same loss with the degraded image concatenated to x_t (Saharia et al. 2022; in_channels 6,
  initialised from ADM as in the I2SB paper, App. C.1). For inpainting, as Palette's code does, the known
  pixels of x_t are the clean ones and the loss covers the hole only; restoration starts from N(0, I).

Both use ADM's linear schedule with ``task.n_steps`` steps (1000 by default).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch
from torch import Tensor, nn

from ..baselines.eps import EpsDenoiser
from ..baselines.gaussian import GaussianDiffusion
from ..config import TaskConfig
from ..core.denoiser import Denoiser
from ..nets.unet import input_channels
from .base import Pair, draw_steps, regression_loss


def degraded_image(pair: Pair) -> Tensor:
    """The degraded image without the extra x1 noise of ``add_x1_noise`` (``cond`` holds it when present)."""
    return pair.cond if pair.cond is not None else pair.x1


class EpsMethod:
    """The baselines' objective: ADM's Gaussian diffusion and the eps-prediction loss, unconditional (``ddpm``)
    or conditioned on the degraded image (``palette``); training steps drawn with ``t_power``."""

    def __init__(self, task: TaskConfig, conditional: bool, t_power: float = 1.0):
        self.task, self.conditional, self.t_power = task, conditional, t_power
        self.name = "palette" if conditional else "ddpm"
        self.n_steps = task.n_steps
        self.in_channels = input_channels(conditional)

    @cached_property
    def diffusion(self) -> GaussianDiffusion:
        """ADM's linear schedule with ``task.n_steps`` steps, built on first use."""
        return GaussianDiffusion.linear(self.n_steps)

    def denoiser(self, net: nn.Module, **settings: Any) -> EpsDenoiser:
        return EpsDenoiser(net, self.conditional, self.diffusion, **settings)

    def loss(self, denoiser: Denoiser, pair: Pair, generator: torch.Generator) -> Tensor:
        """Ho et al. Algorithm 1: t ~ U{1..N} (``t_power`` > 1: skewed toward N, :func:`draw_steps`),
        x_t = q_sample(t, x0, eps), || eps - eps_theta(x_t, t) ||^2."""
        x0, g = pair.x0, generator
        step = draw_steps(1, self.n_steps + 1, x0.shape[0], g, x0.device, self.t_power)
        noise = torch.randn(x0.shape, generator=g, device=x0.device, dtype=x0.dtype)
        xt = self.diffusion.q_sample(step, x0, noise)
        mask = pair.mask if self.conditional else None
        if mask is not None:  # Palette inpainting: clean known pixels in the input, loss on the hole
            xt = mask * xt + (1 - mask) * x0
        cond = degraded_image(pair) if self.conditional else None
        return regression_loss(denoiser.raw(xt, step, cond), noise, mask)


def ddpm_method(task: TaskConfig, t_power: float = 1.0) -> EpsMethod:
    """``method=ddpm``: the unconditional prior (x1 is ignored)."""
    return EpsMethod(task, conditional=False, t_power=t_power)


def palette_method(task: TaskConfig, t_power: float = 1.0) -> EpsMethod:
    """``method=palette``: conditional diffusion from Gaussian noise."""
    return EpsMethod(task, conditional=True, t_power=t_power)
