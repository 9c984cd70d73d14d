"""Palette-style conditional diffusion (Saharia et al., 2022) as the I2SB paper's baseline (App. C.1).

The ε-network sees ``cat([x_t, x1])`` (x1 = the degraded image) and sampling starts from N(0, I): the same
network, steps and sampler as I2SB, only the boundary distribution differs (I2SB paper Sec. 5.2, Fig. 8).
For inpainting the known pixels of the state are the clean ones at every step (Palette's ``restoration``:
``y_t = y_0 (1 - mask) + mask y_t``), matching its training input.
"""

from __future__ import annotations

from functools import partial

from torch import Tensor

from ..core.boundary import keep_known
from ..core.noise import Generators, randn
from ..core.types import StepCallback
from .gaussian import EpsPredictor, GaussianDiffusion


def palette_sample(
    predict_eps: EpsPredictor,
    diffusion: GaussianDiffusion,
    x1: Tensor,
    nfe: int,
    eta: float = 1.0,
    mask: Tensor | None = None,
    clip_denoise: bool = False,
    generator: Generators = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """Restore ``x1`` (B, 3, H, W): ``nfe`` DDIM-η steps (eta=1: DDPM) from x_T ~ N(0, I).

    ``predict_eps`` must already hold the conditioning (``make_eps_predictor(denoiser, cond)``); ``x1`` only
    provides the known pixels when ``mask`` (B or 1, 1, H, W), 1 = hole, is given.
    """
    x_T = randn(x1, generator)
    constrain = None
    if mask is not None:
        constrain = partial(keep_known, known=x1, mask=mask.to(device=x1.device, dtype=x1.dtype))

    return diffusion.sample(predict_eps, x_T, nfe, eta=eta, clip_denoise=clip_denoise, generator=generator,
                            callback=callback, constrain=constrain)
