"""Step coefficients of the faster bridge samplers (:mod:`i2sb.core.samplers`), derived in the docstrings.

Notation: ``s_n = std_fwd[n]**2`` (sigma_n^2, variance from X_0), ``top = n_steps - 1`` (X_top = x1).
Functions take a :class:`~i2sb.core.bridge.Bridge` (its ``std_fwd`` and ``n_steps``) and plain step indices
``0 <= prev_step < step < n_steps`` (the samplers' ``steps``, checked where they were made), ``eta`` in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .types import BridgeTables

# ---------------------------------------------------------------------------- the chain's law
def chain_marginal(bridge: BridgeTables, step: int) -> tuple[float, float]:
    """``(a_n, V_n)``: law of X_n under the DDPM chain (Eq. 4) from X_top = x1 with the exact x0.

    The chain is the Brownian bridge of SDE (9a) pinned at x0 (variance 0) and at x1 (variance s_top):
    ``X_n ~ N((1 - a_n) x0 + a_n x1, V_n)``, ``a_n = s_n / s_top``, ``V_n = s_n (s_top - s_n) / s_top``.
    It equals Eq. 11 up to O(beta_n / S): the discrete sigma_n^2 + bar sigma_n^2 is S + beta_n, not the
    constant S of the proof of Prop. 3.3 (tests/test_bridge.py measures the gap).
    """
    s_n, s_top = float(bridge.std_fwd[step] ** 2), float(bridge.std_fwd[-1] ** 2)
    return s_n / s_top, s_n * (s_top - s_n) / s_top


@dataclass(frozen=True)
class StepCoefs:
    """``X_prev = c_x0 * x0 + c_x1 * x1 + c_xt * X_step + std * z`` with z ~ N(0, I)."""

    c_x0: float
    c_x1: float
    c_xt: float
    std: float


def implicit_coefs(bridge: BridgeTables, prev_step: int, step: int, eta: float) -> StepCoefs:
    """Coefficients of the implicit bridge step ``step -> prev_step`` (s < t below) with knob ``eta``.

    Derivation. Let m_n = (1 - a_n) x0 + a_n x1 and V_n be the chain's law (:func:`chain_marginal`). For
    any c, rho the step ``X_s = m_s + c (X_t - m_t) + rho z`` maps X_t ~ N(m_t, V_t) to
    X_s ~ N(m_s, c^2 V_t + rho^2), so it keeps the law iff ``c^2 V_t + rho^2 = V_s``. Take
    ``rho = eta * rho_1`` with rho_1^2 = s_s (s_t - s_s) / s_t, the variance of the DDPM posterior (Eq. 4),
    and ``c = sqrt((V_s - eta^2 rho_1^2) / V_t)``. Algebra gives V_s - rho_1^2 = (s_s / s_t)^2 V_t, so

        c^2 = (s_s / s_t)^2 + (1 - eta^2) rho_1^2 / V_t        (real for every eta in [0, 1]).

    At eta = 1, c = s_s / s_t; the coefficient of x1, a_s - c a_t, vanishes and that of x0 is
    1 - s_s / s_t: the step is p(X_s | X_0, X_t) of Eq. 4 (``Bridge.posterior_coefs``) coefficient for
    coefficient (equal up to float64 rounding), so with the same noise draw it gives the same X_s.
    At eta = 0 there is no noise: X_s = m_s + sqrt(V_s / V_t) (X_t - m_t).

    Eq. 11 versus the chain. The kernel keeps the chain's law exactly for every eta, hence Eq. 11 up to
    the chain's own O(beta / S) gap. Building it on Eq. 11's tables (mu_x0, mu_x1, std_sb) instead would
    keep Eq. 11 exactly but move eta = 1 away from Eq. 4 by the same O(beta / S): on this discretisation
    one cannot have both, and we keep the authors' sampler as the case eta = 1.

    The first step leaves the pinned X_top = x1 (V_top = 0): no noise can be read off a point, and the only
    law-keeping step draws all of V_s afresh -- Eq. 4 itself, for every eta (DBIM's "booting noise", the
    analogue of DDIM's x_T). The noise is returned even for ``prev_step == 0``; the samplers drop it there
    as the authors do.
    """
    top = bridge.n_steps - 1
    a_s, v_s = chain_marginal(bridge, prev_step)
    a_t, v_t = chain_marginal(bridge, step)
    s_s, s_t = float(bridge.std_fwd[prev_step] ** 2), float(bridge.std_fwd[step] ** 2)
    ratio = s_s / s_t
    var_ddpm = s_s * (s_t - s_s) / s_t  # rho_1^2, Eq. 4
    if step == top:  # booting step: Eq. 4 for every eta
        eta = 1.0
    c = math.sqrt(ratio**2 + (1.0 - eta**2) * var_ddpm / v_t) if eta < 1.0 else ratio
    return StepCoefs(c_x0=(1.0 - a_s) - c * (1.0 - a_t), c_x1=a_s - c * a_t, c_xt=c,
                     std=eta * math.sqrt(var_ddpm))


# ---------------------------------------------------------------------------- OT-ODE coefficients
def ode_coefs(bridge: BridgeTables, prev_step: int, step: int) -> tuple[float, float, float]:
    """``(r, g, delta)`` of the exact OT-ODE step ``step -> prev_step`` in variance units.

    Eq. 13, dX_t = beta_t / sigma_t^2 (X_t - X_0) dt, in u = sigma_t^2 (du = beta_t dt) reads
    dX/du = (X - x0_hat(X, u)) / u. With the integrating factor 1/u it is solved exactly:

        X_s = r X_t + s_s * integral_{s_s}^{s_t} x0_hat(u) u^-2 du,      r = s_s / s_t.

    A constant x0_hat gives X_s = r X_t + (1 - r) x0_hat -- the authors' OT-ODE step (mean of Eq. 4).
    An x0_hat linear in u through x0_hat(s_t) with slope D adds D * delta * (g - 1), where
    ``delta = s_t - s_s`` and ``g = s_s ln(s_t / s_s) / delta`` (0 < r <= g < 1).
    """
    s_s, s_t = float(bridge.std_fwd[prev_step] ** 2), float(bridge.std_fwd[step] ** 2)
    delta = s_t - s_s
    return s_s / s_t, s_s * math.log(s_t / s_s) / delta, delta


def heun_coefs(bridge: BridgeTables, prev_step: int, step: int) -> tuple[float, float, float]:
    """``(c_xt, c_pred_t, c_pred_s)``: X_s = c_xt X_t + c_pred_t x0_hat(X_t) + c_pred_s x0_hat(X_euler, s).

    The integral of :func:`ode_coefs` with x0_hat linear in sigma^2 between its two evaluations:
    weights ``(r, g - r, 1 - g)``, all >= 0, summing with r to 1; for small steps g - r ~ 1 - g ~ (1 - r)/2
    (the trapezoid rule). Exact, like the first-order step, when x0_hat is constant.
    """
    r, g, _ = ode_coefs(bridge, prev_step, step)
    return r, g - r, 1.0 - g
