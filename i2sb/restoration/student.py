"""Restoring with a distilled bridge student (``i2sb-distill``, IBMD): a one-step (or K-step) generator
``G(X_s, s, cond, z)`` behind the :class:`~.restorer.RestorationKind` interface, so that ``i2sb.load``, ``i2sb-sample``,
``i2sb-export`` and the comparison scripts read a student as any other checkpoint.

The student is the teacher's U-Net with ``z_channels`` extra input channels (Gushchin et al., ICML 2025,
arXiv 2502.01362; :mod:`i2sb.distill.generator`): it computes ``eps = net(cat[X_s, cond, z], noise_levels[s])``
and ``x0 = X_s - std_fwd[s] eps`` (I2SB Eq. 12 inverted). Here that is a :class:`~i2sb.core.denoiser.BridgeDenoiser`
conditioned on ``cat[cond, z]`` (``cond`` = x1 for x1-conditioned tasks): the same network input, so padding,
tiling (z is tiled with the image) and precision are the restorer's own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..config import TaskConfig
from ..core.boundary import bridge_boundary, keep_known
from ..core.bridge import Bridge
from ..core.denoiser import BridgeDenoiser, Denoiser
from ..core.noise import Generators, randn
from ..core.types import StepCallback
from .restorer import OptionError, SamplingOptions

METHOD = "ibmd"  # the ``method`` of a student's checkpoint


@dataclass(frozen=True)
class StudentInfo:
    """What a student's checkpoint records besides the teacher's network and task: the noise channels ``z_channels``
    appended to the network's input and the number of student steps ``steps`` (K) it was distilled for."""

    z_channels: int = 3
    steps: int = 1

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "StudentInfo":
        return cls(int(values.get("z_channels", 0)), int(values.get("steps", 1)))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def student_steps(bridge: Bridge, k: int) -> list[int]:
    """The K steps a K-step student evaluates, from the top: the teacher's NFE-K steps, step 0 left out."""
    return bridge.timesteps(k)[1:][::-1]


def student_denoiser(net: nn.Module, task: TaskConfig, z_channels: int) -> BridgeDenoiser:
    """The student's network as a denoiser whose ``cond`` is ``cat[x1 (cond_x1 tasks), z]`` (B, C', H, W)."""
    return BridgeDenoiser(net, Bridge.symmetric(task.n_steps, task.beta_max), task.t0, task.T,
                          cond_x1=task.cond_x1 or z_channels > 0)


def student_cond(cond: Tensor | None, z: Tensor | None) -> Tensor | None:
    """The extra input channels of the student: ``cat[cond, z]`` of those given, or None."""
    parts = [p for p in (cond, z) if p is not None]
    return torch.cat(parts, dim=1) if parts else None


def draw_z(x1: Tensor, z_channels: int, generator: Generators) -> Tensor | None:
    """``z ~ N(0, I)`` (B, z_channels, H, W) from ``generator`` (one per image allowed), or None."""
    if not z_channels:
        return None
    return randn(x1.new_empty(x1.shape[0], z_channels, *x1.shape[2:]), generator)


def sample_student(denoiser: Denoiser, x1: Tensor, steps: list[int], bridge: Bridge, *, mask: Tensor | None = None,
                   generator: Generators = None, callback: StepCallback | None = None, z_channels: int = 0) -> Tensor:
    """A distilled student's chain (IBMD Sec. 3.5) with the samplers' signature: at the teacher's NFE-n steps
    ``s_n > ... > s_1`` (``steps`` ascending, from 0), ``x0_k = G(X_{s_k}, s_k, cond, z_k)``, ``z_k ~ N(0, I)``,
    and ``X_{s_{k-1}} ~ p(X_{s_{k-1}} | x0_k, X_{s_k})`` (Eq. 4) between; the last ``x0`` is the restoration
    (inpainting: the known pixels of ``x1`` kept, as the sampler does). ``denoiser`` has its ``cond`` (x1 or
    None) bound; ``z`` is appended to it at every step."""
    chain = steps[1:][::-1]
    xs, x0 = x1, x1
    for i, step in enumerate(chain):
        z = draw_z(x1, z_channels, generator)
        x0 = denoiser(xs, torch.full((x1.shape[0],), step, dtype=torch.long, device=x1.device),
                      student_cond(denoiser.cond, z))
        prev = chain[i + 1] if i + 1 < len(chain) else 0
        if prev:
            xs = bridge.posterior_sample(prev, step, xs, x0, generator=generator)  # Eq. 4
        if callback is not None:
            callback(prev, step, xs if prev else x0, x0)
    return keep_known(x0, x1, None if mask is None else mask.to(x0))


class StudentRestoration:
    """A distilled student behind the :class:`~.restorer.RestorationKind` interface (:func:`sample_student`).
    NFE 1 .. K: a K-step student restores at NFE K by default; NFE 1 runs its top step alone."""

    name = "IBMD student"
    pads = True

    def __init__(self, bridge: Bridge, task: TaskConfig, info: StudentInfo):
        self.schedule, self.task, self.info = bridge, task, info
        self.max_nfe = info.steps

    def resolve(self, sampler: str, eta: float | None, ot_ode: bool | None) -> tuple[float | None, bool]:
        """The student has one chain: ``sampler=ddpm`` (its Eq. 4 posterior), no ``eta``, no OT-ODE."""
        if sampler != "ddpm":
            raise OptionError("sampler", f"a distilled student samples with its own chain (sampler=ddpm), "
                                         f"got {sampler!r}")
        if eta is not None:
            raise OptionError("eta", "a distilled student takes no eta (its randomness is its noise input z)")
        if ot_ode:
            raise OptionError("ot_ode", "a distilled student has no OT-ODE (its randomness is its noise input z)")
        return None, False

    def steps(self, sampler: str, nfe: int) -> list[int]:
        return self.schedule.timesteps(nfe)

    def sampler(self, options: SamplingOptions) -> Callable[..., Tensor]:
        return partial(sample_student, z_channels=self.info.z_channels)

    def boundary(self, x1: Tensor, mask: Tensor | None, generator: Generators) -> tuple[Tensor, Tensor | None]:
        """``(x1, cond)`` as the bridge's (:func:`bridge_boundary`): the hole filled with noise, x1 kept as cond."""
        return bridge_boundary(x1, mask, self.task.cond_x1, self.task.add_x1_noise, generator)
