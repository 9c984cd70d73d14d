"""``i2sb-app`` against the running server on 127.0.0.1 (one per module), as its users reach it.

* ``gradio_client``: the ``/restore`` endpoint's PNGs are ``i2sb-sample``'s bytes (JPEG, 4x SR, inpainting with a
  mask, an EXIF-rotated phone photo, several samples); bad uploads are one line and the server goes on;
* a real browser (Debian's Chromium driven by Playwright): open the page, upload a photo, set NFE, press Restore,
  wait, download: ``i2sb-sample``'s bytes; holes drawn with the brush are the mask ``i2sb-sample`` gets. Runs in
  CI (``.ci/run`` installs Chromium); elsewhere skipped only where Chromium is not installed;
* the parts without a server (drawn masks, settings, the command line) directly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app_server import CHROMIUM, AppServer, i2sb_sample, restore_in_browser
from helpers import random_image, write_run
from i2sb.app.main import TOOL, app_main
from i2sb.app.models import load_models, model_names
from i2sb.app.restore import mask_from_layers, whole_number
from i2sb.cli.keyvalue import usage

gradio_client = pytest.importorskip("gradio_client")
MAX_PIXELS = 48 * 48
TASKS = {"jpeg5": {"degradation": "jpeg5", "ot_ode": False}, "sr4x_pool": {"degradation": "sr4x_pool"},
         "inpaint_center": {"degradation": "inpaint_center", "ot_ode": True, "beta_max": 1.0}}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """``(root, server, client)``: three tiny runs (``root/runs/NAME``), photos (``root/photos/NAME/``, an
    EXIF-rotated phone JPEG among jpeg5's), a mask (``root/masks/photo.png``), ``i2sb-app`` serving the runs with
    max_pixels 48x48, and a ``gradio_client`` of it."""
    root = tmp_path_factory.mktemp("app")
    runs = [write_run(root / "runs" / name, task=task) for name, task in TASKS.items()]
    for name, (h, w) in {"jpeg5": (20, 28), "sr4x_pool": (8, 12), "inpaint_center": (16, 24)}.items():
        (root / "photos" / name).mkdir(parents=True)
        random_image(h, w, seed=len(name)).save(root / "photos" / name / "photo.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    random_image(12, 20, seed=3).save(root / "photos" / "jpeg5" / "phone.jpg", quality=90, exif=exif.tobytes())
    (root / "masks").mkdir()
    holes = np.zeros((16, 24), np.uint8)
    holes[4:12, 6:18] = 255
    Image.fromarray(holes).save(root / "masks" / "photo.png")
    with AppServer(runs, f"max_pixels={MAX_PIXELS}") as server:
        yield root, server, gradio_client.Client(server.url, verbose=False)


def restore(client, model, photos, mask=None, nfe=2, sampler="ddpm", seed=7, samples=1):
    files = [gradio_client.handle_file(str(p)) for p in photos]
    mask = gradio_client.handle_file(str(mask)) if mask is not None else None
    return client.predict(model, files, mask, nfe, sampler, seed, samples, api_name="/restore")


def reference(root: Path, model: str, output: str, *keys: str) -> Path:
    """``i2sb-sample`` on the model's photo folder, one image per batch (the page restores one at a time)."""
    i2sb_sample(f"ckpt={root / 'runs' / model}", f"input={root / 'photos' / model}", f"output={root / output}",
                "batch_size=1", *keys)
    return root / output


@pytest.mark.parametrize("model, samples, keys", [
    ("jpeg5", 2, ()), ("sr4x_pool", 1, ()), ("inpaint_center", 1, ("sampler=heun",)),
], ids=["jpeg5-2samples", "sr4x", "inpaint-heun"])
def test_restore_endpoint_writes_i2sb_samples_bytes(site, model, samples, keys):
    root, server, client = site
    sampler = keys[0].split("=")[1] if keys else "ddpm"
    mask = root / "masks" / "photo.png" if model == "inpaint_center" else None
    photos = sorted((root / "photos" / model).iterdir())
    gallery, pair, files, status = restore(client, model, photos, mask, nfe=3, sampler=sampler, seed=11,
                                           samples=samples)
    expected = reference(root, model, f"cli_{model}", "nfe=3", "seed=11", f"n_samples={samples}", *keys,
                         *([f"mask={root / 'masks'}"] if mask else []))
    got = {Path(f).name: Path(f).read_bytes() for f in files}
    want = {p.name: p.read_bytes() for p in expected.iterdir()}
    assert sorted(got) == sorted(want) and len(got) == len(photos) * samples
    assert all(got[name] == want[name] for name in want), "the page's PNG differs from i2sb-sample's file"
    assert len(gallery) == len(got) and len(pair) == 2
    assert status.count("s per image") == len(photos)
    first = next(f for f in files if Path(f).name.startswith("photo"))
    with Image.open(first) as out, Image.open(root / "photos" / model / "photo.png") as inp:
        scale = 4 if model == "sr4x_pool" else 1
        assert out.size == (inp.width * scale, inp.height * scale)
    if model == "jpeg5":
        with Image.open(next(f for f in files if Path(f).name.startswith("phone"))) as upright:
            assert upright.size == (12, 20)  # EXIF orientation 6: the phone photo comes back upright


def bad_files(root: Path) -> dict[str, tuple[Path, str]]:
    folder = root / "bad"
    folder.mkdir(exist_ok=True)
    (folder / "notes.png").write_text("not an image at all\n")
    random_image(16, 16, seed=5).save(folder / "cut.png")
    data = (folder / "cut.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])
    random_image(64, 64, seed=6).save(folder / "huge.png")
    return {"not an image": (folder / "notes.png", "notes.png: cannot read image"),
            "truncated": (folder / "cut.png", "cut.png: cannot read image"),
            "over max_pixels": (folder / "huge.png", f"huge.png: 64x64 is 0.0041 megapixels, over this server's "
                                                     f"max_pixels={MAX_PIXELS}")}


def assert_one_line(err: Exception, expected: str) -> None:
    text = str(err)
    assert expected in text, text
    assert "\n" not in text.strip() and "Traceback" not in text


def test_bad_uploads_are_one_line_and_the_server_goes_on(site):
    root, server, client = site
    good = root / "photos" / "jpeg5" / "photo.png"
    for name, (path, expected) in bad_files(root).items():
        with pytest.raises(gradio_client.exceptions.AppError) as err:
            restore(client, "jpeg5", [path])
        assert_one_line(err.value, expected)
        assert restore(client, "jpeg5", [good])[2], f"no restoration after the {name} upload"


def test_bad_masks_and_settings_are_one_line(site):
    root, server, client = site
    photo = root / "photos" / "inpaint_center" / "photo.png"
    wrong = root / "bad_mask.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(wrong)
    cases = [
        (dict(model="inpaint_center", photos=[photo], mask=wrong), "bad_mask.png: mask is 8x8 but its image is 24x16"),
        (dict(model="inpaint_center", photos=[photo]), "photo.png: inpaint_center fills holes: draw them"),
        (dict(model="jpeg5", photos=[photo], nfe=100), "Value 100 is greater than maximum value 99"),  # Gradio's
        (dict(model="jpeg5", photos=[photo], sampler="heun"), "sampler: jpeg5 runs ddpm, implicit, got 'heun'"),
        (dict(model="jpeg5", photos=[photo], sampler="euler"), "Value: euler is not in the list of choices"),
        (dict(model="/etc/passwd", photos=[photo]), "Value: /etc/passwd is not in the list of choices"),  # Gradio checks first
    ]
    for kwargs, expected in cases:
        with pytest.raises(gradio_client.exceptions.AppError) as err:
            restore(client, **kwargs)
            pytest.fail(f"no error for {kwargs}")
        assert_one_line(err.value, expected)
    assert restore(client, "inpaint_center", [photo], root / "masks" / "photo.png")[2]


def test_one_bad_photo_among_good_ones_is_a_line_of_the_report(site):
    root, server, client = site
    notes, _ = bad_files(root)["not an image"]
    _, _, files, status = restore(client, "jpeg5", [root / "photos" / "jpeg5" / "photo.png", notes])
    assert [Path(f).name for f in files] == ["photo.png"]
    assert "notes.png: cannot read image" in status and "photo.png: 28x20" in status


def test_only_restore_is_public_and_the_server_binds_localhost(site):
    root, server, client = site
    api = client.view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/restore"] and not api["unnamed_endpoints"]
    assert any(f"http://127.0.0.1:{server.port}" in line for line in server.lines)
    assert any("i2sb-app: jpeg5 nfe=" in line for line in server.lines)  # one log line per request


def test_drawn_strokes_become_a_white_on_black_mask(tmp_path):
    layer = np.zeros((6, 8, 4), np.uint8)
    layer[1:3, 2:5] = (255, 255, 255, 255)
    other = np.zeros((6, 8, 4), np.uint8)
    other[5, 7, 3] = 10  # any opacity marks a hole
    path = mask_from_layers([layer, other], tmp_path / "mask.png")
    with Image.open(path) as mask:
        pixels = np.asarray(mask)
    assert pixels.shape == (6, 8) and set(np.unique(pixels)) == {0, 255}
    assert (pixels == 255).sum() == 7 and pixels[5, 7] == 255
    assert mask_from_layers([np.zeros((6, 8, 4), np.uint8)], tmp_path / "none.png") is None
    assert mask_from_layers([], tmp_path / "none.png") is None


def test_settings_from_sliders_and_names_of_models(tmp_path):
    assert whole_number(10.0, "nfe", 1, 99) == 10
    for bad in (0, 2.5, True, "3", None):
        with pytest.raises(ValueError, match="nfe: must be a whole number in 1..99"):
            whole_number(bad, "nfe", 1, 99)
    assert model_names(["a/jpeg5", "b/jpeg5", "c/sr"]) == ["a/jpeg5", "b/jpeg5", "sr"]
    run = write_run(tmp_path / "jpeg5", task={"degradation": "jpeg5"})
    with pytest.raises(ValueError, match="config key 'precision'"):
        load_models([str(run)], "cpu", precision="fp64")


def test_command_line_errors_are_usage_errors(tmp_path, capsys):
    assert app_main(["--help"]) == 0
    assert capsys.readouterr().out == usage(TOOL) + "\n"
    for argv, expected in [(["ckpt=" + str(tmp_path / "missing")], "no such file or directory"),
                           ([f"ckpt={tmp_path}", "port=70000"], "port: must be in 0..65535"),
                           ([f"ckpt={tmp_path}", "--share"], "unknown option '--share'")]:
        assert app_main(argv) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- a real browser
@pytest.fixture
def browser_ready():
    pytest.importorskip("playwright")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); CI installs it")


def test_page_restores_an_upload_to_i2sb_samples_bytes(site, browser_ready, tmp_path):
    root, server, _ = site
    photo = root / "photos" / "jpeg5" / "photo.png"
    downloaded, shot, _ = restore_in_browser(server.url, photo, nfe=2, folder=tmp_path)
    i2sb_sample(f"ckpt={root / 'runs' / 'jpeg5'}", f"input={photo}", f"output={tmp_path / 'cli'}", "nfe=2")
    assert downloaded.read_bytes() == (tmp_path / "cli" / "photo.png").read_bytes()
    assert shot.stat().st_size > 10_000  # the screenshot (kept in the test's tmp dir)


def test_holes_drawn_on_the_photo_are_the_mask_i2sb_sample_gets(site, browser_ready, tmp_path):
    root, server, _ = site
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
