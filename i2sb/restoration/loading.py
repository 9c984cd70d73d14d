"""From a checkpoint to a :class:`~i2sb.restoration.restorer.Restorer`: the run's training method decides how it
restores (:data:`RESTORATION_KINDS`), the same way for every entry point (``i2sb.load``, ``i2sb-sample``,
validation)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..baselines.ddnm import DDNMOptions
from ..baselines.gaussian import GaussianDiffusion
from ..config import TaskConfig
from ..core.bridge import Bridge
from ..core.denoiser import Denoiser
from ..methods import build_method
from ..utils.device import resolve_device
from .algorithms import BridgeRestoration, ddnm_restoration, palette_restoration
from .checkpoints import network_spec
from .restorer import RestorationKind, Restorer
from .student import METHOD as STUDENT_METHOD
from .student import StudentInfo, StudentRestoration, student_denoiser
from .trained_network import TrainedNetwork, build_network


def _bridge(task: TaskConfig, ddnm: DDNMOptions) -> RestorationKind:
    return BridgeRestoration(Bridge.symmetric(task.n_steps, task.beta_max), task)


def _palette(task: TaskConfig, ddnm: DDNMOptions) -> RestorationKind:
    return palette_restoration(GaussianDiffusion.linear(task.n_steps))


def _ddnm(task: TaskConfig, ddnm: DDNMOptions) -> RestorationKind:
    return ddnm_restoration(GaussianDiffusion.linear(task.n_steps), task, ddnm)


RESTORATION_KINDS: dict[str, Callable[[TaskConfig, DDNMOptions], RestorationKind]] = {
    "i2sb": _bridge,  # the bridge's samplers
    "palette": _palette,  # conditional sampling from noise
    "ddpm": _ddnm,  # an unconditional prior restores zero-shot with DDNM, on its task's operator
}


def restorer_for(method: str, denoiser: Denoiser, task: TaskConfig, image_size: int, default_nfe: int = 10,
                 ddnm: DDNMOptions = DDNMOptions(), validation: dict[str, Any] | None = None) -> Restorer:
    """The :class:`Restorer` of a network trained with ``method`` (already wrapped in its denoiser)."""
    if method not in RESTORATION_KINDS:
        raise ValueError(f"no restoration for method={method} (known: {', '.join(RESTORATION_KINDS)})")
    return Restorer(denoiser, RESTORATION_KINDS[method](task, ddnm), task, image_size, default_nfe, validation)


def denoiser_from_spec(spec: TrainedNetwork, device: torch.device, source: str) -> Denoiser:
    """The network of ``spec`` on ``device`` wrapped in its training method's denoiser (eval mode, float32); a
    distilled student's in the denoiser that feeds it ``cat[cond, z]`` (:func:`.student.student_denoiser`)."""
    net = build_network(spec, device, source)
    if spec.method == STUDENT_METHOD:
        z_channels = student_info(spec, source).z_channels
        return student_denoiser(net, spec.task, z_channels).to(device).eval()
    return build_method(spec.method, spec.task).denoiser(net).to(device).eval()


def student_info(spec: TrainedNetwork, source: str) -> StudentInfo:
    """The student record of a ``method=ibmd`` spec; a one-line ValueError when the checkpoint lacks it."""
    if not spec.student:
        raise ValueError(f"{source}: a method={STUDENT_METHOD} checkpoint without its 'student' record "
                         f"(z_channels, steps)")
    return StudentInfo.from_dict(spec.student)


def load_denoiser(ckpt: str | Path, device: torch.device | str = "auto", use_ema: bool = True,
                  **model_overrides: Any) -> Denoiser:
    """The network of any checkpoint in its method's denoiser: an I2SB x0-denoiser, or an ε-network (a
    ``method=ddpm`` / ``palette`` run; guided-diffusion's ADM with its eps channels at ADM's time input)."""
    device = resolve_device(device)
    return denoiser_from_spec(network_spec(ckpt, use_ema, model_overrides), device, str(ckpt))


def restorer_from_spec(spec: TrainedNetwork, device: torch.device, source: str,
                       ddnm: DDNMOptions = DDNMOptions()) -> Restorer:
    """Build the network of ``spec`` on ``device`` in its method's denoiser, and its restorer."""
    denoiser = denoiser_from_spec(spec, device, source)
    if spec.method == STUDENT_METHOD:
        kind = StudentRestoration(Bridge.symmetric(spec.task.n_steps, spec.task.beta_max), spec.task,
                                       student_info(spec, source))
        return Restorer(denoiser, kind, spec.task, spec.image_size, spec.default_nfe, spec.validation)
    try:
        return restorer_for(spec.method, denoiser, spec.task, spec.image_size, spec.default_nfe, ddnm, spec.validation)
    except ValueError as err:
        if spec.method != "ddpm":
            raise
        raise ValueError(f"{source}: an unconditional prior restores with DDNM, but {err}; choose the task with "
                         f"i2sb-sample baseline=ddnm prior={source} task=<linear task> "
                         f"(or i2sb.restoration.load_ddnm)") from None


def load(ckpt: str | Path, device: torch.device | str = "auto", use_ema: bool = True,
         ddnm: DDNMOptions = DDNMOptions(), **model_overrides: Any) -> Restorer:
    """A :class:`Restorer` from a run directory, a checkpoint file, or the authors' ``results/NAME/``.

    Baseline runs restore as trained: ``method=palette`` with Palette, ``method=ddpm`` (and guided-diffusion's
    unconditional ADM) with DDNM (settings ``ddnm``) for the run's task. ``use_ema=False`` selects the raw
    weights; ``model_overrides`` replace U-Net arguments (guided-diffusion names, e.g. ``num_head_channels=64``),
    mostly needed for the authors' checkpoints. ``device``: auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps.
    """
    device = resolve_device(device)
    spec = network_spec(ckpt, use_ema, model_overrides)
    return restorer_from_spec(spec, device, str(ckpt), ddnm)


def load_ddnm(prior: str | Path, task: TaskConfig | str | None = None, device: torch.device | str = "auto",
              use_ema: bool = True, task_params: dict[str, Any] | None = None, eta: float = DDNMOptions.eta,
              sigma_y: float = 0.0, travel_length: int = 1, travel_repeat: int = 1,
              **model_overrides: Any) -> Restorer:
    """DDNM / DDNM+ with an unconditional prior (a ``method=ddpm`` run or guided-diffusion's unconditional ADM)
    for ``task`` (a :class:`~i2sb.config.TaskConfig` or a degradation name; None: the prior run's own task)."""
    device = resolve_device(device)
    spec = network_spec(prior, use_ema, model_overrides)
    if spec.method != "ddpm":
        raise ValueError(f"{prior}: a method={spec.method} checkpoint, not an unconditional prior (train one with "
                         f"i2sb-train method=ddpm, or give guided-diffusion's 256x256_diffusion_uncond.pt)")
    if isinstance(task, str):
        task = replace(spec.task, name=task, degradation=task, params=dict(task_params or {}))
    elif task is not None:
        task = replace(spec.task, name=task.name, degradation=task.degradation, params=dict(task.params))
    spec = replace(spec, task=task or spec.task, validation=spec.validation if task is None else None)  # its task's
    options = DDNMOptions(eta, sigma_y, travel_length, travel_repeat)
    return restorer_from_spec(spec, device, str(prior), options)
