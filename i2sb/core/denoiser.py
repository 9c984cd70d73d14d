"""The x0-predicting denoiser: a U-Net with the authors' time input and optional x1 conditioning, -> x0 (Eq. 12)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .bridge import Bridge
from .layout import restoration_layout
from .precision import autocast
from .types import Predictor


class Denoiser(nn.Module):
    """``eps(X_t, t; theta)`` of Eq. 12 on top of any ``net(x, t_float) -> (B, 3, H, W)``.

    The network sees the authors' time input ``noise_levels[step]`` with
    ``noise_levels = linspace(t0, T, n_steps) * n_steps`` (NVlabs/I2SB ``Runner``), and, with ``cond_x1``,
    the degraded image concatenated along channels (``in_channels`` 6, paper Sec. 5.3).
    """

    def __init__(self, net: nn.Module, n_steps: int = 1000, t0: float = 1e-4, T: float = 1.0, cond_x1: bool = False):
        super().__init__()
        self.net = net
        self.cond_x1 = cond_x1
        self.register_buffer("noise_levels", torch.linspace(t0, T, n_steps) * n_steps, persistent=False)

    def forward(self, xt: Tensor, step: Tensor, cond: Tensor | None = None) -> Tensor:
        """``xt`` (B,3,H,W), ``step`` LongTensor (B,), ``cond`` (B,3,H,W) when ``cond_x1``. -> (B,3,H,W)."""
        if self.cond_x1:
            if cond is None:
                raise ValueError("this model is conditioned on x1 (cond_x1=True): pass cond=x1")
            xt = torch.cat([xt, cond.to(xt.dtype)], dim=1)
        return self.net(xt, self.noise_levels[step.to(self.noise_levels.device)])


def make_predictor(
    denoiser: Callable[..., Tensor],
    bridge: Bridge,
    cond: Tensor | None = None,
    clip_denoise: bool = False,
    precision: str = "fp32",
) -> Predictor:
    """``predict_x0(xt, step)`` for :meth:`Bridge.sample`: the network as :func:`restoration_forward`, Eq. 12
    inverted in ``xt``'s dtype."""
    cond = restoration_layout(cond)

    @torch.no_grad()
    def predict_x0(xt: Tensor, step: Tensor) -> Tensor:
        net_out = restoration_forward(denoiser, xt, step, cond, precision)
        return bridge.pred_x0(step, xt, net_out, clip_denoise=clip_denoise)

    return predict_x0


def restoration_forward(denoiser: Callable[..., Tensor], xt: Tensor, step: Tensor, cond: Tensor | None,
                        precision: str) -> Tensor:
    """``denoiser(xt, step, cond)`` under autocast with ``xt`` in :func:`restoration_layout` (``cond`` already
    in it: the predictors convert it once); (B, C, H, W) in ``xt``'s dtype, contiguous."""
    with autocast(xt.device, precision):
        out = denoiser(restoration_layout(xt), step, cond)
    return out.to(xt.dtype).contiguous()
