"""``i2sb-app`` as a user runs it, for the tests and ``scripts/bench_app.py``: a server process on 127.0.0.1 and a
free port, its log lines, its resident memory; ``i2sb-sample`` run the same way for the bytes to compare with."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
# One thread in the server and in i2sb-sample alike: the same kernels (so the same bits), and tiny models run
# 10x faster on a shared 2-core machine than with threads waiting for each other.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppServer:
    """``python -m i2sb.app ckpt=... port=FREE key=value ...`` (``with AppServer(...) as server``)."""

    def __init__(self, ckpts: list[Path], *keys: str, timeout: float = 180.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.lines: list[str] = []
        cmd = [sys.executable, "-m", "i2sb.app", "ckpt=" + ",".join(map(str, ckpts)), f"port={self.port}", *keys]
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
        threading.Thread(target=self._read, daemon=True).start()
        self._wait(timeout)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"i2sb-app exited with {self.process.returncode}:\n" + "\n".join(self.lines))
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"i2sb-app did not answer within {timeout} s:\n" + "\n".join(self.lines))

    def rss_mb(self) -> float:
        """The server's resident memory (Linux ``/proc``), MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> AppServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def i2sb_sample(*keys: str) -> subprocess.CompletedProcess:
    """``i2sb-sample key=value ...`` in its own process (as the page's server runs), progress off."""
    return subprocess.run([str(BIN / "i2sb-sample"), *keys, "progress=false"], capture_output=True, text=True,
                          check=True, env=ENV)


# ---------------------------------------------------------------------------- a real browser
CHROMIUM = "/usr/bin/chromium"  # Debian's package (.ci/run installs it); Playwright's own download needs internet
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def restore_in_browser(url: str, photo: Path, nfe: int, folder: Path, timeout_s: float = 180.0,
                       viewport: tuple[int, int] = (1280, 900), model: str | None = None) -> tuple[Path, Path, Path | None]:
    """Open the page in Chromium, choose ``model`` (None: the first), upload ``photo``, draw a stroke on it where the
    model fills holes, set NFE, press Restore, wait for the result, download it.

    Returns (the downloaded PNG, a screenshot of the page with the restoration, the mask file the page made from
    the stroke or None), in ``folder``.
    """
    from playwright.sync_api import sync_playwright  # optional test dependency, imported where it is used

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(folder / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            accept_downloads=True, viewport={"width": viewport[0], "height": viewport[1]})
        try:
            page = browser.new_page()
            page.set_default_timeout(timeout_s * 1000)
            page.goto(url, wait_until="load")
            page.wait_for_selector("#restore")
            if model is not None:
                page.click("#model input")
                page.get_by_role("option", name=re.compile(f"^{re.escape(model)}: ")).click()
                page.wait_for_selector("#mask", state="visible")
            page.set_input_files("#photos input[type=file]", str(photo))
            page.wait_for_selector("#photos a[download]")  # the uploaded file's row
            if model is not None:
                draw_stroke(page)
            number = page.locator("#nfe input[type=number]")
            number.fill(str(nfe))
            number.press("Tab")
            page.click("#restore")
            link = page.locator("#downloads a[download]").first
            link.wait_for()
            page.wait_for_selector("#compare img")
            target = download(page, link, folder / "downloaded")
            mask = download(page, page.locator("#mask a[download]").first, folder / "mask") if model else None
            shot = folder / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            status = page.inner_text("#status")
        finally:
            browser.close()
    if "s per image" not in status:
        raise AssertionError(f"the page's report: {status!r}")
    return target, shot, mask


def draw_stroke(page) -> None:
    """A horizontal brush stroke across the middle of the photo in the page's editor (once its photo is in)."""
    page.wait_for_selector("button[aria-label='Pan']")
    page.wait_for_timeout(2000)  # the background image is drawn after the editor's tools appear
    page.click("button[aria-label='Brush']")
    box = page.locator("canvas").first.bounding_box()
    x, y = box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + box["width"] * 0.2, y, steps=10)
    page.mouse.up()


def download(page, link, folder: Path) -> Path:
    """Click a download link of the page; the file lands in ``folder`` under its own name."""
    with page.expect_download() as started:
        link.click()
    target = folder / started.value.suggested_filename
    started.value.save_as(target)
    return target
