"""Sharing models offline: ``i2sb-download NAME mirror=URL`` fetches an exported model folder (``i2sb-export``) or a
run directory as well as the authors' files, from a local HTTP server (127.0.0.1) or a ``file://`` folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import i2sb
from i2sb.cli.download import download_main
from i2sb.restoration.export_writer import export_model
from i2sb.restoration.pretrained import download_checkpoint
from i2sb.utils.download import DownloadError

sys.path.insert(0, str(Path(__file__).parent))
from helpers import write_run  # noqa: E402
from test_download import assert_one_line, files, leftovers, server  # noqa: E402,F401  (fixtures)


def publish(folder: Path, files: dict, prefix: str) -> None:
    """Serve every file of ``folder`` at ``prefix/NAME``."""
    for path in folder.iterdir():
        files[f"{prefix}/{path.name}"] = path.read_bytes()


def same_restorer(a: Path, b: Path) -> None:
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(i2sb.load(a, device="cpu").restore(x, nfe=2, generator=torch.Generator().manual_seed(1)),
                               i2sb.load(b, device="cpu").restore(x, nfe=2, generator=torch.Generator().manual_seed(1)))


def test_an_exported_model_folder_on_a_mirror(server, files, tmp_path, capsys):
    run = write_run(tmp_path / "run")
    export_model(run, tmp_path / "models" / "team-jpeg")
    publish(tmp_path / "models" / "team-jpeg", files, "/share/team-jpeg")
    argv = ["team-jpeg", f"dir={tmp_path / 'results'}", f"mirror={server.url}/share", "progress=false"]
    assert download_main(argv) == 0
    folder = tmp_path / "results" / "team-jpeg"
    assert capsys.readouterr().out.strip() == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    same_restorer(folder, run)
    hits = len(server.hits)
    assert download_main(argv) == 0 and len(server.hits) == hits  # present and verified: not fetched again
    assert "already present and verified" in capsys.readouterr().err and leftovers(tmp_path / "results") == []


def test_a_run_directory_from_a_file_url(tmp_path):
    run = write_run(tmp_path / "share" / "my-run")  # latest.pt only: config.yaml, metrics.jsonl are optional
    folder = download_checkpoint("my-run", tmp_path / "results", mirror=(tmp_path / "share").as_uri(), progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["latest.pt"]
    same_restorer(folder, run)


def test_a_damaged_share_installs_nothing(server, files, tmp_path):
    export_model(write_run(tmp_path / "run"), tmp_path / "models" / "m")
    publish(tmp_path / "models" / "m", files, "/share/m")
    files["/share/m/model.safetensors"] = files["/share/m/model.safetensors"][:100]
    with pytest.raises(DownloadError) as err:
        download_checkpoint("m", tmp_path / "results", mirror=f"{server.url}/share", progress=False)
    assert_one_line(str(err.value), "model.safetensors", "does not load")
    assert not (tmp_path / "results" / "m").exists() and leftovers(tmp_path / "results") == []


@pytest.mark.parametrize("argv,code,part", [
    (["nobody", "mirror={url}/share"], 1, "serves none of the model layouts"),
    (["../up", "mirror={url}/share"], 2, "is not a model folder name"),
    (["team-jpeg"], 2, "with mirror=URL, a model folder the mirror serves"),
])
def test_names_a_mirror_does_not_serve_are_one_line(server, files, tmp_path, capsys, monkeypatch, argv, code, part):
    monkeypatch.delenv("I2SB_MIRROR", raising=False)
    argv = [a.format(url=server.url) for a in argv] + [f"dir={tmp_path}", "progress=false"]
    assert download_main(argv) == code
    err = capsys.readouterr().err.strip()
    assert_one_line(err, "i2sb-download: error: ", part)
    assert list(tmp_path.iterdir()) == []
