"""Degraded photos with no clean counterparts (what a user has): the data of bridge distillation (``i2sb-distill
data=degraded root=DIR``), which needs only the inputs x1 of the teacher.

Items are ``{"x1": Tensor(3, s, s), "index": int}`` float32 in [-1, 1]: native-resolution patches (random with a
random flip in training, the centre in validation) of side ``s = image_size / scale``. ``scale`` is how many times
smaller per side the stored measurement is than the model's input (4 for super-resolution's low-resolution photos,
which the distillation loop lifts to x1 as ``i2sb-sample`` does; 1 otherwise). Unreadable files are skipped with a
warning, as in :mod:`.folders`.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..utils.images import read_rgb, require_images
from .datasets import Geometry, SkippingDataset, native_patch


class DegradedFolder(SkippingDataset):
    """All images under ``root`` (recursive, sorted) as degraded inputs ``{"x1", "index"}``; see the module.

    Raises FileNotFoundError for a missing folder, ValueError for a folder without images or a patch side that
    ``scale`` does not divide.
    """

    def __init__(self, root: str | Path, image_size: int, train: bool, *, scale: int = 1):
        super().__init__()
        if scale < 1 or image_size % scale:
            raise ValueError(f"image_size {image_size} is not a multiple of the measurement scale {scale}")
        self.root = Path(root)
        self.paths = require_images(self.root)
        self._setup(image_size // scale, train, False, "native", (1.0, 1.0))

    def __len__(self) -> int:
        return len(self.paths)

    def _patch(self, image: Image.Image, geometry: Geometry):
        return native_patch(image, self.image_size, geometry)

    def _load(self, index: int, geometry: Geometry) -> dict:
        return {"x1": self._patch(read_rgb(self.paths[index]), geometry)}

    def _describe(self, index: int) -> str:
        return str(self.root)
