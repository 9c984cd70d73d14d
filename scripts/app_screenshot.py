"""The README's picture of ``i2sb-app``: the page after a restoration, taken in Chromium by the browser test's flow.

    .venv/bin/python scripts/app_screenshot.py                  # after `make demo`: runs/demo/jpeg5, sr4x_pool
    .venv/bin/python scripts/app_screenshot.py --ckpt runs/demo/jpeg5 --nfe 1 --out docs/app.png

Uploads a held-out demo photograph (chelsea, never seen in training) degraded as the first model was trained
(the paper's JPEG quality 5), restores it, and writes the page as a palette PNG.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the server process and the browser flow of the tests

from app_server import AppServer, restore_in_browser  # noqa: E402

from i2sb import degrade  # noqa: E402
from i2sb.data import demo_photos  # noqa: E402
from i2sb.utils.images import save_image  # noqa: E402


def degraded_photo(folder: Path, side: int, task: str) -> Path:
    """chelsea, centre square resized to ``side``, degraded by ``task`` as training degrades (the paper's JPEG)."""
    name, array = next((n, a) for n, a in demo_photos("val") if n == "chelsea")
    edge = min(array.shape[:2])
    top, left = (array.shape[0] - edge) // 2, (array.shape[1] - edge) // 2
    square = Image.fromarray(array[top:top + edge, left:left + edge]).resize((side, side), Image.BICUBIC)
    x0 = torch.from_numpy(np.asarray(square, np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    x1, _ = degrade.build(task, side)(x0)
    return save_image(x1[0], folder / f"{name}_{task}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", default="runs/demo/jpeg5,runs/demo/sr4x_pool", help="i2sb-app's ckpt=")
    parser.add_argument("--nfe", type=int, default=1)
    parser.add_argument("--side", type=int, default=192, help="side of the uploaded photo, pixels")
    parser.add_argument("--task", default="jpeg5", help="the degradation of the upload (the first model's task)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "app.png")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="app_screenshot_"))
    photo = degraded_photo(folder, args.side, args.task)
    with AppServer([Path(p) for p in args.ckpt.split(",")]) as server:
        _, shot, _ = restore_in_browser(server.url, photo, args.nfe, folder, viewport=(1200, 800))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(shot) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"{args.out}: {args.out.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
