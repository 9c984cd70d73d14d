"""The teacher's inputs for distillation: clean crops degraded by the teacher's task (``data=demo``,
``data=imagefolder``) or degraded photos (``data=degraded``, :class:`~i2sb.data.degraded.DegradedFolder`), lifted to
x1 as ``i2sb-sample`` lifts them (super-resolution's low-resolution photos: nearest upsampling, as training made x1),
then the bridge's boundary (inpainting hole noise, ``cond_x1``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .. import degrade
from ..config import TaskConfig
from ..core.boundary import bridge_boundary
from ..data import build_dataset
from ..degrade import Degradation
from .alternate import Degraded
from .schema import DistillData


def measurement_scale(task: TaskConfig) -> int:
    """4 for super-resolution teachers (low-resolution photos are lifted to x1), else 1."""
    return degrade.measurement_scale(task.degradation) if task.degradation in degrade.TASKS else 1


def lift(task: TaskConfig, x1: Tensor) -> Tensor:
    """Degraded photos (B, 3, h, w) -> x1 (B, 3, s*h, s*w) for super-resolution tasks; unchanged otherwise."""
    if task.degradation not in degrade.TASKS:
        return x1
    return degrade.upsample_measurement(task.degradation, x1, **dict(task.params))


def build_split(data: DistillData, task: TaskConfig, image_size: int, split: str) -> Dataset:
    """The ``split`` ("train" | "val") of the data: clean crops (demo, imagefolder) or degraded ones (degraded:
    of side ``image_size / scale``)."""
    root = (data.val_root or data.root) if split == "val" else data.root
    kwargs: dict[str, Any] = dict(data.params)
    if data.kind == "imagefolder":
        kwargs["crop"] = data.crop
    if data.kind == "degraded":
        kwargs["scale"] = measurement_scale(task)
    if root is not None:
        kwargs["root"] = root
    return build_dataset(data.kind, image_size, split, **kwargs)


def to_degraded(batch: dict[str, Tensor], deg: Degradation | None, task: TaskConfig, g: torch.Generator,
                device: torch.device) -> Degraded:
    """A data batch -> the teacher's inputs ``(x1, cond)`` on ``device``: clean ``x0`` degraded by the task
    (drawing from ``g``), or the degraded ``x1`` lifted (:func:`lift`); then the boundary."""
    mask = None
    if "x1" in batch:
        x1 = lift(task, batch["x1"].to(device, non_blocking=True))
    else:
        with torch.no_grad():
            x1, mask = deg(batch["x0"].to(device, non_blocking=True), generator=g)
    return bridge_boundary(x1, mask, task.cond_x1, task.add_x1_noise, g)
