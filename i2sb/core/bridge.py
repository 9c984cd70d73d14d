"""The I2SB bridge: noise schedule, analytic posterior, DDPM posterior and the sampler.

Pure tensor math, no network inside: the denoiser is passed to :meth:`Bridge.sample` as a function.
The samplers themselves (Algorithm 2 and the faster ones) are free functions in :mod:`i2sb.core.samplers`;
:meth:`Bridge.sample` is Algorithm 2 from there, for notebooks (it checks its arguments, the samplers do not).
Equation numbers refer to Liu et al., "I2SB: Image-to-Image Schrödinger Bridge", ICML 2023.

Notation (paper -> code), with discrete steps ``n = 0 .. N-1`` (``N = n_steps``):

* ``sigma_n^2 = sum_{k<=n} beta_k``           -> ``std_fwd[n]**2``  (variance accumulated from X_0)
* ``bar sigma_n^2 = sum_{k>=n} beta_k``       -> ``std_bwd[n]**2``  (variance accumulated from X_1)
* ``mu_n = mu_x0[n] * X_0 + mu_x1[n] * X_1``, ``Sigma_n = std_sb[n]**2 * I``   (Eq. 11)

Step ``0`` is the clean end, step ``N-1`` the degraded end. All coefficients are computed and stored in
float64 and cast to the dtype/device of the images they are applied to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .noise import Generators, randn
from .samplers import sample_ddpm, space_indices
from .types import Predictor, StepCallback

__all__ = ["Bridge", "gaussian_product_coefs", "space_indices", "symmetric_betas"]


def gaussian_product_coefs(std1: Tensor, std2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Coefficients of N(x; a, std1^2) * N(x; b, std2^2) ∝ N(x; c1 a + c2 b, var) (Proof of Prop. 3.3).

    Returns ``(c1, c2, var)`` with ``c1 = std2^2/(std1^2+std2^2)``, ``c2 = std1^2/(std1^2+std2^2)``,
    ``var = std1^2 std2^2/(std1^2+std2^2)``.
    """
    var1, var2 = std1**2, std2**2
    denom = var1 + var2
    return var2 / denom, var1 / denom, var1 * var2 / denom


def symmetric_betas(n_steps: int, beta_max: float, beta_min: float = 1e-4) -> np.ndarray:
    """The authors' symmetric schedule (paper Fig. 6, NVlabs/I2SB ``make_beta_schedule`` + mirror).

    ``b = linspace(sqrt(beta_min), sqrt(beta_max / n), n)**2`` in float64, then the first half is
    mirrored: ``betas = concat(b[:n//2], flip(b[:n//2]))``. For odd ``n`` this gives ``n - 1`` betas,
    exactly as the authors' code does; we reject odd ``n`` instead of silently shortening it.
    """
    if n_steps < 2 or n_steps % 2:
        raise ValueError(f"n_steps must be an even integer >= 2, got {n_steps}")
    if beta_max <= 0:
        raise ValueError(f"beta_max must be positive, got {beta_max}")
    b = np.linspace(beta_min**0.5, (beta_max / n_steps) ** 0.5, n_steps, dtype=np.float64) ** 2
    half = b[: n_steps // 2]
    return np.concatenate([half, half[::-1]])


class Bridge:
    """Discrete I2SB bridge between clean ``x0`` (step 0) and degraded ``x1`` (step ``n_steps - 1``).

    Attributes (1-D float64 tensors of length ``n_steps``): ``betas``, ``std_fwd`` (sigma_n),
    ``std_bwd`` (bar sigma_n), ``mu_x0``, ``mu_x1`` and ``std_sb`` (Eq. 11).
    """

    def __init__(self, betas: Sequence[float] | np.ndarray | Tensor):
        betas = torch.as_tensor(np.asarray(betas, dtype=np.float64))
        if betas.ndim != 1 or len(betas) < 2:
            raise ValueError(f"betas must be a 1-D array with at least 2 entries, got shape {tuple(betas.shape)}")
        if not torch.all(betas > 0):
            raise ValueError("betas must be strictly positive")
        self.betas = betas
        self.std_fwd = torch.sqrt(torch.cumsum(betas, 0))  # sigma_n (Eq. 11)
        self.std_bwd = torch.sqrt(torch.flip(torch.cumsum(torch.flip(betas, [0]), 0), [0]))  # bar sigma_n
        self.mu_x0, self.mu_x1, var = gaussian_product_coefs(self.std_fwd, self.std_bwd)  # Eq. 11
        self.std_sb = torch.sqrt(var)
        self._cache: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}

    @classmethod
    def symmetric(cls, n_steps: int = 1000, beta_max: float = 0.3, beta_min: float = 1e-4) -> "Bridge":
        """The authors' schedule; ``beta_max`` 0.3 (JPEG, SR) or 1.0 (deblurring, inpainting)."""
        return cls(symmetric_betas(n_steps, beta_max, beta_min))

    @property
    def n_steps(self) -> int:
        return len(self.betas)

    def __repr__(self) -> str:
        return f"Bridge(n_steps={self.n_steps}, sum_beta={float(self.betas.sum()):.6g})"

    # ------------------------------------------------------------------ helpers
    def _table(self, name: str, like: Tensor) -> Tensor:
        """Coefficient table ``name`` on ``like``'s device, in ``like``'s floating dtype (cached)."""
        key = (name, like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = getattr(self, name).to(device=like.device, dtype=like.dtype)
        return self._cache[key]

    def _check_step(self, step: Tensor | int, batch: int, arg: str = "step") -> Tensor | int:
        if isinstance(step, bool):
            raise ValueError(f"{arg} must be an int or an integer LongTensor, got bool")
        if isinstance(step, (int, np.integer)):
            if not 0 <= step < self.n_steps:
                raise ValueError(f"{arg}={step} outside 0..{self.n_steps - 1}")
            return int(step)
        if not isinstance(step, Tensor) or step.dtype not in (torch.int64, torch.int32):
            kind = step.dtype if isinstance(step, Tensor) else type(step).__name__
            raise ValueError(f"{arg} must be an int or an integer (long) tensor of shape (B,), got {kind}")
        if step.ndim != 1 or step.shape[0] != batch:
            raise ValueError(f"{arg} must have shape ({batch},), got {tuple(step.shape)}")
        return step

    def coef(self, name: str, step: Tensor | int, like: Tensor) -> Tensor:
        """``table[step]`` broadcastable against ``like`` (B, ...)."""
        table = self._table(name, like)
        if isinstance(step, int):
            return table[step]
        return table[step.to(like.device)].reshape(-1, *([1] * (like.ndim - 1)))

    @staticmethod
    def _check_pair(a: Tensor, b: Tensor, names: str) -> None:
        if a.shape != b.shape:
            raise ValueError(f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")

    @staticmethod
    def _noise(like: Tensor, noise: Tensor | None, generator: Generators) -> Tensor:
        if noise is not None:
            if noise.shape != like.shape:
                raise ValueError(f"noise must have shape {tuple(like.shape)}, got {tuple(noise.shape)}")
            return noise.to(device=like.device, dtype=like.dtype)
        return randn(like, generator)

    # ------------------------------------------------------------------ Eq. 11
    def q_sample(
        self,
        step: Tensor | int,
        x0: Tensor,
        x1: Tensor,
        ot_ode: bool = False,
        noise: Tensor | None = None,
        generator: Generators = None,
    ) -> Tensor:
        """Draw ``X_t ~ q(X_t | X_0, X_1)`` (Eq. 11); with ``ot_ode`` return its mean (Prop. 3.4).

        ``step``: LongTensor (B,) or int; ``x0``, ``x1``: (B, C, H, W). Returns (B, C, H, W).
        """
        self._check_pair(x0, x1, "x0 and x1")
        step = self._check_step(step, x0.shape[0])
        xt = self.coef("mu_x0", step, x0) * x0 + self.coef("mu_x1", step, x0) * x1
        if not ot_ode:
            xt = xt + self.coef("std_sb", step, x0) * self._noise(xt, noise, generator)
        return xt

    # ------------------------------------------------------------------ Eq. 4
    def posterior_coefs(self, prev_step: int, step: int) -> tuple[float, float, float]:
        """``(c_x0, c_xn, std)`` of the DDPM posterior p(X_prev | X_0, X_n) (Eq. 4, proof of Prop. 3.3).

        With ``alpha^2 = sigma_n^2 - sigma_prev^2`` this is the product of N(X_0, sigma_prev^2) and
        N(X_n, alpha^2): mean ``alpha^2/sigma_n^2 X_0 + sigma_prev^2/sigma_n^2 X_n``.
        """
        if not 0 <= prev_step < step < self.n_steps:
            raise ValueError(f"need 0 <= prev_step < step < {self.n_steps}, got prev_step={prev_step}, step={step}")
        std_prev = self.std_fwd[prev_step]
        std_delta = torch.sqrt(self.std_fwd[step] ** 2 - std_prev**2)  # alpha_n
        c_x0, c_xn, var = gaussian_product_coefs(std_prev, std_delta)
        return float(c_x0), float(c_xn), math.sqrt(float(var))

    def posterior_sample(self, prev_step: int, step: int, xt: Tensor, x0_hat: Tensor, ot_ode: bool = False,
                         noise: Tensor | None = None, generator: Generators = None,
                         coefs: tuple[float, float, float] | None = None) -> Tensor:
        """Draw ``X_prev ~ p(X_prev | X_0 = x0_hat, X_step = xt)`` (Eq. 4).

        No noise is added when ``prev_step == 0`` (the last step returns the mean, as the authors do) or
        with ``ot_ode``. ``xt``, ``x0_hat``: (B, C, H, W). Returns (B, C, H, W). ``coefs``: this step's
        :meth:`posterior_coefs`, when the caller computed them beforehand.
        """
        self._check_pair(xt, x0_hat, "xt and x0_hat")
        prev_step, step = int(prev_step), int(step)
        c_x0, c_xn, std = self.posterior_coefs(prev_step, step) if coefs is None else coefs
        x_prev = c_x0 * x0_hat + c_xn * xt
        if not ot_ode and prev_step > 0:
            x_prev = x_prev + std * self._noise(x_prev, noise, generator)
        return x_prev

    # ------------------------------------------------------------------ Eq. 12
    def target(self, step: Tensor | int, x0: Tensor, xt: Tensor) -> Tensor:
        """Regression target of Eq. 12, ``(xt - x0) / sigma_t``. Shapes (B, C, H, W)."""
        self._check_pair(x0, xt, "x0 and xt")
        step = self._check_step(step, xt.shape[0])
        return (xt - x0) / self.coef("std_fwd", step, xt)

    def pred_x0(self, step: Tensor | int, xt: Tensor, net_out: Tensor, clip_denoise: bool = False) -> Tensor:
        """Inverse of Eq. 12: ``x0_hat = xt - sigma_t * net_out``; optionally clamped to [-1, 1]."""
        self._check_pair(xt, net_out, "xt and net_out")
        step = self._check_step(step, xt.shape[0])
        x0 = xt - self.coef("std_fwd", step, xt) * net_out
        return x0.clamp(-1.0, 1.0) if clip_denoise else x0

    # ------------------------------------------------------------------ Algorithm 2
    def timesteps(self, nfe: int) -> list[int]:
        """``nfe + 1`` step indices from 0 to ``n_steps - 1`` (authors' spacing); nfe=2 -> [0, 500, 999]."""
        if isinstance(nfe, bool) or not isinstance(nfe, (int, np.integer)) or not 1 <= nfe <= self.n_steps - 1:
            raise ValueError(f"nfe must be an integer in 1..{self.n_steps - 1}, got {nfe!r}")
        return space_indices(self.n_steps, int(nfe) + 1)

    def sample(self, predict_x0: Predictor, x1: Tensor, nfe: int, ot_ode: bool = False, mask: Tensor | None = None,
               clip_denoise: bool = False, generator: Generators = None, callback: StepCallback | None = None,
               progress: bool = False) -> Tensor:
        """Restore ``x1`` by running the DDPM posterior from step N-1 to 0 (Algorithm 2,
        :func:`i2sb.core.samplers.sample_ddpm`); the notebook's entry, which checks ``x1``, ``mask`` and ``nfe``.

        Args:
            predict_x0: ``(xt, step) -> x0_hat`` with ``step`` a LongTensor (B,) on ``x1``'s device.
            x1: degraded images (B, C, H, W); the computation runs in its dtype and device.
            nfe: number of network evaluations (1 .. n_steps-1), steps spaced by :meth:`timesteps`.
            ot_ode: deterministic OT-ODE sampler (posterior means only, Prop. 3.4).
            mask: optional inpainting mask (B or 1, 1 or C, H, W), 1 = hole. The hole of ``x1`` is filled
                with N(0, 1) and after every step the known region is reset to ``x1`` plus
                ``std_sb[prev]`` noise (no noise with ``ot_ode``), as in the authors' sampler.
            clip_denoise: clamp each x0 prediction to [-1, 1].
            generator: ``torch.Generator`` on ``x1``'s device for reproducible noise.
            callback: called as ``callback(prev_step, step, x_prev, pred_x0)`` after every step, e.g. a
                :class:`Trajectory`.
            progress: show a tqdm progress bar.

        Returns:
            The state at step 0, (B, C, H, W).
        """
        steps = self.timesteps(nfe)
        check_images(x1, mask)

        def denoiser(xt: Tensor, step: Tensor) -> Tensor:  # in xt's dtype, clamped with clip_denoise
            pred = predict_x0(xt, step).to(xt.dtype)
            return pred.clamp(-1.0, 1.0) if clip_denoise else pred

        with tqdm(total=nfe, desc="I2SB sampling", leave=False, disable=not progress) as bar:
            def advance(prev_step: int, step: int, xt: Tensor, pred_x0: Tensor) -> None:
                bar.update(1)
                if callback is not None:
                    callback(prev_step, step, xt, pred_x0)

            return sample_ddpm(denoiser, x1, steps, self, mask=mask, generator=generator, callback=advance,
                               ot_ode=ot_ode)


def check_images(x1: Tensor, mask: Tensor | None) -> None:
    """``ValueError`` unless ``x1`` is a floating (B, C, H, W) tensor and ``mask`` None or (B or 1, 1 or C, H, W)."""
    if not isinstance(x1, Tensor) or x1.ndim != 4 or not x1.is_floating_point():
        shape = tuple(x1.shape) if isinstance(x1, Tensor) else type(x1).__name__
        raise ValueError(f"x1 must be a floating tensor (B, C, H, W), got {shape}")
    if mask is not None and (mask.ndim != 4 or mask.shape[-2:] != x1.shape[-2:]):
        raise ValueError(f"mask must have shape (B or 1, 1 or C, {x1.shape[-2]}, {x1.shape[-1]}), "
                         f"got {tuple(mask.shape)}")
