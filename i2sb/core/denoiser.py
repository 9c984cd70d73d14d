"""The x0-predicting denoiser ``denoiser(xt, step, cond=None) -> x0_hat`` around a network (EDM's ``EDMPrecond``).

A :class:`Denoiser` owns its parameterisation: how the network sees ``(xt, step, cond)`` and how its output
becomes x0. :class:`BridgeDenoiser` is I2SB's (Eq. 12, the authors' time input); the ε-networks of the
Gaussian-diffusion baselines are :class:`i2sb.baselines.eps.EpsDenoiser`. How the network is called -- autocast
precision, memory layout, clipping of x0, restoration's tiling and conditioning -- is fixed when the denoiser is
built (:meth:`Denoiser.configured`), never decided per call. The losses read the network's own output through
one path, :meth:`Denoiser.raw` (EDM's ``F_x``), so that training regresses exactly what the network outputs.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from .bridge import Bridge
from .precision import AUTOCAST_DTYPES

class Tiles(Protocol):
    """Restoration's tiling (:class:`i2sb.restoration.tiling.TiledDenoiser` around :meth:`Denoiser.net_call`):
    the network on overlapping tiles."""

    def whole(self, x: Tensor) -> bool:
        """Whether ``x`` (B, C, H, W) fits in one tile (the network then sees it directly)."""

    def __call__(self, xt: Tensor, step: Tensor, cond: Tensor | None) -> Tensor:
        """The network on the tiles of ``xt`` / ``cond``, blended into (B, C', H, W)."""


SETTINGS = ("precision", "channels_last", "clip_denoise", "cond", "tiles")


class Denoiser(nn.Module):
    """``denoiser(xt, step, cond=None) -> x0_hat`` around ``net(x, t) -> out``; subclasses give the
    parameterisation (:meth:`net_input`, :meth:`x0_from`).

    Settings (keyword arguments, or :meth:`configured` for a copy sharing the network):

    * ``precision``: fp32 | bf16 | fp16, the network's autocast (resolved: ``auto`` is decided by the caller,
      :func:`~i2sb.core.precision.resolve_precision`);
    * ``channels_last``: hand the network ``xt`` and ``cond`` in channels-last memory (oneDNN's CPU inference
      convolutions are faster on NHWC: restoration sets it on CPUs, training per ``trainer.channels_last``);
    * ``clip_denoise``: clamp x0 to [-1, 1];
    * ``cond``: the conditioning used when a call passes none (a restoration's degraded image);
    * ``tiles``: restoration's tiling of large images (:class:`Tiles`), None for whole images.
    """

    keep_channels: int | None = None  # the network's leading output channels in use (None: all)
    settings: tuple[str, ...] = SETTINGS  # what :meth:`configured` may replace

    def __init__(self, net: nn.Module, *, precision: str = "fp32", channels_last: bool = False,
                 clip_denoise: bool = False):
        super().__init__()
        self.net = net
        self.precision, self.channels_last, self.clip_denoise = precision, channels_last, clip_denoise
        self.cond: Tensor | None = None
        self.tiles: Tiles | None = None

    # ------------------------------------------------------------------ the parameterisation (subclasses)
    def net_input(self, xt: Tensor, step: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(x, t)`` the network is called with for ``xt`` (B, C, H, W) at ``step`` (B,) given ``cond``."""
        raise NotImplementedError

    def x0_from(self, step: Tensor, xt: Tensor, out: Tensor) -> Tensor:
        """x0_hat from the network's output ``out`` (in ``xt``'s dtype), before clipping."""
        raise NotImplementedError

    # ------------------------------------------------------------------ calls
    def forward(self, xt: Tensor, step: Tensor, cond: Tensor | None = None) -> Tensor:
        """x0_hat (B, C, H, W) in ``xt``'s dtype for ``xt`` (B, C, H, W) at ``step`` (LongTensor (B,)); ``cond``
        None: the bound conditioning. Differentiable (restoration calls it under ``torch.no_grad``)."""
        x, cond = self._layout(xt), self.cond if cond is None else self._layout(cond)
        with self._autocast(xt.device):
            whole = self.tiles is None or self.tiles.whole(x)
            out = self.net(*self.net_input(x, step, cond)) if whole else self.tiles(x, step, cond)
        x0 = self.x0_from(step, xt, self._as_input(out, xt))
        return x0.clamp(-1.0, 1.0) if self.clip_denoise else x0

    def output(self, xt: Tensor, step: Tensor, cond: Tensor | None = None) -> Tensor:
        """The network's output as :meth:`forward` reads it (tiled, in ``xt``'s dtype, contiguous), before it
        becomes x0: the ε of the Gaussian-diffusion samplers (:mod:`i2sb.baselines`), which step with it."""
        x, cond = self._layout(xt), self.cond if cond is None else self._layout(cond)
        with self._autocast(xt.device):
            whole = self.tiles is None or self.tiles.whole(x)
            out = self.net(*self.net_input(x, step, cond)) if whole else self.tiles(x, step, cond)
        return self._as_input(out, xt)

    def raw(self, xt: Tensor, step: Tensor, cond: Tensor | None = None) -> Tensor:
        """The network's own output (B, C, H, W) for ``xt`` at ``step``: Eq. 12's ε for the bridge, ε for the
        baselines; under this denoiser's autocast and layout, in the dtype the network computed it in. The one
        path the training losses read the network through (their targets are in this parameterisation). Only
        ``xt`` takes the denoiser's layout; ``cond`` is used as given (the network's input keeps the layout
        training has always had)."""
        with self._autocast(xt.device):
            out = self.net(*self.net_input(self._layout(xt), step, cond))
        return out if self.keep_channels is None else out[:, :self.keep_channels]

    def _as_input(self, out: Tensor, xt: Tensor) -> Tensor:
        """The network's output channels in use, in ``xt``'s dtype and NCHW-contiguous (as ``xt``)."""
        out = out if self.keep_channels is None else out[:, :self.keep_channels]
        return out.to(xt.dtype).contiguous()

    def net_call(self, xt: Tensor, step: Tensor, cond: Tensor | None = None) -> Tensor:
        """One network evaluation on (a tile of) ``xt``, in the layout and autocast the caller set (what
        :class:`Tiles` evaluates per tile)."""
        return self.net(*self.net_input(xt, step, cond))

    # ------------------------------------------------------------------ settings, fixed when built
    def configured(self, **settings: Any) -> "Denoiser":
        """A copy sharing the network (and its parameters) with ``settings`` (see the class) replaced."""
        unknown = set(settings) - set(self.settings)
        if unknown:
            raise TypeError(f"unknown denoiser settings: {', '.join(sorted(unknown))}")
        new = copy.copy(self)
        for name, value in settings.items():
            object.__setattr__(new, name, value)
        if "cond" in settings or "channels_last" in settings:
            object.__setattr__(new, "cond", new._layout(new.cond))
        return new

    def _layout(self, x: Tensor | None) -> Tensor | None:
        """``x`` in the memory layout the network is handed: channels-last (4-D tensors) with ``channels_last``."""
        if x is None or not self.channels_last or x.dim() != 4:
            return x
        return x.contiguous(memory_format=torch.channels_last)

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        dtype = AUTOCAST_DTYPES[self.precision]
        return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


class BridgeDenoiser(Denoiser):
    """I2SB's x0-denoiser: ``x0_hat = xt - std_fwd[step] * eps(xt, step)`` (Eq. 12 inverted) on top of any
    ``net(x, t_float) -> (B, 3, H, W)`` predicting Eq. 12's ε.

    The network sees the authors' time input ``noise_levels[step]`` with ``noise_levels = linspace(t0, T, n_steps)
    * n_steps`` (NVlabs/I2SB ``Runner``), and, with ``cond_x1``, the degraded image concatenated along channels
    (``in_channels`` 6, paper Sec. 5.3): ``cond`` must then be given (or bound).
    """

    def __init__(self, net: nn.Module, bridge: Bridge, t0: float = 1e-4, T: float = 1.0, cond_x1: bool = False,
                 **settings: Any):
        super().__init__(net, **settings)
        self.bridge, self.cond_x1 = bridge, cond_x1
        n_steps = bridge.n_steps
        self.register_buffer("noise_levels", torch.linspace(t0, T, n_steps) * n_steps, persistent=False)

    def net_input(self, xt: Tensor, step: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        x = torch.cat([xt, cond.to(xt.dtype)], dim=1) if self.cond_x1 else xt
        return x, self.noise_levels[step.to(self.noise_levels.device)]

    def x0_from(self, step: Tensor, xt: Tensor, out: Tensor) -> Tensor:
        return xt - self.bridge.coef("std_fwd", step, xt) * out  # Eq. 12 inverted (Bridge.pred_x0)
