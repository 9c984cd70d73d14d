"""Types shared by the math of the bridge, the samplers and the baselines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from torch import Tensor

Predictor = Callable[[Tensor, Tensor], Tensor]
"""``denoiser(xt, step) -> x0_hat``: ``xt`` (B,C,H,W), ``step`` LongTensor (B,) -> (B,C,H,W). Any x0-predicting
:class:`~i2sb.core.denoiser.Denoiser` (its conditioning bound) or a plain function."""

StepCallback = Callable[[int, int, Tensor, Tensor], None]
"""``callback(prev_step, step, x_prev, pred_x0)`` after every sampler step, e.g. a :class:`Trajectory`."""


class BridgeTables(Protocol):
    """What the samplers and their step coefficients read from a :class:`~i2sb.core.bridge.Bridge`: its length and
    its float64 tables (1-D, ``n_steps`` entries). A protocol, so that the samplers need not import the bridge
    (which imports them for :meth:`~i2sb.core.bridge.Bridge.sample`)."""

    std_fwd: Tensor  # sigma_n (Eq. 11)
    std_sb: Tensor  # the standard deviation of Eq. 11

    @property
    def n_steps(self) -> int: ...

    def posterior_coefs(self, prev_step: int, step: int) -> tuple[float, float, float]: ...
