"""How each kind of trained network restores, behind :class:`~i2sb.restoration.restorer.Algorithm`.

* :class:`BridgeRestoration` -- I2SB: the bridge samplers of :mod:`i2sb.core.samplers` (Algorithm 2 by default);
* :class:`DiffusionRestoration` -- the Gaussian-diffusion baselines, each a sampling function:
  :func:`palette_restoration` (conditional DDIM-η / DDPM sampling from N(0, I)), :func:`ddnm_restoration`
  (DDNM / DDNM+: an unconditional prior and the task's linear operator) and :func:`prior_samples` (an
  unconditional prior's own samples, x1 ignored: what validation shows for a ``method=ddpm`` run whose task has
  no linear operator).

For the Gaussian-diffusion baselines ``sampler`` maps onto DDIM's η (Song et al. 2021) as the bridge samplers do:
``ddpm`` is η = 1 (DDPM ancestral; no ``eta``), ``implicit`` is DDIM with ``eta``; the ODE solvers ``heun`` /
``multistep`` are I2SB's only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from torch import Tensor, nn

from .. import degrade
from ..baselines.ddnm import DDNMOptions, ddnm_sample, measurement
from ..baselines.eps import make_eps_predictor
from ..baselines.gaussian import GaussianDiffusion
from ..baselines.palette import palette_sample
from ..config import TaskConfig
from ..core.boundary import bridge_boundary, fill_hole
from ..core.bridge import Bridge
from ..core.denoiser import make_predictor
from ..core.noise import Generators, randn
from ..core.sampler_coefs import check_eta
from ..core.samplers import DEFAULT_ETA, check_sampler, sample, sampler_steps
from ..core.types import StepCallback
from .restorer import SamplingOptions

DIFFUSION_SAMPLERS = ("ddpm", "implicit")  # DDIM with eta = 1 (DDPM ancestral), DDIM with the given eta


class BridgeRestoration:
    """I2SB: the degraded image is the bridge's X_1; ``task`` gives the boundary (masks, ``cond_x1``,
    ``add_x1_noise``, as the authors' ``compute_batch``) and how it was trained (``ot_ode``)."""

    name = "I2SB"
    pads = True

    def __init__(self, bridge: Bridge, task: TaskConfig):
        self.bridge, self.task = bridge, task
        self.max_nfe = bridge.n_steps - 1

    def resolve(self, sampler: str, eta: float | None, ot_ode: bool | None) -> tuple[float | None, bool]:
        """``ot_ode`` None -> as trained; ``sampler``/``eta`` checked against it (:func:`check_sampler`)."""
        ot_ode = bool(self.task.ot_ode) if ot_ode is None else bool(ot_ode)
        spec = check_sampler(sampler, ot_ode, eta)
        return (DEFAULT_ETA if eta is None else float(eta)) if spec.uses_eta else None, ot_ode

    def steps(self, options: SamplingOptions) -> list[int]:
        return sampler_steps(self.bridge, options.sampler, options.nfe)

    def run(self, model: nn.Module, x1: Tensor, mask: Tensor | None, options: SamplingOptions,
            generator: Generators, callback: StepCallback | None) -> Tensor:
        """The hole filled with noise and ``cond`` kept (the sampler fills the hole of x1 once more, as the
        authors' ``ddpm_sampling`` does, so the random draws come in their order); then the sampler."""
        x1, cond = bridge_boundary(x1, mask, self.task.cond_x1, self.task.add_x1_noise, generator)
        predict_x0 = make_predictor(model, self.bridge, cond, precision=options.precision)
        return sample(self.bridge, predict_x0, x1, options.nfe, sampler=options.sampler, eta=options.eta,
                      ot_ode=options.ot_ode, mask=mask, clip_denoise=options.clip_denoise, generator=generator,
                      callback=callback)


def diffusion_eta(sampler: str, eta: float | None, ot_ode: bool | None, implicit_eta: float) -> float:
    """DDIM's η for a Gaussian-diffusion baseline; ``ValueError`` for the I2SB-only options."""
    if ot_ode:
        raise ValueError("ot_ode is an I2SB option; for a deterministic baseline use sampler=implicit eta=0")
    if sampler not in DIFFUSION_SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(DIFFUSION_SAMPLERS)} for this model, got {sampler!r}")
    if sampler == "ddpm":
        if eta is not None:
            raise ValueError(f"eta applies to sampler=implicit only, got eta={eta} with sampler={sampler}")
        return 1.0
    return float(implicit_eta) if eta is None else check_eta(eta)


DiffusionSampler = Callable[[GaussianDiffusion, nn.Module, Tensor, "Tensor | None", SamplingOptions,
                             Generators, "StepCallback | None"], Tensor]
"""``(diffusion, model, x1, mask, options, generator, callback) -> restored``: one baseline's math."""


@dataclass(frozen=True)
class DiffusionRestoration:
    """A Gaussian-diffusion baseline behind the :class:`~.restorer.Algorithm` interface: the options and steps
    of DDIM-η on ``diffusion`` are shared, ``sample`` is the baseline's own math (see the factories below)."""

    name: str
    diffusion: GaussianDiffusion
    sample: DiffusionSampler
    implicit_eta: float = 0.0  # eta of sampler=implicit when none is given
    pads: bool = True

    @property
    def max_nfe(self) -> int:
        return self.diffusion.n_steps

    def resolve(self, sampler: str, eta: float | None, ot_ode: bool | None) -> tuple[float, bool]:
        return diffusion_eta(sampler, eta, ot_ode, self.implicit_eta), False

    def steps(self, options: SamplingOptions) -> list[int]:
        return self.diffusion.timesteps(options.nfe)

    def run(self, model: nn.Module, x1: Tensor, mask: Tensor | None, options: SamplingOptions,
            generator: Generators, callback: StepCallback | None) -> Tensor:
        return self.sample(self.diffusion, model, x1, mask, options, generator, callback)


def _palette(diffusion: GaussianDiffusion, model: nn.Module, x1: Tensor, mask: Tensor | None,
             options: SamplingOptions, generator: Generators, callback: StepCallback | None) -> Tensor:
    x1 = fill_hole(x1, mask, generator)
    predict = make_eps_predictor(model, x1, options.precision)
    return palette_sample(predict, diffusion, x1, options.nfe, options.eta, mask, options.clip_denoise, generator,
                          callback)


def palette_restoration(diffusion: GaussianDiffusion) -> DiffusionRestoration:
    """Palette: the ε-network conditioned on the degraded image (hole filled with noise, as in training)
    samples from N(0, I) (:func:`~i2sb.baselines.palette.palette_sample`)."""
    return DiffusionRestoration("Palette", diffusion, _palette)


def _ddnm(task: TaskConfig, ddnm: DDNMOptions, diffusion: GaussianDiffusion, model: nn.Module, x1: Tensor,
          mask: Tensor | None, options: SamplingOptions, generator: Generators,
          callback: StepCallback | None) -> Tensor:
    height, width = x1.shape[-2:]
    if height != width:
        raise ValueError(f"DDNM needs square images (its operators are built per side), got {width}x{height}")
    deg = degrade.build(task.degradation, height, **dict(task.params))
    op = deg.operator(mask) if deg.needs_mask else deg.operator()
    ddnm = replace(ddnm, eta=options.eta, clip_denoise=ddnm.clip_denoise or options.clip_denoise)
    x_T = randn(x1, generator)
    predict = make_eps_predictor(model, None, options.precision)
    return ddnm_sample(predict, diffusion, op, measurement(op, x1), x_T, options.nfe, ddnm, generator, callback)


def ddnm_restoration(diffusion: GaussianDiffusion, task: TaskConfig,
                     options: DDNMOptions = DDNMOptions()) -> DiffusionRestoration:
    """DDNM / DDNM+ with an unconditional prior for the linear degradation ``task.degradation``.

    Images must be square (the operators of :mod:`i2sb.degrade` are built per side) with a side divisible by
    the U-Net's down-sampling (and by 4 for SR); they are not padded. Inputs are x1 as I2SB sees them; y is
    recovered from x1 by :func:`~i2sb.baselines.ddnm.measurement`. ``sampler=ddpm`` is DDNM's Algorithm 1
    (η = 1); ``sampler=implicit`` is what DDNM's code runs, DDIM with ``eta`` (None: ``options.eta``, 0.85).
    """
    check_linear_task(task)
    return DiffusionRestoration("DDNM", diffusion, partial(_ddnm, task, options), options.eta, pads=False)


def _prior(diffusion: GaussianDiffusion, model: nn.Module, x1: Tensor, mask: Tensor | None,
           options: SamplingOptions, generator: Generators, callback: StepCallback | None) -> Tensor:
    x_T = randn(x1, generator)
    predict = make_eps_predictor(model, None, options.precision)
    return diffusion.sample(predict, x_T, options.nfe, eta=options.eta, clip_denoise=options.clip_denoise,
                            generator=generator, callback=callback)


def prior_samples(diffusion: GaussianDiffusion) -> DiffusionRestoration:
    """Unconditional samples of a prior (DDPM ancestral, or DDIM with ``eta``); the degraded image is ignored."""
    return DiffusionRestoration("prior samples", diffusion, _prior)


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
