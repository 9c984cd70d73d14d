"""Download one URL to one file, atomically and verified, with one-line errors.

:func:`download` is the single way files come from the network in i2sb (pretrained checkpoints, the ADM
initialisation). Its guarantees:

* **Atomic.** Bytes go to ``.NAME.partial`` beside the target; only after every check passes is that file
  ``os.replace``-d onto ``NAME``. A failed or interrupted download never leaves a file under the final name,
  and the ``.partial`` file is deleted on every failure Python can see (errors, Ctrl-C).
* **Restartable, not resumable.** A ``.NAME.partial`` left behind by a killed process (SIGKILL, power loss)
  is discarded by the next call, which starts the transfer again from the first byte. Two processes
  downloading the same target at the same time are not supported.
* **Verified.** SHA-256 when the caller knows it; always the byte count against ``size`` or the server's
  Content-Length (``torch.hub.download_url_to_file`` and ``http.client`` both accept a transfer the server
  cut short, see ``tests/test_download.py``); then the caller's ``verify(path)``, which raises on a bad file.
* **Permissions follow the umask** (``0o666 & ~umask``), like any file the user creates.
* **One error type**: :class:`DownloadError`, whose message is one line: what, from where, why, and how to
  get the file by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import torch.hub
from tqdm.auto import tqdm

from .files import fix_mode

__all__ = ["DownloadError", "download", "check_file", "sha256_of", "partial_path", "one_line", "url_exists"]

CHUNK = 1 << 20
USER_AGENT = "i2sb-download"
BACKENDS = ("urllib", "torch.hub")
Verify = Callable[[Path], None]
Log = Callable[[str], None]


class DownloadError(RuntimeError):
    """A download failed; ``str(err)`` is one line naming the file, the URL, the reason and the manual way."""


class _HashMismatch(Exception):
    """torch.hub's hash check failed (it deletes the file, so the byte count is unknown)."""


class _Failed(Exception):
    """A check failed after the transfer; the message is the reason."""


# ---------------------------------------------------------------------------- small helpers
def one_line(text: str, limit: int = 300) -> str:
    """``text`` squeezed onto one line of at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def partial_path(dest: Path) -> Path:
    """Where :func:`download` writes ``dest`` before it is verified: ``DIR/.NAME.partial``."""
    return dest.parent / f".{dest.name}.partial"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(path: Path, *, sha256: str | None = None, size: int | None = None,
               verify: Verify | None = None) -> str | None:
    """Why ``path`` is not the expected file, or ``None`` if it passes every check that is known."""
    path = Path(path)
    if not path.is_file():
        return "file missing"
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"truncated or wrong file: {actual} bytes, expected {size}"
    if sha256 is not None:
        digest = sha256_of(path)
        if digest != sha256.lower():
            return f"SHA-256 mismatch: got {digest}, expected {sha256.lower()}"
    if verify is not None:
        try:
            verify(path)
        except Exception as err:  # the caller's check says why in its message
            return "does not load: " + one_line(str(err) or type(err).__name__)
    return None


def _reason(err: BaseException, timeout: float) -> str:
    """A short human reason for a transfer exception."""
    if isinstance(err, (_Failed, _HashMismatch)):
        return str(err)
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, http.client.IncompleteRead):
        return f"transfer cut short: got {len(err.partial)} more bytes, {err.expected} still expected"
    if isinstance(err, (socket.timeout, TimeoutError)):
        return f"no data for {timeout:g} s (timed out)"
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, OSError) and err.reason.filename:
        return f"{err.reason.strerror}: {err.reason.filename}"  # a file:// URL
    if isinstance(err, urllib.error.URLError):
        return f"cannot reach the server (offline?): {one_line(str(err.reason), 150)}"
    if isinstance(err, http.client.HTTPException):
        return f"broken HTTP response ({type(err).__name__}: {one_line(str(err), 150)})"
    if isinstance(err, OSError) and err.filename:
        return f"cannot write {err.filename}: {err.strerror}"
    return one_line(f"{type(err).__name__}: {err}", 200)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _remove_stale(tmp: Path) -> None:
    """Drop what an earlier, killed run left: ``.NAME.partial`` and torch.hub's ``.NAME.partial.*.partial``."""
    _remove(tmp)
    for leftover in tmp.parent.glob(tmp.name + ".*.partial"):
        _remove(leftover)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------- transfers
def _open(url: str, timeout: float, method: str = "GET") -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT}, method=method)
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s)/file URLs by design


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None


def _progress(total: int | None, name: str, enabled: bool):
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=not enabled,
                leave=False)


def fetch_urllib(url: str, tmp: Path, *, progress: bool, timeout: float) -> tuple[int, int | None, str]:
    """Stream ``url`` into ``tmp``; returns (bytes written, Content-Length or None, hex SHA-256)."""
    digest, written = hashlib.sha256(), 0
    with _open(url, timeout) as response:
        expected = _content_length(response)
        with open(tmp, "wb") as f, _progress(expected, tmp.name[1:-len(".partial")], progress) as bar:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                f.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    return written, expected, digest.hexdigest()


def remote_size(url: str, timeout: float) -> int | None:
    """Content-Length from a HEAD request, or ``None`` when the server does not say (or refuses HEAD)."""
    try:
        with _open(url, timeout, method="HEAD") as response:
            return _content_length(response)
    except (urllib.error.URLError, http.client.HTTPException, OSError):
        return None


def url_exists(url: str, timeout: float = 60.0) -> bool:
    """Whether ``url`` serves a file: True, False for HTTP 404 / 410 (or a missing ``file://`` path); a one-line
    :class:`DownloadError` when the server cannot say (offline, HTTP 500, ...). A HEAD request, a GET where the
    server refuses HEAD."""
    for method in ("HEAD", "GET"):
        try:
            with _open(url, timeout, method=method):
                return True
        except urllib.error.HTTPError as err:
            if err.code in (404, 410):
                return False
            if err.code in (405, 501) and method == "HEAD":  # HEAD not allowed: ask with GET
                continue
            raise DownloadError(f"cannot reach {url}: {_reason(err, timeout)}") from None
        except urllib.error.URLError as err:
            if isinstance(err.reason, FileNotFoundError):
                return False
            raise DownloadError(f"cannot reach {url}: {_reason(err, timeout)}") from None
        except (OSError, http.client.HTTPException) as err:
            raise DownloadError(f"cannot reach {url}: {_reason(err, timeout)}") from None
    return False


def fetch_torch_hub(url: str, tmp: Path, *, sha256: str | None, progress: bool) -> None:
    """``torch.hub.download_url_to_file`` into ``tmp``; its own temp file sits beside ``tmp``."""
    try:
        torch.hub.download_url_to_file(url, str(tmp), hash_prefix=sha256, progress=progress)
    except RuntimeError as err:
        if "invalid hash value" not in str(err):  # torch's wording; a short transfer also ends up here
            raise
        got = re.search(r'got "([0-9a-f]+)"', str(err))
        digest = got.group(1) if got else "another digest"
        reason = f"SHA-256 mismatch: got {digest}, expected {sha256} (transfer cut short or altered)"
        raise _HashMismatch(reason) from None


# ---------------------------------------------------------------------------- the one entry point
def download(url: str, dest: str | Path, *, sha256: str | None = None, size: int | None = None,
             verify: Verify | None = None, progress: bool = True, backend: str = "urllib",
             timeout: float = 60.0, manual: str | None = None, log: Log | None = None) -> Path:
    """Download ``url`` to ``dest`` (atomically, verified) unless a verified ``dest`` is already there.

    Args:
        url: http(s) or file URL.
        dest: final path; its directory is created (umask permissions).
        sha256: expected hex digest, when known.
        size: expected byte count, when known; otherwise the server's Content-Length is used.
        verify: ``verify(path)`` raises (any exception, message = reason) if the file is unusable.
        progress: show a tqdm bar on stderr.
        backend: ``"urllib"`` (own streaming) or ``"torch.hub"`` (``torch.hub.download_url_to_file``).
        timeout: seconds without data before giving up (urllib backend).
        manual: how to get the file by hand, for the error message; default "download URL and save it as DEST".
        log: called with one-line status messages ("already present", "downloading"); silent if ``None``.

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        DownloadError: offline, HTTP error, wrong hash, truncated transfer, failed ``verify``, disk error.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown download backend '{backend}', expected one of {', '.join(BACKENDS)}")
    dest = Path(dest).expanduser()
    say = log or (lambda message: None)
    manual = manual or f"download {url} and save it as {dest}"
    if dest.exists():
        problem = check_file(dest, sha256=sha256, size=size, verify=verify)
        if problem is None:
            say(f"{dest}: already present and verified, not downloaded again")
            return dest
        say(f"{dest}: present but unusable ({problem}); downloading it again")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"cannot create {dest.parent} for {dest.name}: {err.strerror}; to get it by hand, {manual}") from None
    say(f"{dest}: downloading from {url}")
    tmp = partial_path(dest)
    _remove_stale(tmp)
    try:
        _transfer_and_check(url, tmp, sha256=sha256, size=size, verify=verify, progress=progress,
                            backend=backend, timeout=timeout)
        fix_mode(tmp)
        os.replace(tmp, dest)
    except (_Failed, _HashMismatch, OSError, ValueError, http.client.HTTPException) as err:
        reason = _reason(err, timeout)
        raise DownloadError(f"cannot download {dest.name} from {url}: {reason}; to get it by hand, {manual}") from None
    finally:
        _remove_stale(tmp)
    return dest


def _transfer_and_check(url: str, tmp: Path, *, sha256: str | None, size: int | None, verify: Verify | None,
                        progress: bool, backend: str, timeout: float) -> None:
    """Fill ``tmp`` from ``url`` and check it; raises :class:`_Failed` (or the transfer's own exception)."""
    if backend == "urllib":
        written, expected, digest = fetch_urllib(url, tmp, progress=progress, timeout=timeout)
    else:
        expected = None if size is not None else remote_size(url, timeout)  # torch.hub does not check it
        fetch_torch_hub(url, tmp, sha256=sha256, progress=progress)
        _fsync(tmp)
        written, digest = tmp.stat().st_size, None  # torch.hub already compared the hash
    for want, what in ((expected, "Content-Length"), (size, "expected size")):
        if want is not None and written != want:
            raise _Failed(f"transfer cut short or wrong file: got {written} bytes, {what} is {want}")
    if sha256 is not None and digest is not None and digest != sha256.lower():
        raise _Failed(f"SHA-256 mismatch: got {digest}, expected {sha256.lower()}")
    problem = check_file(tmp, verify=verify) if verify is not None else None
    if problem is not None:
        raise _Failed(f"downloaded file {problem}")
