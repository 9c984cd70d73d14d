"""Data for i2sb: image folders, paired folders, offline demo photos, an endless loader, image I/O.

Every dataset item is a dict `{"x0": Tensor(3, S, S)}` (float32 in [-1, 1]) plus `"x1"` (the
degraded image, same shape) for paired data and `"index"` (int). Degradations are applied by the
training loop (`i2sb.degrade`) on the device, not here.
"""

from __future__ import annotations

from typing import Any, Callable

from torch.utils.data import Dataset

from .demo import DEMO_PHOTOS, DEMO_SPLIT, DemoImages, demo_photos, write_demo_folder
from .folders import SPLITS, ImageFolder, PairedFolders, is_train_split, match_pairs, transform
from .image_io import IMAGE_EXTENSIONS, is_image_file, list_images, load_image, read_rgb, save_image
from .loader import infinite_loader


def _image_folder(image_size: int, split: str, *, root: str, random_crop: bool = False) -> Dataset:
    return ImageFolder(root, image_size, train=is_train_split(split), random_crop=random_crop)


def _paired(image_size: int, split: str, *, root: str | None = None, clean: str = "clean",
            degraded: str = "degraded", random_crop: bool = False) -> Dataset:
    return PairedFolders(root, image_size, is_train_split(split), clean, degraded, random_crop=random_crop)


def _demo(image_size: int, split: str, **kwargs: Any) -> Dataset:
    return DemoImages(image_size, split, **kwargs)


DATASETS: dict[str, Callable[..., Dataset]] = {"imagefolder": _image_folder, "paired": _paired, "demo": _demo}


def build_dataset(kind: str, image_size: int, split: str, **kwargs: Any) -> Dataset:
    """Build a dataset by registry name; `split` ("train" | "val") turns training augmentation on/off.

    kwargs per kind:
        imagefolder: root (the folder of this split, used as given), random_crop=False
        paired:      root=None, clean="clean", degraded="degraded", random_crop=False
        demo:        length=1024, scale_range=(1, 4), val_scales=(1, 2, 4)
    """
    if kind not in DATASETS:
        raise ValueError(f"unknown dataset kind {kind!r}; valid kinds: {', '.join(DATASETS)}")
    return DATASETS[kind](image_size, split, **kwargs)


__all__ = [
    "DATASETS", "DEMO_PHOTOS", "DEMO_SPLIT", "IMAGE_EXTENSIONS", "SPLITS", "DemoImages", "ImageFolder",
    "PairedFolders", "build_dataset", "demo_photos", "infinite_loader", "is_image_file", "is_train_split",
    "list_images", "load_image", "match_pairs", "read_rgb", "save_image", "transform", "write_demo_folder",
]
