"""Tests for i2sb.data: transforms, folders, pairs, bad files, demo photos, loader, image I/O."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from i2sb.data import (
    DATASETS, DEMO_PHOTOS, DEMO_SPLIT, DemoImages, ImageFolder, PairedFolders, build_dataset, demo_photos,
    infinite_loader, write_demo_folder,
)
from i2sb.utils.images import list_images, load_image, save_image


def _photo(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth but asymmetric uint8 RGB test image (H, W, 3), so flips and crops are visible."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [np.sin(6 * xx + 3 * yy + p) for p in rng.uniform(0, 6, size=3)]
    image = (np.stack(channels, -1) * 0.4 + 0.5 + 0.1 * rng.standard_normal((height, width, 3)))
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def _write(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def _authors_transform(image_size: int) -> T.Compose:
    """The authors' test transform, built from torchvision (Resize -> CenterCrop -> [-1, 1])."""
    return T.Compose([T.Resize(image_size), T.CenterCrop(image_size), T.ToTensor(), T.Lambda(lambda t: t * 2 - 1)])


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    _write(root / "b.png", _photo(40, 56, 0))
    _write(root / "a" / "c.JPG", _photo(48, 32, 1), quality=95)
    _write(root / "a" / "d.bmp", _photo(24, 24, 2))
    return root


# ---------------------------------------------------------------- listing and transforms


def test_list_images_recursive_sorted_case_insensitive_skips_hidden_and_others(folder: Path):
    (folder / "notes.txt").write_text("not an image")
    _write(folder / ".hidden" / "e.png", _photo(8, 8, 3))
    _write(folder / "._b.png", _photo(8, 8, 4))
    names = [p.relative_to(folder).as_posix() for p in list_images(folder)]
    assert names == ["a/c.JPG", "a/d.bmp", "b.png"]
    assert list_images(folder / "b.png") == [folder / "b.png"]


def test_imagefolder_val_matches_authors_transform(folder: Path):
    dataset = ImageFolder(folder, 16, train=False)
    assert len(dataset) == 3
    for index, path in enumerate(list_images(folder)):
        item = dataset[index]
        expected = _authors_transform(16)(Image.open(path).convert("RGB"))
        assert item["x0"].shape == (3, 16, 16) and item["x0"].dtype == torch.float32
        assert item["index"] == index
        torch.testing.assert_close(item["x0"], expected, rtol=0, atol=0)
        assert item["x0"].min() >= -1 and item["x0"].max() <= 1


def test_imagefolder_train_only_flips(folder: Path):
    val, train = ImageFolder(folder, 16, train=False), ImageFolder(folder, 16, train=True)
    reference = val[0]["x0"]
    outcomes = set()
    for seed in range(12):
        x0 = train.item(0, torch.Generator().manual_seed(seed))["x0"]
        flipped = torch.equal(x0, reference.flip(-1))
        assert flipped or torch.equal(x0, reference)
        outcomes.add(flipped)
    assert outcomes == {True, False}
    same_seed = [train.item(0, torch.Generator().manual_seed(7))["x0"] for _ in range(2)]
    assert torch.equal(*same_seed)


def test_grey_rgba_palette_and_16bit_are_converted(tmp_path: Path):
    rgb = _photo(20, 20, 5)
    grey = _write(tmp_path / "grey.png", rgb[..., 0])
    rgba = _write(tmp_path / "rgba.png", np.concatenate([rgb, np.full((20, 20, 1), 7, np.uint8)], -1))
    palette = tmp_path / "palette.png"
    Image.fromarray(rgb).convert("P").save(palette)
    deep = _write(tmp_path / "deep.png", np.array([[0, 1, 32768, 65535]], dtype=np.uint16))

    x_grey = load_image(grey)
    assert x_grey.shape == (3, 20, 20)
    assert torch.equal(x_grey[0], x_grey[1]) and torch.equal(x_grey[0], x_grey[2])
    torch.testing.assert_close(x_grey[0], torch.from_numpy(rgb[..., 0] / 127.5 - 1).float())
    torch.testing.assert_close(load_image(rgba), torch.from_numpy(rgb / 127.5 - 1).float().permute(2, 0, 1))
    expected_palette = np.asarray(Image.open(palette).convert("RGB")) / 127.5 - 1
    torch.testing.assert_close(load_image(palette), torch.from_numpy(expected_palette).float().permute(2, 0, 1))
    x_deep = load_image(deep)  # 16 bits kept, not clipped at 255
    torch.testing.assert_close(x_deep[0, 0], torch.tensor([0, 1, 32768, 65535]) / 65535 * 2 - 1)
    for x in ImageFolder(tmp_path, 8, train=False):
        assert x["x0"].shape == (3, 8, 8)


# ---------------------------------------------------------------- paired folders


def _paired_tree(root: Path) -> None:
    """clean/ as PNG, degraded/ as BMP or TIFF (lossless) holding the same pixels, nested."""
    for rel, seed in [("one", 0), ("sub/two", 1), ("sub/deeper/three", 2)]:
        image = _photo(30 + 4 * seed, 44, seed)
        _write(root / "clean" / f"{rel}.png", image)
        _write(root / "degraded" / f"{rel}.{'bmp' if seed % 2 else 'tif'}", image)


def test_paired_matches_nested_names_across_extensions(tmp_path: Path):
    _paired_tree(tmp_path)
    dataset = PairedFolders(tmp_path, 16, train=False)
    names = [(c.relative_to(tmp_path / "clean").as_posix(), d.relative_to(tmp_path / "degraded").as_posix())
             for c, d in dataset.pairs]
    assert names == [("one.png", "one.tif"), ("sub/deeper/three.png", "sub/deeper/three.tif"),
                     ("sub/two.png", "sub/two.bmp")]
    explicit = PairedFolders(None, 16, False, tmp_path / "clean", tmp_path / "degraded")
    assert explicit.pairs == dataset.pairs


def test_paired_same_random_crop_and_flip_on_both_sides(tmp_path: Path):
    _paired_tree(tmp_path)
    dataset = PairedFolders(tmp_path, 16, train=True, random_crop=True)
    crops = []
    for seed in range(10):
        item = dataset.item(2, torch.Generator().manual_seed(seed))
        assert torch.equal(item["x0"], item["x1"])  # identical pixels -> identical geometry
        crops.append(item["x0"])
    distinct = {tuple(c.flatten()[:64].tolist()) for c in crops}
    assert len(distinct) > 3  # the geometry really is random


def test_paired_unmatched_names_error(tmp_path: Path):
    _paired_tree(tmp_path)
    _write(tmp_path / "clean" / "sub" / "extra.png", _photo(8, 8, 9))
    (tmp_path / "degraded" / "one.tif").unlink()
    with pytest.raises(ValueError) as info:
        PairedFolders(tmp_path, 16, train=False)
    message = str(info.value)
    assert "\n" not in message
    assert "2 in" in message and "sub/extra" in message and "one" in message
    assert str(tmp_path / "clean") in message and str(tmp_path / "degraded") in message


def test_paired_duplicate_names_error(tmp_path: Path):
    _paired_tree(tmp_path)
    _write(tmp_path / "clean" / "one.bmp", _photo(8, 8, 9))
    with pytest.raises(ValueError, match="share the name 'one'"):
        PairedFolders(tmp_path, 16, train=False)


# ---------------------------------------------------------------- bad input


def test_missing_and_empty_folders_raise_one_line_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolder(tmp_path / "nowhere", 16, train=True)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=str(tmp_path / "empty")):
        ImageFolder(tmp_path / "empty", 16, train=True)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")


def test_corrupt_truncated_and_fake_files_are_skipped_with_warning(folder: Path):
    good = (folder / "b.png").read_bytes()
    (folder / "a" / "broken.png").write_bytes(good[: len(good) // 2])  # truncated PNG
    (folder / "fake.png").write_text("I am text, not a PNG")
    dataset = ImageFolder(folder, 16, train=False)
    names = [p.name for p in dataset.paths]
    assert names == ["broken.png", "c.JPG", "d.bmp", "b.png", "fake.png"]
    with pytest.warns(RuntimeWarning) as record:
        items = [dataset[i] for i in range(len(dataset))]
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert any("broken.png" in m for m in messages) and any("fake.png" in m for m in messages)
    assert [item["index"] for item in items] == [1, 1, 2, 3, 1]  # next readable index, cyclically
    torch.testing.assert_close(items[0]["x0"], items[1]["x0"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # each bad file is reported once
        assert dataset[4]["index"] == 1


def test_load_image_non_image_raises_value_error_naming_file(tmp_path: Path):
    fake = tmp_path / "fake.png"
    fake.write_text("hello")
    with pytest.raises(ValueError, match=r"fake\.png: cannot read image"):
        load_image(fake)


def test_folder_with_no_readable_image_raises(tmp_path: Path):
    (tmp_path / "x.png").write_text("nope")
    (tmp_path / "y.jpg").write_bytes(b"\xff\xd8\xff")
    dataset = ImageFolder(tmp_path, 16, train=True)
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="none of the 2 images could be read"):
        dataset[0]


# ---------------------------------------------------------------- demo photos


@pytest.fixture(scope="module")
def demo_val() -> DemoImages:
    return DemoImages(32, "val")


def test_demo_split_is_disjoint_by_photo_and_complete():
    train, val = set(DEMO_SPLIT["train"]), set(DEMO_SPLIT["val"])
    assert not train & val and train | val == set(DEMO_PHOTOS) and len(DEMO_PHOTOS) == 9
    photos = demo_photos("val")
    assert [name for name, _ in photos] == ["chelsea", "coffee"]
    assert all(a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 for _, a in photos)
    with pytest.raises(ValueError, match="unknown split"):
        demo_photos("test")


def test_demo_val_is_deterministic_held_out_content(demo_val: DemoImages):
    again = DemoImages(32, "val")
    assert len(demo_val) == len(again) > 20
    assert {demo_val.photo_names[photo] for photo, _, _ in demo_val.crops} == {"chelsea", "coffee"}
    for index in (0, 7, len(demo_val) - 1):
        first = demo_val.item(index, torch.Generator().manual_seed(1))["x0"]
        second = again.item(index, torch.Generator().manual_seed(2))["x0"]  # the generator is unused
        torch.testing.assert_close(first, second, rtol=0, atol=0)
    # Native resolution by default: crop 0 is chelsea's top-left 32 x 32 pixels, exactly, and the grid covers
    # the photo (300 x 451 -> ceil(300/32) x ceil(451/32) crops), the last one flush with its corner.
    _, array = demo_photos("val")[0]
    expected = torch.from_numpy(array[:32, :32].copy()).permute(2, 0, 1).float() / 127.5 - 1
    assert demo_val.crop_name(0) == "chelsea_z1_r0_c0"
    torch.testing.assert_close(demo_val[0]["x0"], expected, rtol=0, atol=1e-6)
    chelsea = [i for i, (photo, _, _) in enumerate(demo_val.crops) if photo == 0]
    assert len(chelsea) == 10 * 15 and demo_val.crops[chelsea[-1]][1] == (419.0, 268.0, 451.0, 300.0)
    zoomed = DemoImages(32, "val", val_zooms=(4.0,))  # 128 x 128 squares shrunk to 32 px
    assert zoomed.crop_name(0) == "chelsea_z4_r0_c0"
    shrunk = np.array(Image.fromarray(array[:128, :128]).resize((32, 32), Image.BILINEAR))
    assert (zoomed[0]["x0"] - torch.from_numpy(shrunk).permute(2, 0, 1).float() / 127.5 + 1).abs().mean() < 0.01


def test_demo_train_crops_random_reproducible_and_in_range():
    train = DemoImages(32, "train", length=50)
    assert len(train) == 50
    draw = [train.item(3, torch.Generator().manual_seed(s))["x0"] for s in (0, 0, 1)]
    assert torch.equal(draw[0], draw[1]) and not torch.equal(draw[0], draw[2])
    assert draw[0].shape == (3, 32, 32) and draw[0].min() >= -1 and draw[0].max() <= 1
    with pytest.raises(ValueError, match="zoom"):
        DemoImages(32, "train", zoom=(2.0, 1.0))
    zoomed = DemoImages(32, "train", length=50, zoom=(1.0, 8.0))  # the same draws, other squares
    assert any(not torch.equal(zoomed.item(3, torch.Generator().manual_seed(s))["x0"],
                               train.item(3, torch.Generator().manual_seed(s))["x0"]) for s in range(5))


def test_write_demo_folder_writes_the_val_crops(tmp_path: Path, demo_val: DemoImages):
    paths = write_demo_folder(tmp_path / "val", "val", 32, n=5)
    assert len(paths) == 5 and all(p.suffix == ".png" for p in paths)
    by_name = {demo_val.crop_name(i): i for i in range(len(demo_val))}
    for path in paths:
        torch.testing.assert_close(load_image(path), demo_val[by_name[path.stem]]["x0"], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="only"):
        write_demo_folder(tmp_path / "x", "val", 32, n=10_000)


def test_native_patches_of_folder_images(tmp_path: Path):
    """crop=native: random S x S patches at the images' own resolution (the centre one for validation); zoom
    draws larger squares resized to S; images smaller than the patch are enlarged to fit it."""
    photo = _photo(40, 60, seed=5)
    _write(tmp_path / "imgs" / "a.png", photo)
    val = ImageFolder(tmp_path / "imgs", 16, train=False, crop="native")
    centre = photo[12:28, 22:38]  # (40 - 16) / 2, (60 - 16) / 2
    torch.testing.assert_close(val[0]["x0"], torch.from_numpy(centre.copy()).permute(2, 0, 1).float() / 127.5 - 1,
                               rtol=0, atol=1e-6)
    train = ImageFolder(tmp_path / "imgs", 16, train=True, crop="native")
    patches = [train.item(0, torch.Generator().manual_seed(s))["x0"] for s in range(6)]
    pixels = {tuple(np.round((p.permute(1, 2, 0).numpy() + 1) * 127.5).astype(int)[0, 0]) for p in patches}
    assert len(pixels) > 3  # different places
    for patch in patches:  # every patch is a 16 x 16 window of the photo (flipped or not)
        window = np.round((patch.permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)
        found = any(np.array_equal(window, w) or np.array_equal(window[:, ::-1], w)
                    for y in range(25) for x in range(45) for w in [photo[y:y + 16, x:x + 16]])
        assert found
    zoom = ImageFolder(tmp_path / "imgs", 16, train=True, crop="native", zoom=(2.0, 2.0))
    assert zoom.item(0, torch.Generator().manual_seed(0))["x0"].shape == (3, 16, 16)
    small = ImageFolder(tmp_path / "imgs", 64, train=False, crop="native")  # 40 px < 64: enlarged first
    assert small[0]["x0"].shape == (3, 64, 64)
    with pytest.raises(ValueError, match="crop"):
        ImageFolder(tmp_path / "imgs", 16, train=True, crop="thumbnail")
    with pytest.raises(ValueError, match="zoom"):
        ImageFolder(tmp_path / "imgs", 16, train=True, zoom=(2.0, 2.0))  # zoom is for crop=native


# ---------------------------------------------------------------- registry


def test_build_dataset_registry_and_errors(folder: Path, tmp_path: Path):
    assert set(DATASETS) == {"imagefolder", "paired", "demo", "degraded"}
    dataset = build_dataset("imagefolder", 16, "val", root=folder)
    assert isinstance(dataset, ImageFolder) and not dataset.train
    assert isinstance(build_dataset("demo", 16, "train", length=3), DemoImages)
    _paired_tree(tmp_path / "pairs")
    assert build_dataset("paired", 16, "train", root=tmp_path / "pairs").train
    with pytest.raises(ValueError, match="valid kinds: imagefolder, paired, demo, degraded"):
        build_dataset("lmdb", 16, "train")
    with pytest.raises(ValueError, match="valid splits: train, val"):
        build_dataset("imagefolder", 16, "test", root=folder)


# ---------------------------------------------------------------- infinite loader


class _Numbers(torch.utils.data.Dataset):
    """Item i: x0 filled with i plus a random offset drawn from torch's default RNG."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> dict:
        return {"x0": torch.full((3, 2, 2), float(index)) + torch.rand(()), "index": index}


def _take(stream, n: int) -> list[dict]:
    return [next(stream) for _ in range(n)]


def test_infinite_loader_never_stops_and_covers_each_epoch():
    batches = _take(infinite_loader(_Numbers(), 5, seed=3), 8)  # 2 batches per epoch, 4 epochs
    assert all(b["x0"].shape == (5, 3, 2, 2) for b in batches)
    for epoch in range(4):
        seen = torch.cat([b["index"] for b in batches[2 * epoch: 2 * epoch + 2]])
        assert sorted(seen.tolist()) == list(range(10))
    orders = {tuple(torch.cat([b["index"] for b in batches[2 * e: 2 * e + 2]]).tolist()) for e in range(4)}
    assert len(orders) > 1  # reshuffled each epoch


def test_infinite_loader_ranks_differ_and_same_rank_reproduces():
    def stream(rank: int, seed: int = 0) -> list[dict]:
        return _take(infinite_loader(DemoImages(16, "train", length=8), 2, rank=rank, world_size=2, seed=seed), 4)

    rank0, rank0_again, rank1 = stream(0), stream(0), stream(1)
    for a, b in zip(rank0, rank0_again):
        assert torch.equal(a["x0"], b["x0"]) and torch.equal(a["index"], b["index"])
    first_epoch = [torch.cat([b["index"] for b in s[:2]]).tolist() for s in (rank0, rank1)]
    assert not set(first_epoch[0]) & set(first_epoch[1])  # disjoint shards
    assert not any(torch.equal(a["x0"], b["x0"]) for a, b in zip(rank0, rank1))
    assert not torch.equal(stream(0, seed=1)[0]["x0"], rank0[0]["x0"])


def test_infinite_loader_plain_dataset_is_seeded_per_sample():
    state = torch.get_rng_state()
    a = _take(infinite_loader(_Numbers(), 5, seed=0), 3)
    b = _take(infinite_loader(_Numbers(), 5, seed=0), 3)
    assert torch.equal(state, torch.get_rng_state())  # caller's RNG untouched
    assert all(torch.equal(x["x0"], y["x0"]) for x, y in zip(a, b))


def test_infinite_loader_resume_and_workers_give_the_same_stream():
    dataset = DemoImages(16, "train", length=6)
    full = _take(infinite_loader(dataset, 2, seed=5), 7)  # 3 batches per epoch
    resumed = _take(infinite_loader(dataset, 2, seed=5, start_step=4), 3)
    for a, b in zip(full[4:], resumed):
        assert torch.equal(a["x0"], b["x0"])
    by_epoch = _take(infinite_loader(dataset, 2, seed=5, start_epoch=1, start_step=1), 1)
    assert torch.equal(by_epoch[0]["x0"], full[4]["x0"])
    workers = _take(infinite_loader(dataset, 2, seed=5, num_workers=2), 4)
    for a, b in zip(full, workers):
        assert torch.equal(a["x0"], b["x0"])


def test_infinite_loader_rejects_batches_larger_than_the_shard():
    with pytest.raises(ValueError, match="fewer than batch_size 6"):
        infinite_loader(_Numbers(), 6, rank=1, world_size=2)
    assert next(infinite_loader(_Numbers(), 6, world_size=2, drop_last=False))["x0"].shape[0] == 5


# ---------------------------------------------------------------- save_image


def test_save_image_is_atomic_and_round_trips(tmp_path: Path):
    pixels = torch.randint(0, 256, (3, 9, 7)).float() / 127.5 - 1
    target = tmp_path / "out" / "img.png"
    save_image(torch.zeros(3, 9, 7), target)
    save_image(pixels, target)  # overwrite in place
    torch.testing.assert_close(load_image(target), pixels, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="expected an image tensor"):
        save_image(torch.zeros(2, 3, 9, 7), tmp_path / "out" / "bad.png")
    with pytest.raises(ValueError, match="unknown image suffix"):
        save_image(pixels, tmp_path / "out" / "img.xyz")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img.png"]  # no temp files left


def test_save_image_clamps_and_rounds_half_up(tmp_path: Path):
    values = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).view(1, 1, 5).expand(3, 1, 5)
    save_image(values, tmp_path / "v.png")
    assert np.asarray(Image.open(tmp_path / "v.png"))[0, :, 0].tolist() == [0, 0, 128, 255, 255]


# ---------------------------------------------------------------------------- EXIF orientation and the pixel limit
def forged_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` (a truncated file: it holds no pixel data)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("orientation,turn", [(1, 0), (3, 2), (6, -1), (8, 1)])
def test_images_are_read_upright_by_their_exif_orientation(tmp_path, orientation, turn):
    """A phone stores pixels as the sensor saw them and an EXIF tag saying how to turn them (6: 90° clockwise)."""
    from i2sb.utils.images import image_size, read_uint8

    stored = _photo(10, 20, seed=3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.png"
    Image.fromarray(stored).save(path, exif=exif)
    shown = np.rot90(stored, k=turn)
    assert image_size(path) == shown.shape[:2]
    np.testing.assert_array_equal(read_uint8(path), shown)
    np.testing.assert_array_equal(((load_image(path).permute(1, 2, 0) + 1) * 127.5).round().numpy(), shown)


def test_the_pixel_limit_is_one_line_and_silences_pillows_warning(tmp_path):
    import warnings

    from i2sb.utils.images import DEFAULT_MAX_PIXELS, PixelLimitError, image_size

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would fail the test
        assert image_size(forged_png(tmp_path / "big.png", 12_000, 10_000)) == (10_000, 12_000)  # 120 MP: allowed
        with pytest.raises(PixelLimitError, match=r"huge\.png: 15000x15000 is 225\.0 megapixels, over max_pixels"):
            image_size(forged_png(tmp_path / "huge.png", 15_000, 15_000))
        with pytest.raises(PixelLimitError, match="max_pixels=100"):
            load_image(_write(tmp_path / "small.png", _photo(16, 16, 0)), max_pixels=100)
        assert image_size(tmp_path / "huge.png", max_pixels=0) == (15_000, 15_000)  # 0: no limit
    assert DEFAULT_MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS  # Pillow's own hard limit, and its setting untouched
