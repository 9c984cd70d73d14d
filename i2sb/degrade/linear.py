"""Building blocks of the linear degradations: 1-D band matrices, DDRM's truncated SVD, separable operators.

DDRM (Kawar et al., 2022, ``functions/svd_replacement.py``) applies every separable operator through the
SVD of its 1-D factor and zeroes singular values below ``DDRM_SINGULAR_CUTOFF``; ``truncated_factor``
returns that truncated factor as a plain matrix, so y = H_t X H_t^T reproduces DDRM's H(x) exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from i2sb.degrade.base import LinearOperator, working_dtype

DDRM_SINGULAR_CUTOFF = 3e-2  # DDRM's ``ZERO``: singular values below it are treated as zero


class TensorCache:
    """Master tensors (built once, on the CPU) and their copies per (device, dtype), made on first use."""

    def __init__(self, **masters: Tensor) -> None:
        self._masters = masters
        self._copies: dict[tuple[torch.device, torch.dtype], dict[str, Tensor]] = {}

    def get(self, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        """All master tensors on ``device`` in ``dtype``."""
        key = (torch.device(device), dtype)
        if key not in self._copies:
            self._copies[key] = {k: t.to(device=device, dtype=dtype) for k, t in self._masters.items()}
        return self._copies[key]

    def like(self, x: Tensor) -> dict[str, Tensor]:
        """All master tensors on x's device in x's working dtype (float32, or float64 for float64 x)."""
        return self.get(x.device, working_dtype(x.dtype))


def banded_matrix(taps: Tensor, n: int, centers: Tensor, first_offset: int, symmetric: bool) -> Tensor:
    """(len(centers), n) matrix whose row r applies ``taps[k]`` at column ``centers[r] + first_offset + k``.

    Columns outside [0, n) are dropped (zero padding) or, if ``symmetric``, mirrored about the edge with
    the edge pixel repeated (index -1 -> 0, n -> n-1: DDRM's SRConv "reflective padding").
    Duplicate columns accumulate. The matrix has the dtype of ``taps``.
    """
    if symmetric and len(taps) > 2 * n:
        raise ValueError(f"a {len(taps)}-tap kernel is too wide for a {n}-pixel image")
    cols = centers[:, None] + first_offset + torch.arange(len(taps))[None, :]
    rows = torch.arange(len(centers))[:, None].expand_as(cols)
    vals = taps[None, :].expand_as(cols)
    if symmetric:
        cols = torch.where(cols < 0, -cols - 1, cols)
        cols = torch.where(cols >= n, 2 * n - 1 - cols, cols)
    else:
        inside = (cols >= 0) & (cols < n)
        rows, cols, vals = rows[inside], cols[inside], vals[inside]
    matrix = torch.zeros(len(centers), n, dtype=taps.dtype)
    return matrix.index_put_((rows.reshape(-1), cols.reshape(-1)), vals.reshape(-1), accumulate=True)


def truncated_factor(matrix: Tensor, cutoff: float = DDRM_SINGULAR_CUTOFF) -> Tensor:
    """U diag(s_t) V^T with singular values s < cutoff set to zero (DDRM's truncated operator). float64."""
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    return (u * torch.where(s < cutoff, 0.0, s)) @ vh


def truncated_pinv(matrix: Tensor, cutoff: float = DDRM_SINGULAR_CUTOFF) -> Tensor:
    """Pseudo-inverse V diag(1/s) U^T over the singular values s >= cutoff (Moore–Penrose of the
    truncated factor). float64; ``cutoff=0`` keeps every singular value above 1e-12 * max(s)."""
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    keep = (s >= cutoff) & (s > 1e-12 * s.max())
    return (vh.mT * torch.where(keep, 1.0 / s, 0.0)) @ u.mT


def nearest_upsample(y: Tensor, factor: int) -> Tensor:
    """(..., h, w) -> (..., h * factor, w * factor), every pixel repeated (nearest neighbour)."""
    return y.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


class SeparableOperator(LinearOperator):
    """y_c = H_r X_c H_c^T for each channel c: a 1-D factor per axis, H_r (m_r, n_r) on the rows (height)
    and H_c (m_c, n_c) on the columns (width); ``col_factor=None`` uses H_r on both (square images).

    ``A_pinv`` uses the given pseudo-inverses P of the factors (Kronecker: (H_r (x) H_c)^+ = P_r (x) P_c);
    ``lift`` repeats each measured pixel ``n / m`` times per axis (the nearest upsampling the authors apply
    after SR); both axes must shrink by the same ``lift_factor``.
    """

    def __init__(
        self, factor: Tensor, factor_pinv: Tensor, col_factor: Tensor | None = None, col_pinv: Tensor | None = None
    ) -> None:
        col_factor, col_pinv = (factor, factor_pinv) if col_factor is None else (col_factor, col_pinv)
        ratios = set()
        for h, p in ((factor, factor_pinv), (col_factor, col_pinv)):
            m, n = h.shape
            if p is None or p.shape != (n, m) or n % m:
                raise ValueError(f"factor {tuple(h.shape)} and pseudo-inverse {None if p is None else tuple(p.shape)} "
                                 f"mismatch")
            ratios.add(n // m)
        if len(ratios) != 1:
            raise ValueError(f"the row and column factors shrink by different ratios {sorted(ratios)}")
        self.lift_factor = ratios.pop()
        self._mats = TensorCache(H=factor, P=factor_pinv, Hc=col_factor, Pc=col_pinv)

    def A(self, x: Tensor) -> Tensor:
        """(B, C, n_r, n_c) -> (B, C, m_r, m_c)."""
        m = self._mats.like(x)
        return (m["H"] @ x.to(m["H"].dtype) @ m["Hc"].mT).to(x.dtype)

    def A_pinv(self, y: Tensor) -> Tensor:
        """(B, C, m_r, m_c) -> (B, C, n_r, n_c)."""
        m = self._mats.like(y)
        return (m["P"] @ y.to(m["P"].dtype) @ m["Pc"].mT).to(y.dtype)

    def lift(self, y: Tensor) -> Tensor:
        """(B, C, m_r, m_c) -> (B, C, n_r, n_c) by nearest upsampling."""
        return nearest_upsample(y, self.lift_factor)
