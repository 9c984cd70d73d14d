"""i2sb-export: inference-only folders (safetensors + config.json + model card) that load without any pickle."""

from __future__ import annotations

import json
import os
import pickle
import stat
import sys
from pathlib import Path

import pytest
import torch

import i2sb
from i2sb.cli.export import export_main
from i2sb.utils.file_formats import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE

sys.path.insert(0, str(Path(__file__).parent))
from helpers import authors_options, random_image, run_cli, write_authors_dir, write_run  # noqa: E402


def restore(ckpt, x1, **kw):
    return i2sb.load(ckpt).restore(x1, nfe=3, generator=torch.Generator().manual_seed(0), precision="fp32", **kw)


def no_pickle(monkeypatch):
    """Make every pickle-based loader fail, so a load that succeeds used none."""
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


def test_a_run_exports_to_a_folder_that_restores_identically_without_pickle(tmp_path, monkeypatch):
    run = write_run(tmp_path / "run")
    (run / "metrics.jsonl").write_text(json.dumps({"step": 2, "val_psnr": 21.5, "val_psnr_input": 20.25}) + "\n")
    old = os.umask(0o022)
    try:
        assert export_main([f"ckpt={run}", f"output={tmp_path / 'model'}"]) == 0
    finally:
        os.umask(old)
    folder = tmp_path / "model"
    assert sorted(p.name for p in folder.iterdir()) == sorted([CARD_FILE, CONFIG_FILE, WEIGHTS_FILE])
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in folder.iterdir())  # the umask's, not 0600
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["method"] == "i2sb" and config["task"]["degradation"] == "jpeg5" and config["image_size"] == 16
    assert config["default_nfe"] == 3 and config["weights"] == "ema" and config["network"]["model_channels"] == 32
    card = (folder / CARD_FILE).read_text()
    assert card.startswith("---\nlibrary_name: i2sb") and "jpeg5" in card and "val_psnr 21.50" in card
    assert "training steps | 2" in card and "i2sb-sample ckpt=" in card
    assert "pip install i2sb" not in card and "pip install -e ." in card  # not on PyPI: from the source
    assert config["source"] == "run/latest.pt" and str(tmp_path) not in (folder / CONFIG_FILE).read_text()
    x1 = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    expected = restore(run, x1)
    no_pickle(monkeypatch)
    torch.testing.assert_close(restore(folder, x1), expected, rtol=0, atol=0)


def test_the_authors_checkpoint_exports_and_samples_from_the_cli(tmp_path, capsys):
    options = authors_options("sr4x-pool", ot_ode=False)
    write_authors_dir(tmp_path / "results" / "sr4x-pool", options)
    assert export_main([f"ckpt={tmp_path / 'results' / 'sr4x-pool'}", f"output={tmp_path / 'sr'}",
                        "model.num_head_channels=64"]) == 0
    card = (tmp_path / "sr" / CARD_FILE).read_text()
    assert "license: cc-by-nc-sa-4.0" in card and "training steps | 0" in card
    x1 = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    torch.testing.assert_close(restore(tmp_path / "sr", x1), restore(tmp_path / "results" / "sr4x-pool", x1),
                               rtol=0, atol=0)
    (tmp_path / "in").mkdir()
    random_image(16, 16, 0).save(tmp_path / "in" / "a.png")
    code, out, err = run_cli(capsys, f"ckpt={tmp_path / 'sr'}", f"input={tmp_path / 'in'}",
                             f"output={tmp_path / 'out'}", "nfe=2")
    assert code == 0 and (tmp_path / "out" / "a.png").is_file(), err


def test_export_replaces_an_export_and_refuses_other_folders(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    target = tmp_path / "model"
    assert export_main([f"ckpt={run}", f"output={target}"]) == 0
    assert export_main([f"ckpt={run}", f"output={target}", "use_ema=false"]) == 0  # replaces the first
    assert json.loads((target / CONFIG_FILE).read_text())["weights"] == "raw"
    other = tmp_path / "photos"
    other.mkdir()
    (other / "keep.png").write_bytes(b"precious")
    capsys.readouterr()
    assert export_main([f"ckpt={run}", f"output={other}"]) == 2  # a usage error, as the README says
    err = capsys.readouterr().err
    assert "not an exported model folder" in err and err.count("\n") == 1
    assert [p.name for p in other.iterdir()] == ["keep.png"] and not list(tmp_path.glob(".*partial"))


def test_export_usage(tmp_path, capsys):
    assert export_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: i2sb-export") and "ckpt=" in out and "example:" in out
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    for argv, part in [([f"output={tmp_path}"], "ckpt"), ([f"ckpt={tmp_path / 'nope'}", "output=x"], "nope"),
                       (["--ckpt", "x"], "unknown option"),
                       ([f"ckpt={tmp_path / 'bad.pt'}", f"output={tmp_path / 'm'}"], "bad.pt: not a checkpoint")]:
        assert export_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("i2sb-export: error: ") and err.count("\n") == 1 and part in err, err


def test_a_damaged_export_is_a_one_line_error(tmp_path):
    folder = tmp_path / "model"
    assert export_main([f"ckpt={write_run(tmp_path / 'run')}", f"output={folder}"]) == 0
    (folder / WEIGHTS_FILE).write_bytes((folder / WEIGHTS_FILE).read_bytes()[:100])
    with pytest.raises(ValueError, match=r"model\.safetensors: cannot read") as err:
        i2sb.load(folder)
    assert "\n" not in str(err.value)
