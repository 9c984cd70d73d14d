"""ε-networks of the Gaussian-diffusion baselines: the ADM time input and optional conditioning (the analogue of
:mod:`i2sb.core.denoiser` for eps-prediction)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core.denoiser import restoration_forward
from ..core.layout import restoration_layout
from ..nets.unet import IMAGE_CHANNELS
from .gaussian import EpsPredictor


class EpsDenoiser(nn.Module):
    """``eps(x_t, t)`` on top of an ADM U-Net, as guided-diffusion calls it.

    The network sees the 0-based ADM timestep ``t - 1`` (``rescale_timesteps=False``; our states are 1-based,
    see :mod:`i2sb.baselines.gaussian`) and, with ``cond``, the degraded image concatenated after ``x_t`` (Palette,
    in_channels 6; the ADM weights then act on x_t, the extra channels are new, I2SB paper App. C.1).
    Only the first 3 output channels are used (ADM's learned-variance checkpoints have 6: eps, then variance).
    """

    def __init__(self, net: nn.Module, conditional: bool = False):
        super().__init__()
        self.net = net
        self.conditional = conditional
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # follows .to(device)

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    def forward(self, xt: Tensor, step: Tensor, cond: Tensor | None = None) -> Tensor:
        """``xt`` (B,3,H,W), ``step`` LongTensor (B,) in 1..N, ``cond`` (B,3,H,W) iff conditional -> (B,3,H,W)."""
        if self.conditional != (cond is not None):
            raise ValueError("this eps-network is " + ("conditional: pass cond (the degraded image)"
                                                       if self.conditional else "unconditional: cond must be None"))
        x = torch.cat([xt, cond.to(xt.dtype)], dim=1) if cond is not None else xt
        return self.net(x, (step - 1).to(torch.float32))[:, :IMAGE_CHANNELS]


def make_eps_predictor(denoiser: nn.Module, cond: Tensor | None = None, precision: str = "fp32") -> EpsPredictor:
    """``predict_eps(xt, step)`` for :meth:`GaussianDiffusion.sample`: the network under autocast, output in xt's dtype."""

    cond = restoration_layout(cond)

    @torch.no_grad()
    def predict_eps(xt: Tensor, step: Tensor) -> Tensor:
        return restoration_forward(denoiser, xt, step, cond, precision)

    return predict_eps
