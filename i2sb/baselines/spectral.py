"""Spectra of the linear operators of :mod:`i2sb.degrade`, for DDNM+'s noise-aware scaling.

DDNM+ (Wang et al., ICLR 2023, Sec. 3.3 and App. "SVD") scales the range-space correction and the added
noise per singular direction of A = U Sigma V^T. What it needs is an orthonormal basis V in which the
pseudo-inverse's noise A^+ n (n ~ N(0, sigma_y^2 I)) is uncorrelated, and the standard deviation of each
coefficient per unit sigma_y, the *gain* 1 / s_i (0 in the null space). :func:`spectrum` builds that from
the operators' public ``A`` / ``A_pinv`` alone (a registry by operator type):

* inpainting (``MaskOperator``): V = I, gain 1 on known pixels, 0 in the hole;
* colorization (``LuminanceOperator``): per pixel, V's first vector is w / |w|, gain 1 / |w| there, 0 else;
* SR and the clean blurs (``SeparableOperator``, A^+ Y = P Y P^T): from the SVD P = V_P D W^T,
  coefficients V_P^T X V_P with gain d_i d_j.

The authors' DDRM blur mixes its spectrum across channels and has no such basis here (use ``sigma_y=0`` or the
``blur_*_conv`` tasks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..degrade.base import LinearOperator
from ..degrade.color import LuminanceOperator
from ..degrade.inpaint import MaskOperator
from ..degrade.linear import SeparableOperator


@dataclass
class Spectrum:
    """An orthonormal basis (as transforms of (B, C, H, W) images) and the per-coefficient noise gain of A^+.

    ``to_coef(x) = V^T x``, ``from_coef(c) = V c`` (same shapes); ``gain`` broadcasts against coefficients:
    the coefficients of A^+ n have standard deviation ``sigma_y * gain`` and are independent; gain 0 marks
    the null space of A (where A^+ A x has no component).
    """

    to_coef: Callable[[Tensor], Tensor]
    from_coef: Callable[[Tensor], Tensor]
    gain: Tensor


def _identity(x: Tensor) -> Tensor:
    return x


def mask_spectrum(op: MaskOperator, size: int) -> Spectrum:
    """Inpainting: A^+ = A = keep * x, so the pixel basis with gain = keep (1 known, 0 hole)."""
    return Spectrum(_identity, _identity, 1.0 - op.mask)


def luminance_spectrum(op: LuminanceOperator, size: int) -> Spectrum:
    """Colorization: A x = w . x per pixel; basis rows of W^T from the SVD of w (first row w / |w|)."""
    w = op.A(torch.eye(3, dtype=torch.float64).view(3, 3, 1, 1)).reshape(1, 3)  # probe: A e_c = w_c
    _, s, vh = torch.linalg.svd(w, full_matrices=True)  # vh (3, 3), vh[0] = +-w / |w|
    gain = torch.tensor([1.0 / float(s[0]), 0.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1)

    def to_coef(x: Tensor) -> Tensor:
        return torch.einsum("ij,bjhw->bihw", vh.to(x), x)

    def from_coef(c: Tensor) -> Tensor:
        return torch.einsum("ji,bjhw->bihw", vh.to(c), c)

    return Spectrum(to_coef, from_coef, gain)


def separable_factor(apply: Callable[[Tensor], Tensor], n_in: int) -> Tensor:
    """The matrix M (n_out, n_in) of a separable map ``apply(X) = M X M^T`` on (B, 1, n_in, n_in), float64.

    Probes: X = 1 1^T gives r r^T with r = M 1; X_j = e_j 1^T gives M e_j r^T, so M e_j = (M e_j r^T) r / |r|^2.
    (M is recovered up to its sign, which ``apply`` does not see.) Needs M 1 != 0 (true for every averaging
    filter and its pseudo-inverse).
    """
    ones = apply(torch.ones(1, 1, n_in, n_in, dtype=torch.float64))[0, 0]
    k = int(torch.argmax(torch.diagonal(ones)))
    if float(ones[k, k]) <= 1e-24:
        raise ValueError("cannot probe the operator: it maps the constant image to zero")
    r = ones[:, k] / ones[k, k].sqrt()
    basis = torch.zeros(n_in, 1, n_in, n_in, dtype=torch.float64)
    basis[torch.arange(n_in), 0, torch.arange(n_in), :] = 1.0
    factor = torch.einsum("jab,b->aj", apply(basis)[:, 0], r) / r.dot(r)
    probe = torch.randn(1, 1, n_in, n_in, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    if not torch.allclose(apply(probe)[0, 0], factor @ probe[0, 0] @ factor.T, atol=1e-8, rtol=1e-6):
        raise ValueError("the operator is not of the separable form M X M^T")
    return factor


def separable_spectrum(op: SeparableOperator, size: int) -> Spectrum:
    """SR and clean blurs: A^+ Y = P Y P^T with P (n, m); V_P, D from the full SVD of P, gain d_i d_j."""
    m = size // op.lift_factor
    pinv = separable_factor(op.A_pinv, m)  # (size, m)
    v, d, _ = torch.linalg.svd(pinv, full_matrices=True)  # v (size, size), d (m,)
    gain_1d = torch.zeros(size, dtype=torch.float64)
    gain_1d[: d.numel()] = torch.where(d > 1e-12 * d.max(), d, torch.zeros_like(d))

    def to_coef(x: Tensor) -> Tensor:
        vx = v.to(x)
        return vx.T @ x @ vx

    def from_coef(c: Tensor) -> Tensor:
        vc = v.to(c)
        return vc @ c @ vc.T

    return Spectrum(to_coef, from_coef, torch.outer(gain_1d, gain_1d))


SPECTRA: dict[type, Callable[[LinearOperator, int], Spectrum]] = {
    MaskOperator: mask_spectrum,
    LuminanceOperator: luminance_spectrum,
    SeparableOperator: separable_spectrum,
}


def spectrum(op: LinearOperator, size: int) -> Spectrum:
    """The :class:`Spectrum` of ``op`` acting on (B, 3, size, size) images (registry :data:`SPECTRA`)."""
    for kind, build in SPECTRA.items():
        if isinstance(op, kind):
            return build(op, size)
    raise ValueError(f"DDNM+ with sigma_y > 0 needs the spectrum of the operator, unknown for "
                     f"{type(op).__name__} (known: {', '.join(k.__name__ for k in SPECTRA)}); use sigma_y=0 "
                     f"or the blur_*_conv tasks")
