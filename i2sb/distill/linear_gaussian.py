"""The case where every answer is known: Gaussian data, a linear degradation, and bridges between them.

Data ``x0 ~ N(mu, Sigma)`` in ``d`` dimensions, degraded linearly ``x1 = A x0 + b + eta``, ``eta ~ N(0, R)``.
Any coupling written as ``x1 ~ N(mean1, cov1)``, ``x0 | x1 ~ N(W x1 + g, P)`` has closed-form bridge-matching
solutions on the discrete I2SB bridge (:class:`~i2sb.core.bridge.Bridge`, Eq. 11 with
``a = mu_x0[n]``, ``c = mu_x1[n]``, ``s = std_sb[n]``)::

    X_n = a x0 + c x1 + s eps,   eps ~ N(0, I)

* conditional (the network also sees x1, ``cond_x1``): given x1, ``x0 ~ N(m, P)`` with ``m = W x1 + g`` and
  ``X_n - c x1 = a x0 + s eps`` is a linear-Gaussian observation of x0, so (Gaussian conditioning)::

      E[x0 | X_n, x1] = m + a P (a^2 P + s^2 I)^{-1} (X_n - c x1 - a m)

* unconditional (the network sees X_n only): (x0, X_n) is jointly Gaussian with
  ``Cov(x0, X_n) = a S00 + c S01``, ``Var(X_n) = a^2 S00 + c^2 S11 + a c (S01 + S01^T) + s^2 I``
  (``S00 = W S11 W^T + P``, ``S01 = W S11``, ``S11 = cov1``), so::

      E[x0 | X_n] = mean0 + Cov(x0, X_n) Var(X_n)^{-1} (X_n - a mean0 - c mean1)

Both are the minimisers of bridge matching (Algorithm 1 with an x0 target) on that coupling: an x0-predictor
that regresses x0 from X_n under squared error converges to the conditional expectation. The data's own
coupling is the posterior of the degradation (Bayes for a linear-Gaussian model)::

      P = (Sigma^{-1} + A^T R^{-1} A)^{-1},  W = P A^T R^{-1},  g = P (Sigma^{-1} mu - A^T R^{-1} b)

and :func:`sampler_law` propagates the exact law of the teacher's Algorithm 2 (DDPM posterior, Eq. 4, with the
predicted x0 plugged in) through its linear-Gaussian recursion, so the many-step sampler can be compared with
p(x0 | x1) without Monte-Carlo error. Vectors are (B, d) here; the bridge functions also take (B, d, 1, 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..core.bridge import Bridge


def _param(x: Tensor) -> nn.Parameter:
    """A contiguous copy as a parameter (optimisers such as L-BFGS view gradients flat)."""
    return nn.Parameter(x.detach().clone(memory_format=torch.contiguous_format))


def _coefs(bridge: Bridge, step: Tensor, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(a, c, s)`` of Eq. 11 at ``step`` (B,), each (B, 1, 1) in ``like``'s dtype and device."""
    idx = step.to(like.device)
    take = [getattr(bridge, name).to(like)[idx].reshape(-1, 1, 1) for name in ("mu_x0", "mu_x1", "std_sb")]
    return take[0], take[1], take[2]


def cond_posterior_mean(bridge: Bridge, step: Tensor, xt: Tensor, x1: Tensor, W: Tensor, g: Tensor,
                        P: Tensor) -> Tensor:
    """``E[x0 | X_n = xt, x1]`` for ``x0 | x1 ~ N(W x1 + g, P)`` (module docstring). ``xt``, ``x1``: (B, d)."""
    a, c, s = _coefs(bridge, step, xt)
    eye = torch.eye(P.shape[0], dtype=xt.dtype, device=xt.device)
    m = x1 @ W.T + g
    gain = a * P @ torch.linalg.inv(a**2 * P + s**2 * eye)  # (B, d, d)
    resid = xt - c[:, :, 0] * x1 - a[:, :, 0] * m
    return m + (gain @ resid.unsqueeze(-1)).squeeze(-1)


def uncond_posterior_mean(bridge: Bridge, step: Tensor, xt: Tensor, W: Tensor, g: Tensor, P: Tensor,
                          mean1: Tensor, cov1: Tensor) -> Tensor:
    """``E[x0 | X_n = xt]`` for ``x1 ~ N(mean1, cov1)``, ``x0 | x1 ~ N(W x1 + g, P)`` (module docstring)."""
    a, c, s = _coefs(bridge, step, xt)
    eye = torch.eye(P.shape[0], dtype=xt.dtype, device=xt.device)
    mean0 = W @ mean1 + g
    s01 = W @ cov1
    s00 = s01 @ W.T + P
    cov_xn = a * s00 + c * s01
    var_xn = a**2 * s00 + c**2 * cov1 + a * c * (s01 + s01.T) + s**2 * eye
    resid = xt - a[:, :, 0] * mean0 - c[:, :, 0] * mean1
    return mean0 + (cov_xn @ torch.linalg.solve(var_xn, resid.unsqueeze(-1))).squeeze(-1)


@dataclass
class LinearGaussianTask:
    """``x0 ~ N(mu, Sigma)``, ``x1 = A x0 + b + N(0, R)``: the data, its degradation and its posterior."""

    mu: Tensor
    Sigma: Tensor
    A: Tensor
    b: Tensor
    R: Tensor

    @property
    def mean1(self) -> Tensor:
        return self.A @ self.mu + self.b

    @property
    def cov1(self) -> Tensor:
        return self.A @ self.Sigma @ self.A.T + self.R

    def posterior(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(W, g, P)`` of ``p(x0 | x1) = N(W x1 + g, P)`` (Bayes, module docstring)."""
        sigma_inv, r_inv = torch.linalg.inv(self.Sigma), torch.linalg.inv(self.R)
        P = torch.linalg.inv(sigma_inv + self.A.T @ r_inv @ self.A)
        P = (P + P.T) / 2
        return P @ self.A.T @ r_inv, P @ (sigma_inv @ self.mu - self.A.T @ r_inv @ self.b), P

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(x0, x1)``, each (n, d), from the data and its degradation."""
        d = self.mu.shape[0]
        kw = dict(generator=generator, dtype=self.mu.dtype, device=self.mu.device)
        x0 = self.mu + torch.randn(n, d, **kw) @ torch.linalg.cholesky(self.Sigma).T
        return x0, self.degrade(x0, generator)

    def degrade(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        return x0 @ self.A.T + self.b + noise @ torch.linalg.cholesky(self.R).T


class GaussianBridgeModel(nn.Module):
    """An x0-predictor ``(xt, step, cond) -> x0`` whose family holds every bridge-matching solution above.

    Parameters: the coupling ``x0 | x1 ~ N(W x1 + g, L L^T)`` (and, unconditional, x1's law ``N(mean1, C C^T)``).
    As the teacher it carries the data's posterior (exact predictor); as IBMD's auxiliary model it is trained
    by bridge matching on the student's pairs and can reach their exact solution. Tensors are (B, d) or
    (B, d, 1, 1) (the samplers' layout); ``cond`` is x1 for a conditional model, ignored otherwise.
    """

    def __init__(self, bridge: Bridge, W: Tensor, g: Tensor, P: Tensor, conditional: bool = True,
                 mean1: Tensor | None = None, cov1: Tensor | None = None):
        super().__init__()
        self.bridge, self.conditional = bridge, conditional
        self.W, self.g, self.L = _param(W), _param(g), _param(torch.linalg.cholesky(P))
        if not conditional:
            if mean1 is None or cov1 is None:
                raise ValueError("an unconditional model needs x1's law: mean1 and cov1")
            self.mean1, self.C = _param(mean1), _param(torch.linalg.cholesky(cov1))

    @property
    def P(self) -> Tensor:
        return self.L @ self.L.T

    def forward(self, xt: Tensor, step: Tensor, cond: Tensor | None = None) -> Tensor:
        shape = xt.shape
        xt = xt.reshape(shape[0], -1)
        if self.conditional:
            if cond is None:
                raise ValueError("this model is conditioned on x1: pass cond=x1")
            x0 = cond_posterior_mean(self.bridge, step, xt, cond.reshape(shape[0], -1), self.W, self.g, self.P)
        else:
            x0 = uncond_posterior_mean(self.bridge, step, xt, self.W, self.g, self.P, self.mean1, self.C @ self.C.T)
        return x0.reshape(shape)


class LinearGenerator(nn.Module):
    """A one-step generator ``G(x1, z) = W x1 + S z + g``; its coupling is ``x0 | x1 ~ N(W x1 + g, S S^T)``.

    Called as every student is (:data:`~i2sb.distill.generator.Generator`): ``G(xs, step, cond, z)`` with
    ``xs = x1``; ``step`` and ``cond`` are not used. ``z`` has ``z_channels = d`` channels.
    """

    def __init__(self, W: Tensor, g: Tensor, S: Tensor):
        super().__init__()
        self.W, self.g, self.S = _param(W), _param(g), _param(S)
        self.z_channels = S.shape[1]

    def forward(self, xs: Tensor, step: int, cond: Tensor | None = None, z: Tensor | None = None) -> Tensor:
        shape = xs.shape
        x0 = xs.reshape(shape[0], -1) @ self.W.T + z.reshape(shape[0], -1) @ self.S.T + self.g
        return x0.reshape(shape)


def sampler_law(bridge: Bridge, teacher: GaussianBridgeModel, x1: Tensor, nfe: int,
                ot_ode: bool = False) -> tuple[Tensor, Tensor]:
    """Exact mean (d,) and covariance (d, d) of Algorithm 2's output given one ``x1`` (d,), ``teacher`` exact.

    Every step of :func:`~i2sb.core.samplers.ddpm_sample` is affine in the state plus Gaussian noise:
    ``x0_hat = F X_n + f`` (the predictor is affine in X_n), ``X_prev = c_x0 x0_hat + c_xn X_n + std xi``
    (Eq. 4), so the law stays Gaussian and its moments follow ``m <- M m + k``, ``V <- M V M^T + std^2 I``.
    """
    d = x1.shape[0]
    eye = torch.eye(d, dtype=x1.dtype, device=x1.device)
    mean, cov = x1.clone(), torch.zeros(d, d, dtype=x1.dtype, device=x1.device)
    steps = bridge.timesteps(nfe)
    with torch.no_grad():
        for prev_step, step in list(zip(steps[:-1], steps[1:]))[::-1]:
            idx = torch.full((d + 1,), step, dtype=torch.long)
            probe = torch.cat([torch.zeros(1, d, dtype=x1.dtype), eye]).to(x1)  # x0_hat at 0 and at e_i
            out = teacher(probe, idx, x1.expand(d + 1, d))
            f, F = out[0], (out[1:] - out[0]).T  # x0_hat = F X + f
            c_x0, c_xn, std = bridge.posterior_coefs(prev_step, step)
            M = c_x0 * F + c_xn * eye
            mean = M @ mean + c_x0 * f
            cov = M @ cov @ M.T
            if not ot_ode and prev_step > 0:
                cov = cov + std**2 * eye
    return mean, cov
