"""Folder datasets: clean images (`ImageFolder`) and clean/degraded pairs (`PairedFolders`).

Items are dicts `{"x0": Tensor(3, S, S), "index": int}` (plus `"x1"` for pairs), float32 in
[-1, 1]. Degradations are not applied here: the training loop applies `i2sb.degrade` on the
device. Two ways to make the S x S inputs (`crop=`):

* `native` -- random S x S patches of the image at its own resolution (restoration trainers' convention: the
  model learns the photos' real pixel statistics, not thumbnails); with `zoom=(lo, hi)` the patch covers a
  log-uniformly drawn zoom x S square, resized to S. Validation: the centre patch. Images smaller than the
  patch are first enlarged to fit it.
* `resize` -- the authors' ImageNet transform (`dataset/imagenet.py`): Resize(S) on the short side ->
  CenterCrop(S) -> RandomHorizontalFlip (train only); `random_crop=True` replaces the centre crop by a
  random one in training.

Files that cannot be decoded are skipped: a warning names the file (once per file and process)
and the item deterministically falls back to the next readable index.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import Dataset

from ..utils.images import read_rgb, require_images

SPLITS = {"train": True, "val": False}  # split name -> training augmentation on?


def is_train_split(split: str) -> bool:
    """Map a split name to the `train` flag; unknown names raise ValueError."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return SPLITS[split]


@dataclass(frozen=True)
class Geometry:
    """The random choices of one item, shared by both images of a pair.

    crop_y, crop_x: crop position as a fraction of the free margin (0.5 = centre crop).
    """

    flip: bool = False
    crop_y: float = 0.5
    crop_x: float = 0.5
    zoom: float = 1.0

    @classmethod
    def draw(cls, train: bool, random_crop: bool, generator: torch.Generator | None,
             zoom: tuple[float, float] = (1.0, 1.0)) -> "Geometry":
        """Random flip (p = 0.5), a random crop position if asked and a log-uniform zoom in ``zoom`` (drawn only
        when the range is not one value); fixed (centre, zoom ``zoom[0]``) when not training."""
        if not train:
            return cls(zoom=zoom[0])
        u = torch.rand(4 if zoom[0] != zoom[1] else 3, generator=generator).tolist()
        crop = (u[1], u[2]) if random_crop else (0.5, 0.5)
        z = math.exp(math.log(zoom[0]) + u[3] * math.log(zoom[1] / zoom[0])) if len(u) == 4 else zoom[0]
        return cls(u[0] < 0.5, *crop, zoom=z)


def to_model_range(image: Image.Image) -> torch.Tensor:
    """8-bit RGB Pillow image -> float32 (3, H, W) in [-1, 1] (ToTensor, then t * 2 - 1)."""
    return TF.to_tensor(image) * 2.0 - 1.0


def native_patch(image: Image.Image, image_size: int, geometry: Geometry) -> torch.Tensor:
    """An S x S patch of ``image`` at its own resolution (``geometry.zoom`` 1), or of a zoom x S square resized
    to S, at the crop position of ``geometry``; optional flip. Returns float32 (3, S, S) in [-1, 1]."""
    side = image_size * geometry.zoom
    width, height = image.size
    if min(width, height) < side:  # too small for the patch: enlarge it to fit
        scale = side / min(width, height)
        image = image.resize((math.ceil(width * scale), math.ceil(height * scale)), Image.BICUBIC)
        width, height = image.size
    left, top = (width - side) * geometry.crop_x, (height - side) * geometry.crop_y
    if geometry.zoom == 1.0:  # native pixels, no resampling
        left, top = round(left), round(top)
        image = image.crop((left, top, left + image_size, top + image_size))
    else:
        image = image.resize((image_size, image_size), Image.BICUBIC, box=(left, top, left + side, top + side),
                             reducing_gap=None)
    if geometry.flip:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    return to_model_range(image)


def transform(image: Image.Image, image_size: int, geometry: Geometry) -> torch.Tensor:
    """Resize short side to `image_size` (bilinear, antialiased) -> crop -> optional flip.

    Returns float32 (3, image_size, image_size) in [-1, 1]. With the default `Geometry()` this
    equals torchvision's Resize(S) -> CenterCrop(S) -> ToTensor -> t * 2 - 1.
    """
    image = TF.resize(image, image_size)
    width, height = image.size
    top = int(round((height - image_size) * geometry.crop_y))  # CenterCrop's rounding at 0.5
    left = int(round((width - image_size) * geometry.crop_x))
    image = TF.crop(image, top, left, image_size, image_size)
    if geometry.flip:
        image = TF.hflip(image)
    return to_model_range(image)


CROPS = {"native": native_patch, "resize": transform}  # crop= of the folder datasets


class SkippingDataset(Dataset):
    """Base for file datasets: `item(index, generator)` with skip-and-warn on unreadable files.

    Subclasses implement `_load(index, geometry) -> dict` (raising ValueError for a bad file),
    `_describe(index) -> str` and set `self.train`, `self.random_crop`, `self.image_size`, `self.crop`,
    `self.zoom` (see :meth:`_setup`).
    """

    def __init__(self) -> None:
        self._bad: set[int] = set()  # per instance (and per DataLoader worker copy)

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        return self.item(index)

    def item(self, index: int, generator: torch.Generator | None = None) -> dict:
        """Item `index`; random choices drawn from `generator` (torch's default RNG if None).

        An unreadable file is reported once with a warning and replaced by the next readable
        index (index + 1, index + 2, ... cyclically), using the same random geometry.
        """
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        geometry = Geometry.draw(self.train, self.random_crop or self.crop == "native", generator, self.zoom)
        for candidate in ((index + k) % n for k in range(n)):
            if candidate in self._bad:
                continue
            try:
                return {**self._load(candidate, geometry), "index": candidate}
            except ValueError as exc:
                self._bad.add(candidate)
                warnings.warn(f"skipping unreadable image: {exc}", RuntimeWarning, stacklevel=2)
        raise ValueError(f"{self._describe(index)}: none of the {n} images could be read")

    def _setup(self, image_size: int, train: bool, random_crop: bool, crop: str, zoom: tuple[float, float]) -> None:
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
        zoom = (float(zoom[0]), float(zoom[1]))
        if not 0 < zoom[0] <= zoom[1] or (zoom != (1.0, 1.0) and crop != "native"):
            raise ValueError(f"zoom must satisfy 0 < lo <= hi (crop=native only), got {zoom}")
        self.image_size = _check_size(image_size)
        self.train, self.random_crop, self.crop, self.zoom = train, random_crop, crop, zoom

    def _patch(self, image: Image.Image, geometry: Geometry) -> torch.Tensor:
        return CROPS[self.crop](image, self.image_size, geometry)

    def _load(self, index: int, geometry: Geometry) -> dict:
        raise NotImplementedError

    def _describe(self, index: int) -> str:
        raise NotImplementedError


class ImageFolder(SkippingDataset):
    """All images under `root` (recursive, sorted), as `{"x0", "index"}` items.

    Args:
        root: folder tree of images (png/jpg/jpeg/webp/bmp/tif/tiff, any case).
        image_size: side S of the square output.
        train: random horizontal flip and random crops (crop=native; with resize only if `random_crop`).
        crop: "native" patches or the authors' "resize" (see the module docstring); zoom: native's range.
    Raises FileNotFoundError for a missing folder, ValueError for a folder without images.
    """

    def __init__(self, root: str | Path, image_size: int, train: bool, *, random_crop: bool = False,
                 crop: str = "resize", zoom: tuple[float, float] = (1.0, 1.0)):
        super().__init__()
        self.root = Path(root)
        self.paths = require_images(self.root)
        self._setup(image_size, train, random_crop, crop, zoom)

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int, geometry: Geometry) -> dict:
        return {"x0": self._patch(read_rgb(self.paths[index]), geometry)}

    def _describe(self, index: int) -> str:
        return str(self.root)


class PairedFolders(SkippingDataset):
    """Clean/degraded image pairs as `{"x0": clean, "x1": degraded, "index"}` items.

    Images are matched by their path relative to their folder, without extension, so
    `clean/a/b.png` pairs with `degraded/a/b.jpg`. Both images of a pair get the same flip and
    crop. Folders are `root / clean` and `root / degraded`; with `root=None` (or absolute
    `clean` / `degraded`) they are used as given.
    Raises ValueError when a name has no partner, or a folder holds two files of the same name.
    """

    def __init__(
        self,
        root: str | Path | None,
        image_size: int,
        train: bool,
        clean: str | Path = "clean",
        degraded: str | Path = "degraded",
        *,
        random_crop: bool = False,
        crop: str = "resize",
        zoom: tuple[float, float] = (1.0, 1.0),
    ):
        super().__init__()
        self.clean_dir = Path(root, clean) if root is not None else Path(clean)
        self.degraded_dir = Path(root, degraded) if root is not None else Path(degraded)
        self.pairs = match_pairs(self.clean_dir, self.degraded_dir)
        self._setup(image_size, train, random_crop, crop, zoom)

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, index: int, geometry: Geometry) -> dict:
        clean, degraded = self.pairs[index]
        return {"x0": self._patch(read_rgb(clean), geometry), "x1": self._patch(read_rgb(degraded), geometry)}

    def _describe(self, index: int) -> str:
        return f"{self.clean_dir} / {self.degraded_dir}"


def _keyed(root: Path) -> dict[str, Path]:
    """Images under `root` keyed by relative path without extension ("a/b" for a/b.png)."""
    keyed: dict[str, Path] = {}
    for path in require_images(root):
        key = path.relative_to(root).with_suffix("").as_posix()
        if key in keyed:
            raise ValueError(f"{root}: two images share the name {key!r}: {keyed[key].name}, {path.name}")
        keyed[key] = path
    return keyed


def _few(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def match_pairs(clean_dir: Path, degraded_dir: Path) -> list[tuple[Path, Path]]:
    """Pair images of two folders by relative path without extension; sorted by that name."""
    clean, degraded = _keyed(clean_dir), _keyed(degraded_dir)
    only_clean = sorted(clean.keys() - degraded.keys())
    only_degraded = sorted(degraded.keys() - clean.keys())
    if only_clean or only_degraded:
        raise ValueError(
            f"unmatched images: {len(only_clean)} in {clean_dir} without a partner in {degraded_dir}"
            f" ({_few(only_clean)}); {len(only_degraded)} in {degraded_dir} without a partner in"
            f" {clean_dir} ({_few(only_degraded)})")
    return [(clean[key], degraded[key]) for key in sorted(clean)]


def _check_size(image_size: int) -> int:
    if int(image_size) != image_size or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    return int(image_size)
