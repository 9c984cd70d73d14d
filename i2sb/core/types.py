"""Types shared by the math of the bridge, the samplers and the baselines."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

Predictor = Callable[[Tensor, Tensor], Tensor]
"""``predict_x0(xt, step) -> x0_hat``: ``xt`` (B,C,H,W), ``step`` LongTensor (B,) -> (B,C,H,W)."""

StepCallback = Callable[[int, int, Tensor, Tensor], None]
"""``callback(prev_step, step, x_prev, pred_x0)`` after every sampler step, e.g. a :class:`Trajectory`."""
