"""The baselines as training methods of the I2SB trainer (``i2sb-train method=ddpm|palette task=...``).

* ``ddpm``: an unconditional ε-model on clean images (Ho et al. 2020, Algorithm 1, L_simple of Eq. 14); x1 is
  ignored. It is the prior of DDNM; validation restores with DDNM when the task is linear, else it shows
  unconditional samples (``val_psnr`` then measures nothing).
* ``palette``: the same loss with the degraded image concatenated to x_t (Saharia et al. 2022; in_channels 6,
  initialised from ADM as in the I2SB paper, App. C.1). For inpainting, as Palette's code does, the known
  pixels of x_t are the clean ones and the loss covers the hole only; restoration starts from N(0, I).

Both use ADM's linear schedule with ``task.n_steps`` steps (1000 by default).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .. import degrade
from ..diffusion import GaussianDiffusion
from ..methods import Pair, regression_loss
from .ddnm import DDNMOptions, ddnm_sample, measurement
from .networks import EpsDenoiser, make_eps_predictor
from .palette import palette_sample

DDPM_VALIDATION_ETA = 1.0  # DDPM ancestral steps for the validation samples


def degraded_image(pair: Pair) -> Tensor:
    """The degraded image without the extra x1 noise of ``add_x1_noise`` (``cond`` holds it when present)."""
    return pair.cond if pair.cond is not None else pair.x1


class _EpsMethod:
    """Shared by both baselines: ADM's Gaussian diffusion and the eps-prediction loss."""

    name = "eps"
    conditional = False

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.diffusion = GaussianDiffusion.linear(cfg.task.n_steps)
        self.n_steps = cfg.task.n_steps
        self.in_channels = 6 if self.conditional else 3

    def denoiser(self, net: nn.Module) -> nn.Module:
        return EpsDenoiser(net, conditional=self.conditional)

    def loss(self, model: nn.Module, pair: Pair, g: torch.Generator) -> Tensor:
        """Ho et al. Algorithm 1: t ~ U{1..N}, x_t = q_sample(t, x0, eps), || eps - eps_theta(x_t, t) ||^2."""
        x0, trainer = pair.x0, self.cfg.trainer
        step = torch.randint(1, self.n_steps + 1, (x0.shape[0],), generator=g, device=x0.device)
        noise = torch.randn(x0.shape, generator=g, device=x0.device, dtype=x0.dtype)
        xt = self.diffusion.q_sample(step, x0, noise)
        mask = pair.mask if self.conditional else None
        if mask is not None:  # Palette inpainting: clean known pixels in the input, loss on the hole
            xt = mask * xt + (1 - mask) * x0
        cond = degraded_image(pair) if self.conditional else None
        return regression_loss(model, xt, step, cond, noise, mask, trainer)


class DDPMMethod(_EpsMethod):
    """``method=ddpm``: the unconditional prior."""

    name = "ddpm"

    @torch.no_grad()
    def restore(self, model: nn.Module, pair: Pair, nfe: int, g: torch.Generator) -> Tensor:
        """DDNM with the task's operator if it is linear, else unconditional DDPM samples."""
        predict = make_eps_predictor(model, precision=self.cfg.trainer.precision)
        x_T = torch.randn(pair.x0.shape, generator=g, device=pair.x0.device)
        deg = self.degradation()
        if deg is None or not deg.is_linear:
            return self.diffusion.sample(predict, x_T, nfe, eta=DDPM_VALIDATION_ETA, generator=g)
        op = deg.operator(pair.mask)
        y = measurement(op, degraded_image(pair))
        return ddnm_sample(predict, self.diffusion, op, y, x_T, nfe, DDNMOptions(), generator=g)

    def degradation(self) -> Any:
        """The task's degradation at the training size, or None for paired data (no operator)."""
        t = self.cfg.task
        if t.degradation is None:
            return None
        return degrade.build(t.degradation, self.cfg.data.image_size, **dict(t.params))


class PaletteMethod(_EpsMethod):
    """``method=palette``: conditional diffusion from Gaussian noise."""

    name = "palette"
    conditional = True

    @torch.no_grad()
    def restore(self, model: nn.Module, pair: Pair, nfe: int, g: torch.Generator) -> Tensor:
        """DDPM ancestral sampling (the I2SB paper's Fig. 8 setting) conditioned on the degraded image."""
        predict = make_eps_predictor(model, degraded_image(pair), precision=self.cfg.trainer.precision)
        return palette_sample(predict, self.diffusion, degraded_image(pair), nfe, eta=1.0, mask=pair.mask,
                              generator=g)
