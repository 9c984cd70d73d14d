"""What every training method shares: boundary pairs made from a batch, the masked regression loss, the interface.

A method is EDM's loss object: built with its time distribution (``t_power``), it wraps a network in its denoiser
(:meth:`Method.denoiser`) and turns a microbatch of boundary pairs into a loss, ``method.loss(denoiser, pair,
generator)`` (Algorithm 1 for I2SB), reading the network through :meth:`~i2sb.core.denoiser.Denoiser.raw`. The
trainer only talks to this interface (autocast and memory layout are the denoiser's settings, chosen by the
trainer), so the baselines trained "with the same trainer" (a DDPM prior, Palette) plug in through
:data:`i2sb.methods.METHODS` without touching the loop. How a trained network restores is
:mod:`i2sb.restoration`'s business, not the method's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import TaskConfig
from ..core.boundary import bridge_boundary
from ..core.denoiser import Denoiser
from ..degrade import Degradation, build


@dataclass
class Pair:
    """One microbatch of boundary pairs on the device. Shapes (B, 3, H, W); mask (B, 1, H, W), 1 = hole;
    ``x1`` is what the bridge starts from (hole filled with noise, plus x1 noise), ``cond`` what the network
    is conditioned on (None without ``cond_x1``)."""

    x0: Tensor
    x1: Tensor
    mask: Tensor | None
    cond: Tensor | None


class Method(Protocol):
    """A training objective: its network input width, its denoiser and its loss."""

    name: str
    n_steps: int
    in_channels: int  # network input channels
    t_power: float  # the training steps' distribution (:func:`draw_steps`)

    def denoiser(self, net: nn.Module, **settings: Any) -> Denoiser:
        """``net`` in the method's x0-denoiser; ``settings`` as :class:`~i2sb.core.denoiser.Denoiser`'s."""

    def loss(self, denoiser: Denoiser, pair: Pair, generator: torch.Generator) -> Tensor:
        """The scalar loss of one microbatch, every draw from ``generator``."""


def draw_steps(low: int, high: int, batch: int, g: torch.Generator, device: torch.device,
               t_power: float = 1.0) -> Tensor:
    """Training steps in ``[low, high)``, a LongTensor (batch,) on ``device``.

    ``t_power = 1``: uniform, ``torch.randint`` (Algorithm 1's t ~ U; these exact draws keep old runs resumable).
    Otherwise ``step = low + floor(n u^(1 / t_power))`` with ``u ~ U(0, 1)`` and ``n = high - low``, so that
    ``P(step < low + s) = (s / n)^t_power``: a density growing as ``(step - low)^(t_power - 1)``, toward
    ``high`` (the end the samplers start from) for ``t_power > 1``.
    """
    if t_power == 1.0:
        return torch.randint(low, high, (batch,), generator=g, device=device)
    u = torch.rand(batch, generator=g, device=device)
    return (low + ((high - low) * u.pow(1.0 / t_power)).long()).clamp_(max=high - 1)


def task_degradation(task: TaskConfig, image_size: int) -> Degradation | None:
    """The task's degradation for (B, 3, image_size, image_size) batches; None for paired data (no operator)."""
    if task.degradation is None:
        return None
    return build(task.degradation, image_size, **dict(task.params))


def make_pair(batch: dict[str, Tensor], deg: Degradation | None, task: TaskConfig, g: torch.Generator,
              device: torch.device) -> Pair:
    """Clean batch (``x0``, or ``x0`` + ``x1`` for paired data) -> boundary pair on ``device``
    (authors' ``Runner.sample_batch``): degraded on the device, then :func:`~i2sb.core.boundary.bridge_boundary`."""
    x0 = batch["x0"].to(device, non_blocking=True)
    mask = None
    if "x1" in batch:
        x1 = batch["x1"].to(device, non_blocking=True)
    else:
        with torch.no_grad():
            x1, mask = deg(x0, generator=g)
    x1, cond = bridge_boundary(x1, mask, task.cond_x1, task.add_x1_noise, g)
    return Pair(x0, x1, mask, cond)


def regression_loss(pred: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
    """MSE of the network's output ``pred`` (in float32) to ``target`` (B, 3, H, W); on the hole only when ``mask``
    (B, 1, H, W) is given."""
    pred = pred.float()
    if mask is not None:
        pred, target = mask * pred, mask * target
    return F.mse_loss(pred, target)
