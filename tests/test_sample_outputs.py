"""``i2sb-sample``'s outputs and inputs as a user meets them: files it did not write are never overwritten, symlinked
folders are followed once, an unwritable output is refused before any work, large photos show progress and an
estimate, ``format`` / ``quality`` / ``keep_exif``, and what it leaves out (alpha, ``.heic``) is said."""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import i2sb
from i2sb.cli import sample_main
from i2sb.restoration import folder as folder_module
from i2sb.restoration import progress
from i2sb.restoration.tiling import TiledDenoiser
from i2sb.utils.images import save_array, scan_images

sys.path.insert(0, str(Path(__file__).parent))
from helpers import random_image, rgb, run_cli, write_run  # noqa: E402


@pytest.fixture
def photos(tmp_path):
    run = write_run(tmp_path / "run")
    (tmp_path / "in").mkdir()
    for i in range(3):
        random_image(16, 16, i).save(tmp_path / "in" / f"img{i}.png")
    return tmp_path, run


def one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


def png_bytes(pixels: np.ndarray) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(pixels).save(stream, format="PNG")
    return stream.getvalue()


# ---------------------------------------------------------------------------- nothing overwritten
def test_existing_outputs_are_kept_and_counted_unless_overwrite(photos, capsys):
    tmp, run = photos
    out = tmp / "out"
    out.mkdir()
    (out / "img1.png").write_bytes(b"the user's own cat")  # not written by i2sb-sample
    args = [f"ckpt={run}", f"input={tmp / 'in'}", f"output={out}", "nfe=1"]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0 and (out / "img1.png").read_bytes() == b"the user's own cat"
    assert "restored 2 image(s)" in stdout and "skipped 1" in stdout
    decision = [line for line in err.splitlines() if "already in" in line]
    assert len(decision) == 1 and "1 output file(s)" in decision[0] and "img1.png" in decision[0]
    assert "1 image(s) skipped; overwrite=true replaces them" in decision[0]
    code, stdout, err = run_cli(capsys, *args, "skip_existing=true")  # the old key: the default now
    assert code == 0 and "restored 0 image(s)" in stdout and "skipped 3" in stdout
    assert (out / "img1.png").read_bytes() == b"the user's own cat"
    code, stdout, err = run_cli(capsys, *args, "overwrite=true")
    assert code == 0 and "restored 3 image(s)" in stdout and "overwrite=true: replacing 3 existing" in err
    assert rgb(out / "img1.png").shape == (16, 16, 3)
    (out / "img2.png").write_bytes(b"again")
    code, _, err = run_cli(capsys, *args, "skip_existing=false")  # the old key's explicit false: replace
    assert code == 0 and "skip_existing=false: replacing" in err and rgb(out / "img2.png").shape == (16, 16, 3)
    code, _, err = run_cli(capsys, *args, "skip_existing=true", "overwrite=true")
    assert code == 2 and one_line(err) and "skip_existing" in err


def test_only_the_missing_samples_are_written(photos, capsys):
    tmp, run = photos
    out = tmp / "out"
    out.mkdir()
    (out / "img0_s1.png").write_bytes(b"keep me")
    code, stdout, err = run_cli(capsys, f"ckpt={run}", f"input={tmp / 'in' / 'img0.png'}", f"output={out}",
                                "n_samples=2", "nfe=1")
    assert code == 0 and (out / "img0_s1.png").read_bytes() == b"keep me" and (out / "img0_s0.png").is_file()
    assert "restored 1 image(s) (1 file(s))" in stdout and "0 image(s) skipped" in err


# ---------------------------------------------------------------------------- symlinks
def test_symlinks_are_followed_once(tmp_path):
    root, outside = tmp_path / "in", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    for path in (root / "a.png", root / "sub" / "b.png", outside / "c.png"):
        random_image(8, 8, 0).save(path)
    (root / "sub" / "up").symlink_to("..")  # a loop
    (root / "again.png").symlink_to("a.png")  # the same file twice
    (root / "alias").symlink_to("sub")  # the same folder twice
    (root / "ext").symlink_to(outside)  # a folder elsewhere: followed
    listing = scan_images(root)
    assert [p.relative_to(root).as_posix() for p in listing.images] == ["a.png", "ext/c.png", "sub/b.png"]
    assert [p.relative_to(root).as_posix() for p in listing.duplicates] == ["again.png"]
    assert "through a symlink" in listing.note()


def test_a_symlink_loop_restores_each_photo_once(photos, capsys):
    tmp, run = photos
    (tmp / "in" / "sub").mkdir()
    (tmp / "in" / "sub" / "up").symlink_to("..")
    code, stdout, err = run_cli(capsys, f"ckpt={run}", f"input={tmp / 'in'}", f"output={tmp / 'out'}", "nfe=1")
    assert code == 0 and "restored 3 image(s)" in stdout, err
    assert sorted(p.relative_to(tmp / "out").as_posix() for p in (tmp / "out").rglob("*")) == [
        "img0.png", "img1.png", "img2.png"]


# ---------------------------------------------------------------------------- output folder writable
def _writable(folder: Path) -> bool:
    try:
        handle, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(handle)
    os.unlink(name)
    return True


@pytest.fixture
def unwritable(tmp_path):
    """A folder this process cannot write into (a read-only one; as root, which writes anywhere, /sys)."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    if _writable(folder):
        folder.chmod(0o755)
        if Path("/sys").is_dir() and not _writable(Path("/sys")):
            yield Path("/sys")
            return
        pytest.skip("no unwritable folder on this machine")
    yield folder
    folder.chmod(0o755)


def test_an_unwritable_output_is_refused_before_the_model_is_loaded(photos, unwritable, capsys, monkeypatch):
    tmp, run = photos

    def no_loading(cfg):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(folder_module, "load_restorer", no_loading)
    for output in (unwritable / "restored", unwritable):
        code, _, err = run_cli(capsys, f"ckpt={run}", f"input={tmp / 'in'}", f"output={output}")
        assert code == 2 and one_line(err) and f"output={output}: cannot write into {unwritable}" in err, err
    (tmp / "a_file").write_text("x")
    code, _, err = run_cli(capsys, f"ckpt={run}", f"input={tmp / 'in'}", f"output={tmp / 'a_file' / 'out'}")
    assert code == 2 and one_line(err) and "is not a folder" in err
    code, _, err = run_cli(capsys, f"ckpt={run}", f"input={tmp / 'in'}", f"output={tmp / 'out'}", "save_traj=true",
                           f"traj_dir={unwritable / 'traj'}")
    assert code == 2 and one_line(err) and "traj_dir=" in err and not (tmp / "out").exists()


# ---------------------------------------------------------------------------- large photos
def test_large_photos_get_an_estimate_and_a_bar_over_tiles_and_steps(photos, capsys, monkeypatch):
    tmp, run = photos
    monkeypatch.setattr(progress, "ESTIMATE_PIXELS", 1000)  # "large" at this tiny model's 16 px tiles
    random_image(40, 37, 9).save(tmp / "in" / "big.png")
    with pytest.raises(SystemExit) as info:
        sample_main([f"ckpt={run}", f"input={tmp / 'in'}", f"output={tmp / 'out'}", "nfe=2", "progress=true"])
    err = capsys.readouterr().err
    assert info.value.code == 0, err
    restorer = i2sb.load(run)
    options = restorer.options(nfe=2)
    tiles = restorer.tile_count(40, 37, options)
    assert tiles == len(TiledDenoiser(None, options.tile, options.tile_overlap).windows(40, 38)) == 9
    estimate = [line for line in err.splitlines() if "network evaluations" in line]
    assert len(estimate) == 1, err  # the 16 x 16 photos are below the threshold
    assert "big.png: 37x40 output (0.0 MP), 9 tile(s) x 2 step(s) = 18 network evaluations, ~" in estimate[0]
    assert "s per evaluation (one 16 px tile timed here)" in estimate[0]
    assert "18/18" in err and "step 2/2, tile 9/9" in err and "step 1/2, tile 5/9" in err  # every tile, every step


def test_the_bar_counts_tiles_when_a_network_call_takes_several(tmp_path, capsys):
    """On GPUs several tiles go through the network per call (``tile_batch``): the bar still counts tiles."""
    restorer = i2sb.load(write_run(tmp_path / "run"), device="cpu")
    options = restorer.options(nfe=2, tile_batch=6)  # 3 tiles of a batch of 2 images per call
    x1 = torch.rand(2, 3, 40, 37) * 2 - 1
    calls = []
    handle = restorer.denoiser.net.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    with progress.evaluation_bar(restorer, 9, 2, 2, "two photos", enabled=True):
        restorer.restore(x1, options=options, generator=torch.Generator().manual_seed(0))
    handle.remove()
    err = capsys.readouterr().err
    assert calls == [6] * 6  # 3 calls per step of 3 tiles x 2 images
    assert "18/18" in err and "step 1/2, tile 3/9" in err and "step 2/2, tile 9/9" in err


def test_the_estimate_counts_samples_and_says_only_the_count_without_tiles():
    restorer = i2sb.load(write_run(Path(tempfile.mkdtemp()) / "run"))
    options = restorer.options(nfe=10, tile=0)
    assert progress.time_evaluation(restorer, options) is None
    line = progress.estimate_line("IMG.jpg", (3000, 4000), 1, options, 2, None)
    assert line == "IMG.jpg: 4000x3000 output (12.0 MP), 1 tile(s) x 10 step(s) x 2 samples = 20 network evaluations"
    timed = progress.time_evaluation(restorer, restorer.options(nfe=10))
    assert timed is not None and timed > 0


# ---------------------------------------------------------------------------- formats and metadata
def test_the_default_png_is_what_pillow_writes_from_the_restoration(photos, capsys):
    tmp, run = photos
    code, _, err = run_cli(capsys, f"ckpt={run}", f"input={tmp / 'in' / 'img0.png'}", f"output={tmp / 'out'}",
                           "nfe=1")
    assert code == 0, err
    written = (tmp / "out" / "img0.png").read_bytes()
    assert written == png_bytes(rgb(tmp / "out" / "img0.png"))  # no metadata, Pillow's default encoder


def _phone_photo(path: Path) -> bytes:
    """A JPEG stored sideways (EXIF orientation 6) with a camera name and an sRGB ICC profile."""
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "PhoneMaker"
    exif.get_ifd(0x8769)[0xA002], exif.get_ifd(0x8769)[0xA003] = 24, 16
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    random_image(16, 24, 3).save(path, exif=exif.tobytes(), icc_profile=icc, quality=95)
    return icc


@pytest.mark.parametrize("fmt", ["jpg", "webp", "png"])
def test_format_quality_and_keep_exif(tmp_path, capsys, fmt):
    run = write_run(tmp_path / "run")
    (tmp_path / "in").mkdir()
    icc = _phone_photo(tmp_path / "in" / "phone.jpg")
    quality = [] if fmt == "png" else ["quality=80"]
    code, _, err = run_cli(capsys, f"ckpt={run}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}",
                           f"format={fmt}", "keep_exif=true", "nfe=1", *quality)
    assert code == 0, err
    with Image.open(tmp_path / "out" / f"phone.{fmt}") as image:
        assert image.format == {"jpg": "JPEG", "webp": "WEBP", "png": "PNG"}[fmt]
        assert image.size == (16, 24)  # upright, as the viewer showed the photo
        exif = image.getexif()
        assert exif[0x010F] == "PhoneMaker" and exif[0x0112] == 1  # orientation reset: pixels already upright
        assert exif.get_ifd(0x8769)[0xA002] == 16 and image.info["icc_profile"] == icc
    code, _, _ = run_cli(capsys, f"ckpt={run}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'plain'}",
                         f"format={fmt}", "nfe=1")
    with Image.open(tmp_path / "plain" / f"phone.{fmt}") as image:
        assert code == 0 and 0x010F not in image.getexif() and "icc_profile" not in image.info


def test_lossy_formats_follow_quality(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    (tmp_path / "in").mkdir()
    random_image(64, 64, 0).save(tmp_path / "in" / "a.png")
    sizes = {}
    for quality in (30, 95):
        out = tmp_path / f"q{quality}"
        code, _, err = run_cli(capsys, f"ckpt={run}", f"input={tmp_path / 'in'}", f"output={out}", "format=jpg",
                               f"quality={quality}", "nfe=1", "tile=0")
        assert code == 0, err
        sizes[quality] = (out / "a.jpg").stat().st_size
    assert sizes[30] < sizes[95]


@pytest.mark.parametrize("args,message", [
    (["format=gif"], "format"), (["format=jpg", "quality=0"], "quality"), (["quality=90"], "png is lossless"),
])
def test_bad_format_keys_are_usage_errors(photos, capsys, args, message):
    tmp, run = photos
    code, _, err = run_cli(capsys, f"ckpt={run}", f"input={tmp / 'in'}", f"output={tmp / 'out'}", *args)
    assert code == 2 and one_line(err) and message in err and not (tmp / "out").exists()


# ---------------------------------------------------------------------------- what is left out is said
def test_alpha_and_unsupported_files_are_reported_in_one_line_each(photos, capsys):
    tmp, run = photos
    random_image(16, 16, 5, "RGBA").save(tmp / "in" / "logo.png")
    (tmp / "in" / "IMG_0001.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    Image.new("P", (8, 8)).save(tmp / "in" / "anim.gif")
    code, stdout, err = run_cli(capsys, f"ckpt={run}", f"input={tmp / 'in'}", f"output={tmp / 'out'}", "nfe=1")
    assert code == 0 and "restored 4 image(s)" in stdout
    alpha = [line for line in err.splitlines() if "alpha channel" in line]
    skipped = [line for line in err.splitlines() if "not supported images" in line]
    assert len(alpha) == 1 and "1 image(s)" in alpha[0] and "logo.png" in alpha[0] and "written as RGB" in alpha[0]
    assert len(skipped) == 1 and "skipped 2 file(s)" in skipped[0] and "IMG_0001.heic" in skipped[0]
    assert "anim.gif" in skipped[0]
    (tmp / "only").mkdir()
    (tmp / "only" / "a.heic").write_bytes(b"x")
    code, _, err = run_cli(capsys, f"ckpt={run}", f"input={tmp / 'only'}", f"output={tmp / 'o2'}")
    assert code == 2 and one_line(err) and "no images found" in err and "a.heic" in err


# ---------------------------------------------------------------------------- Restorer.restore's inputs
def test_restore_refuses_pixel_values_outside_minus_one_one(tmp_path):
    restorer = i2sb.load(write_run(tmp_path / "run"))
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with pytest.raises(ValueError, match=r"must be in \[-1, 1\], got values in \[0, 255\]: 8-bit pixel values"):
        restorer.restore(torch.arange(768.0).reshape(1, 3, 16, 16) % 256, nfe=1)  # 8-bit values, 0..255
    with pytest.raises(ValueError, match="NaN"):
        restorer.restore(torch.full_like(x, float("nan")), nfe=1)
    jpeg_like = x * 1.9  # the paper's DDRM JPEG leaves [-1, 1]: still accepted
    assert restorer.restore(jpeg_like, nfe=1).shape == x.shape


def test_an_array_far_outside_minus_one_one_fails_alone(photos, capsys):
    tmp, run = photos
    save_array(torch.full((3, 16, 16), 40.0), tmp / "in" / "counts.npy")  # not [-1, 1] units
    code, stdout, err = run_cli(capsys, f"ckpt={run}", f"input={tmp / 'in'}", f"output={tmp / 'out'}", "nfe=1",
                                "batch_size=1")
    assert code == 1 and "restored 3 image(s)" in stdout and err.count("\n") == 1
    assert "counts.npy: restoration failed: images must be in [-1, 1], got values in [40, 40]" in err
