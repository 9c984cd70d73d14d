"""DDNM and DDNM+ (Wang, Yu & Zhang, "Zero-shot image restoration using denoising diffusion null-space
model", ICLR 2023): restoration of y = A x (+ n) with an unconditional diffusion prior and no training.

Every step predicts x0 from x_t (DDNM Alg. 1 line 3), replaces its range-space part by the measurement's
(Eq. 5: x̂0 = A^+ y + (I - A^+ A) x0, computed as x0 - A^+(A x0 - y), Eq. 16), then takes a DDIM-η step
(their code samples with DDIM, not the DDPM posterior of Alg. 1). With A x̂0 = y at the last step the result
is exactly consistent (Eq. 6). η is Song et al.'s (Eq. 16; η = 1 is DDPM); DDNM's code instead draws
eta * sqrt(1 - ab_{t-1}) fresh noise, so its default 0.85 injects more fresh noise than η = 0.85 here.

DDNM+ (Sec. 3.3, Eqs. 17-19) handles noisy measurements y = A x + n, n ~ N(0, sigma_y^2): per singular
direction i (:mod:`.spectral`; A^+ n has standard deviation sigma_y g_i there), the correction is scaled by
lambda_i (Sigma_t) and the noise of the step by Phi_t so that the total noise in x_{t-1} stays 1 - ab_{t-1}:
with the DDIM coefficients (c_x0, c_eps, sigma) of the step and n_i = c_x0 sigma_y g_i,

    lambda_i = min(1, c_eps / n_i),    eps coefficient_i = sqrt(c_eps^2 - (lambda_i n_i)^2),   fresh noise sigma.

This is Eq. 19 (lambda_t = min(1, sigma_t / (a_{t-1} sigma_y)), gamma_t = sqrt(sigma_t^2 - (a lambda sigma_y)^2))
per direction, with the DDIM share c_eps as the budget: at eta = 0 it is Eq. 19 exactly, sigma_y = 0 gives
DDNM, and the variance of (A^+ n part) + eps + fresh noise is 1 - ab_{t-1} for every eta. The last step has
no budget (c_eps = 0), so lambda = 0 there for any sigma_y > 0: DDNM+ never copies the noisy A^+ y into the
result. (The authors' code, ``functions/svd_operators.py`` ``Lambda`` / ``Lambda_noise``, splits the leftover
budget differently between the eps term and fresh noise, e.g. no eps term in measured directions.)

Time travel (Alg. 2, "(L, r)"): after reaching position p of the respaced chain the state is diffused back
L positions with q(x_{t+L} | x_t) and the L steps are redone, r - 1 times (RePaint's jump schedule, as
DDNM's ``get_schedule_jump``; their code re-noises the last x0 prediction instead of x_t).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.noise import Generators
from ..core.samplers import check_eta
from ..core.types import StepCallback
from ..degrade.base import LinearOperator
from ..degrade.blur import DDRMBlurOperator
from ..degrade.color import LuminanceOperator
from ..degrade.inpaint import MaskOperator
from ..degrade.linear import SeparableOperator
from .gaussian import EpsPredictor, GaussianDiffusion
from .spectral import Spectrum, spectrum


@dataclass(frozen=True)
class DDNMOptions:
    """Sampler settings. ``eta``: DDIM's η (Song et al. Eq. 16; 1 = DDPM-like, 0 = deterministic);
    ``sigma_y``: measurement noise std in [-1, 1] units (0: DDNM, > 0: DDNM+); ``travel_length`` L and
    ``travel_repeat`` r of the time travel (r = 1: none); ``clip_denoise`` clamps x0|t to [-1, 1]."""

    eta: float = 0.85  # DDNM's default value (their eta is on another scale, see the module docstring)
    sigma_y: float = 0.0
    travel_length: int = 1
    travel_repeat: int = 1
    clip_denoise: bool = False

    def __post_init__(self) -> None:
        try:
            check_eta(self.eta)
        except ValueError as err:
            raise ValueError(f"eta {err}") from None
        if self.sigma_y < 0:
            raise ValueError(f"sigma_y must be >= 0, got {self.sigma_y}")
        if self.travel_length < 1 or self.travel_repeat < 1:
            raise ValueError(f"travel_length and travel_repeat must be >= 1, got {self.travel_length}, "
                             f"{self.travel_repeat}")


# ---------------------------------------------------------------------------- the measurement
def _pooled(op: SeparableOperator, x1: Tensor) -> Tensor:
    """SR: x1 is y nearest-upsampled, so y is the block mean of x1 (identity for the blurs, factor 1)."""
    return F.avg_pool2d(x1, op.lift_factor) if op.lift_factor > 1 else x1


def _known(op: MaskOperator, x1: Tensor) -> Tensor:
    """Inpainting: y is x1 outside the hole (whatever fills the hole)."""
    return op.A(x1)


def _grey(op: LuminanceOperator, x1: Tensor) -> Tensor:
    """Colorization: x1 repeats y in its three channels."""
    return x1.mean(1, keepdim=True)


def _offset_removed(op: DDRMBlurOperator, x1: Tensor) -> Tensor:
    """The authors' blur is affine in [-1, 1] units, x1 = A x0 + offset: remove the offset (``lift(0)``)."""
    return x1 - op.lift(torch.zeros_like(x1))


MEASUREMENTS = {SeparableOperator: _pooled, MaskOperator: _known, LuminanceOperator: _grey,
                DDRMBlurOperator: _offset_removed}


def measurement(op: LinearOperator, x1: Tensor) -> Tensor:
    """The measurement y (``op.A``'s output shape) of an I2SB input x1 = ``op.lift(y)`` (B, 3, H, W)."""
    for kind, unlift in MEASUREMENTS.items():
        if isinstance(op, kind):
            return unlift(op, x1)
    raise ValueError(f"no measurement recovery for {type(op).__name__}; known: "
                     f"{', '.join(k.__name__ for k in MEASUREMENTS)}")


# ---------------------------------------------------------------------------- schedule
def travel_schedule(nfe: int, length: int = 1, repeat: int = 1) -> list[int]:
    """Positions in ``GaussianDiffusion.timesteps(nfe)`` visited by DDNM+, from nfe (t = N) to 0 (data).

    A decrease is a sampler step (one network call), an increase of ``length`` a time travel. Travel starts
    after reaching the positions 1, 1 + L, 1 + 2L, ... up to nfe - L, ``repeat - 1`` times each
    (DDNM's ``get_schedule_jump``, shifted by one because our position 0 is the data).
    """
    if nfe < 1 or length < 1 or repeat < 1:
        raise ValueError(f"need nfe, travel_length, travel_repeat >= 1, got {nfe}, {length}, {repeat}")
    left = {p: repeat - 1 for p in range(1, nfe - length + 1, length)}
    path, p = [nfe], nfe
    while p > 0:
        p -= 1
        path.append(p)
        if left.get(p, 0) > 0:
            left[p] -= 1
            p += length
            path.append(p)
    return path


# ---------------------------------------------------------------------------- one step
def plus_coefs(gain: Tensor, c_x0: float, c_eps: float, sigma_y: float) -> tuple[Tensor, Tensor]:
    """DDNM+ per direction: ``(lambda, eps coefficient)`` for noise gains ``gain`` (Eq. 19, see module doc)."""
    carried = c_x0 * sigma_y * gain  # std of A^+ n in x_{t-1}
    lam = torch.where(carried > c_eps, c_eps / carried.clamp_min(1e-30), torch.ones_like(carried))
    eps_coef = (c_eps**2 - (lam * carried) ** 2).clamp_min(0).sqrt()
    return lam, eps_coef


class DDNMStep:
    """One DDNM / DDNM+ transition t -> s given eps_theta(x_t, t); holds the operator, y and the options."""

    def __init__(self, diffusion: GaussianDiffusion, op: LinearOperator, y: Tensor, options: DDNMOptions,
                 spec: Spectrum | None = None):
        if options.sigma_y > 0 and spec is None:
            raise ValueError("DDNM+ (sigma_y > 0) needs the operator's Spectrum (i2sb.baselines.spectral)")
        self.diffusion, self.op, self.y, self.options, self.spec = diffusion, op, y, options, spec

    def __call__(self, prev_step: int, step: int, xt: Tensor, eps: Tensor,
                 generator: Generators) -> tuple[Tensor, Tensor]:
        """``(x_s, x̂0)`` from x_t (B, 3, H, W) and the network's eps at t."""
        x0 = self.diffusion.pred_x0(step, xt, eps)  # Alg. 1 line 3
        if self.options.clip_denoise:
            x0 = x0.clamp(-1.0, 1.0)
        correction = self.op.A_pinv(self.op.A(x0) - self.y).to(xt.dtype)  # A^+(A x0|t - y)
        c_x0, c_eps, std = self.diffusion.ddim_coefs(prev_step, step, self.options.eta)
        if self.options.sigma_y == 0:
            x0_hat = x0 - correction  # Eq. 5 (= Eq. 16 without noise)
            x_prev = c_x0 * x0_hat + c_eps * eps  # DDIM Eq. 12
        else:
            spec = self.spec
            lam, eps_coef = plus_coefs(spec.gain.to(xt), c_x0, c_eps, self.options.sigma_y)
            x0_hat = x0 - spec.from_coef(lam * spec.to_coef(correction))  # Eq. 17, Sigma_t = V diag(lam) V^T
            x_prev = c_x0 * x0_hat + spec.from_coef(eps_coef * spec.to_coef(eps))  # Eq. 18, Phi_t
        if std > 0:
            x_prev = x_prev + std * self.diffusion.noise(x_prev, generator)
        return x_prev, x0_hat


# ---------------------------------------------------------------------------- the sampler
def ddnm_sample(
    predict_eps: EpsPredictor,
    diffusion: GaussianDiffusion,
    op: LinearOperator,
    y: Tensor,
    x_T: Tensor,
    nfe: int,
    options: DDNMOptions = DDNMOptions(),
    generator: Generators = None,
    callback: StepCallback | None = None,
    spec: Spectrum | None = None,
) -> Tensor:
    """Restore from the measurement ``y`` (shape of ``op.A``'s output) starting at ``x_T`` (B, 3, H, W).

    ``nfe`` respaced steps (``diffusion.timesteps(nfe)``) plus ``(r - 1) * L`` per travel point; with
    ``options.sigma_y > 0`` the spectrum of ``op`` is built unless ``spec`` is given. Returns x_0 (B, 3, H, W).
    """
    if options.sigma_y > 0 and spec is None:
        spec = spectrum(op, x_T.shape[-1])
    step_fn = DDNMStep(diffusion, op, y, options, spec)
    steps = diffusion.timesteps(nfe)
    path = travel_schedule(nfe, options.travel_length, options.travel_repeat)
    xt = x_T
    for here, there in zip(path[:-1], path[1:]):
        if there > here:  # Alg. 2 line 4: x_{t+L} ~ q(x_{t+L} | x_t)
            xt = diffusion.travel(steps[here], steps[there], xt, generator)
            continue
        step_t = torch.full((xt.shape[0],), steps[here], device=xt.device, dtype=torch.long)
        eps = predict_eps(xt, step_t).to(xt.dtype)
        xt, x0_hat = step_fn(steps[there], steps[here], xt, eps, generator)
        if callback is not None:
            callback(steps[there], steps[here], xt, x0_hat)
    return xt


def network_calls(nfe: int, travel_length: int = 1, travel_repeat: int = 1) -> int:
    """Network evaluations of :func:`ddnm_sample`: the decreases of :func:`travel_schedule`."""
    path = travel_schedule(nfe, travel_length, travel_repeat)
    return sum(b < a for a, b in zip(path[:-1], path[1:]))
