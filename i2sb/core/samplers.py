"""The bridge samplers, free functions with one signature ``(bridge, predict_x0, x1, nfe, *, mask, clip_denoise,
generator, callback, progress, ...)``: the authors' Algorithm 2 and faster ones -- an implicit (non-Markovian)
sampler with a knob eta, and second-order solvers of the OT-ODE (Eq. 13). Pure tensor math on a
:class:`~i2sb.core.bridge.Bridge`; :data:`SAMPLERS` names them and :func:`sample` runs one by name.

Which sampler for which model (``ot_ode`` is how the checkpoint was trained, ``task.ot_ode``):

=============  ===========  ==========================================================================
``sampler``    models       what it runs
=============  ===========  ==========================================================================
``ddpm``       both         the authors' Algorithm 2: DDPM posterior (Eq. 4), or its mean with ot_ode
``implicit``   SDE-trained  DDIM-like bridge sampler (I3SB, Wang et al. 2024; DBIM, Zheng et al. 2024);
                            eta = 1 is ``ddpm`` exactly, eta = 0 is deterministic after the first step
``heun``       OT-ODE       2nd-order predictor-corrector on the OT-ODE, 2 evaluations per step
``multistep``  OT-ODE       2nd-order multistep (DPM-Solver++(2M)-like) on the OT-ODE, 1 per step
=============  ===========  ==========================================================================

Every state of an SDE-trained model's training is noisy (X_t ~ Eq. 11), and the implicit sampler keeps
that law for every eta (see :func:`implicit_coefs`). With eta < 1 it is still a different process from
the training SDE: at eta = 0 a deterministic flow (the bridge's probability-flow analogue, driven by the
first step's noise) -- neither the SDE nor the OT-ODE of Eq. 13. An OT-ODE-trained model has only seen the
noise-free states mu_t (Prop. 3.4); the implicit sampler would feed it noisy ones, so it is refused for
``ot_ode=True``. The OT-ODE solvers integrate Eq. 13, the process of OT-ODE models; their first-order step
is exactly the authors' OT-ODE step (the posterior mean of Eq. 4).

Notation: ``s_n = std_fwd[n]**2`` (sigma_n^2, variance from X_0), ``top = n_steps - 1`` (X_top = x1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .boundary import fill_hole, keep_known
from .noise import Generators, randn
from .sampler_coefs import StepCoefs, check_eta, heun_coefs, implicit_coefs, ode_coefs
from .types import Predictor, StepCallback

if TYPE_CHECKING:  # annotations only: the bridge imports the samplers (Bridge.sample), not the other way round
    from .bridge import Bridge

DEFAULT_ETA = 0.0  # the implicit sampler's default: deterministic after the first step (DBIM's choice)
Coefs = TypeVar("Coefs")


def _check_x1(x1: Tensor, mask: Tensor | None) -> None:
    if not isinstance(x1, Tensor) or x1.ndim != 4 or not x1.is_floating_point():
        shape = tuple(x1.shape) if isinstance(x1, Tensor) else type(x1).__name__
        raise ValueError(f"x1 must be a floating tensor (B, C, H, W), got {shape}")
    if mask is not None and (mask.ndim != 4 or mask.shape[-2:] != x1.shape[-2:]):
        raise ValueError(f"mask must have shape (B or 1, 1 or C, {x1.shape[-2]}, {x1.shape[-1]}), "
                         f"got {tuple(mask.shape)}")


# ---------------------------------------------------------------------------- shared helpers
def _randn(like: Tensor, generator: Generators) -> Tensor:
    return randn(like, generator)


def _start(x1: Tensor, mask: Tensor | None, generator: Generators) -> tuple[Tensor, Tensor | None]:
    """``(x1, mask)`` with the hole of x1 filled with N(0, 1), the generator's first draw (as the authors)."""
    if mask is None:
        return x1, None
    return fill_hole(x1, mask, generator), mask.to(device=x1.device, dtype=x1.dtype)


def _pairs(steps: Sequence[int], coefs: Callable[[int, int], Coefs], progress: bool,
           desc: str) -> Sequence[tuple[int, int, Coefs]]:
    """``(prev_step, step, coefs(prev_step, step))`` from the degraded end to the clean end, optionally under tqdm.

    Every step's coefficients are Python floats computed here, before the first network call: the loop itself
    reads no tensor into Python (no host-device synchronisation on CUDA, tests/test_syncs.py)."""
    pairs = [(prev, step, coefs(prev, step)) for prev, step in list(zip(steps[:-1], steps[1:]))[::-1]]
    return tqdm(pairs, desc=desc, leave=False) if progress else pairs


def _ddpm_coefs(bridge: Bridge, prev_step: int, step: int) -> tuple[tuple[float, float, float], float]:
    """Eq. 4's coefficients and ``std_sb[prev_step]`` (Eq. 11, the known region of inpainting)."""
    return bridge.posterior_coefs(prev_step, step), float(bridge.std_sb[prev_step])


def _implicit_coefs(bridge: Bridge, prev_step: int, step: int, eta: float) -> tuple[StepCoefs, float]:
    return implicit_coefs(bridge, prev_step, step, eta), float(bridge.std_sb[prev_step])


def _multistep_coefs(bridge: Bridge, prev_step: int, step: int) -> tuple[tuple[float, float, float], float]:
    """:func:`ode_coefs` and ``s_t = std_fwd[step]**2``."""
    return ode_coefs(bridge, prev_step, step), float(bridge.std_fwd[step] ** 2)


def _predict(predict_x0: Predictor, xt: Tensor, step: int, clip_denoise: bool) -> Tensor:
    step_t = torch.full((xt.shape[0],), step, device=xt.device, dtype=torch.long)
    pred = predict_x0(xt, step_t).to(xt.dtype)
    return pred.clamp(-1.0, 1.0) if clip_denoise else pred


# ---------------------------------------------------------------------------- the samplers
def ddpm_sample(bridge: Bridge, predict_x0: Predictor, x1: Tensor, nfe: int, ot_ode: bool = False,
                mask: Tensor | None = None, clip_denoise: bool = False, generator: Generators = None,
                callback: StepCallback | None = None, progress: bool = False) -> Tensor:
    """The authors' sampler (Algorithm 2): the DDPM posterior (Eq. 4) from X_{N-1} = x1 down to step 0.

    Steps as :meth:`Bridge.timesteps` (``nfe`` evaluations); ``ot_ode`` takes the posterior means only
    (Prop. 3.4, deterministic). Inpainting ``mask`` (B or 1, 1 or C, H, W), 1 = hole: the hole of x1 is
    filled with N(0, 1) and after every step the known region is reset to Eq. 11 with X_0 = x1 there,
    ``x1 + std_sb[prev] * z`` (``x1`` with ``ot_ode``), as the authors' ``ddpm_sampling``. No noise is added
    at the last step (to step 0). Returns the state at step 0, (B, C, H, W).
    """
    _check_x1(x1, mask)
    steps = bridge.timesteps(nfe)
    x1, mask = _start(x1, mask, generator)
    xt = x1
    step_coefs = partial(_ddpm_coefs, bridge)
    for prev_step, step, (posterior, std_sb) in _pairs(steps, step_coefs, progress, "I2SB sampling"):
        pred_x0 = _predict(predict_x0, xt, step, clip_denoise)
        xt = bridge.posterior_sample(prev_step, step, xt, pred_x0, ot_ode=ot_ode, generator=generator,
                                     coefs=posterior)  # Eq. 4
        if mask is not None:
            known = x1 if ot_ode else x1 + std_sb * _randn(x1, generator)  # Eq. 11
            xt = keep_known(xt, known, mask)
        if callback is not None:
            callback(prev_step, step, xt, pred_x0)
    return xt


def implicit_sample(bridge: Bridge, predict_x0: Predictor, x1: Tensor, nfe: int, eta: float = DEFAULT_ETA,
                    mask: Tensor | None = None, clip_denoise: bool = False,
                    generator: Generators = None, callback: StepCallback | None = None,
                    progress: bool = False, boot_noise: Tensor | None = None) -> Tensor:
    """Implicit bridge sampler (:func:`implicit_coefs`) for SDE-trained models; ``x1`` (B, C, H, W) -> X_0.

    Steps as :meth:`Bridge.timesteps` (``nfe`` evaluations). ``eta = 1`` is :meth:`Bridge.sample`
    draw for draw (same generator -> same output up to float rounding, mask included). ``eta = 0`` draws
    noise only in the first step: the result is a deterministic function of x1 and ``boot_noise``
    (N(0, I), shape of x1; None draws it from ``generator``; zeros start from the posterior mean). No noise
    is added at the last step (to step 0), as the authors do.

    Inpainting ``mask`` (1 = hole) as :meth:`Bridge.sample`: the hole of x1 is filled with N(0, 1), and after
    every step the known region is set to Eq. 11 with X_0 = x1 there, ``x1 + std_sb[prev] * zeta``. The
    authors draw zeta afresh each step; here ``zeta <- sqrt(1 - eta^2) zeta + eta z`` (still N(0, I) at every
    step, fresh at eta = 1 -- the authors' rule -- and frozen after the first step at eta = 0).
    """
    eta = check_eta(eta)
    _check_x1(x1, mask)
    steps = bridge.timesteps(nfe)
    if boot_noise is not None and boot_noise.shape != x1.shape:
        raise ValueError(f"boot_noise must have shape {tuple(x1.shape)}, got {tuple(boot_noise.shape)}")
    x1, mask = _start(x1, mask, generator)
    top, xt, zeta = bridge.n_steps - 1, x1, None
    step_coefs = partial(_implicit_coefs, bridge, eta=eta)
    for prev_step, step, (c, std_sb) in _pairs(steps, step_coefs, progress, "I2SB implicit sampling"):
        pred_x0 = _predict(predict_x0, xt, step, clip_denoise)
        booting = step == top
        x_prev = c.c_x0 * pred_x0 + c.c_x1 * x1 + c.c_xt * xt
        if prev_step > 0 and c.std > 0:
            z = boot_noise.to(x1) if booting and boot_noise is not None else _randn(x1, generator)
            x_prev = x_prev + c.std * z
        if mask is not None:
            if booting:
                zeta = boot_noise.to(x1) if boot_noise is not None else _randn(x1, generator)
            elif eta > 0:
                zeta = math.sqrt(1.0 - eta**2) * zeta + eta * _randn(x1, generator)
            x_prev = keep_known(x_prev, x1 + std_sb * zeta, mask)
        xt = x_prev
        if callback is not None:
            callback(prev_step, step, xt, pred_x0)
    return xt


def heun_steps(bridge: Bridge, nfe: int) -> list[int]:
    """Steps of :func:`heun_sample` for ``nfe`` evaluations: ``Bridge.timesteps(nfe // 2 + 1)``."""
    bridge.timesteps(nfe)  # validates nfe
    return bridge.timesteps(nfe // 2 + 1)


def heun_sample(bridge: Bridge, predict_x0: Predictor, x1: Tensor, nfe: int, mask: Tensor | None = None,
                clip_denoise: bool = False, generator: Generators = None,
                callback: StepCallback | None = None, progress: bool = False) -> Tensor:
    """Second-order OT-ODE solver (Heun / DPM-Solver-2 style, :func:`heun_coefs`) with exactly ``nfe`` evaluations.

    Each interval of :func:`heun_steps` takes the authors' OT-ODE step to an Euler state, predicts x0 there
    and recombines both predictions. The last interval (to step 0) is not corrected: there sigma^2 is
    tiny and a predictor is nearly the identity, so a correction would cost an evaluation for nothing
    (as EDM's Heun skips sigma = 0); with even ``nfe`` the first interval is not corrected either.
    ``nfe = 1`` and ``nfe = 2`` equal the authors' OT-ODE sampler. Mask: as ``Bridge.sample(ot_ode=True)``,
    the known region is reset to x1 after every state (the Euler state included). The callback gets the
    x0 the step moved towards: X_s = r X_t + (1 - r) pred_x0.
    """
    _check_x1(x1, mask)
    steps = heun_steps(bridge, nfe)
    x1, mask = _start(x1, mask, generator)
    xt = x1
    pairs = _pairs(steps, partial(heun_coefs, bridge), progress, "I2SB Heun sampling")
    for i, (prev_step, step, (r, c_t, c_s)) in enumerate(pairs):
        pred_x0 = _predict(predict_x0, xt, step, clip_denoise)
        x_prev = keep_known(r * xt + (1.0 - r) * pred_x0, x1, mask)  # Euler: the authors' OT-ODE step
        corrected = prev_step > 0 and not (nfe % 2 == 0 and i == 0)
        if corrected:
            pred_prev = _predict(predict_x0, x_prev, prev_step, clip_denoise)
            pred_x0 = (c_t * pred_x0 + c_s * pred_prev) / (1.0 - r)
            x_prev = keep_known(r * xt + (1.0 - r) * pred_x0, x1, mask)
        xt = x_prev
        if callback is not None:
            callback(prev_step, step, xt, pred_x0)
    return xt


def multistep_sample(bridge: Bridge, predict_x0: Predictor, x1: Tensor, nfe: int, mask: Tensor | None = None,
                     clip_denoise: bool = False, generator: Generators = None,
                     callback: StepCallback | None = None, progress: bool = False) -> Tensor:
    """Second-order multistep OT-ODE solver (DPM-Solver++(2M)-like), one evaluation per step.

    x0_hat is extrapolated linearly in sigma^2 from this step's and the previous step's predictions and
    integrated exactly (:func:`ode_coefs`): X_s = r X_t + (1 - r) x0_t + (1 - g) delta (x0_t - x0_u) /
    (s_u - s_t), u the previous step. The first step has no history and is the authors' OT-ODE step
    (so ``nfe = 1`` equals it). Steps as :meth:`Bridge.timesteps`; mask as ``Bridge.sample(ot_ode=True)``.
    The callback gets the extrapolated x0: X_s = r X_t + (1 - r) pred_x0.
    """
    _check_x1(x1, mask)
    steps = bridge.timesteps(nfe)
    x1, mask = _start(x1, mask, generator)
    xt, history = x1, None
    step_coefs = partial(_multistep_coefs, bridge)
    for prev_step, step, ((r, g, delta), s_t) in _pairs(steps, step_coefs, progress, "I2SB multistep sampling"):
        pred_t = _predict(predict_x0, xt, step, clip_denoise)
        pred_x0 = pred_t
        if history is not None:
            s_u, pred_u = history
            pred_x0 = pred_t + (1.0 - g) * delta / ((1.0 - r) * (s_u - s_t)) * (pred_t - pred_u)
        history = (s_t, pred_t)
        xt = keep_known(r * xt + (1.0 - r) * pred_x0, x1, mask)
        if callback is not None:
            callback(prev_step, step, xt, pred_x0)
    return xt


# ---------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class SamplerSpec:
    """A sampler: its function, the models it is for (``ot_ode``: True, False or None = both), its steps."""

    run: Callable[..., Tensor]
    ot_ode: bool | None
    steps: Callable[[Bridge, int], list[int]]
    uses_eta: bool = False


def _timesteps(bridge: Bridge, nfe: int) -> list[int]:
    return bridge.timesteps(nfe)


SAMPLERS: dict[str, SamplerSpec] = {
    "ddpm": SamplerSpec(ddpm_sample, None, _timesteps),
    "implicit": SamplerSpec(implicit_sample, False, _timesteps, uses_eta=True),
    "heun": SamplerSpec(heun_sample, True, heun_steps),
    "multistep": SamplerSpec(multistep_sample, True, _timesteps),
}
MODEL_KIND = {False: "SDE-trained models (ot_ode=false)", True: "OT-ODE models (ot_ode=true)"}


def check_sampler(sampler: str, ot_ode: bool, eta: float | None = None) -> SamplerSpec:
    """The :data:`SAMPLERS` entry for ``sampler``; ``ValueError`` if it does not fit ``ot_ode`` or ``eta``."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    spec = SAMPLERS[sampler]
    if spec.ot_ode is not None and bool(ot_ode) != spec.ot_ode:
        raise ValueError(f"sampler={sampler} is for {MODEL_KIND[spec.ot_ode]}, got ot_ode={bool(ot_ode)}; set "
                         f"ot_ode={str(spec.ot_ode).lower()} explicitly to run it anyway, or use sampler=ddpm")
    if eta is not None:
        if not spec.uses_eta:
            raise ValueError(f"eta applies to sampler=implicit only, got eta={eta} with sampler={sampler}")
        check_eta(eta)
    return spec


def sampler_steps(bridge: Bridge, sampler: str, nfe: int) -> list[int]:
    """Step indices a sampler visits for ``nfe`` evaluations, from 0 to ``n_steps - 1``."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    return SAMPLERS[sampler].steps(bridge, nfe)


def sample(bridge: Bridge, predict_x0: Predictor, x1: Tensor, nfe: int, sampler: str = "ddpm",
           eta: float | None = None, ot_ode: bool = False, mask: Tensor | None = None, clip_denoise: bool = False,
           generator: Generators = None, callback: StepCallback | None = None,
           progress: bool = False) -> Tensor:
    """Restore ``x1`` (B, C, H, W) with ``sampler`` (see the module table) in ``nfe`` network evaluations.

    ``ot_ode`` says how the model was trained; ``eta`` (implicit only; None: 0) is the implicit sampler's
    stochasticity. Other arguments as :meth:`Bridge.sample`. Returns the state at step 0, (B, C, H, W).
    """
    spec = check_sampler(sampler, ot_ode, eta)
    kwargs = dict(mask=mask, clip_denoise=clip_denoise, generator=generator, callback=callback, progress=progress)
    if spec.uses_eta:
        kwargs["eta"] = DEFAULT_ETA if eta is None else eta
    if spec.ot_ode is None:
        kwargs["ot_ode"] = ot_ode
    return spec.run(bridge, predict_x0, x1, nfe, **kwargs)
