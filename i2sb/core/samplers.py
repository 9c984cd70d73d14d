"""The bridge samplers, free functions with one signature (k-diffusion's):
``sample_<name>(denoiser, x1, steps, bridge, *, mask, generator, callback, **knobs)`` -> the state at step 0.

``denoiser(xt, step) -> x0_hat`` is an x0-predictor (:class:`~i2sb.core.denoiser.Denoiser` with its conditioning,
clipping and precision fixed, or any function); ``steps`` are the ascending step indices the caller computed once
(:data:`SAMPLERS`' ``steps``, e.g. :meth:`Bridge.timesteps`); ``bridge`` gives the tables (:class:`BridgeTables`).
The callers check their values once (``Restorer.options``, :func:`check_sampler`); nothing here checks them again.
The samplers: the authors' Algorithm 2 and faster ones -- an implicit (non-Markovian) sampler with a knob eta,
and second-order solvers of the OT-ODE (Eq. 13).

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

Preconditions (the callers' checks): ``x1`` (B, C, H, W) floating; ``mask`` None or (B or 1, 1 or C, H, W), 1 =
hole; ``steps`` ascending from 0 to ``bridge.n_steps - 1``; ``eta`` in [0, 1]; ``generator`` on ``x1``'s device.
Notation: ``s_n = std_fwd[n]**2`` (sigma_n^2, variance from X_0), ``top = n_steps - 1`` (X_top = x1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import torch
from torch import Tensor

from .boundary import fill_hole, keep_known
from .noise import Generators, randn
from .sampler_coefs import StepCoefs, heun_coefs, implicit_coefs, ode_coefs
from .types import BridgeTables, Predictor, StepCallback

DEFAULT_ETA = 0.0  # the implicit sampler's default: deterministic after the first step (DBIM's choice)
Coefs = TypeVar("Coefs")


# ---------------------------------------------------------------------------- shared helpers
def _start(x1: Tensor, mask: Tensor | None, generator: Generators) -> tuple[Tensor, Tensor | None]:
    """``(x1, mask)`` with the hole of x1 filled with N(0, 1), the generator's first draw (as the authors)."""
    if mask is None:
        return x1, None
    return fill_hole(x1, mask, generator), mask.to(device=x1.device, dtype=x1.dtype)


def _pairs(steps: Sequence[int], coefs: Callable[[int, int], Coefs]) -> list[tuple[int, int, Coefs]]:
    """``(prev_step, step, coefs(prev_step, step))`` from the degraded end to the clean end.

    Every step's coefficients are Python floats computed here, before the first network call: the loop itself
    reads no tensor into Python (no host-device synchronisation on CUDA, tests/test_syncs.py)."""
    return [(prev, step, coefs(prev, step)) for prev, step in list(zip(steps[:-1], steps[1:]))[::-1]]


def _at(step: int, like: Tensor) -> Tensor:
    """``step`` as the LongTensor (B,) a denoiser takes, on ``like``'s device."""
    return torch.full((like.shape[0],), step, device=like.device, dtype=torch.long)


# ---------------------------------------------------------------------------- the samplers
def sample_ddpm(denoiser: Predictor, x1: Tensor, steps: Sequence[int], bridge: BridgeTables, *,
                mask: Tensor | None = None, generator: Generators = None, callback: StepCallback | None = None,
                ot_ode: bool = False) -> Tensor:
    """The authors' sampler (Algorithm 2): the DDPM posterior (Eq. 4) from X_{N-1} = x1 down to step 0.

    ``ot_ode`` takes the posterior means only (Prop. 3.4, deterministic). Inpainting ``mask``: the hole of x1
    is filled with N(0, 1) and after every step the known region is reset to Eq. 11 with X_0 = x1 there,
    ``x1 + std_sb[prev] * z`` (``x1`` with ``ot_ode``), as the authors' ``ddpm_sampling``. No noise is added
    at the last step (to step 0). Returns the state at step 0, (B, C, H, W).
    """
    x1, mask = _start(x1, mask, generator)
    xt = x1
    for prev_step, step, ((c_x0, c_xt, std), std_sb) in _pairs(steps, lambda s, t: _ddpm_coefs(bridge, s, t)):
        pred_x0 = denoiser(xt, _at(step, xt))
        xt = c_x0 * pred_x0 + c_xt * xt  # Eq. 4: the posterior's mean ...
        if not ot_ode and prev_step > 0:
            xt = xt + std * randn(xt, generator)  # ... and its noise
        if mask is not None:
            known = x1 if ot_ode else x1 + std_sb * randn(x1, generator)  # Eq. 11
            xt = keep_known(xt, known, mask)
        if callback is not None:
            callback(prev_step, step, xt, pred_x0)
    return xt


def _ddpm_coefs(bridge: BridgeTables, prev_step: int, step: int) -> tuple[tuple[float, float, float], float]:
    """Eq. 4's coefficients and ``std_sb[prev_step]`` (Eq. 11, the known region of inpainting)."""
    return bridge.posterior_coefs(prev_step, step), float(bridge.std_sb[prev_step])


def sample_implicit(denoiser: Predictor, x1: Tensor, steps: Sequence[int], bridge: BridgeTables, *,
                    mask: Tensor | None = None, generator: Generators = None, callback: StepCallback | None = None,
                    eta: float = DEFAULT_ETA, boot_noise: Tensor | None = None) -> Tensor:
    """Implicit bridge sampler (:func:`implicit_coefs`) for SDE-trained models; ``x1`` (B, C, H, W) -> X_0.

    ``eta = 1`` is :func:`sample_ddpm` draw for draw (same generator -> same output up to float rounding, mask
    included). ``eta = 0`` draws noise only in the first step: the result is a deterministic function of x1 and
    ``boot_noise`` (N(0, I), shape of x1; None draws it from ``generator``; zeros start from the posterior mean).
    No noise is added at the last step (to step 0), as the authors do.

    Inpainting ``mask`` as :func:`sample_ddpm`: the hole of x1 is filled with N(0, 1), and after every step the
    known region is set to Eq. 11 with X_0 = x1 there, ``x1 + std_sb[prev] * zeta``. The authors draw zeta
    afresh each step; here ``zeta <- sqrt(1 - eta^2) zeta + eta z`` (still N(0, I) at every step, fresh at
    eta = 1 -- the authors' rule -- and frozen after the first step at eta = 0).
    """
    x1, mask = _start(x1, mask, generator)
    top, xt, zeta = bridge.n_steps - 1, x1, None
    step_coefs = lambda s, t: (implicit_coefs(bridge, s, t, eta), float(bridge.std_sb[s]))  # noqa: E731
    for prev_step, step, (c, std_sb) in _pairs(steps, step_coefs):
        pred_x0 = denoiser(xt, _at(step, xt))
        booting = step == top
        x_prev = c.c_x0 * pred_x0 + c.c_x1 * x1 + c.c_xt * xt
        if prev_step > 0 and c.std > 0:
            z = boot_noise.to(x1) if booting and boot_noise is not None else randn(x1, generator)
            x_prev = x_prev + c.std * z
        if mask is not None:
            if booting:
                zeta = boot_noise.to(x1) if boot_noise is not None else randn(x1, generator)
            elif eta > 0:
                zeta = math.sqrt(1.0 - eta**2) * zeta + eta * randn(x1, generator)
            x_prev = keep_known(x_prev, x1 + std_sb * zeta, mask)
        xt = x_prev
        if callback is not None:
            callback(prev_step, step, xt, pred_x0)
    return xt


def sample_heun(denoiser: Predictor, x1: Tensor, steps: Sequence[int], bridge: BridgeTables, *,
                mask: Tensor | None = None, generator: Generators = None, callback: StepCallback | None = None,
                correct_first: bool = True) -> Tensor:
    """Second-order OT-ODE solver (Heun / DPM-Solver-2 style, :func:`heun_coefs`).

    Each interval of ``steps`` takes the authors' OT-ODE step to an Euler state, predicts x0 there and
    recombines both predictions. The last interval (to step 0) is not corrected: there sigma^2 is tiny and a
    predictor is nearly the identity, so a correction would cost an evaluation for nothing (as EDM's Heun skips
    sigma = 0); without ``correct_first`` the first interval is not corrected either. With K intervals that is
    2K - 1 evaluations (2K - 2 without ``correct_first``): :func:`heun_steps` picks K and ``correct_first`` for
    an NFE; NFE 1 and 2 equal the authors' OT-ODE sampler. Mask: as ``sample_ddpm(ot_ode=True)``, the known
    region is reset to x1 after every state (the Euler state included). The callback gets the x0 the step
    moved towards: X_s = r X_t + (1 - r) pred_x0.
    """
    x1, mask = _start(x1, mask, generator)
    xt = x1
    for i, (prev_step, step, (r, c_t, c_s)) in enumerate(_pairs(steps, lambda s, t: heun_coefs(bridge, s, t))):
        pred_x0 = denoiser(xt, _at(step, xt))
        x_prev = keep_known(r * xt + (1.0 - r) * pred_x0, x1, mask)  # Euler: the authors' OT-ODE step
        if prev_step > 0 and (correct_first or i > 0):
            pred_prev = denoiser(x_prev, _at(prev_step, xt))
            pred_x0 = (c_t * pred_x0 + c_s * pred_prev) / (1.0 - r)
            x_prev = keep_known(r * xt + (1.0 - r) * pred_x0, x1, mask)
        xt = x_prev
        if callback is not None:
            callback(prev_step, step, xt, pred_x0)
    return xt


def heun_steps(bridge: BridgeTables, nfe: int) -> list[int]:
    """Steps of :func:`sample_heun` for ``nfe`` evaluations: the authors' spacing with ``nfe // 2 + 1`` intervals."""
    return timesteps(bridge, nfe // 2 + 1)


def sample_multistep(denoiser: Predictor, x1: Tensor, steps: Sequence[int], bridge: BridgeTables, *,
                     mask: Tensor | None = None, generator: Generators = None,
                     callback: StepCallback | None = None) -> Tensor:
    """Second-order multistep OT-ODE solver (DPM-Solver++(2M)-like), one evaluation per step.

    x0_hat is extrapolated linearly in sigma^2 from this step's and the previous step's predictions and
    integrated exactly (:func:`ode_coefs`): X_s = r X_t + (1 - r) x0_t + (1 - g) delta (x0_t - x0_u) /
    (s_u - s_t), u the previous step. The first step has no history and is the authors' OT-ODE step
    (so NFE 1 equals it). Mask as ``sample_ddpm(ot_ode=True)``.
    The callback gets the extrapolated x0: X_s = r X_t + (1 - r) pred_x0.
    """
    x1, mask = _start(x1, mask, generator)
    xt, history = x1, None
    step_coefs = lambda s, t: (ode_coefs(bridge, s, t), float(bridge.std_fwd[t] ** 2))  # noqa: E731
    for prev_step, step, ((r, g, delta), s_t) in _pairs(steps, step_coefs):
        pred_t = denoiser(xt, _at(step, xt))
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
def space_indices(num_steps: int, count: int) -> list[int]:
    """``count`` indices spread over ``[0, num_steps - 1]``, the authors' spacing (``util.space_indices``).

    The fractional stride is accumulated in Python floats and rounded with Python's ``round`` (ties to
    even), which is what makes e.g. ``space_indices(1000, 3) == [0, 500, 999]``. ``1 <= count <= num_steps``.
    """
    stride = 1.0 if count <= 1 else (num_steps - 1) / (count - 1)
    indices, position = [], 0.0
    for _ in range(count):
        indices.append(round(position))
        position += stride
    return indices


def timesteps(bridge: BridgeTables, nfe: int) -> list[int]:
    """``nfe + 1`` step indices from 0 to ``n_steps - 1`` (the authors' spacing), ``1 <= nfe < n_steps``."""
    return space_indices(bridge.n_steps, nfe + 1)


def _no_knobs(nfe: int, eta: float | None, ot_ode: bool) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class SamplerEntry:
    """A sampler of :data:`SAMPLERS`: its function, the models it is for (``ot_ode``: True, False or None = both),
    its steps for an NFE, and the knobs it takes from ``(nfe, eta, ot_ode)``."""

    run: Callable[..., Tensor]
    ot_ode: bool | None
    steps: Callable[[BridgeTables, int], list[int]] = timesteps
    knobs: Callable[[int, "float | None", bool], dict[str, Any]] = _no_knobs
    uses_eta: bool = False


SAMPLERS: dict[str, SamplerEntry] = {
    "ddpm": SamplerEntry(sample_ddpm, None, knobs=lambda nfe, eta, ot_ode: {"ot_ode": ot_ode}),
    "implicit": SamplerEntry(sample_implicit, False, knobs=lambda nfe, eta, ot_ode: {"eta": eta}, uses_eta=True),
    "heun": SamplerEntry(sample_heun, True, heun_steps, lambda nfe, eta, ot_ode: {"correct_first": nfe % 2 == 1}),
    "multistep": SamplerEntry(sample_multistep, True),
}
MODEL_KIND = {False: "SDE-trained models (ot_ode=false)", True: "OT-ODE models (ot_ode=true)"}


def check_sampler(sampler: str, ot_ode: bool) -> None:
    """The one check of a bridge sampler's name: one of :data:`SAMPLERS`, for models trained like ``ot_ode``;
    ``ValueError`` otherwise (worded to follow the key's name, ``sampler: ...``)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    entry = SAMPLERS[sampler]
    if entry.ot_ode is not None and bool(ot_ode) != entry.ot_ode:
        raise ValueError(f"sampler={sampler} is for {MODEL_KIND[entry.ot_ode]}, got ot_ode={bool(ot_ode)}; set "
                         f"ot_ode={str(entry.ot_ode).lower()} explicitly to run it anyway, or use sampler=ddpm")


def sampler_eta(sampler: str, eta: float | None) -> float | None:
    """The one check of ``eta`` for a known ``sampler``: the eta it runs with (implicit: ``eta`` in [0, 1], None
    -> :data:`DEFAULT_ETA`; the others take none: None); ``ValueError`` otherwise (the range first, as
    ``i2sb-sample`` has always reported ``eta=1.5``)."""
    eta = None if eta is None else check_eta(eta)
    if not SAMPLERS[sampler].uses_eta:
        if eta is not None:
            raise ValueError(f"eta applies to sampler=implicit only, got eta={eta:g} with sampler={sampler}")
        return None
    return DEFAULT_ETA if eta is None else eta


def check_eta(eta: float) -> float:
    """``eta`` as a float in [0, 1]; ``ValueError`` otherwise."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"must be in [0, 1], got {eta!r}")
    return float(eta)


def bind_sampler(sampler: str, nfe: int, eta: float | None, ot_ode: bool) -> Callable[..., Tensor]:
    """``sample_<sampler>`` with its knobs bound, called as ``run(denoiser, x1, steps, bridge, *, mask, generator,
    callback)``; the values as checked (:func:`check_sampler`, :func:`sampler_eta`)."""
    entry = SAMPLERS[sampler]
    return partial(entry.run, **entry.knobs(nfe, eta, ot_ode))
