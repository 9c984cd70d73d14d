"""IBMD's alternation (its Algorithm 1): ``aux_steps`` bridge-matching updates, then one generator update.

Every update draws its own batch of degraded images ``(x1, cond)`` -- no clean image is ever needed --
and its own ``z``, steps and bridge noise. Defaults follow IBMD's I2SB runs (its Table 7): 5 auxiliary
updates per generator update, the same learning rate (5e-5) for both. :func:`aux_step` and
:func:`student_step` return losses and leave backward/optimiser to the caller (so a training loop can add
mixed precision, gradient accumulation, DDP and EMA); :func:`ibmd_iteration` is the plain composition.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ..core.bridge import Bridge
from .generator import Generator, draw_pair
from .objective import X0Predictor, aux_loss, student_loss

AUX_STEPS = 5  # IBMD Table 7: bridge/student gradient-update ratio 5:1 for every I2SB task
Degraded = tuple[Tensor, "Tensor | None"]
"""A batch of degraded images: ``(x1, cond)``, (B, C, H, W) each; ``cond`` is x1 for x1-conditioned models."""


@contextmanager
def frozen(*models: object):
    """Parameters of the ``nn.Module`` among ``models`` excluded from autograd inside the block (restored after).

    Forward passes inside build no graph into them, so a backward afterwards fills no ``.grad`` of theirs
    while gradients still flow through their inputs.
    """
    params = [p for m in models if isinstance(m, nn.Module) for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def draw_loss_steps(bridge: Bridge, batch: int, end_step: Tensor | None, generator: torch.Generator | None,
                    device: torch.device) -> Tensor:
    """Bridge steps for the losses, (batch,) LongTensor: uniform on ``0 .. N-1`` (Algorithm 1), or on
    ``0 .. end_step - 1`` per sample for a K-step student's pair ending at ``end_step``."""
    gen_device = generator.device if generator is not None else device
    if end_step is None:
        return torch.randint(0, bridge.n_steps, (batch,), generator=generator, device=gen_device).to(device)
    u = torch.rand(batch, generator=generator, device=gen_device).to(device)
    return (u * end_step).long().clamp_(max=end_step - 1)


def aux_step(aux: X0Predictor, G: Generator, bridge: Bridge, batch: Degraded, steps: list[int], *,
             generator: torch.Generator | None = None, weighting: str = "eps") -> Tensor:
    """Bridge matching of ``aux`` on a fresh pair of the student (no gradient into G); a scalar loss."""
    x1, cond = batch
    with torch.no_grad():
        x0, x_end, end_step = draw_pair(G, bridge, x1, cond, steps, generator)
    step = draw_loss_steps(bridge, x1.shape[0], end_step, generator, x1.device)
    return aux_loss(aux, bridge, x0, x_end, step, cond, end_step=end_step, generator=generator,
                    weighting=weighting)


def student_step(G: Generator, teacher: X0Predictor, aux: X0Predictor, bridge: Bridge, batch: Degraded,
                 steps: list[int], *, generator: torch.Generator | None = None,
                 weighting: str = "eps") -> tuple[Tensor, Tensor]:
    """IBMD's generator loss on a fresh pair, teacher and aux frozen; ``(loss, gap)`` (:func:`student_loss`)."""
    x1, cond = batch
    x0, x_end, end_step = draw_pair(G, bridge, x1, cond, steps, generator)
    step = draw_loss_steps(bridge, x1.shape[0], end_step, generator, x1.device)
    with frozen(teacher, aux):
        return student_loss(teacher, aux, bridge, x0, x_end, step, cond, end_step=end_step,
                            generator=generator, weighting=weighting)


def ibmd_iteration(G: nn.Module, aux: nn.Module, teacher: X0Predictor, bridge: Bridge, batches: Iterator[Degraded],
                   opt_G: torch.optim.Optimizer, opt_aux: torch.optim.Optimizer, steps: list[int], *,
                   aux_steps: int = AUX_STEPS, generator: torch.Generator | None = None,
                   weighting: str = "eps") -> dict[str, float]:
    """One iteration of IBMD's Algorithm 1: ``aux_steps`` updates of ``aux``, then one of ``G``.

    Returns ``{"aux_loss", "student_loss", "gap"}`` (the last auxiliary loss, the generator's loss and
    ``w ||D* - f||^2``, the objective's value were ``aux`` exact).
    """
    for _ in range(aux_steps):
        opt_aux.zero_grad(set_to_none=True)
        loss_aux = aux_step(aux, G, bridge, next(batches), steps, generator=generator, weighting=weighting)
        loss_aux.backward()
        opt_aux.step()
    opt_G.zero_grad(set_to_none=True)
    loss, gap = student_step(G, teacher, aux, bridge, next(batches), steps, generator=generator,
                             weighting=weighting)
    loss.backward()
    opt_G.step()
    return {"aux_loss": float(loss_aux.detach()) if aux_steps else float("nan"), "student_loss": float(loss.detach()),
            "gap": float(gap)}
