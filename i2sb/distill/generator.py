"""The student: a one-step (or K-step) generator ``G(X_s, s, cond, z) -> x0`` and its image network.

One step (the default): ``X_0 = G(x1, N-1, cond, z)``, evaluated where the teacher's sampler starts
(Algorithm 2's first step). K steps (IBMD Sec. 3.5): at the steps the teacher's NFE-K sampler visits,
``x0_k = G(X_{s_k}, s_k, cond, z_k)`` and ``X_{s_{k-1}} ~ p(X_{s_{k-1}} | x0_k, X_{s_k})`` (DDPM posterior,
Eq. 4), starting from ``X_{s_K} = x1``; the last ``x0_k`` is the output.

How z enters (:class:`BridgeGenerator`): as ``z_channels`` extra input channels of the teacher's network,
appended after ``[X_s, cond]``, with the new first-layer weights drawn small (``z_init`` times the
existing weights' std). Why this way:

* x1 reaches the generator intact. The alternative -- z as the input bridge state, ``x1 + sigma z`` at a
  high step -- either drowns x1's finest detail (sigma ~ std_sb at mid-bridge: up to 0.19 for beta_max
  0.3, 0.25 for 1.0) or gives z almost no room (std_sb[N-1] ~ 0.01 at the top, as small as the detail
  the student must keep); an unconditional teacher (most tasks here, ``cond_x1`` false) sees x1 only
  through that input.
* The student starts at the teacher's one-step prediction ``D*(x1, N-1)``: the widened network is the
  teacher's exactly on ``[X_s, cond]``, and z's weights start near zero. They start *non*-zero: at exactly
  zero the output ignores z, the expected gradient on those weights is zero (``E[g(x1) z^T] = 0``) and
  only batch noise would break the symmetry; IBMD's objective then grows the spread (the auxiliary
  term's ``-min_phi`` rewards variance the teacher's posterior has).
* Inpainting already draws noise into the hole of x1 (:func:`~i2sb.core.boundary.fill_hole`); IBMD's
  I2SB inpainting student used no extra noise (its Table 7), so ``z_channels=0`` is allowed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..core.bridge import Bridge
from ..core.denoiser import BridgeDenoiser
from ..core.noise import Generators, randn
from ..restoration.student import student_steps

Generator = Callable[[Tensor, int, "Tensor | None", "Tensor | None"], Tensor]
"""``G(xs, step, cond, z) -> x0``: ``xs`` the state at ``step`` (x1 at N-1), ``z`` N(0, I) or None."""


def draw_z(G: nn.Module | Generator, xs: Tensor, generator: Generators = None) -> Tensor | None:
    """``z ~ N(0, I)`` of shape (B, G.z_channels, H, W), or None when the generator takes no noise."""
    channels = getattr(G, "z_channels", 0)
    if not channels:
        return None
    return randn(xs.new_empty(xs.shape[0], channels, *xs.shape[2:]), generator)


def run_chain(G: Generator, bridge: Bridge, x1: Tensor, cond: Tensor | None, steps: list[int], evaluations: int,
              generator: Generators = None) -> tuple[Tensor | None, Tensor]:
    """The student's chain from ``X_{steps[0]} = x1`` (B, C, H, W): ``evaluations`` calls of G, Eq. 4 between.

    Returns ``(x0, xs)``: the last prediction (None after no call) and the state ``X_{steps[evaluations]}``
    the next call would see (the last state when the chain is complete).
    """
    xs, x0 = x1, None
    for i, step in enumerate(steps[:evaluations]):
        x0 = G(xs, step, cond, draw_z(G, xs, generator))
        if i + 1 < len(steps):
            xs = bridge.posterior_sample(steps[i + 1], step, xs, x0, generator=generator)  # Eq. 4
    return x0, xs


def generate(G: Generator, bridge: Bridge, x1: Tensor, cond: Tensor | None, steps: list[int],
             generator: Generators = None) -> Tensor:
    """Restore ``x1`` (B, C, H, W) with the student over ``steps`` (:func:`student_steps`); (B, C, H, W)."""
    return run_chain(G, bridge, x1, cond, steps, len(steps), generator)[0]


def draw_pair(G: Generator, bridge: Bridge, x1: Tensor, cond: Tensor | None, steps: list[int],
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """A training pair of the student's coupling: ``(x0, x_end, end_step)``.

    One step: ``(G(x1, N-1, cond, z), x1, None)`` -- the pair ``(X_0, X_1)`` of Eq. 11. K steps: a level
    ``k`` drawn uniformly, the chain run without gradients down to ``X_{s_k}``, then ``x0 = G(X_{s_k}, s_k)``
    with gradients; the pair is ``(x0, X_{s_k})`` with ``end_step = s_k`` (B,), or X_1's pair at the top.
    """
    device = generator.device if generator is not None else None
    k = 0 if len(steps) == 1 else int(torch.randint(len(steps), (1,), generator=generator, device=device))
    with torch.no_grad():
        _, xs = run_chain(G, bridge, x1, cond, steps, k, generator)
    x0 = G(xs, steps[k], cond, draw_z(G, xs, generator))
    end_step = None if k == 0 else torch.full((x1.shape[0],), steps[k], dtype=torch.long, device=x1.device)
    return x0, xs, end_step


def first_conv(net: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    """``(parent, attribute, conv)`` of the first ``nn.Conv2d`` in ``net``'s module order (ADM: input_blocks.0.0)."""
    for parent in net.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                return parent, name, child
    raise ValueError(f"{type(net).__name__} has no nn.Conv2d to widen for the noise input")


def add_input_channels(net: nn.Module, extra: int, scale: float = 0.1,
                       generator: torch.Generator | None = None) -> nn.Module:
    """A copy of ``net`` whose first convolution takes ``extra`` more input channels, appended last.

    The old weights are kept, so on inputs whose new channels are zero the copy computes what ``net`` does;
    the new weights are ``N(0, (scale * std(old weights))^2)``. A ``config``/``in_channels`` record (the ADM
    U-Net's) is updated so the widened network is saved and rebuilt with its true width.
    """
    net = copy.deepcopy(net)
    if extra == 0:
        return net
    parent, name, conv = first_conv(net)
    wide = nn.Conv2d(conv.in_channels + extra, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
                     device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        new = torch.randn(wide.weight[:, conv.in_channels:].shape, generator=generator, dtype=torch.float32)
        wide.weight[:, :conv.in_channels] = conv.weight
        wide.weight[:, conv.in_channels:] = (scale * float(conv.weight.float().std()) * new).to(wide.weight)
        if conv.bias is not None:
            wide.bias.copy_(conv.bias)
    setattr(parent, name, wide)
    if isinstance(getattr(net, "config", None), dict) and "in_channels" in net.config:
        net.config["in_channels"] += extra
    if isinstance(getattr(net, "in_channels", None), int):
        net.in_channels += extra
    return net


class BridgeGenerator(nn.Module):
    """``G(X_s, s, cond, z)``: the teacher's eps-network on ``cat([X_s, cond, z])``, Eq. 12 inverted to x0.

    ``net(x, t) -> eps`` with the authors' time input ``t = noise_levels[s]`` (as
    :class:`~i2sb.core.denoiser.BridgeDenoiser`), ``x0 = X_s - std_fwd[s] eps`` (:meth:`Bridge.pred_x0`).
    Build it from a teacher with :meth:`from_denoiser`.
    """

    def __init__(self, net: nn.Module, bridge: Bridge, noise_levels: Tensor, cond_x1: bool, z_channels: int):
        super().__init__()
        self.net, self.bridge, self.cond_x1, self.z_channels = net, bridge, cond_x1, z_channels
        self.register_buffer("noise_levels", noise_levels.detach().clone(), persistent=False)

    @classmethod
    def from_denoiser(cls, denoiser: BridgeDenoiser, z_channels: int = 3, z_init: float = 0.1,
                      generator: torch.Generator | None = None) -> "BridgeGenerator":
        """The student initialised from a teacher :class:`~i2sb.core.denoiser.BridgeDenoiser` (``net``, ``bridge``,
        ``noise_levels``, ``cond_x1``), widened by ``z_channels`` (:func:`add_input_channels`)."""
        net = add_input_channels(denoiser.net, z_channels, z_init, generator)
        return cls(net, denoiser.bridge, denoiser.noise_levels, denoiser.cond_x1, z_channels)

    def forward(self, xs: Tensor, step: int, cond: Tensor | None = None, z: Tensor | None = None) -> Tensor:
        """``xs`` (B, C, H, W) at ``step`` (int), ``cond`` x1 when ``cond_x1``, ``z`` (B, z_channels, H, W)."""
        parts = [xs]
        if self.cond_x1:
            if cond is None:
                raise ValueError("this generator is conditioned on x1 (cond_x1=True): pass cond=x1")
            parts.append(cond.to(xs.dtype))
        if self.z_channels:
            if z is None or z.shape[1] != self.z_channels:
                raise ValueError(f"this generator takes z with {self.z_channels} channels")
            parts.append(z.to(xs.dtype))
        t = self.noise_levels[step].expand(xs.shape[0])
        eps = self.net(torch.cat(parts, dim=1), t)
        return self.bridge.pred_x0(step, xs, eps.to(xs.dtype))

