"""JPEG corruptions.

``DDRMJpeg`` (tasks ``jpeg5``, ``jpeg10``, ``jpeg`` with any ``quality``) is the paper's corruption: the
differentiable torch JPEG of DDRM-JPEG (Kawar et al., 2022, ``functions/jpeg_torch.py``) that I2SB uses.
It reproduces that code's floating-point operations (float32, same DCT matrix computed through the same
FFT, same colour matrix, same order of operations), because its ``round()`` makes bit-level differences
visible: a coefficient on a .5 boundary flips. Bit-exact on the CPU; other devices (or TF32 matmuls)
may flip a rare coefficient. Unlike a real codec it does not clip or round pixels, so x1 leaves [-1, 1]
(about -1.9 .. 1.7 at quality 5 on photos).

The authors' code assumes square images with a side divisible by 16 (4:2:0 chroma in 8x8 blocks): other
sides make ``nn.Unfold`` drop the last partial blocks and ``nn.Fold`` write zeros there (the last rows and
columns come out as garbage colours), and non-square images fail. So by default the size must be a multiple
of 16 (the paper's operator, bit for bit); ``pad=True`` accepts any size the way a JPEG codec does: the
image is padded to whole 16 x 16 macroblocks by repeating its last row and column, coded, and the decoded
image is cropped back (a no-op for multiples of 16).

``LibJpeg`` (task ``jpeg_libjpeg``) is a real baseline JPEG (torchvision's libjpeg ``encode_jpeg`` /
``decode_jpeg``, 4:2:0 chroma): use it to test a model on files a camera or browser would produce.
"""

from __future__ import annotations

import math
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.io import decode_jpeg, encode_jpeg

from i2sb.degrade.base import Degradation, ImageSize, size_text
from i2sb.degrade.linear import TensorCache, nearest_upsample

BLOCK = 8
MACROBLOCK = 2 * BLOCK  # 4:2:0: one 8x8 chroma block covers 16x16 pixels

# JPEG standard (ITU-T T.81) Annex K, Tables K.1 (luminance) and K.2 (chrominance), row-major 8x8.
LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32  # fmt: skip

# JFIF RGB -> YCbCr with the 4-digit coefficients DDRM-JPEG uses (Cb, Cr offset by 128 separately).
RGB_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.1687, -0.3313, 0.5), (0.5, -0.4187, -0.0813))
CHROMA_OFFSET = (0.0, 128.0, 128.0)


def check_quality(quality: int) -> int:
    """Return ``quality`` if it is an int in [1, 100], else raise ValueError."""
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be an int in [1, 100], got {quality!r}")
    return quality


def quantization_tables(quality: int) -> tuple[Tensor, Tensor]:
    """IJG quality scaling of Tables K.1/K.2 as DDRM-JPEG computes it (float scale, float32 maths).

    Returns (luma, chroma) float32 tables of shape (8, 8), entries in [1, 255].
    """
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    tables = []
    for base in (LUMA_TABLE, CHROMA_TABLE):
        table = torch.floor((scale * torch.tensor(base) + 50) / 100)  # int64 * float -> float32
        tables.append(table.clamp(1, 255).view(BLOCK, BLOCK))
    return tables[0], tables[1]


def dct_rows(n: int = BLOCK) -> Tensor:
    """(n, n) float32 matrix whose row i is the orthonormal DCT-II of the unit vector e_i.

    Computed like DDRM-JPEG's ``LinearDCT``: the DCT-II through an n-point FFT of the even/odd reordered
    signal (Makhoul, 1980), in float32 on the CPU, so the bits (and hence the JPEG rounding) agree.
    A row vector x is transformed as ``x @ dct_rows()``.
    """
    eye = torch.eye(n)
    reordered = torch.cat([eye[:, 0::2], eye[:, 1::2].flip([1])], dim=1)
    spectrum = torch.view_as_real(torch.fft.fft(reordered, dim=1))
    angle = -torch.arange(n, dtype=torch.float32)[None, :] * math.pi / (2 * n)
    coeff = spectrum[..., 0] * torch.cos(angle) - spectrum[..., 1] * torch.sin(angle)
    norm = torch.full((n,), math.sqrt(n / 2) * 2)
    norm[0] = math.sqrt(n) * 2
    return 2 * (coeff / norm)


def to_blocks(image: Tensor) -> Tensor:
    """(B, C, H, W) -> (B * H/8 * W/8 * C, 8, 8) blocks, ordered (batch, block row, block col, channel)
    like ``nn.Unfold``."""
    b, c, h, w = image.shape
    blocks = image.reshape(b, c, h // BLOCK, BLOCK, w // BLOCK, BLOCK).permute(0, 2, 4, 1, 3, 5)
    return blocks.reshape(-1, BLOCK, BLOCK)


def from_blocks(blocks: Tensor, shape: tuple[int, int, int, int]) -> Tensor:
    """Inverse of ``to_blocks``: (B * H/8 * W/8 * C, 8, 8) -> (B, C, H, W)."""
    b, c, h, w = shape
    image = blocks.reshape(b, h // BLOCK, w // BLOCK, c, BLOCK, BLOCK).permute(0, 3, 1, 4, 2, 5)
    return image.reshape(b, c, h, w)


def transform_blocks(blocks: Tensor, rows: Tensor) -> Tensor:
    """Separable 2-D transform of (M, 8, 8) blocks: every row, then every column, by ``rows`` (8, 8).

    The same matmuls, in the same order, as DDRM-JPEG's ``apply_linear_2d``.
    """
    return ((blocks @ rows).transpose(-1, -2) @ rows).transpose(-1, -2)


def colour_transform(image: Tensor, matrix: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 3, H, W): out_c = sum_k matrix[c, k] * image_k (tensordot, as DDRM-JPEG)."""
    return torch.tensordot(image, matrix, dims=([1], [1])).permute(0, 3, 1, 2)


class DDRMJpeg(Degradation):
    """The paper's JPEG corruption (DDRM-JPEG), quality 1..100; both sides multiples of 16 unless ``pad``.

    x0 in [-1, 1] -> [0, 255] -> YCbCr (JFIF, Cb/Cr + 128) -> chroma decimated by [::2, ::2] -> 8x8
    blocks - 128 -> orthonormal DCT -> divide by the IJG-scaled tables -> ``round()`` (half to even) ->
    multiply back -> inverse DCT -> + 128 -> chroma repeated 2x2 -> RGB -> [-1, 1]. No clipping.
    Always computed in float32 (the reference precision), whatever the input dtype. ``pad=True``: any
    size, edge-padded to whole 16 x 16 macroblocks and cropped after decoding (see the module docstring).
    """

    def __init__(self, image_size: ImageSize, quality: int = 10, name: str | None = None, pad: bool = False) -> None:
        self.quality = check_quality(quality)
        super().__init__(image_size, name or f"jpeg{quality}")
        self.pad = bool(pad)
        if not self.pad and (self.height % MACROBLOCK or self.width % MACROBLOCK):
            raise ValueError(f"{self.name}: image_size must be a multiple of 16, got {size_text(self.size)} "
                             f"(pad=True pads it like a JPEG codec)")
        self.coded_size = tuple(-(-n // MACROBLOCK) * MACROBLOCK for n in self.size)

    @cached_property
    def _constants(self) -> TensorCache:
        forward = torch.tensor(RGB_TO_YCBCR)
        rows = dct_rows()
        luma_q, chroma_q = quantization_tables(self.quality)
        return TensorCache(
            rows=rows,
            inverse_rows=rows.T.contiguous(),  # orthonormal: the inverse DCT is the transpose
            luma_q=luma_q,
            chroma_q=chroma_q,
            rgb_to_ycbcr=forward,
            ycbcr_to_rgb=torch.linalg.inv(forward.double()).float(),
            offset=torch.tensor(CHROMA_OFFSET).view(1, 3, 1, 1),
        )

    def encode(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        """x0 (B, 3, H, W), H and W multiples of 16 -> quantised DCT coefficients (integers as float32):
        luma (B*(H/8)*(W/8), 8, 8) and chroma (B*(H/16)*(W/16)*2, 8, 8), in ``to_blocks`` order."""
        c = self._constants.get(x0.device, torch.float32)
        pixels = (x0.float() + 1) / 2 * 255
        ycbcr = colour_transform(pixels, c["rgb_to_ycbcr"]) + c["offset"]
        luma, chroma = ycbcr[:, :1], ycbcr[:, 1:, ::2, ::2]
        luma = transform_blocks(to_blocks(luma) - 128, c["rows"]) / c["luma_q"]
        chroma = transform_blocks(to_blocks(chroma) - 128, c["rows"]) / c["chroma_q"]
        return luma.round(), chroma.round()

    def decode(self, luma: Tensor, chroma: Tensor, batch: int) -> Tensor:
        """Quantised coefficients (as from ``encode``) -> image (batch, 3, H, W) in [-1, 1] (unclipped), at
        ``coded_size`` (H, W) (the image size rounded up to multiples of 16)."""
        c = self._constants.get(luma.device, torch.float32)
        height, width = self.coded_size
        luma = transform_blocks(luma * c["luma_q"], c["inverse_rows"]) + 128
        chroma = transform_blocks(chroma * c["chroma_q"], c["inverse_rows"]) + 128
        luma = from_blocks(luma, (batch, 1, height, width))
        chroma = nearest_upsample(from_blocks(chroma, (batch, 2, height // 2, width // 2)), 2)
        rgb = colour_transform(torch.cat([luma, chroma], dim=1) - c["offset"], c["ycbcr_to_rgb"])
        return rgb / 255 * 2 - 1

    def _degrade(self, x0: Tensor, generator: torch.Generator | None) -> tuple[Tensor, None]:
        (height, width), (coded_h, coded_w) = self.size, self.coded_size
        x = x0 if (height, width) == (coded_h, coded_w) else F.pad(x0, (0, coded_w - width, 0, coded_h - height),
                                                                     mode="replicate")
        luma, chroma = self.encode(x)
        return self.decode(luma, chroma, x0.shape[0])[..., :height, :width].to(x0.dtype), None


class LibJpeg(Degradation):
    """A real JPEG round trip through libjpeg (torchvision ``encode_jpeg``/``decode_jpeg``).

    Not the paper's corruption (that is ``DDRMJpeg``): pixels are rounded to uint8 first, the codec
    uses its own DCT, 4:2:0 chroma filtering and clipping. Runs on the CPU; x1 comes back on x0's device.
    """

    def __init__(self, image_size: ImageSize, quality: int = 10, name: str | None = None) -> None:
        self.quality = check_quality(quality)
        super().__init__(image_size, name or "jpeg_libjpeg")

    def _degrade(self, x0: Tensor, generator: torch.Generator | None) -> tuple[Tensor, None]:
        pixels = ((x0 + 1) * 127.5).round().clamp(0, 255).to(device="cpu", dtype=torch.uint8)
        decoded = decode_jpeg(encode_jpeg(list(pixels), quality=self.quality))
        x1 = torch.stack(decoded).to(device=x0.device, dtype=x0.dtype)
        return x1 / 127.5 - 1, None
