"""Image degradations of the I2SB paper (Liu et al., 2023, Sec. 5), exact to the authors' code.

>>> from i2sb import degrade
>>> deg = degrade.build("sr4x_bicubic", 256)
>>> x1, mask = deg(x0)                       # x0: (B, 3, 256, 256) in [-1, 1]; mask is None here
>>> op = deg.operator()                      # linear tasks only: op.A, op.A_pinv, op.lift
>>> deg = degrade.build("sr4x_bicubic", (480, 640))   # any (H, W), not only squares
>>> y, _ = deg.measure(x0)                   # SR: the true low-resolution image (B, 3, 120, 160)
>>> x1 = deg.lift_image(y)                   # == deg(x0)[0]: nearest upsampling, as in training
>>> x1 = degrade.upsample_measurement("sr4x_bicubic", y)   # the same without building for a size

Tasks (``TASKS``): ``jpeg5``, ``jpeg10`` and ``jpeg`` (any ``quality``) are the paper's DDRM-JPEG;
``jpeg_libjpeg`` (any ``quality``) is a real libjpeg round trip; ``sr4x_pool``, ``sr4x_bicubic``;
``blur_uni``, ``blur_gauss`` (the authors' DDRM operator, quirks included) and ``blur_uni_conv``,
``blur_gauss_conv`` (plain separable convolutions); ``inpaint_center``, ``inpaint_freeform1020``,
``inpaint_freeform2030`` (``mask_file=`` or ``$I2SB_FREEFORM_MASKS`` for Palette's masks, generated
brush strokes otherwise); ``colorize``.

Sizes: every task takes an H x W image (``image_size=(H, W)``; an int S is S x S). SR needs H and W
divisible by 4, the blurs sides at least as long as the kernel; the paper's DDRM JPEG needs multiples
of 16 unless built with ``pad=True`` (padded like a JPEG codec), which :func:`build_any_size` does.
The square case is exactly the authors' operator.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from torch import Tensor

from i2sb.degrade.base import Degradation, ImageSize, LinearOperator
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


# Tasks that accept any size with ``pad=True`` (the DDRM JPEG, padded to 16 x 16 macroblocks like a codec).
CODEC_PADDED = frozenset({"jpeg", "jpeg5", "jpeg10"})


# Parameters a config must give (``task.params``): no silent default for what names the corruption's strength.
REQUIRED_PARAMS: dict[str, tuple[str, ...]] = {"jpeg": ("quality",), "jpeg_libjpeg": ("quality",)}
_SET_BY_CODE = frozenset({"name", "pad"})  # factory arguments the code sets, never a config


def task_parameters(task: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(required, optional)`` parameter names ``task`` takes from a config (``task.params``).

    Optional ones are the factory's keyword arguments (those a ``partial`` in :data:`TASKS` fixes excluded,
    e.g. ``jpeg5``'s quality); required ones are listed in :data:`REQUIRED_PARAMS`."""
    _check_task(task)
    factory = TASKS[task]
    fixed = factory.keywords if isinstance(factory, partial) else {}
    names = [p.name for p in list(inspect.signature(factory).parameters.values())[1:]
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _SET_BY_CODE | set(fixed)]
    required = REQUIRED_PARAMS.get(task, ())
    return required, tuple(n for n in names if n not in required)


def check_params(task: str, params: Mapping[str, Any], prefix: str = "") -> None:
    """A one-line ``ValueError`` starting with ``prefix`` + the parameter's name if ``params`` lacks a required
    parameter of ``task`` or has one it does not take (naming the closest valid one)."""
    required, optional = task_parameters(task)
    for name in required:
        if params.get(name) is None:
            raise ValueError(f"{prefix}{name}: required by degradation {task}; add {prefix}{name}=<value>")
    for name in params:
        if name not in required + optional:
            close = difflib.get_close_matches(name, required + optional, n=1)
            takes = f"did you mean {prefix}{close[0]}?" if close else \
                f"it takes {', '.join(required + optional)}" if required + optional else "it takes none"
            raise ValueError(f"{prefix}{name}: not a parameter of degradation {task}; {takes}")


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown degradation task {task!r}; valid tasks: {', '.join(TASKS)}")


def degradation_class(task: str) -> type[Degradation]:
    """The :class:`Degradation` subclass ``TASKS[task]`` builds (a class, a ``partial`` of one, or a factory whose
    return annotation names it): what a task is (``needs_mask``, ``scale``) is known without building it."""
    _check_task(task)
    factory = TASKS[task]
    factory = factory.func if isinstance(factory, partial) else factory
    return factory if isinstance(factory, type) else typing.get_type_hints(factory)["return"]


def needs_mask(task: str) -> bool:
    """Whether ``task`` marks holes with a mask that restoring it needs (the inpainting tasks)."""
    return degradation_class(task).needs_mask


def build(task: str, image_size: ImageSize, **params) -> Degradation:
    """The degradation ``task`` for (B, 3, H, W) images, ``image_size`` = S (S x S) or (H, W); ``params`` go
    to its factory. A size the task cannot take is a one-line ValueError naming the task."""
    _check_task(task)
    return TASKS[task](image_size, **params)


def build_any_size(task: str, image_size: ImageSize, **params) -> Degradation:
    """:func:`build` for a photo of any size: the DDRM JPEG tasks pad like a codec (``pad=True`` unless given);
    the others as :func:`build` (SR still needs sides divisible by 4, the blurs sides >= the kernel)."""
    _check_task(task)
    if task in CODEC_PADDED:
        params = {"pad": True, **params}
    return TASKS[task](image_size, **params)


def measurement_scale(task: str) -> int:
    """How many times smaller per side the stored measurement of ``task`` is than x1: 4 for SR, else 1."""
    return degradation_class(task).scale


def upsample_measurement(task: str, y: Tensor, **params) -> Tensor:
    """A stored measurement of ``task`` (what ``i2sb-degrade`` writes) -> the I2SB input x1, as training made it.

    y: (B, 3, h, w) in [-1, 1]. SR tasks: y is the low-resolution image; x1 is its nearest upsampling
    (B, 3, 4h, 4w), for the average-pool and the bicubic filter alike (the authors' ``Upsample(mode=
    "nearest")``), so ``upsample_measurement(task, deg.measure(x0)[0]) == deg(x0)[0]``. Other tasks store
    x1 itself, which is returned unchanged. ``params`` are the task's (as for :func:`build`).
    """
    scale = measurement_scale(task)
    if y.ndim != 4 or y.shape[1] != 3:
        raise ValueError(f"{task}: expected a (B, 3, h, w) measurement, got {tuple(y.shape)}")
    if scale == 1:
        return y
    return build_any_size(task, (y.shape[-2] * scale, y.shape[-1] * scale), **params).lift_image(y)


__all__ = [
    "CODEC_PADDED",
    "REQUIRED_PARAMS",
    "TASKS",
    "Degradation",
    "ImageSize",
    "LinearOperator",
    "build",
    "build_any_size",
    "check_params",
    "degradation_class",
    "measurement_scale",
    "needs_mask",
    "task_parameters",
    "upsample_measurement",
]
