"""``i2sb-degrade`` (i2sb.cli.degrade / i2sb.degrade.degrade_folder) and the lossless ``.npy`` image arrays."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2sb import degrade
from i2sb.cli.degrade import main
from i2sb.degrade.degrade_folder import degrade_folder, image_seed
from i2sb.restoration.folder import find_mask, read_mask
from i2sb.utils.images import list_images, load_array, load_image, save_array

SIZES = {"a.png": (64, 96), "sub/b.jpg": (48, 48), "sub/deep/c.png": (40, 72), "odd.png": (37, 53)}


def smooth(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth uint8 photo stand-in (H, W, 3)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8))
    return np.asarray(coarse.resize((width, height), Image.BILINEAR))


@pytest.fixture()
def clean(tmp_path: Path) -> Path:
    """A folder of clean images of mixed sizes (one with odd sides), one in JPEG."""
    root = tmp_path / "clean"
    for seed, (name, (h, w)) in enumerate(SIZES.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(smooth(h, w, seed)).save(root / name, quality=95)
    return root


def degrade_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return exit_.value.code


def files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_sr_writes_true_low_resolution_images_whose_lift_is_x1(clean, tmp_path, capsys):
    out = tmp_path / "lowres"
    assert degrade_cli("task=sr4x_bicubic", f"input={clean}", f"output={out}") == 1  # odd.png cannot be divided by 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "odd.png" in err[0] and "not a multiple of the factor 4" in err[0]
    assert "crop=true centre-crops each photo to sides divisible by 4" in err[0]  # the way out, named
    assert files(out) == ["a.png", "sub/b.png", "sub/deep/c.png"]
    for name in ("a.png", "sub/b.jpg", "sub/deep/c.png"):
        x0 = load_image(clean / name)
        low = load_image(out / Path(name).with_suffix(".png"))
        assert low.shape == (3, x0.shape[1] // 4, x0.shape[2] // 4)
        x1, _ = degrade.build("sr4x_bicubic", tuple(x0.shape[1:]))(x0[None])
        lifted = degrade.upsample_measurement("sr4x_bicubic", low[None])
        assert lifted.shape == x1.shape
        torch.testing.assert_close(lifted, x1.clamp(-1, 1), atol=1 / 127.5, rtol=0)  # 8-bit rounding only


def test_sr_crop_takes_the_centre_of_photos_of_any_size(clean, tmp_path, capsys):
    Image.fromarray(smooth(39, 42, 7)).save(clean / "wide.png")  # 3 rows and 2 columns too many
    out = tmp_path / "lowres"
    assert degrade_cli("task=sr4x_pool", f"input={clean}", f"output={out}", "crop=true") == 0
    assert files(out) == ["a.png", "odd.png", "sub/b.png", "sub/deep/c.png", "wide.png"]
    for name, rows, cols in (("odd.png", slice(0, 36), slice(0, 52)), ("wide.png", slice(1, 37), slice(1, 41)),
                             ("a.png", slice(0, 64), slice(0, 96))):
        centre = load_image(clean / name)[:, rows, cols]
        y, _ = degrade.build("sr4x_pool", tuple(centre.shape[1:])).measure(centre[None])
        torch.testing.assert_close(load_image(out / name), y[0].clamp(-1, 1), atol=1 / 127.5, rtol=0)
    assert degrade_cli("task=jpeg5", f"input={clean}", f"output={tmp_path / 'j'}", "crop=true") == 2
    assert "crop=true: task jpeg5 takes any size" in capsys.readouterr().err


def test_jpeg_pads_odd_sizes_and_keeps_every_size(clean, tmp_path):
    out = tmp_path / "jpeg"
    assert degrade_cli("task=jpeg5", f"input={clean}", f"output={out}") == 0
    assert files(out) == ["a.png", "odd.png", "sub/b.png", "sub/deep/c.png"]
    for name, (h, w) in SIZES.items():
        written = load_image(out / Path(name).with_suffix(".png"))
        assert written.shape == (3, h, w)
        x1, _ = degrade.build_any_size("jpeg5", (h, w))(load_image(clean / name)[None])
        torch.testing.assert_close(written, x1[0].clamp(-1, 1), atol=0.51 / 127.5, rtol=0)


def test_npy_format_is_exact_outside_minus_one_one(clean, tmp_path):
    out = tmp_path / "exact"
    assert degrade_cli("task=jpeg5", f"input={clean / 'a.png'}", f"output={out}", "format=npy") == 0
    assert files(out) == ["a.npy"]
    x1, _ = degrade.build("jpeg5", (64, 96))(load_image(clean / "a.png")[None])
    stored = load_image(out / "a.npy")
    assert torch.equal(stored, x1[0]) and (stored.abs() > 1).any()  # nothing clipped
    assert np.load(out / "a.npy").shape == (64, 96, 3)


@pytest.mark.parametrize("task", ["inpaint_freeform1020", "inpaint_center"])
def test_inpainting_writes_masks_that_i2sb_sample_reads(task, clean, tmp_path):
    out = tmp_path / "holes"
    assert degrade_cli(f"task={task}", f"input={clean}", f"output={out}") == 0
    masks = tmp_path / "holes_masks"  # the default: beside the output
    assert files(masks) == files(out) == ["a.png", "odd.png", "sub/b.png", "sub/deep/c.png"]
    for name in files(out):
        x1 = load_image(out / name)
        assert Image.open(masks / name).mode == "L"  # 8-bit grey
        mask = read_mask(find_mask(masks, Path(name)), tuple(x1.shape[1:]))
        assert 0.1 <= mask.mean() <= (0.2 if task.endswith("1020") else 0.25)
        assert (x1[:, mask[0].bool()] == 1).all()  # the hole is white in x1
        assert (x1[:, ~mask[0].bool()] < 1).any()


def test_the_same_image_is_degraded_the_same_alone_renamed_or_in_a_folder(clean, tmp_path):
    assert degrade_cli("task=inpaint_freeform2030", f"input={clean}", f"output={tmp_path / 'all'}", "seed=3") == 0
    renamed = tmp_path / "single" / "renamed.png"
    renamed.parent.mkdir()
    renamed.write_bytes((clean / "sub/deep/c.png").read_bytes())
    assert degrade_cli("task=inpaint_freeform2030", f"input={renamed}", f"output={tmp_path / 'one'}", "seed=3",
                       f"masks={tmp_path / 'one_m'}") == 0
    assert (tmp_path / "one/renamed.png").read_bytes() == (tmp_path / "all/sub/deep/c.png").read_bytes()
    assert (tmp_path / "one_m/renamed.png").read_bytes() == (tmp_path / "all_masks/sub/deep/c.png").read_bytes()
    assert degrade_cli("task=inpaint_freeform2030", f"input={renamed}", f"output={tmp_path / 'other'}", "seed=4") == 0
    assert (tmp_path / "other_masks/renamed.png").read_bytes() != (tmp_path / "one_m/renamed.png").read_bytes()
    a, b = load_image(clean / "a.png"), load_image(clean / "sub/b.jpg")
    assert image_seed(0, a) == image_seed(0, a.clone()) != image_seed(0, b)


def test_bad_files_are_skipped_with_one_line_each_and_exit_1(clean, tmp_path, capsys):
    (clean / "broken.png").write_bytes(b"not a png")
    Image.fromarray(smooth(64, 96, 9)).save(clean / "a.jpg")  # a.jpg and a.png both map to a.png
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"old")  # replaced atomically
    assert degrade_cli("task=blur_uni", f"input={clean}", f"output={out}") == 1
    captured = capsys.readouterr()
    err = sorted(captured.err.strip().splitlines())  # a.jpg comes first (sorted), so a.png is the one skipped
    assert len(err) == 2 and all(line.startswith("i2sb-degrade: ") and line.endswith("(skipped)") for line in err)
    assert f"{clean / 'a.png'}: its output {out / 'a.png'} is also the output of {clean / 'a.jpg'}" in err[0]
    assert f"{clean / 'broken.png'}: cannot read image" in err[1]
    assert "wrote 4 image(s)" in captured.out and "skipped 2" in captured.out
    assert files(out) == ["a.png", "odd.png", "sub/b.png", "sub/deep/c.png"]  # no temporary files left
    assert load_image(out / "a.png").shape == (3, 64, 96)


@pytest.mark.parametrize(
    "args,message",
    [
        (["task=jpeg6"], "task=jpeg6: unknown task; valid tasks: jpeg, jpeg5"),
        (["task=jpeg5", "input={tmp}/missing"], "input={tmp}/missing: no such file or directory"),
        (["task=jpeg5", "output={clean}/out"], "output={clean}/out is inside input={clean}"),
        (["task=jpeg5", "input={clean}/a.png", "output={clean}"], "would overwrite the input"),
        (["task=jpeg5", "masks={tmp}/m"], "masks={tmp}/m: task jpeg5 has no masks"),
        (["task=inpaint_center", "masks={tmp}/out/m"], "must be separate folders"),
        (["task=inpaint_center", "masks={clean}/m"], "masks={clean}/m is inside input={clean}"),
        (["task=jpeg", "params.quality=0"], "params: JPEG quality must be an int in [1, 100], got 0"),
        (["task=jpeg", "params.qualty=30"], "params: "),
        (["task=jpeg5", "format=tiff"], "format=tiff: unknown format; valid formats: png, npy"),
        (["task=jpeg5", "seed=-1"], "seed=-1: must be a non-negative integer"),
        (["task=jpeg5", "seed=abc"], "config key 'seed'"),
        (["task=jpeg5", "--force"], "unknown option '--force'"),
        (["input={clean}"], "missing mandatory value: task"),
        (["task=inpaint_freeform1020", "params.mask_file={tmp}/none.npz"], "params: freeform mask file not found"),
    ],
)
def test_usage_errors_exit_2_with_one_line_and_write_nothing(args, message, clean, tmp_path, capsys):
    fill = {"tmp": tmp_path, "clean": clean}
    given = {a.split("=")[0] for a in args}
    defaults = [a for a in (f"input={clean}", f"output={tmp_path / 'out'}") if a.split("=")[0] not in given]
    assert degrade_cli(*[a.format(**fill) for a in args], *defaults) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("i2sb-degrade: error: ") and message.format(**fill) in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out_masks").exists()


def test_help_lists_keys_defaults_and_an_example():
    proc = subprocess.run([sys.executable, "-m", "i2sb.cli.degrade", "--help"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    for key in ("task", "input", "output", "masks", "seed", "format", "params"):
        assert f"\n  {key}=" in proc.stdout
    assert re.search(r"\n  format=\s+png\s", proc.stdout) and "example: i2sb-degrade task=" in proc.stdout


def test_degrade_folder_library_call(clean, tmp_path):
    result = degrade_folder("colorize", clean, tmp_path / "grey", log=lambda message: None)
    assert len(result.written) == 4 and not result.failures and not result.masks


# --- lossless image arrays (i2sb.utils.images) ---


def test_save_and_load_array_round_trip_exactly(tmp_path):
    image = torch.randn(3, 5, 7) * 1.5
    path = save_array(image, tmp_path / "x" / "a.npy")
    assert torch.equal(load_array(path), image) and torch.equal(load_image(path), image)
    assert list_images(tmp_path) == [] and list_images(tmp_path, arrays=True) == [path]
    assert list_images(path, arrays=True) == [path]
    with pytest.raises(ValueError, match="not an image file"):
        list_images(path)
    with pytest.raises(ValueError, match=r"arrays are written as \.npy"):
        save_array(image, tmp_path / "a.png")


@pytest.mark.parametrize(
    "array,message",
    [
        (np.zeros((4, 4, 3), np.uint8), "expected a float (H, W, 3) image array"),
        (np.zeros((3, 4, 4), np.float32), "expected a float (H, W, 3) image array"),
        (np.full((2, 2, 3), np.nan, np.float32), "NaN or infinite"),
        (None, "cannot read array"),
    ],
)
def test_bad_arrays_are_one_line_errors_naming_the_file(array, message, tmp_path):
    path = tmp_path / "bad.npy"
    if array is None:
        path.write_bytes(b"garbage")
    else:
        np.save(path, array)
    with pytest.raises(ValueError, match=str(path)) as err:
        load_image(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unsupported_files_and_symlinks_are_said_and_followed_once(clean, tmp_path, capsys):
    (clean / "IMG_0001.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (clean / "sub" / "up").symlink_to("..")  # a loop: followed once, nothing degraded twice
    assert degrade_cli("task=jpeg5", f"input={clean}", f"output={tmp_path / 'out'}") == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "note: skipped 1 file(s) that are not supported images: IMG_0001.heic" \
        in captured.err
    assert files(tmp_path / "out") == ["a.png", "odd.png", "sub/b.png", "sub/deep/c.png"]
