"""Data for i2sb: image folders, paired folders, offline demo photos, an endless loader (image files: :mod:`i2sb.utils.images`).

Every dataset item is a dict `{"x0": Tensor(3, S, S)}` (float32 in [-1, 1]) plus `"x1"` (the
degraded image, same shape) for paired data and `"index"` (int). Degradations are applied by the
training loop (`i2sb.degrade`) on the device, not here.
"""

from __future__ import annotations

from typing import Any, Callable

from torch.utils.data import Dataset

from .degraded import DegradedFolder
from .demo import DEMO_PHOTOS, DEMO_SPLIT, DemoImages, demo_photos, write_demo_folder
from .datasets import SPLITS, ImageFolder, PairedFolders, is_train_split, match_pairs, transform
from .loader import infinite_loader


def _image_folder(image_size: int, split: str, *, root: str, **options: Any) -> Dataset:
    return ImageFolder(root, image_size, train=is_train_split(split), **options)


def _paired(image_size: int, split: str, *, root: str | None = None, clean: str = "clean",
            degraded: str = "degraded", **options: Any) -> Dataset:
    return PairedFolders(root, image_size, is_train_split(split), clean, degraded, **options)


def _degraded(image_size: int, split: str, *, root: str, scale: int = 1) -> Dataset:
    return DegradedFolder(root, image_size, train=is_train_split(split), scale=scale)


def _demo(image_size: int, split: str, **kwargs: Any) -> Dataset:
    return DemoImages(image_size, split, **kwargs)


DATASETS: dict[str, Callable[..., Dataset]] = {"imagefolder": _image_folder, "paired": _paired, "demo": _demo,
                                               "degraded": _degraded}
CROPPED = frozenset({"imagefolder", "paired"})  # kinds that take crop= (the demo photos give native patches)


def build_split(data: Any, split: str) -> Dataset:
    """The ``split`` ("train" | "val") of a data config (:class:`i2sb.config.DataConfig`: ``kind``,
    ``image_size``, ``root``, ``val_root`` -- validation defaults to the training folder --, ``crop`` (folder
    kinds; ``params.crop``, the older spelling, wins) and ``params``)."""
    kwargs = {"crop": data.crop, **data.params} if data.kind in CROPPED else dict(data.params)
    root = (data.val_root or data.root) if split == "val" else data.root
    if root is not None:
        kwargs["root"] = root
    return build_dataset(data.kind, data.image_size, split, **kwargs)


def build_dataset(kind: str, image_size: int, split: str, **kwargs: Any) -> Dataset:
    """Build a dataset by registry name; `split` ("train" | "val") turns training augmentation on/off.

    kwargs per kind:
        imagefolder: root (the folder of this split, used as given), crop="resize" | "native",
                     zoom=(1, 1) (native), random_crop=False (resize)
        paired:      root=None, clean="clean", degraded="degraded", and the same crop, zoom, random_crop
        demo:        length=1024, zoom=(1, 1), val_zooms=(1,)
        degraded:    root, scale=1 (degraded inputs only, ``{"x1"}`` items; see :mod:`.degraded`)
    """
    if kind not in DATASETS:
        raise ValueError(f"unknown dataset kind {kind!r}; valid kinds: {', '.join(DATASETS)}")
    return DATASETS[kind](image_size, split, **kwargs)


__all__ = [
    "DATASETS", "DEMO_PHOTOS", "DegradedFolder", "DEMO_SPLIT", "SPLITS", "DemoImages", "ImageFolder", "PairedFolders", "build_dataset",
    "build_split", "demo_photos", "infinite_loader", "is_train_split", "match_pairs", "transform", "write_demo_folder",
]
