"""Deblurring corruptions.

``blur_uni`` / ``blur_gauss`` are the paper's corruptions, DDRM's ``Deblurring`` operator exactly as the
authors ran it (uniform 9-tap kernel 1/9; Gaussian 5-tap, sigma 10, normalised), applied to the image
mapped to [0, 1] and mapped back. That operator is NOT a plain blur; it has four quirks, reproduced here:

1. The 1-D matrix loop ``for j in range(i - k//2, i + k//2)`` drops the last tap: the filter is
   asymmetric (offsets -k//2 .. k//2 - 1) and its rows sum to 8/9 (uniform) or ~0.80 (Gaussian), so
   images also get darker.
2. Zero padding at the borders (black in [0, 1], so borders darken further).
3. 1-D singular values < 3e-2 are zeroed (a truncated operator).
4. ``singulars()`` tiles the sorted 2-D singular values over the channels (``repeat(1, 3)``) while
   ``Vt`` lays coefficients out pixel-major, channel-minor, so the coefficient of sorted position q in
   channel c is scaled by ``sorted_singulars[(3q + c) mod n^2]`` instead of its own singular value.
   The result blurs much more strongly than the 9- or 5-tap kernel (and differently per channel). The
   per-channel coefficient maps depend on the exact float32 SVD and the order ``torch.sort`` gives to
   tied singular values, so they are computed the same way (float32 SVD and sort on the CPU).

``blur_uni_conv`` / ``blur_gauss_conv`` are the mathematically proper versions: the full symmetric
kernel as a separable convolution with reflective (edge-repeating) padding; linear in [-1, 1] units.

DDRM's operator is square; an H x W image gets a 1-D factor per side and the 2-D singular values
s_H (x) s_W, ranked and tiled over the channels exactly as in quirk 4 (the square case is unchanged).
Every side must be at least as long as the kernel.
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor

from i2sb.degrade.base import ImageSize, LinearDegradation, LinearOperator, size_text
from i2sb.degrade.linear import (
    DDRM_SINGULAR_CUTOFF,
    SeparableOperator,
    TensorCache,
    banded_matrix,
    truncated_pinv,
)


def uniform_kernel(size: int = 9, dtype: torch.dtype = torch.float32) -> Tensor:
    """(size,) taps 1/size (DDRM's uniform deblurring kernel)."""
    return torch.full((size,), 1 / size, dtype=dtype)


def gaussian_kernel(size: int = 5, sigma: float = 10.0, dtype: torch.dtype = torch.float32) -> Tensor:
    """(size,) taps exp(-x^2 / (2 sigma^2)), x = -size//2 .. size//2, normalised to sum 1 (DDRM; its
    float32 bits with the default dtype)."""
    exponent = [-0.5 * (x / sigma) ** 2 for x in range(-(size // 2), size // 2 + 1)]
    pdf = torch.exp(torch.tensor(exponent, dtype=dtype))
    return pdf / pdf.sum()


def ddrm_factor(kernel: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """SVD (U, s, V) of DDRM's 1-D ``Deblurring`` matrix for n pixels, float32 on the CPU, quirks 1-3."""
    size = kernel.shape[0]
    h = banded_matrix(kernel[:-1].float(), n, torch.arange(n), -(size // 2), symmetric=False)  # quirks 1, 2
    u, s, vh = torch.linalg.svd(h)
    return u, torch.where(s < DDRM_SINGULAR_CUTOFF, 0.0, s), vh.T  # quirk 3


def ddrm_spectrum_2d(
    kernel: Tensor, height: int, width: int
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], Tensor]:
    """SVD pieces of DDRM's ``Deblurring`` H for a height x width image, float32 on the CPU, quirks 1-4.

    Returns (U_r, V_r) (height, height), (U_c, V_c) (width, width) and the per-channel coefficient maps
    M (3, height, width) such that H(X)_c = U_r (M_c * (V_r^T X_c V_c)) U_c^T.
    """
    u, s, v = ddrm_factor(kernel, height)
    u_c, s_c, v_c = (u, s, v) if width == height else ddrm_factor(kernel, width)
    count = height * width
    ranked, perm = torch.outer(s, s_c).reshape(-1).sort(descending=True)
    maps = torch.empty(3, count)
    maps[:, perm] = ranked.repeat(3).view(count, 3).T  # quirk 4: position q, channel c <- ranked[3q + c]
    return (u, v), (u_c, v_c), maps.view(3, height, width)


def ddrm_spectrum(kernel: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Square case of :func:`ddrm_spectrum_2d`: U (n, n), V (n, n) and M (3, n, n) with
    H(X)_c = U (M_c * (V^T X_c V)) U^T."""
    (u, v), _, maps = ddrm_spectrum_2d(kernel, n, n)
    return u, v, maps


class DDRMBlurOperator(LinearOperator):
    """DDRM's ``Deblurring`` H as a linear operator on [-1, 1] images (B, 3, n, w) -> (B, 3, n, w).

    A(x)_c = U_r (M_c * (V_r^T x_c V_c)) U_c^T with DDRM's float32 factors (so x1 matches bit for bit);
    A_pinv(y)_c = V_r (M_c^+ * (U_r^T y_c U_c)) V_c^T inverts the nonzero M_c. As U, V are orthogonal only
    to float32 precision and min M_c ~ 1e-3, the pseudo-inverse identities hold to ~1e-4.
    Because the authors blur (x + 1) / 2 and map back, their x1 is affine in x0:
    x1 = A(x0) + offset with offset = A(1) - 1 (3, n, w); ``lift`` adds that offset.
    """

    def __init__(self, kernel: Tensor, n: int, width: int | None = None) -> None:
        (u, v), (u_c, v_c), maps = ddrm_spectrum_2d(kernel, n, n if width is None else width)
        maps_pinv = torch.where(maps == 0, 0.0, 1.0 / maps)
        ones = torch.ones(1, 3, *maps.shape[1:], dtype=torch.float64)
        offset = self._apply(u, v, u_c, v_c, maps.double(), ones) - 1
        self._mats = TensorCache(U=u, V=v, Uc=u_c, Vc=v_c, maps=maps, maps_pinv=maps_pinv, offset=offset[0])

    @staticmethod
    def _apply(left: Tensor, right: Tensor, left_c: Tensor, right_c: Tensor, maps: Tensor, x: Tensor) -> Tensor:
        """left (maps * (right^T x right_c)) left_c^T, channel by channel, in the dtype of x."""
        left, right, left_c, right_c = (t.to(x.dtype) for t in (left, right, left_c, right_c))
        return left @ (maps * (right.T @ x @ right_c)) @ left_c.T

    def A(self, x: Tensor) -> Tensor:
        m = self._mats.like(x)
        return self._apply(m["U"], m["V"], m["Uc"], m["Vc"], m["maps"], x.to(m["U"].dtype)).to(x.dtype)

    def A_pinv(self, y: Tensor) -> Tensor:
        m = self._mats.like(y)
        return self._apply(m["V"], m["U"], m["Vc"], m["Uc"], m["maps_pinv"], y.to(m["U"].dtype)).to(y.dtype)

    def lift(self, y: Tensor) -> Tensor:
        return y + self._mats.like(y)["offset"].to(y.dtype)


def check_kernel_fits(size: tuple[int, int], kernel: Tensor, name: str) -> None:
    """ValueError unless both sides of ``size`` (H, W) are at least as long as the kernel."""
    if min(size) < kernel.shape[0]:
        raise ValueError(f"{name}: image_size {size_text(size)} is smaller than the kernel ({kernel.shape[0]} taps)")


class DDRMBlur(LinearDegradation):
    """The paper's blur: x1 = 2 H((x0 + 1) / 2) - 1 with DDRM's ``Deblurring`` H (see module docstring).

    Computed in that order (not as lift(A(x0))) so that x1 matches the authors' bits.
    """

    def __init__(self, image_size: ImageSize, kernel: Tensor, name: str) -> None:
        super().__init__(image_size, name)
        check_kernel_fits(self.size, kernel, name)
        self.kernel = kernel

    @cached_property
    def _operator(self) -> DDRMBlurOperator:
        return DDRMBlurOperator(self.kernel, self.height, self.width)

    def _degrade(self, x0: Tensor, generator: torch.Generator | None) -> tuple[Tensor, None]:
        return self._operator.A((x0 + 1) / 2) * 2 - 1, None


class ConvBlur(LinearDegradation):
    """Plain separable blur: the full symmetric kernel along rows and columns, reflective padding.

    ``operator()``: A is exactly that convolution; A_pinv is the pseudo-inverse over 1-D singular
    values >= ``pinv_cutoff`` (default DDRM's 3e-2; box and Gaussian blurs are severely
    ill-conditioned, so an untruncated inverse amplifies noise by up to ~1e5). With
    ``pinv_cutoff=0`` it is the exact Moore–Penrose inverse. ``lift`` is the identity.
    """

    def __init__(self, image_size: ImageSize, kernel: Tensor, name: str, pinv_cutoff: float = DDRM_SINGULAR_CUTOFF):
        super().__init__(image_size, name)
        check_kernel_fits(self.size, kernel, name)
        self.kernel = kernel.double()
        self.pinv_cutoff = pinv_cutoff

    def _factor(self, n: int) -> Tensor:
        return banded_matrix(self.kernel, n, torch.arange(n), -(self.kernel.shape[0] // 2), symmetric=True)

    @cached_property
    def _operator(self) -> LinearOperator:
        rows = self._factor(self.height)
        if self.width == self.height:
            return SeparableOperator(rows, truncated_pinv(rows, self.pinv_cutoff))
        cols = self._factor(self.width)
        return SeparableOperator(
            rows, truncated_pinv(rows, self.pinv_cutoff), cols, truncated_pinv(cols, self.pinv_cutoff)
        )


def blur_uni(image_size: ImageSize) -> DDRMBlur:
    """The paper's uniform blur (DDRM ``Deblurring``, 9 taps of 1/9, quirks included)."""
    return DDRMBlur(image_size, uniform_kernel(9), "blur_uni")


def blur_gauss(image_size: ImageSize) -> DDRMBlur:
    """The paper's Gaussian blur (DDRM ``Deblurring``, 5 taps, sigma 10, quirks included)."""
    return DDRMBlur(image_size, gaussian_kernel(5, 10.0), "blur_gauss")


def blur_uni_conv(image_size: ImageSize, size: int = 9, pinv_cutoff: float = DDRM_SINGULAR_CUTOFF) -> ConvBlur:
    """Plain separable uniform blur (size taps of 1/size), reflective padding."""
    return ConvBlur(image_size, uniform_kernel(size, torch.float64), "blur_uni_conv", pinv_cutoff)


def blur_gauss_conv(
    image_size: int, size: int = 5, sigma: float = 10.0, pinv_cutoff: float = DDRM_SINGULAR_CUTOFF
) -> ConvBlur:
    """Plain separable Gaussian blur (size taps, sigma), reflective padding."""
    return ConvBlur(image_size, gaussian_kernel(size, sigma, torch.float64), "blur_gauss_conv", pinv_cutoff)
