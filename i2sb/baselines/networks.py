"""ε-networks of the Gaussian-diffusion baselines: the ADM time input, optional conditioning, ADM checkpoints."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import load_file
from ..denoiser import autocast
from ..diffusion import EpsPredictor
from ..unet import adm256_kwargs

ADM_KEY = "input_blocks.0.0.weight"
ADM_STEPS = 1000  # guided-diffusion's models: 1000 linear steps
ADM_DEFAULT_NFE = 100  # DDNM's default T_sampling


class EpsDenoiser(nn.Module):
    """``eps(x_t, t)`` on top of an ADM U-Net, as guided-diffusion calls it.

    The network sees the 0-based ADM timestep ``t - 1`` (``rescale_timesteps=False``; our states are 1-based,
    see :mod:`i2sb.diffusion`) and, with ``cond``, the degraded image concatenated after ``x_t`` (Palette,
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
        return self.net(x, (step - 1).to(torch.float32))[:, :3]


def make_eps_predictor(denoiser: nn.Module, cond: Tensor | None = None, precision: str = "fp32") -> EpsPredictor:
    """``predict_eps(xt, step)`` for :meth:`GaussianDiffusion.sample`: the network under autocast, output in xt's dtype."""

    @torch.no_grad()
    def predict_eps(xt: Tensor, step: Tensor) -> Tensor:
        with autocast(xt.device, precision):
            eps = denoiser(xt, step, cond)
        return eps.to(xt.dtype)

    return predict_eps


def adm_state_dict(obj: dict[str, Any], source: str) -> dict[str, Tensor]:
    """The U-Net state_dict inside a guided-diffusion checkpoint (plain, or under ``state_dict``)."""
    state = obj.get("state_dict", obj) if ADM_KEY not in obj else obj
    if not isinstance(state, dict) or ADM_KEY not in state:
        raise ValueError(f"{source}: not a guided-diffusion U-Net state_dict (no '{ADM_KEY}')")
    return state


def is_adm_checkpoint(obj: dict[str, Any]) -> bool:
    """True for a guided-diffusion checkpoint (a bare U-Net state_dict)."""
    return ADM_KEY in obj or (isinstance(obj.get("state_dict"), dict) and ADM_KEY in obj["state_dict"])


def adm_prior_kwargs(state: dict[str, Tensor], overrides: dict[str, Any], source: str) -> dict[str, Any]:
    """U-Net arguments of an unconditional ADM checkpoint: ADM-256 <- read off the weights <- ``overrides``;
    ``out_channels`` 3 (eps only)."""
    from ..authors import infer_unet_kwargs  # the structure reader of the authors' checkpoints

    kwargs = {**adm256_kwargs(False), **infer_unet_kwargs(state, source), **overrides, "out_channels": 3}
    if kwargs.get("num_classes") is not None:
        raise ValueError(f"{source}: a class-conditional ADM ({kwargs['num_classes']} classes); DDNM here needs "
                         f"the unconditional one (256x256_diffusion_uncond.pt)")
    if kwargs["in_channels"] != 3:
        raise ValueError(f"{source}: the network takes {kwargs['in_channels']} input channels; a prior takes 3")
    return kwargs


def adm_prior_spec(obj: dict[str, Any], overrides: dict[str, Any], source: str):
    """A guided-diffusion checkpoint as the :class:`~i2sb.restore.RunSpec` of a ``method=ddpm`` prior
    (variance rows of the output layer dropped, ADM's 1000-step schedule, no task of its own)."""
    from ..config import TaskConfig
    from ..restore import RunSpec

    state = adm_state_dict(obj, source)
    kwargs = adm_prior_kwargs(state, overrides, source)
    weights = {k: (v[:3] if k in ("out.2.weight", "out.2.bias") else v) for k, v in state.items()}
    task = asdict(TaskConfig(name="adm_prior", n_steps=ADM_STEPS))
    return RunSpec(kwargs, weights, task, int(kwargs["image_size"]), ADM_DEFAULT_NFE, "ddpm")


def load_adm_prior(path: str | Path, device: torch.device | str = "cpu", **unet_overrides: Any) -> EpsDenoiser:
    """guided-diffusion's unconditional ADM (e.g. ``256x256_diffusion_uncond.pt``) as an :class:`EpsDenoiser`.

    The architecture is read off the weights (head layout: ADM-256's ``num_head_channels=64`` unless
    overridden); the variance rows of the output layer are dropped. The matching schedule is
    ``GaussianDiffusion.linear(1000)``. Eval mode, float32, on ``device``.
    """
    from ..restore import build_network

    spec = adm_prior_spec(load_file(path), unet_overrides, str(path))
    return EpsDenoiser(build_network(spec, device, str(path))).to(device).eval()
