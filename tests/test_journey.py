"""A new user's whole journey, from a folder of their own photos to scored restorations (slow).

A small super-resolution model is trained here and published in the authors' ``results/NAME/`` format on a local
HTTP server (no network); then, as a user would: ``i2sb-download`` -> ``i2sb-export`` -> ``i2sb-degrade`` (their
clean photos: a phone JPEG with an EXIF rotation, PNGs of other and odd sizes) -> ``i2sb-sample`` -> ``i2sb-eval``.
"""

from __future__ import annotations

import functools
import http.server
import json
import pickle
import sys
import threading
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from i2sb import degrade
from i2sb.cli import run_eval, sample_main
from i2sb.cli.degrade import main as degrade_main
from i2sb.cli.download import download_main
from i2sb.cli.export import export_main
from i2sb.config import to_train_config
from i2sb.train import train
from i2sb.training.trainer import build_unet
from i2sb.utils.images import load_image

sys.path.insert(0, str(Path(__file__).parent))
from helpers import authors_options, group  # noqa: E402

SIZE, STEPS = 32, 400  # a model=small slimmed to 32 channels, trained on 32 px crops of the demo photos


def train_small_sr(run_dir: Path) -> Path:
    cfg = {"task": group("task", "sr4x_pool"),
           "model": {**group("model", "small"), "model_channels": 32, "num_res_blocks": 1, "image_size": SIZE},
           "data": {"kind": "demo", "image_size": SIZE},
           "trainer": {**group("trainer", "cpu"), "max_steps": STEPS, "eval_every": STEPS, "ckpt_every": STEPS,
                       "log_every": 50, "eval_batch": 4, "precision": "fp32"},
           "logging": {"progress": False}, "run_dir": str(run_dir), "device": "cpu"}
    train(cfg)
    return run_dir


def publish_as_the_authors(run_dir: Path, folder: Path) -> None:
    """Our run as NVlabs/I2SB writes results/NAME/: ``net`` with their prefix, torch_ema's list, options.pkl."""
    ckpt = torch.load(run_dir / "latest.pt", weights_only=True)
    names = [name for name, _ in build_unet(to_train_config(ckpt["config"])).named_parameters()]
    folder.mkdir(parents=True)
    torch.save({"net": {f"diffusion_model.{k}": v for k, v in ckpt["model"].items()},
                "ema": {"decay": 0.99, "num_updates": ckpt["step"], "collected_params": None,
                        "shadow_params": [ckpt["ema"]["state_dict"][n] for n in names]},
                "optimizer": {}, "sched": {"last_epoch": ckpt["step"]}}, folder / "latest.pt")
    options = authors_options("sr4x-pool", image_size=SIZE, beta_max=0.3, ot_ode=False)
    with open(folder / "options.pkl", "wb") as f:
        pickle.dump(Namespace(**options), f)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(folder: Path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=folder))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def write_photos(folder: Path) -> dict[str, tuple[int, int]]:
    """The user's clean photos; returns each one's upright (H, W)."""
    folder.mkdir()
    cat, coffee = skdata.chelsea(), skdata.coffee()  # held out from the demo's training photos
    upright = cat[60:108, 140:176]  # 48 x 36
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to show": a phone held upright stores the sensor's view
    Image.fromarray(np.rot90(upright, k=1).copy()).save(folder / "phone.jpg", quality=95, exif=exif)
    Image.fromarray(coffee[100:140, 200:252]).save(folder / "coffee.png")  # 40 x 52
    Image.fromarray(coffee[200:245, 300:337]).save(folder / "odd.png")  # 45 x 37: not a multiple of 4
    return {"phone": (48, 36), "coffee": (40, 52), "odd": (45, 37)}


def cli(main, argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_from_a_folder_of_photos_to_scored_restorations(tmp_path, capsys):
    publish_as_the_authors(train_small_sr(tmp_path / "training"), tmp_path / "server" / "sr4x-pool")
    capsys.readouterr()  # training's own log lines
    httpd, url = serve(tmp_path / "server")
    try:
        code, out, err = cli(download_main, ["sr4x-pool", f"dir={tmp_path / 'results'}", f"mirror={url}",
                                             "progress=false"], capsys)
    finally:
        httpd.shutdown()
    assert code == 0 and out.strip() == str(tmp_path / "results" / "sr4x-pool"), err
    code, _, err = cli(export_main, [f"ckpt={tmp_path / 'results' / 'sr4x-pool'}", f"output={tmp_path / 'model'}",
                                     "model.num_head_channels=32"], capsys)
    assert code == 0, err
    sizes = write_photos(tmp_path / "photos")

    code, out, err = cli(degrade_main, ["task=sr4x_pool", f"input={tmp_path / 'photos'}",
                                        f"output={tmp_path / 'lowres'}"], capsys)
    assert code == 1 and "odd.png" in err and err.count("\n") == 1, err  # 45 x 37 cannot be 4x pooled
    for name in ("phone", "coffee"):  # true low-resolution images, the phone photo upright
        assert tuple(load_image(tmp_path / "lowres" / f"{name}.png").shape[1:]) == tuple(s // 4 for s in sizes[name])

    code, out, err = cli(sample_main, [f"ckpt={tmp_path / 'model'}", f"input={tmp_path / 'lowres'}",
                                       f"output={tmp_path / 'restored'}", "nfe=1", "progress=false"], capsys)
    assert code == 0 and "restored 2 image(s)" in out, err
    for name in ("phone", "coffee"):  # 4x larger, upright like the clean photo
        assert tuple(load_image(tmp_path / "restored" / f"{name}.png").shape[1:]) == sizes[name]
    code, out, err = cli(sample_main, [f"ckpt={tmp_path / 'model'}", f"input={tmp_path / 'photos' / 'odd.png'}",
                                       f"output={tmp_path / 'odd'}", "upscale=false", "nfe=1", "progress=false"],
                         capsys)
    assert code == 0 and tuple(load_image(tmp_path / "odd" / "odd.png").shape[1:]) == sizes["odd"], err

    (tmp_path / "upsampled").mkdir()  # what the model starts from: the input's own score
    for name in ("phone", "coffee"):
        y = load_image(tmp_path / "lowres" / f"{name}.png")[None]
        x1 = degrade.upsample_measurement("sr4x_pool", y)[0]
        Image.fromarray(((x1.permute(1, 2, 0) + 1) * 127.5 + 0.5).clamp(0, 255).byte().numpy()).save(
            tmp_path / "upsampled" / f"{name}.png")
    scores = {}
    for folder in ("restored", "upsampled"):
        code, _, err = cli(run_eval, [f"restored={tmp_path / folder}", f"reference={tmp_path / 'photos'}", "fid=false",
                                      "lpips=false"], capsys)
        assert code == 0, err
        scores[folder] = json.loads((tmp_path / f"{folder}_metrics.json").read_text())  # beside, not inside
    assert scores["restored"]["num_pairs"] == 2
    assert scores["restored"]["psnr"] > scores["upsampled"]["psnr"] + 0.1, scores  # the model restores

    (tmp_path / "single").mkdir()  # the same photo alone: the same bits, with the stochastic sampler
    Image.open(tmp_path / "lowres" / "coffee.png").save(tmp_path / "single" / "coffee.png")
    for source, target in ((tmp_path / "lowres", "folder_nfe3"), (tmp_path / "single", "alone_nfe3")):
        code, _, err = cli(sample_main, [f"ckpt={tmp_path / 'model'}", f"input={source}", "nfe=3", "seed=5",
                                         f"output={tmp_path / target}", "progress=false", "batch_size=2"], capsys)
        assert code == 0, err
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "folder_nfe3" / "coffee.png")),
                                  np.asarray(Image.open(tmp_path / "alone_nfe3" / "coffee.png")))
