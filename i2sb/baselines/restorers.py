"""Restoring images with the baselines, behind the same interface as I2SB's :class:`~i2sb.restore.Restorer`.

>>> import i2sb
>>> from i2sb import baselines
>>> palette = i2sb.load("runs/palette_sr")                      # a method=palette run: PaletteRestorer
>>> ddnm = baselines.load_ddnm("256x256_diffusion_uncond.pt", task="sr4x_pool", sigma_y=0.0)
>>> restored = ddnm.restore(x1, nfe=100)                        # x1 as I2SB sees it (SR: nearest-upsampled)

``i2sb-sample`` uses them for ``ckpt=`` a palette or ddpm run, and for ``method=ddnm prior=... task=...``.
Tiling, padding (Palette), trajectories and the ``nfe`` range work as for I2SB; ``restorer.bridge`` is the
:class:`~i2sb.diffusion.GaussianDiffusion` (``n_steps``, ``timesteps(nfe)``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import degrade
from ..bridge import StepCallback
from ..diffusion import GaussianDiffusion
from ..dist import resolve_device
from ..restore import Restorer, TiledDenoiser, build_network, cropped_callback, network_spec, pad_to_multiple
from ..samplers import check_eta
from .ddnm import DDNMOptions, ddnm_sample, measurement
from .networks import EpsDenoiser, make_eps_predictor
from .palette import palette_sample

SAMPLERS = ("ddpm", "implicit")  # DDIM with eta = 1 (DDPM ancestral), DDIM with the given eta


class DiffusionRestorer(Restorer):
    """Shared by the baselines: an :class:`EpsDenoiser` on a :class:`GaussianDiffusion` (as ``bridge``).

    ``sampler`` maps onto DDIM's η (Song et al. 2021) as the bridge samplers do (:mod:`i2sb.samplers`):
    ``ddpm`` is η = 1 (DDPM ancestral; no ``eta``), ``implicit`` is DDIM with ``eta`` (None:
    ``implicit_eta``). The ODE solvers ``heun`` / ``multistep`` are I2SB's only.
    """

    implicit_eta = 0.0

    def __init__(self, denoiser: EpsDenoiser, diffusion: GaussianDiffusion, task: dict[str, Any], image_size: int,
                 default_nfe: int = 10):
        super().__init__(denoiser, diffusion, task, image_size, default_nfe)  # type: ignore[arg-type]
        self.diffusion = diffusion

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    def validate_sampler(self, sampler: str, eta: float | None, ot_ode: bool | None) -> bool:
        """As :meth:`Restorer.validate_sampler` (``i2sb-sample`` checks options with it): ``ValueError`` unless
        ``sampler``/``eta`` suit a Gaussian diffusion; returns False (no OT-ODE here)."""
        self.resolve_eta(sampler, eta, ot_ode)
        return False

    def resolve_eta(self, sampler: str, eta: float | None, ot_ode: bool | None) -> float:
        """DDIM's η for ``sampler`` / ``eta``; ``ValueError`` for the I2SB-only options."""
        if ot_ode:
            raise ValueError("ot_ode is an I2SB option; for a deterministic baseline use sampler=implicit eta=0")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)} for {type(self).__name__}, got {sampler!r}")
        if sampler == "ddpm":
            if eta is not None:
                raise ValueError(f"eta applies to sampler=implicit only, got eta={eta} with sampler={sampler}")
            return 1.0
        return float(self.implicit_eta) if eta is None else check_eta(eta)

    def _eps_model(self, tile: int | None, tile_overlap: int | None):
        tile, tile_overlap = self.tiling(tile, tile_overlap)
        return TiledDenoiser(self.denoiser, tile, tile_overlap) if tile else self.denoiser


class PaletteRestorer(DiffusionRestorer):
    """A ``method=palette`` run: conditional DDIM-η / DDPM sampling from N(0, I) (:func:`palette_sample`)."""

    def __repr__(self) -> str:
        return f"PaletteRestorer(task={self.task.get('name')!r}, image_size={self.image_size})"

    @torch.no_grad()
    def restore(self, images: Tensor, nfe: int | None = None, ot_ode: bool | None = None,
                mask: Tensor | None = None, clip_denoise: bool = False, generator: torch.Generator | None = None,
                precision: str = "auto", tile: int | None = None, tile_overlap: int | None = None,
                callback: StepCallback | None = None, sampler: str = "ddpm", eta: float | None = None) -> Tensor:
        """Restore degraded ``images`` (B, 3, H, W) in [-1, 1]; arguments as :meth:`Restorer.restore`
        (``sampler``/``eta``: see :class:`DiffusionRestorer`; ``ot_ode`` must be None/False). The hole of
        inpainting inputs is filled with noise in the conditioning image, as in training."""
        eta = self.resolve_eta(sampler, eta, ot_ode)
        nfe = self.check_nfe(nfe)
        model = self._eps_model(tile, tile_overlap)
        x1, mask = self._check_inputs(images, mask)
        height, width = x1.shape[-2:]
        x1 = pad_to_multiple(x1, self.down_factor)
        if mask is not None:
            mask = pad_to_multiple(mask, self.down_factor)
            x1 = (1.0 - mask) * x1 + mask * torch.randn(x1.shape, generator=generator, device=x1.device)
        predict = make_eps_predictor(model, x1, precision)
        out = palette_sample(predict, self.diffusion, x1, nfe, eta, mask, clip_denoise, generator,
                             cropped_callback(callback, height, width))
        return out[..., :height, :width].to(device=images.device, dtype=images.dtype)


class DDNMRestorer(DiffusionRestorer):
    """DDNM / DDNM+ with an unconditional prior for the linear task ``task["degradation"]``.

    Images must be square (the operators of :mod:`i2sb.degrade` are built per side) with a side divisible by
    the U-Net's down-sampling (and by 4 for SR). Inputs are x1 as I2SB sees them; y is recovered from x1 by
    :func:`~i2sb.baselines.ddnm.measurement`.
    """

    def __init__(self, denoiser: EpsDenoiser, diffusion: GaussianDiffusion, task: dict[str, Any], image_size: int,
                 default_nfe: int = 100, options: DDNMOptions = DDNMOptions()):
        super().__init__(denoiser, diffusion, task, image_size, default_nfe)
        self.options = options
        check_linear_task(task.get("degradation"), dict(task.get("params") or {}))

    def __repr__(self) -> str:
        return f"DDNMRestorer(task={self.task.get('degradation')!r}, image_size={self.image_size}, {self.options})"

    def set_options(self, **changes: Any) -> None:
        """Replace fields of :attr:`options` (:class:`DDNMOptions`), e.g. ``sigma_y=0.1, travel_repeat=2``."""
        self.options = replace(self.options, **changes)

    @property
    def implicit_eta(self) -> float:
        """DDIM's η for ``sampler=implicit`` without ``eta``: DDNM's own (:attr:`options`)."""
        return self.options.eta

    def operator_for(self, size: int, mask: Tensor | None):
        """The task's linear operator for (B, 3, size, size) images (and the masks of inpainting)."""
        deg = degrade.build(self.task["degradation"], size, **dict(self.task.get("params") or {}))
        return deg.operator(mask) if deg.needs_mask else deg.operator()

    @torch.no_grad()
    def restore(self, images: Tensor, nfe: int | None = None, ot_ode: bool | None = None,
                mask: Tensor | None = None, clip_denoise: bool = False, generator: torch.Generator | None = None,
                precision: str = "auto", tile: int | None = None, tile_overlap: int | None = None,
                callback: StepCallback | None = None, sampler: str = "ddpm", eta: float | None = None) -> Tensor:
        """Restore I2SB inputs ``images`` (B, 3, S, S); arguments as :meth:`PaletteRestorer.restore`.

        ``sampler=ddpm`` is DDNM's Algorithm 1 (the DDPM posterior, η = 1); ``sampler=implicit`` is what DDNM's
        code runs, DDIM with ``eta`` (None: ``options.eta``, 0.85 by default)."""
        eta = self.resolve_eta(sampler, eta, ot_ode)
        nfe = self.check_nfe(nfe)
        model = self._eps_model(tile, tile_overlap)
        x1, mask = self._check_inputs(images, mask)
        size = self._check_size(x1)
        op = self.operator_for(size, mask)
        options = replace(self.options, eta=eta, clip_denoise=self.options.clip_denoise or clip_denoise)
        x_T = torch.randn(x1.shape, generator=generator, device=x1.device)
        out = ddnm_sample(make_eps_predictor(model, None, precision), self.diffusion, op, measurement(op, x1), x_T,
                          nfe, options, generator, callback)
        return out.to(device=images.device, dtype=images.dtype)

    def _check_size(self, x1: Tensor) -> int:
        height, width = x1.shape[-2:]
        if height != width or height % self.down_factor:
            raise ValueError(f"DDNM needs square images with a side divisible by {self.down_factor}, got "
                             f"{width}x{height}")
        return height


def check_linear_task(task: str | None, params: dict[str, Any]) -> None:
    """ValueError unless ``task`` names a linear degradation of :mod:`i2sb.degrade`."""
    if task is None:
        raise ValueError("DDNM needs a task (a linear degradation), e.g. task=sr4x_pool")
    if not degrade.build(task, 16, **params).is_linear:
        linear = [name for name in degrade.TASKS if _is_linear(name)]
        raise ValueError(f"DDNM needs a linear task; '{task}' is not (linear: {', '.join(linear)})")


def _is_linear(task: str) -> bool:
    try:
        return degrade.build(task, 16).is_linear
    except ValueError:
        return False


# ---------------------------------------------------------------------------- loading
def load_prior(prior: str | Path, device: torch.device | str = "cpu", use_ema: bool = True,
               **model_overrides: Any) -> tuple[EpsDenoiser, GaussianDiffusion, Any]:
    """An unconditional prior: a ``method=ddpm`` run (directory or file) or guided-diffusion's unconditional
    ADM checkpoint. Returns ``(denoiser, diffusion, spec)`` (eval mode, float32, on ``device``)."""
    device = resolve_device(str(device))
    spec = network_spec(prior, use_ema, model_overrides)
    method = getattr(spec, "method", "i2sb")
    if method != "ddpm":
        raise ValueError(f"{prior}: a method={method} checkpoint, not an unconditional prior (train one with "
                         f"i2sb-train method=ddpm, or give guided-diffusion's 256x256_diffusion_uncond.pt)")
    denoiser = EpsDenoiser(build_network(spec, device, str(prior))).to(device).eval()
    return denoiser, GaussianDiffusion.linear(int(spec.task["n_steps"])), spec


def load_ddnm(prior: str | Path, task: str | None = None, device: torch.device | str = "cpu",
              use_ema: bool = True, task_params: dict[str, Any] | None = None, eta: float = DDNMOptions.eta,
              sigma_y: float = 0.0, travel_length: int = 1, travel_repeat: int = 1,
              **model_overrides: Any) -> DDNMRestorer:
    """A :class:`DDNMRestorer` for ``task`` (default: the prior run's own task) with the given prior."""
    denoiser, diffusion, spec = load_prior(prior, device, use_ema, **model_overrides)
    task_dict = dict(spec.task)
    if task is not None:
        task_dict.update(name=task, degradation=task, params=dict(task_params or {}))
    options = DDNMOptions(eta, sigma_y, travel_length, travel_repeat)
    return DDNMRestorer(denoiser, diffusion, task_dict, spec.image_size, spec.default_nfe, options)


def _palette_restorer(spec: Any, network: nn.Module, device: torch.device, source: str) -> DiffusionRestorer:
    denoiser = EpsDenoiser(network, conditional=True).to(device).eval()
    return PaletteRestorer(denoiser, GaussianDiffusion.linear(int(spec.task["n_steps"])), spec.task, spec.image_size,
                           spec.default_nfe)


def _ddnm_restorer(spec: Any, network: nn.Module, device: torch.device, source: str) -> DiffusionRestorer:
    denoiser = EpsDenoiser(network).to(device).eval()
    try:
        return DDNMRestorer(denoiser, GaussianDiffusion.linear(int(spec.task["n_steps"])), spec.task,
                            spec.image_size, spec.default_nfe)
    except ValueError as err:
        raise ValueError(f"{source}: an unconditional prior restores with DDNM, but {err}; choose the task with "
                         f"i2sb-sample method=ddnm prior={source} task=<linear task> "
                         f"(or i2sb.baselines.load_ddnm)") from None


RESTORERS = {"palette": _palette_restorer, "ddpm": _ddnm_restorer}  # by the training method of the run


def restorer_from_spec(spec: Any, device: torch.device, source: str) -> DiffusionRestorer:
    """The restorer of a baseline run: ``method=palette`` -> Palette, ``method=ddpm`` -> DDNM on its own task."""
    if spec.method not in RESTORERS:
        raise ValueError(f"{source}: no restorer for method={spec.method} (known: {', '.join(RESTORERS)})")
    return RESTORERS[spec.method](spec, build_network(spec, device, source), device, source)
