"""Glue between a U-Net and the bridge: step -> network time, optional x1 concat, output -> x0."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .bridge import Bridge, Predictor

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bfloat16 natively (CUDA with bf16 support; CPUs with AVX512-BF16 or AMX)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto`` -> ``bf16`` where :func:`native_bf16`, else ``fp32``; other values are returned unchanged."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"precision must be auto or one of {', '.join(AUTOCAST_DTYPES)}, got '{precision}'")
    return precision


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``precision`` in auto | fp32 | bf16 | fp16 (fp32: no-op; auto: :func:`resolve_precision`)."""
    dtype = AUTOCAST_DTYPES[resolve_precision(precision, device)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def make_predictor(
    denoiser: Callable[..., Tensor],
    bridge: Bridge,
    cond: Tensor | None = None,
    clip_denoise: bool = False,
    precision: str = "fp32",
) -> Predictor:
    """``predict_x0(xt, step)`` for :meth:`Bridge.sample`: network under autocast, Eq. 12 inverted in ``xt``'s dtype."""

    @torch.no_grad()
    def predict_x0(xt: Tensor, step: Tensor) -> Tensor:
        with autocast(xt.device, precision):
            net_out = denoiser(xt, step, cond)
        return bridge.pred_x0(step, xt, net_out.to(xt.dtype), clip_denoise=clip_denoise)

    return predict_x0
