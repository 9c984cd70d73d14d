"""IBMD's objective on the I2SB bridge: bridge matching on the student's pairs, and the student's loss.

Gushchin et al., "Inverse Bridge Matching Distillation" (ICML 2025, arXiv 2502.01362), Theorem 3.2, written
for this library's discrete bridge (:class:`~i2sb.core.bridge.Bridge`) and x0-predictors
``predict(xt, step, cond) -> x0`` (``cond`` = x1 for an x1-conditioned model, else None). Notation as
:mod:`i2sb.core.bridge`: step ``n`` in ``0 .. N-1``, ``X_n ~ q(X_n | X_0, X_1) = N(mu_x0[n] X_0 + mu_x1[n] X_1,
std_sb[n]^2 I)`` (I2SB Eq. 11).

The student's coupling. ``X_1 ~ p(X_1)`` (degraded images: the only data needed), ``z ~ N(0, I)``,
``X_0 = G_theta(X_1, z)``. The teacher ``D*`` was fitted by bridge matching (I2SB Algorithm 1) on the data's
coupling, so ``D*(x, n) = E_data[X_0 | X_n = x]`` (given x1 too when conditional). IBMD asks for a coupling
whose bridge matching gives the teacher back:

    find theta with  m_theta(x, n) = D*(x, n),   m_theta(x, n) := E_theta[X_0 | X_n = x]          (inverse BM)

Bridge matching on the student's pairs (IBMD Alg. 1, the auxiliary update; I2SB Algorithm 1 with X_0 from G)::

    L_aux(phi) = E_{n, X_1, z, eps} w(n) || f_phi(X_n, n) - sg[X_0] ||^2,
                 X_n = mu_x0[n] sg[X_0] + mu_x1[n] X_1 + std_sb[n] eps                             (aux_loss)

is minimised by ``f_phi = m_theta`` (squared error -> conditional expectation), for any weight ``w(n) > 0``.
IBMD's Theorem 3.2 turns the inverse problem into one tractable objective::

    L(theta) = E w(n) ||D*(X_n, n) - X_0||^2  -  min_phi E w(n) ||f_phi(X_n, n) - X_0||^2 ,  X_0 = G_theta(X_1, z)

Why it is the inverse problem: with ``phi`` optimal, ``f = m_theta`` and, since ``E[X_0 - m_theta | X_n] = 0``
kills the cross term, ``E w||D* - X_0||^2 - E w||m_theta - X_0||^2 = E w(n) ||D*(X_n, n) - m_theta(X_n, n)||^2``
under the student's marginals: non-negative, and zero exactly when bridge matching on the student's pairs returns
the teacher. The generator's loss (:func:`student_loss`) is the bracket at the current ``phi``, per sample::

    l = w(n) <D*(X_n) - f_phi(X_n), D*(X_n) + f_phi(X_n) - 2 X_0>     (= w ||D* - X_0||^2 - w ||f_phi - X_0||^2)

written as a product so that the two large squared errors never cancel in floating point.

Gradients (where they flow). ``X_0 = G_theta(X_1, z)`` and ``X_n = mu_x0 X_0 + mu_x1 X_1 + std_sb eps`` both carry
theta, so d l / d theta flows through X_0 directly *and* through both networks' input X_n (backpropagate
through the teacher and the auxiliary model). The networks' own parameters get none: the teacher is frozen,
and phi is held at its current value -- by the envelope (Danskin) theorem ``d/dtheta min_phi E(...) =
d/dtheta E(...)|_{phi = phi*}``, since the phi-derivative vanishes at the minimiser. In :func:`aux_loss` the
pair is ``sg[X_0]``: the auxiliary update never moves the generator.

Why the gradient vanishes at the solution. If the student's coupling reproduces the teacher and the
auxiliary model is its exact bridge-matching solution, then ``f_phi = m_theta = D*`` as functions, so
``l = w <0, ...> = 0`` for every sample and its derivative ``2 w [(f - D*)^T dX_0 + ((D* - X_0)^T J_D* -
(f - X_0)^T J_f) dX_n]`` is zero term by term (equal functions have equal Jacobians).

Weighting ``w(n)``. ``"eps"`` (default): ``w = 1 / std_fwd[n]^2``, because I2SB trains the teacher on Eq. 12,
``||eps_hat - (X_n - X_0)/sigma_n||^2 = ||x0_hat - X_0||^2 / sigma_n^2``: the auxiliary model is then trained
exactly as the teacher was (IBMD: "in the same way as the teacher") and the student's loss is, term by term,
the difference of the two models' Eq. 12 errors. ``"x0"``: ``w = 1``. The minimiser does not depend on
``w``; only the balance of the gradient over steps does. Steps are drawn as in Algorithm 1 (uniform).

K-step students (IBMD Sec. 3.5) evaluate the generator at a bridge state ``X_s`` (s > 0) instead of X_1;
their pair is ``(X_0, X_s)`` and ``X_n`` (n < s) is drawn from the bridge between them, the DDPM posterior
``p(X_n | X_0, X_s)`` of Eq. 4 (:func:`bridge_point` with ``end_step``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..core.bridge import Bridge
from ..core.noise import Generators, randn

X0Predictor = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]
"""``predict(xt, step, cond) -> x0``: ``xt`` (B, C, H, W), ``step`` LongTensor (B,), ``cond`` x1 or None."""

WEIGHTINGS = ("eps", "x0")


def loss_weight(bridge: Bridge, step: Tensor, like: Tensor, weighting: str = "eps") -> Tensor:
    """``w(n)`` per sample, (B,) in ``like``'s dtype: ``1 / std_fwd[n]^2`` (``"eps"``, Eq. 12) or 1 (``"x0"``)."""
    if weighting == "x0":
        return torch.ones(step.shape[0], dtype=like.dtype, device=like.device)
    if weighting == "eps":
        return bridge.std_fwd.to(like)[step.to(like.device)] ** -2
    raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")


def end_coefs(bridge: Bridge, step: Tensor, end_step: Tensor, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(c_x0, c_end, std)`` of ``p(X_n | X_0, X_end)`` (Eq. 4, n < end), each (B, 1, ..) as ``like``.

    The Brownian bridge of the forward SDE (f = 0) pinned at X_0 and X_end: with ``v_n = std_fwd[n]^2``,
    mean ``(v_end - v_n)/v_end X_0 + v_n/v_end X_end``, variance ``v_n (v_end - v_n)/v_end`` -- what
    :meth:`Bridge.posterior_coefs` gives for one pair of steps, here per sample.
    """
    var = bridge.std_fwd.to(like) ** 2
    shape = (-1, *([1] * (like.ndim - 1)))
    v_n, v_end = var[step.to(like.device)].reshape(shape), var[end_step.to(like.device)].reshape(shape)
    return (v_end - v_n) / v_end, v_n / v_end, torch.sqrt(v_n * (v_end - v_n) / v_end)


def bridge_point(bridge: Bridge, step: Tensor, x0: Tensor, x_end: Tensor, end_step: Tensor | None = None,
                 noise: Tensor | None = None, generator: Generators = None) -> Tensor:
    """``X_n`` between ``x0`` and ``x_end``, differentiable in both; (B, C, H, W).

    ``end_step`` None: ``x_end`` is X_1 and this is Eq. 11 (:meth:`Bridge.q_sample`); otherwise ``x_end`` is
    the state at ``end_step`` (B,) > ``step`` and this is Eq. 4's ``p(X_n | X_0, X_end)`` (:func:`end_coefs`).
    """
    if end_step is None:
        return bridge.q_sample(step, x0, x_end, noise=noise, generator=generator)
    noise = randn(x0, generator) if noise is None else noise
    c_x0, c_end, std = end_coefs(bridge, step, end_step, x0)
    return c_x0 * x0 + c_end * x_end + std * noise


def _loss_dtype(x: Tensor) -> torch.dtype:
    """float32 at least: network outputs under bf16/fp16 autocast are compared in full precision."""
    return torch.promote_types(x.dtype, torch.float32)


def _per_sample(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over all but the batch dimension, on the hole only when ``mask`` (1 = hole) is given."""
    if mask is not None:
        values = values * mask
    return values.flatten(1).mean(1)


def aux_loss(aux: X0Predictor, bridge: Bridge, x0: Tensor, x_end: Tensor, step: Tensor,
             cond: Tensor | None = None, *, end_step: Tensor | None = None, noise: Tensor | None = None,
             generator: Generators = None, weighting: str = "eps", mask: Tensor | None = None) -> Tensor:
    """Bridge matching of ``aux`` on the student's pairs ``(sg[x0], x_end)`` (``L_aux``, module docstring).

    ``x0``: the generator's output (B, C, H, W), detached here; ``x_end``: X_1 (or X_s with ``end_step``);
    ``step`` (B,) LongTensor; ``cond``: what the models are conditioned on (x1) or None. Returns a scalar:
    the batch mean of ``w(n) * mean_pixels (aux(X_n) - x0)^2``. Its minimiser is ``E[x0 | X_n (, cond)]``.
    """
    x0 = x0.detach()
    xt = bridge_point(bridge, step, x0, x_end, end_step, noise, generator)
    dtype = _loss_dtype(x0)
    err = (aux(xt, step, cond).to(dtype) - x0.to(dtype)) ** 2
    return (loss_weight(bridge, step, err, weighting) * _per_sample(err, mask)).mean()


def student_loss(teacher: X0Predictor, aux: X0Predictor, bridge: Bridge, x0: Tensor, x_end: Tensor, step: Tensor,
                 cond: Tensor | None = None, *, end_step: Tensor | None = None, noise: Tensor | None = None,
                 generator: Generators = None, weighting: str = "eps", mask: Tensor | None = None,
                 ) -> tuple[Tensor, Tensor]:
    """IBMD's generator loss (Theorem 3.2) at the current auxiliary model; ``(loss, gap)``, both scalars.

    ``x0 = G_theta(x1, z)`` with its graph (B, C, H, W); ``X_n`` is drawn from the bridge with gradients
    through ``x0``; ``teacher`` and ``aux`` are called *with* autograd so the gradient reaches ``x0`` through
    their input. Backpropagate into the generator's parameters only (``loss.backward(inputs=...)`` or with
    both models frozen, :func:`i2sb.distill.alternate.frozen`). ``loss`` is the batch mean of
    ``w <D* - f, D* + f - 2 x0>`` (in float32 at least); ``gap`` (detached) the batch mean of
    ``w ||D* - f||^2``, the objective's value when ``aux`` is optimal (zero iff the student's bridge
    matching reproduces the teacher).
    """
    xt = bridge_point(bridge, step, x0, x_end, end_step, noise, generator)
    dtype = _loss_dtype(x0)
    x0_teacher, x0_aux = teacher(xt, step, cond).to(dtype), aux(xt, step, cond).to(dtype)
    diff = x0_teacher - x0_aux
    w = loss_weight(bridge, step, diff, weighting)
    loss = (w * _per_sample(diff * (x0_teacher + x0_aux - 2.0 * x0.to(dtype)), mask)).mean()
    gap = (w * _per_sample(diff.detach() ** 2, mask)).mean()
    return loss, gap
