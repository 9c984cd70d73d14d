"""Degradations of any image size (H, W): agreement with the square operators, SR measurement and lift,
JPEG padding, masks, and one-line errors for sizes a task cannot take."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from i2sb import degrade
from i2sb.degrade.freeform import BrushStrokeMasks
from i2sb.degrade.linear import truncated_factor
from i2sb.degrade.sr import bicubic_matrix

FIXTURES = Path(__file__).parent / "fixtures"
SEPARABLE_TASKS = ["sr4x_pool", "sr4x_bicubic", "blur_uni_conv", "blur_gauss_conv", "inpaint_center", "colorize"]


def images(batch: int = 2, height: int = 32, width: int = 48, seed: int = 0) -> torch.Tensor:
    """Smooth random (batch, 3, height, width) images in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, max(1, height // 4), max(1, width // 4), generator=g) * 2 - 1
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def run(deg, x0, seed=0):
    return deg(x0, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("task", sorted(degrade.TASKS))
def test_a_square_pair_is_the_int_size_bit_for_bit(task):
    x0 = images(2, 32, 32)
    by_int, by_pair = degrade.build(task, 32), degrade.build(task, (32, 32))
    assert by_pair.image_size == 32 and by_pair.size == (32, 32)
    (a, mask_a), (b, mask_b) = run(by_int, x0), run(by_pair, x0)
    assert torch.equal(a, b) and (mask_a is None or torch.equal(mask_a, mask_b))


@pytest.mark.parametrize("task", sorted(degrade.TASKS))
def test_every_task_takes_a_non_square_image(task):
    deg = degrade.build_any_size(task, (32, 48))
    assert deg.size == (32, 48) and deg.image_size == (32, 48)
    x0 = images(2, 32, 48)
    x1, mask = run(deg, x0)
    assert x1.shape == x0.shape and x1.isfinite().all() and x1.abs().max() < 2.5
    if deg.needs_mask:
        assert mask.shape == (2, 1, 32, 48) and set(mask.unique().tolist()) <= {0.0, 1.0}
        torch.testing.assert_close(x1, torch.where(mask.bool(), torch.ones_like(x0), x0))
    with pytest.raises(ValueError, match=r"expected a floating \(B, 3, 32, 48\)"):
        deg(images(1, 48, 32))


@pytest.mark.parametrize("task", SEPARABLE_TASKS)
def test_rows_and_columns_are_handled_alike(task):
    """An H x W operator on x equals the W x H operator on x transposed, transposed back."""
    x0 = images(2, 32, 48)
    wide, _ = run(degrade.build(task, (32, 48)), x0)
    tall, _ = run(degrade.build(task, (48, 32)), x0.mT.contiguous())
    torch.testing.assert_close(wide, tall.mT, atol=1e-6, rtol=0)


def test_non_square_sr_uses_the_square_operators_1d_factors():
    x0 = images(2, 32, 48).double()
    y = degrade.build("sr4x_bicubic", (32, 48)).operator().A(x0)
    rows, cols = (truncated_factor(bicubic_matrix(n, 4)) for n in (32, 48))
    torch.testing.assert_close(y, rows @ x0 @ cols.T, atol=1e-12, rtol=0)
    pooled = degrade.build("sr4x_pool", (32, 48)).operator().A(x0)
    torch.testing.assert_close(pooled, F.avg_pool2d(x0, 4), atol=1e-12, rtol=0)


@pytest.mark.parametrize("task", ["sr4x_pool", "sr4x_bicubic"])
@pytest.mark.parametrize("size", [(32, 48), (20, 12), (64, 64)])
def test_sr_measurement_is_the_low_resolution_image_and_its_lift_is_x1(task, size):
    height, width = size
    deg = degrade.build(task, size)
    x0 = images(2, height, width)
    x1, _ = deg(x0)
    y, mask = deg.measure(x0)
    assert mask is None and y.shape == (2, 3, height // 4, width // 4) and deg.scale == 4
    assert deg.measurement_size == (height // 4, width // 4)
    torch.testing.assert_close(y, deg.operator().A(x0), atol=0, rtol=0)
    assert torch.equal(deg.lift_image(y), x1)
    assert torch.equal(degrade.upsample_measurement(task, y), x1)  # built for the size of y x 4
    assert torch.equal(x1, F.interpolate(y, scale_factor=4, mode="nearest"))  # the authors' Upsample
    op = deg.operator()
    torch.testing.assert_close(op.lift(op.A(x0.double())), x1.double(), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=rf"expected a floating \(B, 3, {height // 4}, {width // 4}\)"):
        deg.lift_image(x0)


def test_sr_measurement_keeps_the_dtype_and_lift_is_exact_in_float64():
    deg = degrade.build("sr4x_bicubic", (16, 32))
    x0 = images(1, 16, 32).double()
    y, _ = deg.measure(x0)
    assert y.dtype == torch.float64 and torch.equal(deg.lift_image(y), deg(x0)[0])
    half, _ = deg.measure(x0.half())
    assert half.dtype == torch.float16


@pytest.mark.parametrize("task", ["jpeg5", "jpeg_libjpeg", "blur_uni", "inpaint_center", "colorize"])
def test_other_tasks_store_x1_itself(task):
    deg = degrade.build_any_size(task, (32, 48))
    x0 = images(1, 32, 48)
    y, mask = deg.measure(x0, torch.Generator().manual_seed(0))
    x1, mask1 = deg(x0, torch.Generator().manual_seed(0))
    assert deg.scale == 1 and torch.equal(y, x1) and torch.equal(deg.lift_image(y), y)
    assert degrade.upsample_measurement(task, y) is y and degrade.measurement_scale(task) == 1


def test_upsample_measurement_errors():
    with pytest.raises(ValueError, match="unknown degradation task 'sr8x'"):
        degrade.upsample_measurement("sr8x", torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"expected a \(B, 3, h, w\) measurement"):
        degrade.upsample_measurement("sr4x_pool", torch.zeros(3, 4, 4))
    assert degrade.measurement_scale("sr4x_pool") == degrade.measurement_scale("sr4x_bicubic") == 4


@pytest.mark.parametrize("task", ["sr4x_pool", "sr4x_bicubic", "blur_uni", "blur_gauss", "blur_uni_conv",
                                  "blur_gauss_conv", "inpaint_freeform1020", "colorize"])
def test_non_square_operators_lift_and_pseudo_inverse(task):
    deg = degrade.build(task, (24, 40))
    x0 = images(2, 24, 40).double()
    x1, mask = run(deg, x0, 1)
    op = deg.operator(mask)
    torch.testing.assert_close(op.lift(op.A(x0)), x1, atol=1e-12, rtol=0)
    if task.endswith("_conv"):
        op = degrade.build(task, (24, 40), pinv_cutoff=0).operator()
    tol = 1e-4 if task in ("blur_uni", "blur_gauss") else 1e-8
    y = op.A(images(2, 24, 40, seed=5).double())
    torch.testing.assert_close(op.A(op.A_pinv(y)), y, atol=tol, rtol=0)


# --- JPEG ---


def test_ddrm_jpeg_needs_multiples_of_16_unless_padded():
    with pytest.raises(ValueError, match=r"jpeg5: image_size must be a multiple of 16, got 53x37 .*pad=True"):
        degrade.build("jpeg5", (37, 53))
    assert degrade.build("jpeg5", (37, 53), pad=True).coded_size == (48, 64)
    assert degrade.build_any_size("jpeg10", (37, 53)).pad  # pads unless told otherwise
    with pytest.raises(ValueError, match="multiple of 16"):
        degrade.build_any_size("jpeg10", (37, 53), pad=False)


def test_jpeg_of_a_non_square_image_is_the_square_jpeg_cropped():
    """JPEG codes 16 x 16 macroblocks independently: a 48 x 64 image comes out as the top 48 rows of the 64 x 64
    operator (checked against the authors' code by the fixtures)."""
    x0 = torch.from_numpy(np.load(FIXTURES / "degrade_jpeg.npz")["x0_uint8"]).float() / 127.5 - 1
    square, _ = degrade.build("jpeg5", 64)(x0)
    wide, _ = degrade.build("jpeg5", (48, 64))(x0[..., :48, :].contiguous())
    torch.testing.assert_close(wide, square[..., :48, :], atol=1e-5, rtol=0)


def test_padded_jpeg_repeats_the_edge_like_a_codec():
    x0 = torch.from_numpy(np.load(FIXTURES / "degrade_jpeg.npz")["x0_uint8"]).float() / 127.5 - 1
    odd = x0[..., :37, :53].contiguous()
    x1, _ = degrade.build_any_size("jpeg5", (37, 53))(odd)
    padded = F.pad(odd, (0, 64 - 53, 0, 64 - 37), mode="replicate")
    reference, _ = degrade.build("jpeg5", 64)(padded)
    assert x1.shape == odd.shape
    torch.testing.assert_close(x1, reference[..., :37, :53], atol=1e-5, rtol=0)
    edge = (x1 - odd)[..., 32:, :].abs().mean() / (x1 - odd)[..., :32, :].abs().mean()
    assert edge < 2  # the last, partial macroblocks are coded like the others (no garbage colours)


# --- masks ---


def test_center_box_scales_with_each_side():
    _, mask = degrade.build("inpaint_center", (30, 50))(images(1, 30, 50))
    expected = torch.zeros(1, 1, 30, 50)
    expected[..., 7:22, 12:37] = 1  # (h//4, w//4, h//2, w//2)
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("size", [(40, 96), (96, 40), (33, 57)])
def test_generated_freeform_masks_of_any_size(size, monkeypatch):
    monkeypatch.delenv("I2SB_FREEFORM_MASKS", raising=False)
    deg = degrade.build("inpaint_freeform2030", size)
    _, masks = deg(torch.zeros(16, 3, *size), generator=torch.Generator().manual_seed(0))
    ratios = masks.mean((1, 2, 3))
    assert masks.shape == (16, 1, *size) and ratios.min() >= 0.2 and ratios.max() <= 0.3
    columns, rows = masks.amax((0, 1, 2)), masks.amax((0, 1, 3))
    assert columns[-size[1] // 4:].any() and rows[-size[0] // 4:].any()  # strokes reach the far sides too
    sampler = BrushStrokeMasks(size, (0.1, 0.2))
    a, b = (sampler.sample(2, torch.device("cpu"), torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(a, b)


def test_palette_masks_are_resized_to_any_size(tmp_path):
    masks = np.zeros((1, 256, 256), np.uint8)
    masks[0, :128, :64] = 1
    path = tmp_path / "masks.npz"
    np.savez(path, **{"10-20% freeform": np.packbits(masks.reshape(-1))})
    _, drawn = degrade.build("inpaint_freeform1020", (32, 64), mask_file=str(path))(torch.zeros(1, 3, 32, 64))
    expected = torch.zeros(32, 64)
    expected[:16, :16] = 1
    assert torch.equal(drawn[0, 0], expected)


# --- sizes a task cannot take ---


@pytest.mark.parametrize(
    "task,size,message",
    [
        ("sr4x_pool", (30, 32), "sr4x_pool: image_size 32x30 (width x height) is not a multiple of the factor 4"),
        ("sr4x_bicubic", 30, "sr4x_bicubic: image_size 30 is not a multiple of the factor 4"),
        ("blur_uni", (8, 64), "blur_uni: image_size 64x8 (width x height) is smaller than the kernel (9 taps)"),
        ("blur_gauss_conv", (64, 4), "is smaller than the kernel (5 taps)"),
        ("colorize", (0, 4), "colorize: image_size must be a positive int or a (height, width) pair, got (0, 4)"),
        ("colorize", (4, 4, 3), "a (height, width) pair"),
        ("colorize", True, "a (height, width) pair"),
    ],
)
def test_sizes_a_task_cannot_take_are_one_line_errors(task, size, message):
    with pytest.raises(ValueError) as err:
        degrade.build_any_size(task, size)
    assert message in str(err.value) and "\n" not in str(err.value)
