"""Offline demo data: the natural RGB photographs shipped with scikit-image.

Nine photos load without a network (`skin`, `lily`, `eagle` need `pooch` and a download, so they
are not used). The split is by photo, so validation crops are content the model never saw:

* val   — `chelsea` (a cat: fur, whiskers, fine texture) and `coffee` (a cup on a table: smooth
  shading, sharp edges, specular highlights). Together they test texture and edges, the two
  things restoration gets wrong.
* train — the other seven: astronaut, rocket, hubble_deep_field, immunohistochemistry, retina and
  both views of stereo_motorcycle. The two motorcycle views are near-duplicates, so both are in
  the same split.

Train items are random S x S patches of the photos at their own resolution (zoom 1: native pixels, as
restoration trainers crop their data; a log-uniform zoom in `zoom=(lo, hi)` instead takes a zoom x S square,
resized to S -- zoom 8 on these 512-px photos is the whole short side, a thumbnail). Validation items are a
fixed grid of patches covering each photo at every zoom in `val_zooms` (default: native), the same every run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .datasets import is_train_split, to_model_range
from ..utils.images import save_image


def _skimage_photo(name: str, view: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data  # imported lazily: slow to import and only needed for the demo

        photo = getattr(skimage.data, name)()
        return photo[view] if view is not None else photo

    return load


DEMO_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage_photo("astronaut"),
    "coffee": _skimage_photo("coffee"),
    "chelsea": _skimage_photo("chelsea"),
    "rocket": _skimage_photo("rocket"),
    "hubble_deep_field": _skimage_photo("hubble_deep_field"),
    "immunohistochemistry": _skimage_photo("immunohistochemistry"),
    "retina": _skimage_photo("retina"),
    "stereo_motorcycle_left": _skimage_photo("stereo_motorcycle", 0),
    "stereo_motorcycle_right": _skimage_photo("stereo_motorcycle", 1),
}

DEMO_SPLIT: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
              "stereo_motorcycle_left", "stereo_motorcycle_right"),
    "val": ("chelsea", "coffee"),
}


def demo_photos(split: str) -> list[tuple[str, np.ndarray]]:
    """The photos of one split as (name, uint8 array (H, W, 3)), in `DEMO_SPLIT` order."""
    is_train_split(split)
    return [(name, np.ascontiguousarray(DEMO_PHOTOS[name]())) for name in DEMO_SPLIT[split]]


Box = tuple[float, float, float, float]  # (left, top, right, bottom) in photo pixels


class DemoImages(Dataset):
    """Square crops of the scikit-image demo photos as `{"x0": Tensor(3, S, S), "index"}` items.

    Args:
        image_size: side S of the crops.
        split: "train" (random crops, `length` items per virtual epoch) or "val" (fixed grid).
        length: number of items of the train split (ignored for val).
        zoom: (lo, hi) range of the log-uniform zoom of training crops: a crop covers zoom x S photo pixels
            (1 = native resolution; capped at the photo's short side).
        val_zooms: zooms of the validation grid; each gives ceil(h / c) x ceil(w / c) evenly spaced crops of
            side c = zoom x S that cover the whole photo.
    """

    def __init__(
        self,
        image_size: int,
        split: str = "train",
        *,
        length: int = 1024,
        zoom: tuple[float, float] = (1.0, 1.0),
        val_zooms: tuple[float, ...] = (1.0,),
    ):
        self.train = is_train_split(split)
        self.image_size, self.split, self.length = int(image_size), split, int(length)
        if not 0 < zoom[0] <= zoom[1] or min(val_zooms) <= 0:
            raise ValueError(f"zoom must satisfy 0 < lo <= hi and val_zooms be positive, got {zoom}, {val_zooms}")
        self.zoom = (float(zoom[0]), float(zoom[1]))
        named = demo_photos(split)
        self.photo_names = [name for name, _ in named]
        self.photos = [Image.fromarray(array) for _, array in named]
        self.crops = [] if self.train else self._val_grid(val_zooms)

    def __len__(self) -> int:
        return self.length if self.train else len(self.crops)

    def __getitem__(self, index: int) -> dict:
        return self.item(index)

    def item(self, index: int, generator: torch.Generator | None = None) -> dict:
        """Crop `index`: random (train, drawn from `generator`) or the fixed val crop."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        if self.train:
            photo, box, flip = self._random_crop(generator)
        else:
            (photo, box, _), flip = self.crops[index], False
        if box[2] - box[0] == self.image_size and float(box[0]).is_integer() and float(box[1]).is_integer():
            image = self.photos[photo].crop(tuple(int(v) for v in box))  # native pixels
        else:
            image = self.photos[photo].resize((self.image_size,) * 2, Image.BILINEAR, box=box)
        if flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return {"x0": to_model_range(image), "index": index}

    def crop_name(self, index: int) -> str:
        """A file-name-safe name for val crop `index`, e.g. "coffee_z1_r1_c0"."""
        return self.crops[index][2] if not self.train else f"{self.split}_{index:05d}"

    def _side(self, photo: int, zoom: float) -> float:
        """Photo pixels covered by a crop at ``zoom`` (capped at the photo's short side)."""
        return min(self.image_size * zoom, min(self.photos[photo].size))

    def _random_crop(self, generator: torch.Generator | None) -> tuple[int, Box, bool]:
        photo = int(torch.randint(len(self.photos), (1,), generator=generator))
        u_zoom, u_y, u_x, u_flip = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
        lo, hi = self.zoom
        side = self._side(photo, math.exp(math.log(lo) + u_zoom * math.log(hi / lo)))  # log-uniform zoom
        width, height = self.photos[photo].size
        left, top = u_x * (width - side), u_y * (height - side)
        if side == self.image_size:  # native pixels: whole-pixel boxes, no resampling
            left, top = float(round(left)), float(round(top))
        return photo, (left, top, left + side, top + side), u_flip < 0.5

    def _val_grid(self, val_zooms: tuple[float, ...]) -> list[tuple[int, Box, str]]:
        """Deterministic crops: per photo and zoom, a grid of boxes covering the photo."""
        crops = []
        for photo, (name, image) in enumerate(zip(self.photo_names, self.photos)):
            width, height = image.size
            for zoom in sorted(set(val_zooms)):
                side = self._side(photo, float(zoom))
                rows, cols = (math.ceil(extent / side - 1e-6) for extent in (height, width))
                for r, top in enumerate(np.linspace(0.0, height - side, rows).round()):
                    for c, left in enumerate(np.linspace(0.0, width - side, cols).round()):
                        box = (float(left), float(top), float(left) + side, float(top) + side)
                        crops.append((photo, box, f"{name}_z{zoom:g}_r{r}_c{c}"))
        return crops


def write_demo_folder(
    directory: str | Path, split: str = "val", image_size: int = 64, n: int | None = None, seed: int = 0
) -> list[Path]:
    """Write demo crops as PNGs into `directory`; returns the written paths (sorted by name).

    val: `n` crops spread evenly over the fixed validation grid (all of them if n is None).
    train: `n` random crops (default 16) drawn with `seed`, reproducibly.
    """
    dataset = DemoImages(image_size, split, length=n if n is not None else 16)
    if n is not None and n > len(dataset):
        raise ValueError(f"demo split {split!r} has only {len(dataset)} crops at image_size {image_size}, "
                         f"asked for {n}")
    count = len(dataset) if n is None else n
    indices = np.unique(np.linspace(0, len(dataset) - 1, count).round().astype(int)) if count else []
    generator = torch.Generator().manual_seed(seed)
    paths = []
    for index in indices:
        x0 = dataset.item(int(index), generator)["x0"]
        paths.append(save_image(x0, Path(directory, dataset.crop_name(int(index)) + ".png")))
    return sorted(paths)
