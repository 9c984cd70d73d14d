"""Restoring folders (``i2sb-sample``) and the Python API (``i2sb.load``) on tiny checkpoints made here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import i2sb
from i2sb.restoration.folder import log_steps
from i2sb.restoration.tiling import TiledDenoiser, pad_to_multiple, tile_starts
from i2sb.train import train

sys.path.insert(0, str(Path(__file__).parent))
from helpers import bridge_restorer, perturb, random_image, rgb, run_cli, train_config, write_run  # noqa: E402

# ---------------------------------------------------------------------------- folder restoration
def test_zero_network_folder_restoration_keeps_names_sizes_and_pixels(tmp_path, capsys):
    """A fresh U-Net outputs exactly 0, so the OT-ODE restoration is the input itself: this checks names,
    nested paths, formats, grey/RGBA conversion, odd sizes (padding + crop) and tiling of larger images."""
    run = write_run(tmp_path / "run", random=False, ema_shift=0.0)
    src = tmp_path / "in"
    files = {
        "a.png": random_image(16, 16, 0), "sub/b.jpg": random_image(19, 23, 1),
        "sub/deep/c.webp": random_image(16, 16, 2), "d.bmp": random_image(19, 23, 3),
        "e.tiff": random_image(40, 37, 4), "grey.png": random_image(17, 16, 5, "L"),
        "alpha.png": random_image(16, 21, 6, "RGBA"),
    }
    for name, image in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(src / name, quality=90) if name.endswith((".jpg", ".webp")) else image.save(src / name)
    code, out, err = run_cli(capsys, f"ckpt={run}", f"input={src}", f"output={tmp_path / 'out'}", "batch_size=2",
                             "nfe=1")
    assert code == 0, err
    assert "restored 7 image(s)" in out and "failed 0" in out
    for name in files:
        result = tmp_path / "out" / Path(name).with_suffix(".png")
        np.testing.assert_array_equal(rgb(result), rgb(src / name))  # same size, same pixels
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == sorted(
        Path(n).with_suffix(".png").name for n in files)


def test_pad_to_multiple_reflects_and_crops_back():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (2, 3, 8, 8)
    assert torch.equal(padded[..., :5, :7], x)
    assert torch.equal(padded[..., 5, :7], x[..., 3, :])  # reflection: row 5 mirrors row 3
    assert torch.equal(padded[..., :5, 7], x[..., :, 5])
    tiny = pad_to_multiple(x[..., :2, :2], 8)  # too small to reflect: edge replication
    assert tiny.shape[-2:] == (8, 8) and torch.equal(tiny[..., 7, 7], x[..., 1, 1])
    aligned = x[..., :4, :4]
    assert pad_to_multiple(aligned, 4) is aligned  # already a multiple: returned as it is, no copy


@pytest.mark.parametrize("size,tile,overlap", [(40, 16, 4), (37, 16, 8), (16, 16, 4), (100, 32, 0), (33, 32, 8)])
def test_tiles_cover_with_overlap(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    assert starts[0] == 0 and starts[-1] + min(tile, size) == size
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # at least `overlap` shared


def test_tiled_denoiser_blends_to_constant_and_identity():
    calls = []

    def constant(x, step, cond=None):
        calls.append(tuple(x.shape[-2:]))
        return torch.full((x.shape[0], 3, *x.shape[-2:]), 0.3, dtype=x.dtype)

    x = torch.randn(2, 3, 40, 37)
    step = torch.zeros(2, dtype=torch.long)
    tiled = TiledDenoiser(constant, 16, 4)
    torch.testing.assert_close(tiled(x, step), torch.full_like(x, 0.3), rtol=0, atol=1e-6)
    assert set(calls) == {(16, 16)} and len(calls) == len(tile_starts(40, 16, 4)) * len(tile_starts(37, 16, 4))
    identity = TiledDenoiser(lambda x, step, cond=None: x[:, :3] + (0 if cond is None else cond), 16, 6)
    torch.testing.assert_close(identity(x, step), x, rtol=0, atol=1e-5)
    torch.testing.assert_close(identity(x, step, cond=x), 2 * x, rtol=0, atol=1e-5)  # cond is tiled alike
    weights = torch.zeros(40, 37, dtype=torch.float64)  # normalised blending weights sum to 1
    windows = tiled.windows(40, 37)
    for rows, cols, w in windows:
        weights[rows, cols] += w
    assert torch.all(weights > 0)  # every pixel covered
    total = torch.zeros(40, 37, dtype=torch.float64)
    for rows, cols, w in windows:
        total[rows, cols] += w / weights[rows, cols]
    torch.testing.assert_close(total, torch.ones_like(total))


class PointwiseNet(nn.Module):
    """A network without spatial context: tiling must then not change anything (no seams)."""

    config = {"channel_mult": (1, 1, 1)}

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        perturb(self, 0.5, seed=3)

    def forward(self, x, t):
        return torch.tanh(self.conv(x) * (1 + t[:, None, None, None] / 100))


def pointwise_restorer(**task):
    return bridge_restorer(PointwiseNet(), **task)


@pytest.mark.parametrize("ot_ode", [True, False])
def test_tiled_restoration_has_no_seams(ot_ode):
    restorer = pointwise_restorer()
    x1 = torch.rand(2, 3, 43, 37) * 2 - 1
    outs = [restorer.restore(x1, nfe=4, ot_ode=ot_ode, tile=tile, tile_overlap=4,
                             generator=torch.Generator().manual_seed(5)) for tile in (0, 16, None)]
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(outs[2], outs[0], rtol=0, atol=1e-5)
    assert outs[0].shape == x1.shape and not torch.allclose(outs[0], x1, atol=1e-3)


def test_restore_validates_arguments():
    restorer = pointwise_restorer()
    x = torch.zeros(1, 3, 16, 16)
    for kwargs, text in [({"nfe": 0}, "nfe"), ({"nfe": 100}, "nfe"), ({"tile": 10}, "multiple"),
                         ({"tile": 16, "tile_overlap": 16}, "tile_overlap"),
                         ({"mask": torch.zeros(1, 1, 8, 8)}, "mask")]:
        with pytest.raises(ValueError, match=text):
            restorer.restore(x, **kwargs)
    with pytest.raises(ValueError, match="images"):
        restorer.restore(torch.zeros(3, 16, 16))


class CondNet(PointwiseNet):
    """Pointwise net on cat([xt, cond]) that records the conditioning it sees."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, t):
        self.seen.append(x[:, 3:].clone())
        return super().forward(x[:, :3] + 0.5 * x[:, 3:], t)


def test_cond_x1_and_add_x1_noise_follow_the_authors_order():
    net = CondNet()
    restorer = bridge_restorer(net, cond_x1=True, add_x1_noise=True)
    bridge, denoiser = restorer.kind.schedule, restorer.denoiser
    x1 = torch.rand(1, 3, 16, 16) * 2 - 1
    out = restorer.restore(x1, nfe=3, generator=torch.Generator().manual_seed(9), precision="fp32")
    assert len(net.seen) == 3 and all(torch.equal(c, x1) for c in net.seen)  # cond = the degraded input
    g = torch.Generator().manual_seed(9)
    noisy = x1 + torch.randn(x1.shape, generator=g)  # then x1 += N(0, I), seeded
    expected = bridge.sample(denoiser.configured(cond=x1), noisy, 3, generator=g)
    torch.testing.assert_close(out, expected)


def test_n_samples_naming_and_diversity(tmp_path, capsys):
    run = write_run(tmp_path / "run", task={"ot_ode": False})
    (tmp_path / "in").mkdir()
    random_image(16, 16, 0).save(tmp_path / "in" / "cat.png")
    code, out, err = run_cli(capsys, f"ckpt={run}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}",
                             "n_samples=3", "nfe=2")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["cat_s0.png", "cat_s1.png", "cat_s2.png"]
    a, b = rgb(tmp_path / "out" / "cat_s0.png"), rgb(tmp_path / "out" / "cat_s1.png")
    assert np.abs(a.astype(int) - b).mean() > 1  # stochastic sampler: different restorations


@pytest.mark.parametrize("fmt", ["gif", "png"])
def test_save_traj_has_one_frame_per_logged_step(tmp_path, capsys, fmt):
    run = write_run(tmp_path / "run")
    (tmp_path / "in" / "sub").mkdir(parents=True)
    random_image(19, 23, 0).save(tmp_path / "in" / "sub" / "x.png")
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, f"ckpt={run}", f"input={tmp_path / 'in'}", f"output={out_dir}", "nfe=5",
                           "save_traj=true", "traj_frames=3", f"traj_format={fmt}")
    assert code == 0, err
    traj = tmp_path / "out_traj" / "sub" / f"x.{fmt}"
    assert traj.is_file() and not any(p.suffix == ".gif" for p in out_dir.rglob("*"))
    with Image.open(traj) as image:
        if fmt == "gif":
            assert image.n_frames == 3 and image.size == (2 * 23, 19)  # [state | x0 prediction]
            image.seek(image.n_frames - 1)
            last = np.asarray(image.convert("RGB"))[:, :23]
            # the last frame's state is the restoration (up to the GIF palette)
            assert np.abs(last.astype(int) - rgb(out_dir / "sub" / "x.png")).mean() < 12
        else:
            assert image.size == (3 * 23, 2 * 19)
            strip = np.asarray(image.convert("RGB"))
            np.testing.assert_array_equal(strip[:19, -23:], rgb(out_dir / "sub" / "x.png"))


def test_trajectory_log_steps_match_the_authors():
    restorer = pointwise_restorer()
    assert log_steps(restorer, restorer.options(nfe=6), 4) == [restorer.kind.schedule.timesteps(6)[i]
                                                               for i in (0, 2, 3, 5)]
    assert log_steps(restorer, restorer.options(nfe=2), 10) == [0, 50]


# ---------------------------------------------------------------------------- checkpoints and the API
def test_load_api_and_ema_versus_raw_weights(tmp_path):
    run = write_run(tmp_path / "run")
    raw = torch.load(run / "latest.pt", weights_only=True)
    ema_r, raw_r = i2sb.load(run), i2sb.load(run / "latest.pt", use_ema=False)
    for restorer, state in ((ema_r, raw["ema"]["state_dict"]), (raw_r, raw["model"])):
        for key, value in restorer.denoiser.net.state_dict().items():
            assert torch.equal(value, state[key]), key
    assert ema_r.task.degradation == "jpeg5" and ema_r.task.n_steps == 100
    assert ema_r.image_size == 16 and ema_r.default_nfe == 3 and ema_r.kind.schedule.n_steps == 100
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert not torch.allclose(ema_r.restore(x), raw_r.restore(x), atol=1e-4)  # the weights differ
    same = write_run(tmp_path / "same", ema_shift=0.0)  # EMA equal to raw: identical restorations
    torch.testing.assert_close(i2sb.load(same).restore(x), i2sb.load(same, use_ema=False).restore(x))
    with pytest.raises(ValueError, match="unknown model key 'nonsense'"):
        i2sb.load(run, nonsense=1)


def test_reduced_precision_autocast_stays_close(tmp_path):
    restorer = i2sb.load(write_run(tmp_path / "run"))
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    full = restorer.restore(x, nfe=2, precision="fp32")
    half = restorer.restore(x, nfe=2, precision="bf16")
    assert half.dtype == torch.float32 and 0 < (half - full).abs().max() < 0.1


def test_model_overrides_reach_the_network(tmp_path):
    run = write_run(tmp_path / "run", model_channels=32, num_head_channels=16)
    heads = [m.num_heads for m in i2sb.load(run).denoiser.net.modules() if hasattr(m, "num_heads")]
    over = [m.num_heads for m in i2sb.load(run, num_head_channels=32).denoiser.net.modules() if hasattr(m, "num_heads")]
    assert set(heads) == {2} and set(over) == {1}


def test_run_directory_written_by_training(tmp_path, capsys):
    cfg = train_config()
    cfg.update(run_dir=str(tmp_path / "run"), device="cpu", logging={"progress": False})
    cfg["trainer"].update(eval_batch=2, max_steps=1)
    train(cfg)
    (tmp_path / "in").mkdir()
    random_image(16, 16, 0).save(tmp_path / "in" / "a.png")
    code, out, err = run_cli(capsys, f"ckpt={tmp_path / 'run'}", f"input={tmp_path / 'in'}",
                             f"output={tmp_path / 'out'}")
    assert code == 0, err
    restorer = i2sb.load(tmp_path / "run")  # its validation tried NFE 1, 2, 5 and eval_nfe 3
    assert [s.nfe for s in restorer.validation.scores] == [1, 2, 3, 5] and restorer.fallback_nfe == 3
    best = max(restorer.validation.scores, key=lambda s: s.psnr)
    assert restorer.default_nfe == best.nfe or abs(best.psnr - restorer.validation.scores[0].psnr) < 0.01
    assert f"nfe={restorer.default_nfe}: highest PSNR in the model's validation (step 1, 2 images: NFE 1 " in out
    pixels = torch.from_numpy(rgb(tmp_path / "in" / "a.png").copy()).permute(2, 0, 1)[None].float()
    restored = restorer.restore(pixels / 127.5 - 1)  # the default NFE, as i2sb-sample chose it
    expected = ((restored[0].permute(1, 2, 0) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    np.testing.assert_array_equal(rgb(tmp_path / "out" / "a.png"), expected)


# ---------------------------------------------------------------------------- inpainting
def write_pair(folder: Path, name: str, image: Image.Image, mask: np.ndarray | None, masks: Path) -> None:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    image.save(folder / name)
    if mask is not None:
        (masks / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save((masks / name).with_suffix(".png"))


def test_inpainting_keeps_the_known_region_and_reports_a_missing_mask(tmp_path, capsys):
    run = write_run(tmp_path / "run", task={"degradation": "inpaint_center", "beta_max": 1.0})
    hole = np.zeros((16, 20), np.uint8)
    hole[4:12, 5:15] = 255
    src, masks = tmp_path / "in", tmp_path / "masks"
    write_pair(src, "a/one.jpg", random_image(16, 20, 0), hole, masks)
    write_pair(src, "two.png", random_image(16, 20, 1), None, masks)  # no mask for this one
    code, out, err = run_cli(capsys, f"ckpt={run}", f"input={src}", f"output={tmp_path / 'out'}", f"mask={masks}")
    assert code == 1
    assert "two.png: mask missing" in err and "failed 1" in out and "restored 1 image(s)" in out
    restored, given = rgb(tmp_path / "out" / "a" / "one.png"), rgb(src / "a" / "one.jpg")
    known = hole == 0
    np.testing.assert_array_equal(restored[known], given[known])  # OT-ODE: the known region is kept exactly
    assert np.abs(restored[~known].astype(int) - given[~known]).mean() > 5
    assert not (tmp_path / "out" / "two.png").exists()
    code, _, err = run_cli(capsys, f"ckpt={run}", f"input={src}", f"output={tmp_path / 'o2'}")
    assert code == 2 and "mask=DIR" in err


# ---------------------------------------------------------------------------- bad input
@pytest.fixture
def folder(tmp_path):
    run = write_run(tmp_path / "run")
    (tmp_path / "in").mkdir()
    for i in range(3):
        random_image(16, 16, i).save(tmp_path / "in" / f"img{i}.png")
    return tmp_path, run


def test_missing_and_unreadable_checkpoints(folder, capsys):
    tmp, run = folder
    args = [f"input={tmp / 'in'}", f"output={tmp / 'out'}"]
    code, _, err = run_cli(capsys, f"ckpt={tmp / 'nope'}", *args)
    assert code == 2 and f"{tmp / 'nope'}: checkpoint not found" in err and len(err.strip().splitlines()) == 1
    (tmp / "empty_run").mkdir()
    code, _, err = run_cli(capsys, f"ckpt={tmp / 'empty_run'}", *args)
    assert code == 2 and "no latest.pt" in err
    (tmp / "bad.pt").write_bytes(b"this is not a checkpoint")
    code, _, err = run_cli(capsys, f"ckpt={tmp / 'bad.pt'}", *args)
    assert code == 2 and f"{tmp / 'bad.pt'}: not a checkpoint (not a zip/pickle file)" in err
    torch.save({"weights": torch.zeros(1)}, tmp / "other.pt")
    code, _, err = run_cli(capsys, f"ckpt={tmp / 'other.pt'}", *args)
    assert code == 2 and "not an i2sb checkpoint" in err
    assert not (tmp / "out").exists()


def test_bad_folders_and_keys(folder, capsys):
    tmp, run = folder
    (tmp / "empty").mkdir()
    cases = [
        ([f"input={tmp / 'empty'}", f"output={tmp / 'out'}"], "no images found"),
        ([f"input={tmp / 'missing'}", f"output={tmp / 'out'}"], "no such file"),
        ([f"input={tmp / 'in'}", f"output={tmp / 'in'}"], "is inside input"),
        ([f"input={tmp / 'in'}", f"output={tmp / 'in' / 'restored'}"], "is inside input"),
        ([f"input={tmp / 'in'}", f"output={tmp / 'out'}", "nfe=0"], "nfe"),
        ([f"input={tmp / 'in'}", f"output={tmp / 'out'}", "nfe=100"], "must be in 1..99"),
        ([f"input={tmp / 'in'}", f"output={tmp / 'out'}", "tile=5"], "multiple"),
        ([f"input={tmp / 'in'}", f"output={tmp / 'out'}", "mask=/no/such/masks"], "mask folder not found"),
        ([f"input={tmp / 'in'}", f"output={tmp / 'out'}", "precision=fp8"], "precision"),
        ([f"input={tmp / 'in'}", f"output={tmp / 'out'}", "model.bogus=1"], "bogus"),
        ([f"input={tmp / 'in'}"], "output"),
        ([f"input={tmp / 'in'}", f"output={tmp / 'in' / 'img0.png'}"], "not a folder"),
        ([f"input={tmp / 'in' / 'img0.png'}", f"output={tmp / 'in' / 'img1.png'}"], "not a folder"),
        ([f"input={tmp / 'in'}", f"output={tmp / 'out'}", "device=cuda:99"], "device"),
    ]
    for args, text in cases:
        code, out, err = run_cli(capsys, f"ckpt={run}", *args)
        assert code == 2, (args, err)
        assert text in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp / "out").exists()  # every check ran before any work


def test_unreadable_image_among_good_ones(folder, capsys):
    tmp, run = folder
    (tmp / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    truncated = (tmp / "in" / "img0.png").read_bytes()
    (tmp / "in" / "truncated.png").write_bytes(truncated[: len(truncated) // 2])
    code, out, err = run_cli(capsys, f"ckpt={run}", f"input={tmp / 'in'}", f"output={tmp / 'out'}")
    assert code == 1
    assert "broken.png: cannot read image" in err and "truncated.png: cannot read image" in err
    assert sorted(p.name for p in (tmp / "out").iterdir()) == ["img0.png", "img1.png", "img2.png"]
    assert "restored 3 image(s)" in out and "failed 2" in out


def test_outputs_are_replaced_atomically(folder, capsys, monkeypatch):
    tmp, run = folder
    (tmp / "out").mkdir()
    old = b"previous restoration"
    (tmp / "out" / "img1.png").write_bytes(old)
    real_save = Image.Image.save

    def flaky_save(self, fp, *args, **kwargs):  # img1's write dies half-way
        if hasattr(fp, "name") and "img1" in str(fp.name):
            fp.write(b"\x89PNG half")
            raise OSError("disk full")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", flaky_save)
    code, out, err = run_cli(capsys, f"ckpt={run}", f"input={tmp / 'in'}", f"output={tmp / 'out'}", "overwrite=true")
    assert code == 1 and "img1.png: cannot write: disk full" in err
    assert (tmp / "out" / "img1.png").read_bytes() == old  # never half-written
    assert sorted(p.name for p in (tmp / "out").iterdir()) == ["img0.png", "img1.png", "img2.png"]  # no temp files
    monkeypatch.setattr(Image.Image, "save", real_save)
    code, out, _ = run_cli(capsys, f"ckpt={run}", f"input={tmp / 'in'}", f"output={tmp / 'out'}", "skip_existing=true")
    assert code == 0 and "restored 0 image(s)" in out and "skipped 3" in out


def test_colliding_output_names_fail_the_second(folder, capsys):
    tmp, run = folder
    random_image(16, 16, 7).save(tmp / "in" / "img0.jpg")
    code, out, err = run_cli(capsys, f"ckpt={run}", f"input={tmp / 'in'}", f"output={tmp / 'out'}")
    assert code == 1 and "would overwrite the restoration of" in err and "restored 3 image(s)" in out


# ---------------------------------------------------------------------------- reproducible outputs
def test_an_image_restores_to_the_same_bits_alone_in_a_folder_with_any_batch_and_through_the_api(tmp_path, capsys):
    """Per-image generators from (seed, relative path, sample): batch composition changes nothing."""
    from i2sb.utils.seeds import image_generator

    run = write_run(tmp_path / "run", task={"ot_ode": False, "degradation": "inpaint_center", "beta_max": 1.0})
    folder, masks = tmp_path / "in", tmp_path / "masks"
    hole = np.zeros((16, 16), np.uint8)
    hole[4:12, 4:12] = 255
    for i, name in enumerate(["a.png", "b.png", "sub/c.png", "d.png", "e.png"]):
        write_pair(folder, name, random_image(16, 16, i), hole, masks)
    single = tmp_path / "single"
    write_pair(single, "sub/c.png", random_image(16, 16, 2), None, masks)
    outputs = {}
    for label, source, extra in [("folder_b1", folder, ["batch_size=1"]), ("folder_b4", folder, ["batch_size=4"]),
                                 ("alone", single, [])]:
        code, _, err = run_cli(capsys, f"ckpt={run}", f"input={source}", f"mask={masks}", "nfe=3", "seed=7",
                               f"output={tmp_path / label}", "n_samples=2", "precision=fp32", *extra)
        assert code == 0, err
        outputs[label] = [rgb(tmp_path / label / "sub" / f"c_s{k}.png") for k in (0, 1)]
    for label in ("folder_b4", "alone"):
        for k in (0, 1):
            np.testing.assert_array_equal(outputs[label][k], outputs["folder_b1"][k], err_msg=f"{label} s{k}")
    assert np.abs(outputs["alone"][0].astype(int) - outputs["alone"][1]).max() > 0  # the samples differ
    x1 = torch.from_numpy(rgb(folder / "sub" / "c.png").copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    mask = torch.from_numpy(hole / 255.0).float()[None, None]
    # fp32: bf16 kernels may round differently for another batch size on some CPUs (AVX512-BF16 without AMX)
    api = i2sb.load(run).restore(x1, mask=mask, nfe=3, generator=[image_generator(7, "sub/c.png", 1)], precision="fp32")
    expected = ((api[0].permute(1, 2, 0) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    np.testing.assert_array_equal(outputs["alone"][1], expected)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_restore_gives_the_same_bits_for_any_memory_layout_of_its_input(tmp_path, precision):
    """``load_image(path)[None]`` is a view with HWC strides; i2sb-sample stacks images into a contiguous batch. CPU
    kernels round differently per layout (fp32 too), so the restorer makes its input contiguous: one result."""
    from i2sb.utils.seeds import image_generator

    restorer = i2sb.load(write_run(tmp_path / "run", task={"ot_ode": False}), device="cpu")
    hwc = torch.rand(20, 28, 3) * 2 - 1
    view = hwc.permute(2, 0, 1)[None]  # (1, 3, 20, 28), not contiguous
    options = restorer.options(nfe=2, precision=precision)
    outs = [restorer.restore(x, generator=[image_generator(3, "a.png")], options=options)
            for x in (view, view.contiguous())]
    assert not view.is_contiguous() and torch.equal(outs[0], outs[1])


def test_a_single_file_input_may_not_write_into_its_folder(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    photos = tmp_path / "photos"
    photos.mkdir()
    random_image(16, 16, 0).save(photos / "photo.jpg")
    random_image(16, 16, 1).save(photos / "photo.png")  # a different image that the output would replace
    before = (photos / "photo.png").read_bytes()
    for output in (photos, photos / "restored"):
        code, _, err = run_cli(capsys, f"ckpt={run}", f"input={photos / 'photo.jpg'}", f"output={output}")
        assert code == 2 and "inside the folder of input=" in err and err.count("\n") == 1, err
    assert (photos / "photo.png").read_bytes() == before and sorted(p.name for p in photos.iterdir()) == [
        "photo.jpg", "photo.png"]
    code, _, err = run_cli(capsys, f"ckpt={run}", f"input={photos / 'photo.jpg'}", f"output={tmp_path / 'out'}")
    assert code == 0 and (tmp_path / "out" / "photo.png").is_file(), err


def test_images_over_max_pixels_fail_one_by_one_without_warnings(tmp_path, capsys):
    from test_data import forged_png

    run = write_run(tmp_path / "run")
    (tmp_path / "in").mkdir()
    random_image(16, 16, 0).save(tmp_path / "in" / "ok.png")
    forged_png(tmp_path / "in" / "bomb.png", 20_000, 10_000)  # 200 megapixels claimed by the header
    random_image(24, 16, 1).save(tmp_path / "in" / "wide.png")
    code, out, err = run_cli(capsys, f"ckpt={run}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}")
    assert code == 1 and "restored 2 image(s)" in out
    assert err.count("\n") == 1 and "bomb.png: 20000x10000 is 200.0 megapixels, over max_pixels=178956970" in err
    assert "Warning" not in err and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok.png", "wide.png"]
    code, out, err = run_cli(capsys, f"ckpt={run}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'o2'}",
                             "max_pixels=300")
    assert code == 1 and "restored 1 image(s)" in out and err.count("max_pixels=300") == 2


def test_sr_checkpoints_upsample_low_resolution_photos_as_training_did(tmp_path, capsys):
    """An sr4x checkpoint given a low-resolution photo restores a 4x larger image; upscale=false takes x1."""
    from i2sb import degrade
    from i2sb.utils.seeds import image_generator

    run = write_run(tmp_path / "run", task={"degradation": "sr4x_pool", "ot_ode": False})
    (tmp_path / "lr").mkdir()
    random_image(8, 12, 0).save(tmp_path / "lr" / "photo.png")
    code, out, err = run_cli(capsys, f"ckpt={run}", f"input={tmp_path / 'lr'}", f"output={tmp_path / 'out'}", "nfe=3")
    assert code == 0, err
    restored = rgb(tmp_path / "out" / "photo.png")
    assert restored.shape == (32, 48, 3)
    y = torch.from_numpy(rgb(tmp_path / "lr" / "photo.png").copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    x1 = degrade.upsample_measurement("sr4x_pool", y)
    assert x1.shape == (1, 3, 32, 48) and torch.equal(x1[..., ::4, ::4], y)  # nearest, as the authors' Upsample
    api = i2sb.load(run).restore(x1, nfe=3, generator=[image_generator(0, "photo.png")])
    np.testing.assert_array_equal(restored, ((api[0].permute(1, 2, 0) + 1) * 127.5 + 0.5).clamp(0, 255)
                                  .to(torch.uint8).numpy())
    code, _, err = run_cli(capsys, f"ckpt={run}", f"input={tmp_path / 'lr'}", f"output={tmp_path / 'same'}",
                           "nfe=3", "upscale=false")
    assert code == 0 and rgb(tmp_path / "same" / "photo.png").shape == (8, 12, 3), err
    jpeg = write_run(tmp_path / "jpeg")
    code, _, err = run_cli(capsys, f"ckpt={jpeg}", f"input={tmp_path / 'lr'}", f"output={tmp_path / 'x'}",
                           "upscale=true")
    assert code == 2 and "error: upscale: " in err and "not super-resolution" in err
