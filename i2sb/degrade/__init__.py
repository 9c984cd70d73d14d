"""Image degradations of the I2SB paper (Liu et al., 2023, Sec. 5), exact to the authors' code.

>>> from i2sb import degrade
>>> deg = degrade.build("sr4x_bicubic", 256)
>>> x1, mask = deg(x0)                       # x0: (B, 3, 256, 256) in [-1, 1]; mask is None here
>>> op = deg.operator()                      # linear tasks only: op.A, op.A_pinv, op.lift

Tasks (``TASKS``): ``jpeg5``, ``jpeg10`` and ``jpeg`` (any ``quality``) are the paper's DDRM-JPEG;
``jpeg_libjpeg`` (any ``quality``) is a real libjpeg round trip; ``sr4x_pool``, ``sr4x_bicubic``;
``blur_uni``, ``blur_gauss`` (the authors' DDRM operator, quirks included) and ``blur_uni_conv``,
``blur_gauss_conv`` (plain separable convolutions); ``inpaint_center``, ``inpaint_freeform1020``,
``inpaint_freeform2030`` (``mask_file=`` or ``$I2SB_FREEFORM_MASKS`` for Palette's masks, generated
brush strokes otherwise); ``colorize``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from i2sb.degrade.base import Degradation, LinearOperator
from i2sb.degrade.blur import blur_gauss, blur_gauss_conv, blur_uni, blur_uni_conv
from i2sb.degrade.color import colorize
from i2sb.degrade.inpaint import inpaint_center, inpaint_freeform1020, inpaint_freeform2030
from i2sb.degrade.jpeg import DDRMJpeg, LibJpeg
from i2sb.degrade.sr import sr4x_bicubic, sr4x_pool

TASKS: dict[str, Callable[..., Degradation]] = {
    "jpeg": DDRMJpeg,
    "jpeg5": partial(DDRMJpeg, quality=5),
    "jpeg10": partial(DDRMJpeg, quality=10),
    "jpeg_libjpeg": LibJpeg,
    "sr4x_pool": sr4x_pool,
    "sr4x_bicubic": sr4x_bicubic,
    "blur_uni": blur_uni,
    "blur_gauss": blur_gauss,
    "blur_uni_conv": blur_uni_conv,
    "blur_gauss_conv": blur_gauss_conv,
    "inpaint_center": inpaint_center,
    "inpaint_freeform1020": inpaint_freeform1020,
    "inpaint_freeform2030": inpaint_freeform2030,
    "colorize": colorize,
}


def build(task: str, image_size: int, **params) -> Degradation:
    """The degradation ``task`` for (B, 3, image_size, image_size) images; ``params`` go to its factory."""
    if task not in TASKS:
        raise ValueError(f"unknown degradation task {task!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[task](image_size, **params)


__all__ = ["TASKS", "Degradation", "LinearOperator", "build"]
