"""Gaussian diffusion (DDPM, Ho et al. 2020) with DDIM-η sampling (Song et al. 2021) on respaced steps.

Pure tensor math, no network inside (as :mod:`i2sb.bridge`): the ε-network is passed to :meth:`sample`
as a function. Used by the baselines of the I2SB paper: an unconditional prior (``method=ddpm``, the
prior of DDNM) and Palette (``method=palette``), both trained with the I2SB trainer.

Indexing follows Ho et al.: state ``t = 0`` is the data, ``t = 1 .. N`` are noisy, with
``alpha_bar[t] = prod_{s <= t} (1 - beta_s)`` and ``alpha_bar[0] = 1``. guided-diffusion (ADM) indexes
the same noisy states ``0 .. N-1`` and feeds that index to its network (``rescale_timesteps=False``), so
an ADM-compatible ε-network sees ``t - 1`` (:class:`i2sb.baselines.eps.EpsDenoiser` does this).

:meth:`GaussianDiffusion.timesteps` spaces ``nfe + 1`` states from 0 to N exactly as I2SB's
:meth:`i2sb.core.bridge.Bridge.timesteps` spaces its steps, so both samplers make the same number of network
calls at the same ``nfe`` (nfe=1 predicts x0 from pure noise at t = N).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..core.samplers import space_indices
from ..core.noise import Generators, randn
from ..core.types import StepCallback

EpsPredictor = Callable[[Tensor, Tensor], Tensor]
"""``predict_eps(xt, step) -> eps_hat``: ``xt`` (B,C,H,W), ``step`` LongTensor (B,) in 1..N -> (B,C,H,W)."""


def adm_linear_betas(n_steps: int = 1000) -> np.ndarray:
    """ADM's ``get_named_beta_schedule("linear", n)``: linspace(1e-4, 2e-2) scaled by 1000 / n. float64 (n,)."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    scale = 1000 / n_steps
    return np.linspace(scale * 1e-4, scale * 2e-2, n_steps, dtype=np.float64)


class GaussianDiffusion:
    """Variance-preserving diffusion q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) (Ho Eq. 4).

    Attributes: ``betas`` (N,) and ``alphas_cumprod`` (N + 1,), float64, ``alphas_cumprod[0] = 1``.
    """

    def __init__(self, betas: np.ndarray | Tensor):
        betas = torch.as_tensor(np.asarray(betas, dtype=np.float64))
        if betas.ndim != 1 or len(betas) < 1 or not bool(torch.all((betas > 0) & (betas < 1))):
            raise ValueError("betas must be a non-empty 1-D array with entries in (0, 1)")
        self.betas = betas
        self.alphas_cumprod = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
        self._cache: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}

    @classmethod
    def linear(cls, n_steps: int = 1000) -> "GaussianDiffusion":
        """ADM's linear schedule (betas 1e-4 .. 2e-2 over 1000 steps)."""
        return cls(adm_linear_betas(n_steps))

    @property
    def n_steps(self) -> int:
        """N, the number of noisy states (and of training timesteps)."""
        return len(self.betas)

    def __repr__(self) -> str:
        return f"GaussianDiffusion(n_steps={self.n_steps}, alpha_bar_N={float(self.alphas_cumprod[-1]):.3g})"

    # ------------------------------------------------------------------ helpers
    def _coef(self, name: str, step: Tensor | int, like: Tensor) -> Tensor:
        """``sqrt(alpha_bar)`` ("a") or ``sqrt(1 - alpha_bar)`` ("b") at ``step``, broadcastable to ``like``."""
        key = (name, like.device, like.dtype)
        if key not in self._cache:
            table = self.alphas_cumprod if name == "a" else 1 - self.alphas_cumprod
            self._cache[key] = table.sqrt().to(device=like.device, dtype=like.dtype)
        if isinstance(step, int):
            return self._cache[key][self._check_step(step)]
        if step.dtype not in (torch.int64, torch.int32) or step.shape != like.shape[:1]:
            raise ValueError(f"step must be an int or an integer tensor of shape ({like.shape[0]},), got "
                             f"{step.dtype} {tuple(step.shape)}")
        return self._cache[key][step.to(like.device)].reshape(-1, *([1] * (like.ndim - 1)))

    def _check_step(self, step: int) -> int:
        if not 0 <= step <= self.n_steps:
            raise ValueError(f"step={step} outside 0..{self.n_steps}")
        return int(step)

    @staticmethod
    def noise(like: Tensor, generator: Generators) -> Tensor:
        """N(0, I) of ``like``'s shape, dtype and device."""
        return randn(like, generator)

    # ------------------------------------------------------------------ q(x_t | x_0) and the eps parameterisation
    def q_sample(self, step: Tensor | int, x0: Tensor, noise: Tensor | None = None,
                 generator: Generators = None) -> Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps (Ho Eq. 4). Shapes (B, C, H, W)."""
        noise = self.noise(x0, generator) if noise is None else noise.to(x0)
        return self._coef("a", step, x0) * x0 + self._coef("b", step, x0) * noise

    def pred_x0(self, step: Tensor | int, xt: Tensor, eps: Tensor) -> Tensor:
        """x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) (Ho Eq. 15 rearranged; DDIM Eq. 9)."""
        return (xt - self._coef("b", step, xt) * eps) / self._coef("a", step, xt)

    def pred_eps(self, step: Tensor | int, xt: Tensor, x0: Tensor) -> Tensor:
        """eps = (x_t - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t), the inverse of :meth:`pred_x0` (t >= 1)."""
        return (xt - self._coef("a", step, xt) * x0) / self._coef("b", step, xt)

    # ------------------------------------------------------------------ transitions
    def timesteps(self, nfe: int) -> list[int]:
        """``nfe + 1`` states from 0 (data) to N, spaced as I2SB's ``Bridge.timesteps``; nfe=2 -> [0, N/2, N]."""
        if isinstance(nfe, bool) or not isinstance(nfe, (int, np.integer)) or not 1 <= nfe <= self.n_steps:
            raise ValueError(f"nfe must be an integer in 1..{self.n_steps}, got {nfe!r}")
        return space_indices(self.n_steps + 1, int(nfe) + 1)

    def ddim_coefs(self, prev_step: int, step: int, eta: float) -> tuple[float, float, float]:
        """``(c_x0, c_eps, std)`` of the DDIM step t -> s (Song et al. 2021, Eq. 12 with sigma of Eq. 16):

        x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s - sigma^2) eps + sigma z,
        sigma = eta sqrt((1 - ab_s) / (1 - ab_t)) sqrt(1 - ab_t / ab_s).

        ``eta = 1`` is DDPM's ancestral step (the posterior q(x_s | x_t, x0) of Ho Eqs. 6-7 on the
        respaced chain), ``eta = 0`` the deterministic DDIM. ``s = 0`` returns (1, 0, 0).
        """
        if not 0 <= prev_step < step <= self.n_steps:
            raise ValueError(f"need 0 <= prev_step < step <= {self.n_steps}, got {prev_step}, {step}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        ab_s, ab_t = float(self.alphas_cumprod[prev_step]), float(self.alphas_cumprod[step])
        var = eta**2 * (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
        return math.sqrt(ab_s), math.sqrt(max(1 - ab_s - var, 0.0)), math.sqrt(var)

    def posterior_coefs(self, prev_step: int, step: int) -> tuple[float, float, float]:
        """``(c_x0, c_xt, std)`` of q(x_s | x_t, x0) (Ho Eqs. 6-7 with beta = 1 - ab_t / ab_s for s < t)."""
        if not 0 <= prev_step < step <= self.n_steps:
            raise ValueError(f"need 0 <= prev_step < step <= {self.n_steps}, got {prev_step}, {step}")
        ab_s, ab_t = float(self.alphas_cumprod[prev_step]), float(self.alphas_cumprod[step])
        beta = 1 - ab_t / ab_s
        c_x0 = math.sqrt(ab_s) * beta / (1 - ab_t)
        c_xt = math.sqrt(ab_t / ab_s) * (1 - ab_s) / (1 - ab_t)
        return c_x0, c_xt, math.sqrt((1 - ab_s) / (1 - ab_t) * beta)

    def ddim_step(self, prev_step: int, step: int, x0: Tensor, eps: Tensor, eta: float,
                  generator: Generators = None) -> Tensor:
        """x_s from the predictions (x0, eps) at t (DDIM Eq. 12); no noise is drawn when sigma = 0."""
        c_x0, c_eps, std = self.ddim_coefs(prev_step, step, eta)
        x_prev = c_x0 * x0 + c_eps * eps
        return x_prev + std * self.noise(x_prev, generator) if std > 0 else x_prev

    def travel(self, step: int, to_step: int, xt: Tensor, generator: Generators = None) -> Tensor:
        """Diffuse forward from t to t' > t: x_t' ~ q(x_t' | x_t) = N(sqrt(ab_t'/ab_t) x_t, (1 - ab_t'/ab_t) I)
        (the "time travel" of RePaint and DDNM+, Algorithm 2 line 4)."""
        if not 0 <= step < to_step <= self.n_steps:
            raise ValueError(f"need 0 <= step < to_step <= {self.n_steps}, got {step}, {to_step}")
        ratio = float(self.alphas_cumprod[to_step] / self.alphas_cumprod[step])
        return math.sqrt(ratio) * xt + math.sqrt(1 - ratio) * self.noise(xt, generator)

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        predict_eps: EpsPredictor,
        x_T: Tensor,
        nfe: int,
        eta: float = 1.0,
        clip_denoise: bool = False,
        generator: Generators = None,
        callback: StepCallback | None = None,
        constrain: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor:
        """Run ``nfe`` DDIM-η steps from ``x_T`` (B, C, H, W) at t = N down to the data; returns x_0.

        ``eta=1`` is DDPM ancestral sampling (Ho Algorithm 2 on the respaced chain), ``eta=0`` DDIM.
        The x0 prediction is optionally clamped to [-1, 1] and eps re-derived from it (as ADM does).
        ``constrain(x)`` is applied to the state before every network call and to the result (Palette's
        inpainting pastes the known pixels there).
        """
        steps = self.timesteps(nfe)
        xt = x_T if constrain is None else constrain(x_T)
        for prev_step, step in list(zip(steps[:-1], steps[1:]))[::-1]:
            step_t = torch.full((xt.shape[0],), step, device=xt.device, dtype=torch.long)
            eps = predict_eps(xt, step_t).to(xt.dtype)
            x0 = self.pred_x0(step, xt, eps)
            if clip_denoise:
                x0 = x0.clamp(-1.0, 1.0)
                eps = self.pred_eps(step, xt, x0)
            xt = self.ddim_step(prev_step, step, x0, eps, eta, generator)
            if constrain is not None:
                xt = constrain(xt)
            if callback is not None:
                callback(prev_step, step, xt, x0)
        return xt


class GaussianDataEps(nn.Module):
    """The exact eps(x_t, t) = E[eps | x_t] when the data are x0 ~ N(mean, std^2 I) — for testing samplers.

    With x_t = a x0 + b eps (a^2 = alpha_bar_t, b^2 = 1 - a^2): E[eps | x_t] = b (x_t - a mean) / (a^2 std^2 + b^2).
    ``forward(xt, step, cond=None)``: xt (B, C, H, W), step LongTensor (B,) in 1..N -> (B, C, H, W).
    """

    def __init__(self, diffusion: GaussianDiffusion, mean: Tensor | float, std: float):
        super().__init__()
        self.diffusion, self.std = diffusion, float(std)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64))

    def forward(self, xt: Tensor, step: Tensor, cond: Tensor | None = None) -> Tensor:
        a = self.diffusion._coef("a", step, xt)
        b = self.diffusion._coef("b", step, xt)
        mean = self.mean.to(xt)
        return b * (xt - a * mean) / (a**2 * self.std**2 + b**2)
