"""How each kind of trained network restores, behind :class:`~i2sb.restoration.restorer.RestorationKind`.

* :class:`BridgeRestoration` -- I2SB: the bridge samplers of :mod:`i2sb.core.samplers` (Algorithm 2 by default);
* :class:`DiffusionRestoration` -- the Gaussian-diffusion baselines, each a sampling function with the samplers'
  signature: :func:`sample_palette` (conditional DDIM-η / DDPM sampling from N(0, I)), DDNM (an unconditional
  prior and the task's linear operator, :func:`ddnm_restoration`) and :func:`sample_prior` (an unconditional
  prior's own samples, x1 ignored: what validation shows for a ``method=ddpm`` run whose task has no linear
  operator).

Every kind checks its sampler settings once (``resolve``, called by ``Restorer.options``), gives the steps of an NFE
and the sampler with its knobs bound; ``Restorer.restore`` then calls the sampler itself,
``run(denoiser, x1, steps, schedule, *, mask, generator, callback)``. For the Gaussian-diffusion baselines
``sampler`` maps onto DDIM's η (Song et al. 2021) as the bridge samplers do: ``ddpm`` is η = 1 (DDPM ancestral; no
``eta``), ``implicit`` is DDIM with ``eta``; the ODE solvers ``heun`` / ``multistep`` are I2SB's only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from torch import Tensor

from .. import degrade
from ..baselines.ddnm import DDNMOptions, ddnm_sample, measurement
from ..baselines.gaussian import GaussianDiffusion
from ..baselines.palette import palette_sample
from ..config import TaskConfig
from ..core.boundary import bridge_boundary, fill_hole
from ..core.bridge import Bridge
from ..core.denoiser import Denoiser
from ..core.noise import Generators, randn
from ..core.samplers import SAMPLERS, bind_sampler, check_eta, check_sampler, sampler_eta
from ..core.types import StepCallback
from .restorer import OptionError, SamplingOptions

DIFFUSION_SAMPLERS = ("ddpm", "implicit")  # DDIM with eta = 1 (DDPM ancestral), DDIM with the given eta


def _option(key: str, check: Callable[[], object]) -> object:
    """``check()``, its ``ValueError`` as an :class:`OptionError` for ``key``."""
    try:
        return check()
    except ValueError as err:
        raise OptionError(key, str(err)) from None


class BridgeRestoration:
    """I2SB: the degraded image is the bridge's X_1; ``task`` gives the boundary (masks, ``cond_x1``,
    ``add_x1_noise``, as the authors' ``compute_batch``) and how it was trained (``ot_ode``)."""

    name = "I2SB"
    pads = True

    def __init__(self, bridge: Bridge, task: TaskConfig):
        self.schedule, self.task = bridge, task
        self.max_nfe = bridge.n_steps - 1

    def resolve(self, sampler: str, eta: float | None, ot_ode: bool | None) -> tuple[float | None, bool]:
        """``ot_ode`` None -> as trained; ``sampler`` / ``eta`` checked against it (:func:`check_sampler`)."""
        ot_ode = bool(self.task.ot_ode) if ot_ode is None else bool(ot_ode)
        _option("sampler", lambda: check_sampler(sampler, ot_ode))
        return _option("eta", lambda: sampler_eta(sampler, eta)), ot_ode

    def steps(self, sampler: str, nfe: int) -> list[int]:
        return SAMPLERS[sampler].steps(self.schedule, nfe)

    def sampler(self, options: SamplingOptions) -> Callable[..., Tensor]:
        return bind_sampler(options.sampler, options.nfe, options.eta, options.ot_ode)

    def boundary(self, x1: Tensor, mask: Tensor | None, generator: Generators) -> tuple[Tensor, Tensor | None]:
        """``(x1, cond)``: the hole filled with noise and ``cond`` kept (:func:`bridge_boundary`; the sampler fills
        the hole of x1 once more, as the authors' ``ddpm_sampling`` does, so the random draws come in their order)."""
        return bridge_boundary(x1, mask, self.task.cond_x1, self.task.add_x1_noise, generator)


def diffusion_eta(sampler: str, eta: float | None, ot_ode: bool | None, implicit_eta: float) -> float:
    """DDIM's η for a Gaussian-diffusion baseline; :class:`OptionError` for the I2SB-only options."""
    if ot_ode:
        raise OptionError("ot_ode", "is an I2SB option; for a deterministic baseline use sampler=implicit eta=0")
    if sampler not in DIFFUSION_SAMPLERS:
        raise OptionError("sampler", f"must be one of {', '.join(DIFFUSION_SAMPLERS)} for this model, got {sampler!r}")
    if sampler == "ddpm":
        if eta is not None:
            raise OptionError("eta", f"eta applies to sampler=implicit only, got eta={eta} with sampler={sampler}")
        return 1.0
    return float(implicit_eta) if eta is None else _option("eta", lambda: check_eta(eta))


DiffusionSampler = Callable[..., Tensor]
"""``(denoiser, x1, steps, diffusion, *, mask, generator, callback, options) -> restored``: one baseline's math."""


@dataclass(frozen=True)
class DiffusionRestoration:
    """A Gaussian-diffusion baseline behind the :class:`~.restorer.RestorationKind` interface: the options and
    steps of DDIM-η on ``schedule`` are shared, ``sample`` is the baseline's own math (see the factories below);
    ``conditional``: the network sees the degraded image (its hole filled with noise, as in training)."""

    name: str
    schedule: GaussianDiffusion
    sample: DiffusionSampler
    implicit_eta: float = 0.0  # eta of sampler=implicit when none is given
    pads: bool = True
    conditional: bool = False

    @property
    def max_nfe(self) -> int:
        return self.schedule.n_steps

    def resolve(self, sampler: str, eta: float | None, ot_ode: bool | None) -> tuple[float, bool]:
        return diffusion_eta(sampler, eta, ot_ode, self.implicit_eta), False

    def steps(self, sampler: str, nfe: int) -> list[int]:
        return self.schedule.timesteps(nfe)

    def sampler(self, options: SamplingOptions) -> Callable[..., Tensor]:
        return partial(self.sample, options=options)

    def boundary(self, x1: Tensor, mask: Tensor | None, generator: Generators) -> tuple[Tensor, Tensor | None]:
        if not self.conditional:
            return x1, None
        x1 = fill_hole(x1, mask, generator)
        return x1, x1


def sample_palette(denoiser: Denoiser, x1: Tensor, steps: list[int], diffusion: GaussianDiffusion, *,
                   mask: Tensor | None, generator: Generators, callback: StepCallback | None,
                   options: SamplingOptions) -> Tensor:
    """Palette (:func:`~i2sb.baselines.palette.palette_sample`) with the denoiser's ε, its condition bound."""
    return palette_sample(denoiser.output, diffusion, x1, len(steps) - 1, options.eta, mask, options.clip_denoise,
                          generator, callback)


def palette_restoration(diffusion: GaussianDiffusion) -> DiffusionRestoration:
    """Palette: the ε-network conditioned on the degraded image (hole filled with noise, as in training)
    samples from N(0, I) (:func:`~i2sb.baselines.palette.palette_sample`)."""
    return DiffusionRestoration("Palette", diffusion, sample_palette, conditional=True)


def sample_ddnm(task: TaskConfig, ddnm: DDNMOptions, denoiser: Denoiser, x1: Tensor, steps: list[int],
                diffusion: GaussianDiffusion, *, mask: Tensor | None, generator: Generators,
                callback: StepCallback | None, options: SamplingOptions) -> Tensor:
    """DDNM / DDNM+ (:func:`~i2sb.baselines.ddnm.ddnm_sample`) on ``task``'s operator for x1's size."""
    height, width = x1.shape[-2:]
    if height != width:
        raise ValueError(f"DDNM needs square images (its operators are built per side), got {width}x{height}")
    deg = degrade.build(task.degradation, height, **dict(task.params))
    op = deg.operator(mask) if deg.needs_mask else deg.operator()
    ddnm = replace(ddnm, eta=options.eta, clip_denoise=ddnm.clip_denoise or options.clip_denoise)
    x_T = randn(x1, generator)
    return ddnm_sample(denoiser.output, diffusion, op, measurement(op, x1), x_T, len(steps) - 1, ddnm, generator,
                       callback)


def ddnm_restoration(diffusion: GaussianDiffusion, task: TaskConfig,
                     options: DDNMOptions = DDNMOptions()) -> DiffusionRestoration:
    """DDNM / DDNM+ with an unconditional prior for the linear degradation ``task.degradation``.

    Images must be square (the operators of :mod:`i2sb.degrade` are built per side) with a side divisible by
    the U-Net's down-sampling (and by 4 for SR); they are not padded. Inputs are x1 as I2SB sees them; y is
    recovered from x1 by :func:`~i2sb.baselines.ddnm.measurement`. ``sampler=ddpm`` is DDNM's Algorithm 1
    (η = 1); ``sampler=implicit`` is what DDNM's code runs, DDIM with ``eta`` (None: ``options.eta``, 0.85).
    """
    check_linear_task(task)
    return DiffusionRestoration("DDNM", diffusion, partial(sample_ddnm, task, options), options.eta, pads=False)


def sample_prior(denoiser: Denoiser, x1: Tensor, steps: list[int], diffusion: GaussianDiffusion, *,
                 mask: Tensor | None, generator: Generators, callback: StepCallback | None,
                 options: SamplingOptions) -> Tensor:
    """An unconditional prior's own samples (DDPM ancestral, or DDIM with ``eta``); x1 gives the shape only."""
    x_T = randn(x1, generator)
    return diffusion.sample(denoiser.output, x_T, len(steps) - 1, eta=options.eta, clip_denoise=options.clip_denoise,
                            generator=generator, callback=callback)


def prior_samples(diffusion: GaussianDiffusion) -> DiffusionRestoration:
    """Unconditional samples of a prior (DDPM ancestral, or DDIM with ``eta``); the degraded image is ignored."""
    return DiffusionRestoration("prior samples", diffusion, sample_prior)


def is_linear_task(task: TaskConfig) -> bool:
    """Whether ``task.degradation`` is a linear degradation of :mod:`i2sb.degrade` (DDNM can restore it)."""
    return task.degradation is not None and degrade.build(task.degradation, 16, **dict(task.params)).is_linear


def check_linear_task(task: TaskConfig) -> None:
    """ValueError unless ``task`` names a linear degradation of :mod:`i2sb.degrade`."""
    if task.degradation is None:
        raise ValueError("DDNM needs a task (a linear degradation), e.g. task=sr4x_pool")
    if not is_linear_task(task):
        linear = [name for name in degrade.TASKS if _is_linear(name)]
        raise ValueError(f"DDNM needs a linear task; '{task.degradation}' is not (linear: {', '.join(linear)})")


def _is_linear(name: str) -> bool:
    try:
        return degrade.build(name, 16).is_linear
    except ValueError:
        return False
