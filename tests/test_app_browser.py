"""``i2sb-app`` in a real browser (Debian's Chromium driven by Playwright): open the page, upload a photo, set NFE,
press Restore, wait for the result, download it: the file is ``i2sb-sample``'s, byte for byte. Runs in CI
(``.ci/run`` installs Chromium); elsewhere it is skipped only where Chromium is not installed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app_server import CHROMIUM, i2sb_sample, restore_in_browser


def test_page_restores_an_upload_to_i2sb_samples_bytes(app_site, tmp_path):
    pytest.importorskip("playwright")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); CI installs it")
    root, server = app_site
    photo = root / "photos" / "jpeg5" / "photo.png"
    downloaded, shot = restore_in_browser(server.url, photo, nfe=2, folder=tmp_path)
    i2sb_sample(f"ckpt={root / 'runs' / 'jpeg5'}", f"input={photo}", f"output={tmp_path / 'cli'}", "nfe=2")
    assert downloaded.read_bytes() == (tmp_path / "cli" / "photo.png").read_bytes()
    assert shot.stat().st_size > 10_000  # the screenshot (kept in the test's tmp dir)
