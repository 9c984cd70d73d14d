"""Recording a sampler's intermediate states (a step callback)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Trajectory:
    """Callback for :meth:`Bridge.sample` that records states at chosen steps.

    After sampling, ``steps[i]`` is the step index reached, ``xs[i]`` the state ``X_{steps[i]}`` and
    ``pred_x0s[i]`` the network's prediction of ``X_0`` that produced it (all on ``device``), ordered
    from the degraded end to the clean end. ``log_steps=None`` records every step.
    """

    log_steps: Sequence[int] | None = None
    device: torch.device | str = "cpu"
    steps: list[int] = field(default_factory=list)
    xs: list[Tensor] = field(default_factory=list)
    pred_x0s: list[Tensor] = field(default_factory=list)

    def __call__(self, prev_step: int, step: int, xt: Tensor, pred_x0: Tensor) -> None:
        if self.log_steps is None or prev_step in self.log_steps:
            self.steps.append(prev_step)
            self.xs.append(xt.detach().to(self.device))
            self.pred_x0s.append(pred_x0.detach().to(self.device))

    def stacked(self) -> tuple[Tensor, Tensor]:
        """``(xs, pred_x0s)`` as tensors (B, T, C, H, W), T ordered as ``steps``."""
        return torch.stack(self.xs, dim=1), torch.stack(self.pred_x0s, dim=1)
