"""Downloads, offline: a local HTTP server (127.0.0.1, port 0) and a fake ``gdown`` stand in for the network.

Covered: the generic downloader (good file + SHA-256, wrong hash, transfer cut short, HTTP 500/404, offline,
failing ``verify``, stale ``.partial``, Ctrl-C), torch.hub's acceptance of a short transfer, the authors'
checkpoints through a mirror and through gdown, ADM through torch.hub, and ``i2sb-download``'s exit codes.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import socket
import stat
import sys
import tempfile
import threading
import types
from argparse import Namespace
from pathlib import Path, PosixPath

import pytest
import torch

from i2sb.cli.download import download_main
from i2sb.restoration.authors import read_options
from i2sb.restoration import pretrained
from i2sb.restoration.pretrained import PRETRAINED, download_adm, download_checkpoint, verify_adm
from i2sb.utils.download import DownloadError, download

GOOD = bytes(range(256)) * 40  # 10 KiB
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()
CONFIGS = Path(__file__).resolve().parents[1] / "i2sb" / "configs"


# ---------------------------------------------------------------------------- the local server
class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; ``/truncated.bin`` promises 1000 bytes and sends 300; ``/error500`` fails."""

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        self._respond(body=True)

    def _respond(self, body: bool) -> None:
        if self.path.endswith("/truncated.bin"):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            if body:
                self.wfile.write(b"x" * 300)
                self.wfile.flush()
            self.close_connection = True
            return
        if self.path == "/error500":
            self.send_error(500, "Internal Server Error")
            return
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.files, httpd.hits = {}, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def files(server):
    """The served files, reset for each test; ``/good.bin`` always there."""
    server.files.clear()
    server.hits.clear()
    server.files["/good.bin"] = GOOD
    server.files["/tampered.bin"] = bytes(reversed(GOOD))
    return server.files


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(folder: Path) -> list[str]:
    """Hidden temp files/folders under ``folder`` (``.NAME.partial``, torch.hub's, staging folders)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


def assert_one_line(message: str, *parts: str) -> None:
    assert "\n" not in message and "Traceback" not in message, message
    for part in parts:
        assert part in message, (part, message)


# ---------------------------------------------------------------------------- generic downloader
def test_good_file_is_verified_placed_with_umask_mode_and_not_fetched_twice(server, files, tmp_path, umask022):
    dest = tmp_path / "sub" / "good.bin"
    messages: list[str] = []
    assert download(f"{server.url}/good.bin", dest, sha256=GOOD_SHA, progress=False, log=messages.append) == dest
    assert dest.read_bytes() == GOOD and mode(dest) == 0o644 and leftovers(tmp_path) == []
    again = download(f"{server.url}/good.bin", dest, sha256=GOOD_SHA, progress=False, log=messages.append)
    assert again == dest and server.hits == ["/good.bin"]
    assert "already present and verified" in messages[-1]


def test_mode_follows_another_umask(server, files, tmp_path):
    old = os.umask(0o027)
    try:
        dest = download(f"{server.url}/good.bin", tmp_path / "good.bin", progress=False)
    finally:
        os.umask(old)
    assert mode(dest) == 0o640


@pytest.mark.parametrize("backend", ["urllib", "torch.hub"])
def test_wrong_hash_leaves_nothing(server, files, tmp_path, backend):
    url = f"{server.url}/tampered.bin"
    with pytest.raises(DownloadError) as err:
        download(url, tmp_path / "f.bin", sha256=GOOD_SHA, progress=False, backend=backend)
    assert_one_line(str(err.value), "f.bin", url, "SHA-256 mismatch", "by hand", str(tmp_path / "f.bin"))
    assert list(tmp_path.iterdir()) == []


def test_torch_hub_alone_accepts_a_transfer_cut_short(server, files, tmp_path):
    """Why download() checks sizes: torch.hub keeps 300 of 1000 promised bytes when it has no hash."""
    import torch.hub

    dest = tmp_path / "short.bin"
    try:
        torch.hub.download_url_to_file(f"{server.url}/truncated.bin", str(dest), progress=False)
    except Exception:  # a future torch/Python may raise; then nothing is kept either
        assert not dest.exists()
    else:
        assert dest.stat().st_size == 300


@pytest.mark.parametrize("backend", ["urllib", "torch.hub"])
@pytest.mark.parametrize("size", [None, 1000])
def test_transfer_cut_short_is_caught(server, files, tmp_path, backend, size):
    url = f"{server.url}/truncated.bin"
    with pytest.raises(DownloadError) as err:
        download(url, tmp_path / "t.bin", size=size, progress=False, backend=backend)
    assert_one_line(str(err.value), "t.bin", url, "300 bytes", "1000")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path, reason", [("/error500", "HTTP 500"), ("/nothing-here", "HTTP 404")])
@pytest.mark.parametrize("backend", ["urllib", "torch.hub"])
def test_http_errors(server, files, tmp_path, path, reason, backend):
    with pytest.raises(DownloadError) as err:
        download(server.url + path, tmp_path / "e.bin", progress=False, backend=backend)
    assert_one_line(str(err.value), server.url + path, reason, "save it as")
    assert list(tmp_path.iterdir()) == []


def test_offline(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.bin"
    with pytest.raises(DownloadError) as err:
        download(url, tmp_path / "x.bin", progress=False, timeout=5)
    assert_one_line(str(err.value), url, "cannot reach the server")
    assert list(tmp_path.iterdir()) == []


def test_failing_verify_and_interrupt_leave_nothing(server, files, tmp_path):
    def reject(path: Path) -> None:
        raise ValueError(f"{path.name}: no 'net' entry")

    with pytest.raises(DownloadError) as err:
        download(f"{server.url}/good.bin", tmp_path / "v.bin", verify=reject, progress=False)
    assert_one_line(str(err.value), "does not load", "no 'net' entry")

    def interrupt(path: Path) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download(f"{server.url}/good.bin", tmp_path / "v.bin", verify=interrupt, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_stale_partial_is_restarted_and_bad_file_replaced(server, files, tmp_path):
    (tmp_path / ".g.bin.partial").write_bytes(b"left by a killed run")
    (tmp_path / ".g.bin.partial.0123abcd.partial").write_bytes(b"torch.hub's")
    (tmp_path / "g.bin").write_bytes(b"corrupt")
    messages: list[str] = []
    download(f"{server.url}/good.bin", tmp_path / "g.bin", sha256=GOOD_SHA, progress=False, log=messages.append)
    assert (tmp_path / "g.bin").read_bytes() == GOOD and leftovers(tmp_path) == []
    assert any("present but unusable" in m for m in messages)


# ---------------------------------------------------------------------------- authors' checkpoints
def authors_files(corrupt: str = "jpeg-5", with_ema: bool = True) -> dict[str, bytes]:
    """``latest.pt`` + ``options.pkl`` in the authors' format (tiny weights)."""
    ckpt = {"net": {"diffusion_model.out.2.weight": torch.zeros(3, 4, 3, 3)}, "optimizer": {}, "sched": {}}
    if with_ema:
        ckpt["ema"] = {"decay": 0.99, "num_updates": 1, "shadow_params": [torch.zeros(3, 4, 3, 3)],
                       "collected_params": None}
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    options = Namespace(interval=1000, beta_max=0.3, corrupt=corrupt, image_size=256, t0=1e-4, T=1.0, ot_ode=False,
                        cond_x1=False, name=corrupt, ckpt_path=PosixPath("results") / corrupt)
    return {"latest.pt": buffer.getvalue(), "options.pkl": pickle.dumps(options)}


def serve_mirror(files: dict, name: str = "jpeg-5", **kwargs) -> None:
    for filename, data in authors_files(name, **kwargs).items():
        files[f"/mirror/{name}/{filename}"] = data


def test_registry_matches_the_authors_names_and_i2sb_tasks():
    assert list(PRETRAINED) == ["jpeg-5", "jpeg-10", "sr4x-pool", "sr4x-bicubic", "blur-uni", "blur-gauss",
                                "inpaint-center", "inpaint-freeform1020", "inpaint-freeform2030"]
    for name, entry in PRETRAINED.items():
        assert (CONFIGS / "task" / f"{entry.task}.yaml").is_file()
        assert len(entry.drive_id) == 33 and entry.table in (2, 3, 4, 5) and 2 < entry.fid < 5
    assert pretrained.lookup("sr4x_pool").name == "sr4x-pool"


def test_mirror_checkpoint_then_already_present(server, files, tmp_path, umask022):
    serve_mirror(files)
    messages: list[str] = []
    folder = download_checkpoint("jpeg-5", tmp_path, mirror=f"{server.url}/mirror/", progress=False,
                                 log=messages.append)
    assert folder == tmp_path / "jpeg-5" and sorted(p.name for p in folder.iterdir()) == ["latest.pt", "options.pkl"]
    assert mode(folder) == 0o755 and all(mode(p) == 0o644 for p in folder.iterdir())
    assert read_options(folder / "options.pkl")["corrupt"] == "jpeg-5" and leftovers(tmp_path) == []
    hits = len(server.hits)
    download_checkpoint("jpeg-5", tmp_path, mirror=f"{server.url}/mirror", progress=False, log=messages.append)
    assert len(server.hits) == hits and "already present and verified" in messages[-1]


def test_mirror_from_environment(server, files, tmp_path, monkeypatch):
    serve_mirror(files, "blur-uni")
    monkeypatch.setenv("I2SB_MIRROR", f"{server.url}/mirror")
    folder = download_checkpoint("blur_uni", tmp_path, progress=False)
    assert (folder / "latest.pt").is_file() and folder.name == "blur-uni"


@pytest.mark.parametrize("break_it", ["no ema", "404", "wrong options"])
def test_mirror_failure_installs_nothing(server, files, tmp_path, break_it):
    serve_mirror(files, with_ema=break_it != "no ema")
    if break_it == "404":
        del files["/mirror/jpeg-5/latest.pt"]
    if break_it == "wrong options":
        files["/mirror/jpeg-5/options.pkl"] = authors_files("jpeg-10")["options.pkl"]
    with pytest.raises(DownloadError) as err:
        download_checkpoint("jpeg-5", tmp_path, mirror=f"{server.url}/mirror", progress=False)
    expected = {"no ema": "no 'ema' entry", "404": "HTTP 404", "wrong options": "corrupt=jpeg-10"}[break_it]
    assert_one_line(str(err.value), expected, str(tmp_path / "jpeg-5"))
    assert not (tmp_path / "jpeg-5" / "latest.pt").exists() and not (tmp_path / "jpeg-5" / "options.pkl").exists()
    assert leftovers(tmp_path) == []


def fake_gdown(calls: list, fail: bool = False, nested: bool = False) -> types.ModuleType:
    """A ``gdown`` whose ``download_folder`` writes the authors' files (0600, as mkstemp would) into ``output``."""
    module = types.ModuleType("gdown")

    def download_folder(url=None, output=None, quiet=False, **kwargs):
        calls.append((url, output))
        if fail:
            raise RuntimeError("Failed to retrieve folder contents\nYou may need to change the permission")
        folder = Path(output) / "jpeg-5" if nested else Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for filename, data in authors_files().items():
            fd, tmp = tempfile.mkstemp(dir=folder)
            os.write(fd, data)
            os.close(fd)
            os.replace(tmp, folder / filename)
            written.append(str(folder / filename))
        return written

    module.download_folder = download_folder
    return module


@pytest.mark.parametrize("nested", [False, True])
def test_google_drive_through_gdown(tmp_path, monkeypatch, umask022, nested):
    calls: list = []
    monkeypatch.delenv("I2SB_MIRROR", raising=False)
    monkeypatch.setitem(sys.modules, "gdown", fake_gdown(calls, nested=nested))
    folder = download_checkpoint("jpeg-5", tmp_path, progress=False)
    assert calls[0][0] == "https://drive.google.com/drive/folders/17bPMUX5yBcL8YTN8nbfJT6WHXU6CNLd7"
    assert Path(calls[0][1]).parent == tmp_path and Path(calls[0][1]).name.startswith(".jpeg-5.")
    assert all(mode(folder / f) == 0o644 for f in ("latest.pt", "options.pkl")) and leftovers(tmp_path) == []


def test_gdown_failure_and_missing_gdown(tmp_path, monkeypatch):
    monkeypatch.delenv("I2SB_MIRROR", raising=False)
    monkeypatch.setitem(sys.modules, "gdown", fake_gdown([], fail=True))
    with pytest.raises(DownloadError) as err:
        download_checkpoint("jpeg-5", tmp_path, progress=False)
    assert_one_line(str(err.value), "gdown failed", "Failed to retrieve folder contents", "by hand",
                    PRETRAINED["jpeg-5"].drive_url)
    assert not (tmp_path / "jpeg-5").exists() and leftovers(tmp_path) == []
    monkeypatch.setitem(sys.modules, "gdown", None)  # import gdown -> ImportError
    with pytest.raises(DownloadError) as err:
        download_checkpoint("jpeg-5", tmp_path, progress=False)
    assert_one_line(str(err.value), "pip install 'i2sb[download]'", "pip install gdown", "mirror=")


# ---------------------------------------------------------------------------- ADM
def test_adm_through_torch_hub_with_hash(server, files, tmp_path, monkeypatch):
    state = {"input_blocks.0.0.weight": torch.zeros(2, 3, 3, 3)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    files["/mirror/256x256_diffusion_uncond.pt"] = data = buffer.getvalue()
    with pytest.raises(ValueError, match="'input_blocks.0.0.weight' is shape"):
        verify_adm(_write(tmp_path / "small.pt", data))
    monkeypatch.setattr(pretrained, "ADM_SHA256", hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(pretrained, "ADM_SIZE", len(data))
    monkeypatch.setattr(pretrained, "verify_adm", lambda path: None)
    path = download_adm(tmp_path / "data", mirror=f"{server.url}/mirror", progress=False)
    assert path.read_bytes() == data and leftovers(tmp_path) == []
    monkeypatch.setattr(pretrained, "ADM_SHA256", GOOD_SHA)
    with pytest.raises(DownloadError) as err:
        download_adm(tmp_path / "other", mirror=f"{server.url}/mirror", progress=False)
    assert_one_line(str(err.value), "SHA-256 mismatch", "256x256_diffusion_uncond.pt")
    assert not (tmp_path / "other").exists() or list((tmp_path / "other").iterdir()) == []


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------- the CLI
def test_cli_help_usage_errors_and_list(capsys):
    assert download_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: i2sb-download" in out and "dir=" in out and "mirror=" in out and "example" in out
    for argv, part in [(["jpeg-7"], "expected one of: jpeg-5, jpeg-10"), (["jpeg-5", "root=x"], "'root'"),
                       ([], "nothing to do"), (["--dir", "x"], "unknown option '--dir'"),
                       (["list", "jpeg-5"], "unexpected argument 'jpeg-5'"), (["adm", "progress=maybe"], "progress")]:
        assert download_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("i2sb-download: error: ") and err.count("\n") == 1 and part in err, (argv, err)


def test_cli_download_list_and_failure(server, files, tmp_path, capsys):
    serve_mirror(files)
    mirror = f"mirror={server.url}/mirror"
    assert download_main(["jpeg-5", f"dir={tmp_path}", mirror, "progress=false"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "jpeg-5")
    assert download_main(["list", f"dir={tmp_path}"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["name", "task", "paper", "FID", "local"] and len(rows) == 11
    assert rows[1].split()[:3] == ["jpeg-5", "jpeg5", "4.6"] and rows[1].endswith("yes")
    assert "Table 2" in rows[3] and rows[2].endswith("no")
    assert download_main(["jpeg-10", f"dir={tmp_path}", mirror, "progress=false"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert_one_line(err, "i2sb-download: error: cannot download jpeg-10", "options.pkl", "config.json", "latest.pt",
                    "HTTP 404")
    assert not (tmp_path / "jpeg-10").exists()


def test_cli_adm_with_progress_bar_then_already_present(server, files, tmp_path, monkeypatch, capsys):
    files["/mirror/256x256_diffusion_uncond.pt"] = GOOD
    monkeypatch.setattr(pretrained, "ADM_SHA256", GOOD_SHA)
    monkeypatch.setattr(pretrained, "ADM_SIZE", len(GOOD))
    monkeypatch.setattr(pretrained, "verify_adm", lambda path: None)
    argv = ["adm", f"dir={tmp_path}", f"mirror={server.url}/mirror"]  # progress bars on (the default)
    assert download_main(argv) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "256x256_diffusion_uncond.pt")
    assert download_main(argv) == 0 and "already present and verified" in capsys.readouterr().err
    assert server.hits == ["/mirror/256x256_diffusion_uncond.pt"]
