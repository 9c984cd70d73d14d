"""The ε-denoiser of the Gaussian-diffusion baselines: ADM's time input, optional conditioning, x0 by Ho Eq. 15
(the analogue of :class:`i2sb.core.denoiser.BridgeDenoiser` for ε-prediction)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..core.denoiser import SETTINGS, Denoiser
from ..nets.unet import IMAGE_CHANNELS
from .gaussian import GaussianDiffusion


class EpsDenoiser(Denoiser):
    """``x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)`` on top of an ADM U-Net predicting ε,
    called as guided-diffusion calls it.

    The network sees the 0-based ADM timestep ``t - 1`` (``rescale_timesteps=False``; our states are 1-based,
    see :mod:`i2sb.baselines.gaussian`) and, when ``conditional``, the degraded image ``cond`` concatenated after
    ``x_t`` (Palette, in_channels 6; the ADM weights then act on x_t, the extra channels are new, I2SB paper
    App. C.1); ``cond`` must be None otherwise. Only the first 3 output channels are used (ADM's learned-variance
    checkpoints have 6: eps, then variance). ``diffusion`` (a setting, see :meth:`Denoiser.configured`) is the
    schedule x0 is computed on; the samplers of :mod:`i2sb.baselines` step with the ε itself
    (:meth:`Denoiser.output`) and need none.
    """

    keep_channels = IMAGE_CHANNELS
    settings = (*SETTINGS, "diffusion")

    def __init__(self, net: nn.Module, conditional: bool = False, diffusion: GaussianDiffusion | None = None,
                 **settings: Any):
        super().__init__(net, **settings)
        self.conditional, self.diffusion = conditional, diffusion
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # follows .to(device)

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    def net_input(self, xt: Tensor, step: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        x = torch.cat([xt, cond.to(xt.dtype)], dim=1) if self.conditional else xt
        return x, (step - 1).to(torch.float32)

    def x0_from(self, step: Tensor, xt: Tensor, out: Tensor) -> Tensor:
        if self.diffusion is None:
            raise ValueError("this EpsDenoiser has no diffusion to predict x0 on: build it with diffusion=")
        return self.diffusion.pred_x0(step, xt, out)  # Ho Eq. 15 rearranged
