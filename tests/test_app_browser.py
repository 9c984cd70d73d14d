"""``i2sb-app`` in a real browser (Debian's Chromium driven by Playwright): open the page, upload a photo, set NFE,
press Restore, wait for the result, download it: the file is ``i2sb-sample``'s, byte for byte; holes drawn on the
photo with the brush are the mask ``i2sb-sample`` gets. Runs in CI
(``.ci/run`` installs Chromium); elsewhere it is skipped only where Chromium is not installed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app_server import CHROMIUM, i2sb_sample, restore_in_browser


@pytest.fixture
def browser_ready():
    pytest.importorskip("playwright")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); CI installs it")


def test_page_restores_an_upload_to_i2sb_samples_bytes(app_site, browser_ready, tmp_path):
    root, server = app_site
    photo = root / "photos" / "jpeg5" / "photo.png"
    downloaded, shot, _ = restore_in_browser(server.url, photo, nfe=2, folder=tmp_path)
    i2sb_sample(f"ckpt={root / 'runs' / 'jpeg5'}", f"input={photo}", f"output={tmp_path / 'cli'}", "nfe=2")
    assert downloaded.read_bytes() == (tmp_path / "cli" / "photo.png").read_bytes()
    assert shot.stat().st_size > 10_000  # the screenshot (kept in the test's tmp dir)


def test_holes_drawn_on_the_photo_are_the_mask_i2sb_sample_gets(app_site, browser_ready, tmp_path):
    root, server = app_site
    photo = root / "photos" / "inpaint_center" / "photo.png"
    downloaded, _, mask = restore_in_browser(server.url, photo, nfe=2, folder=tmp_path, model="inpaint_center")
    with Image.open(mask) as image:
        holes = np.asarray(image.convert("L"))
    assert holes.shape == (16, 24) and (holes == 255).any()  # the photo's size, the stroke white
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "photo.png").write_bytes(mask.read_bytes())
    i2sb_sample(f"ckpt={root / 'runs' / 'inpaint_center'}", f"input={photo}", f"output={tmp_path / 'cli'}", "nfe=2",
                f"mask={tmp_path / 'masks'}")
    assert downloaded.read_bytes() == (tmp_path / "cli" / "photo.png").read_bytes()
