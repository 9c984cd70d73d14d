"""Degradations: registry, shapes/dtypes, exactness vs the authors' corruptions, operators, masks."""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate1d

from i2sb import degrade
from i2sb.degrade.blur import ddrm_spectrum, gaussian_kernel, uniform_kernel
from i2sb.degrade.freeform import BrushStrokeMasks
from i2sb.degrade.jpeg import dct_rows, quantization_tables
from i2sb.degrade.sr import bicubic_taps

FIXTURES = Path(__file__).parent / "fixtures"
PAPER_TASKS = [
    "jpeg5",
    "jpeg10",
    "sr4x_pool",
    "sr4x_bicubic",
    "blur_uni",
    "blur_gauss",
    "inpaint_center",
    "inpaint_freeform1020",
    "inpaint_freeform2030",
    "colorize",
]
ALL_TASKS = PAPER_TASKS + ["jpeg_libjpeg", "blur_uni_conv", "blur_gauss_conv"]
LINEAR_TASKS = [
    "sr4x_pool",
    "sr4x_bicubic",
    "blur_uni",
    "blur_gauss",
    "blur_uni_conv",
    "blur_gauss_conv",
    "inpaint_center",
    "inpaint_freeform1020",
    "inpaint_freeform2030",
    "colorize",
]


def images(batch: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [-1, 1] (noise upsampled, so JPEG/blur behave like on photos)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size // 4, size // 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def test_registry_names_and_unknown_task_error():
    assert set(ALL_TASKS) | {"jpeg"} == set(degrade.TASKS)
    with pytest.raises(ValueError, match="unknown degradation task 'jpeg-5'; valid tasks: jpeg, jpeg5") as err:
        degrade.build("jpeg-5", 32)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("task", ALL_TASKS)
def test_every_task_shape_dtype_range_and_determinism(task):
    deg = degrade.build(task, 32)
    x0 = images()
    x1, mask = deg(x0, generator=torch.Generator().manual_seed(3))
    again, mask_again = deg(x0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(x0, images())  # the input is never modified in place
    assert deg.name == task and x1.shape == x0.shape and x1.dtype == x0.dtype and x1.device == x0.device
    assert torch.equal(x1, again) and x1.isfinite().all()
    assert x1.abs().max() < 2.5  # DDRM-JPEG does not clip; everything stays near [-1, 1]
    assert deg.needs_mask == task.startswith("inpaint") == (mask is not None)
    # what the registry says about a task without building it is what the built degradation does
    assert isinstance(deg, degrade.degradation_class(task)) and degrade.needs_mask(task) == (mask is not None)
    assert degrade.measurement_scale(task) == deg.scale == x1.shape[-1] // deg.measure(x0)[0].shape[-1]
    assert deg.is_linear == (task in LINEAR_TASKS)
    if mask is not None:
        assert mask.shape == (2, 1, 32, 32) and torch.equal(mask, mask_again)
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        torch.testing.assert_close(x1, torch.where(mask.bool(), torch.ones_like(x0), x0))


@pytest.mark.parametrize("task", ["jpeg10", "sr4x_bicubic", "blur_uni", "inpaint_freeform1020", "colorize"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes_are_computed_in_float32_and_cast_back(task, dtype):
    deg = degrade.build(task, 32)
    x0 = images()
    reference, _ = deg(x0, generator=torch.Generator().manual_seed(0))
    x1, mask = deg(x0.to(dtype), generator=torch.Generator().manual_seed(0))
    assert x1.dtype == dtype and (mask is None or mask.dtype == dtype)
    tol = {torch.float16: 2e-2, torch.bfloat16: 0.1, torch.float64: 1e-5}[dtype]
    if task != "jpeg10":  # a rounded input may flip a JPEG coefficient; the others are continuous
        torch.testing.assert_close(x1.float(), reference, atol=tol, rtol=0)


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match=r"expected a floating \(B, 3, 32, 32\)"):
        degrade.build("sr4x_pool", 32)(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="multiple of 16"):
        degrade.build("jpeg5", 40)
    with pytest.raises(ValueError, match="quality"):
        degrade.build("jpeg", 32, quality=0)
    with pytest.raises(ValueError, match="not a linear degradation"):
        degrade.build("jpeg10", 32).operator()
    with pytest.raises(ValueError, match="needs the mask"):
        degrade.build("inpaint_freeform1020", 32).operator()


# --- exactness against the authors' corruption/ code (fixtures: see tests/fixtures/README.md) ---


@pytest.mark.parametrize(
    "fixture,tasks",
    [
        ("degrade_jpeg.npz", ["jpeg5", "jpeg10"]),
        ("degrade_sr.npz", ["sr4x_pool", "sr4x_bicubic"]),
        ("degrade_blur.npz", ["blur_uni", "blur_gauss", "inpaint_center"]),
    ],
)
def test_matches_the_authors_corruptions_on_photos(fixture, tasks):
    data = np.load(FIXTURES / fixture)
    x0 = torch.from_numpy(data["x0_uint8"]).float() / 127.5 - 1  # (3, 3, 64, 64) skimage photos
    for task in tasks:
        x1, _ = degrade.build(task, 64)(x0)
        diff = (x1 - torch.from_numpy(data[task])).abs().max().item()
        assert diff < 1e-5, f"{task}: max |diff| {diff:.2e}"


def test_jpeg_dct_matrix_and_tables():
    rows = dct_rows()
    torch.testing.assert_close(rows @ rows.T, torch.eye(8), atol=1e-6, rtol=0)
    k, n = torch.arange(8.0)[None, :], torch.arange(8.0)[:, None]  # textbook orthonormal DCT-II
    textbook = torch.cos(torch.pi * (2 * n + 1) * k / 16) * torch.where(k == 0, 0.5**1.5, 0.5)
    torch.testing.assert_close(rows, textbook, atol=1e-6, rtol=0)
    luma50, chroma50 = quantization_tables(50)
    assert luma50[0, 0] == 16 and chroma50[0, 0] == 17 and luma50[7, 7] == 99
    luma5, _ = quantization_tables(5)
    assert torch.equal(luma5, (luma50 * 10).clamp(max=255))  # IJG scale 5000 / 5 = 1000 %


def photos() -> torch.Tensor:
    """The three 64 px skimage photos of the fixtures, (3, 3, 64, 64) in [-1, 1]."""
    return torch.from_numpy(np.load(FIXTURES / "degrade_sr.npz")["x0_uint8"]).float() / 127.5 - 1


@pytest.mark.parametrize("task", ["jpeg", "jpeg_libjpeg"])
def test_jpeg_error_grows_as_quality_drops(task):
    x0 = photos()
    errors = [(degrade.build(task, 64, quality=q)(x0)[0] - x0).abs().mean().item() for q in (95, 50, 30, 10, 5)]
    assert errors == sorted(errors) and errors[0] < errors[-1] / 3, errors


def test_jpeg_names_and_real_codec_output():
    assert degrade.build("jpeg", 32, quality=30).name == "jpeg30"
    real = degrade.build("jpeg_libjpeg", 32, quality=50)
    x1, _ = real(images())
    assert real.name == "jpeg_libjpeg" and x1.min() >= -1 and x1.max() <= 1
    pixels = (x1 + 1) * 127.5
    assert (pixels - pixels.round()).abs().max() < 1e-4  # 8-bit pixels


# --- linear operators ---


@pytest.mark.parametrize("task", LINEAR_TASKS)
def test_lift_of_measurement_is_x1_and_pinv_identities(task):
    deg = degrade.build(task, 32)
    x0 = images().double()
    x1, mask = deg(x0, generator=torch.Generator().manual_seed(1))
    op = deg.operator(mask)
    torch.testing.assert_close(op.lift(op.A(x0)), x1, atol=1e-12, rtol=0)
    if task.endswith("_conv"):  # truncated pseudo-inverse by default: A_pinv A is a projection
        op = degrade.build(task, 32, pinv_cutoff=0).operator()
    tol = 1e-4 if task in ("blur_uni", "blur_gauss") else 1e-8  # DDRM's SVD factors are float32
    y = op.A(images(seed=5).double())
    torch.testing.assert_close(op.A(op.A_pinv(y)), y, atol=tol, rtol=0)  # A A+ A = A
    z = op.A_pinv(y)
    torch.testing.assert_close(op.A_pinv(op.A(z)), z, atol=tol * z.abs().max().item(), rtol=0)  # A+ A A+ = A+


@pytest.mark.parametrize("task", ["blur_uni_conv", "blur_gauss_conv"])
def test_truncated_pinv_of_clean_blur_is_a_stable_generalised_inverse(task):
    op = degrade.build(task, 32).operator()
    y = op.A(images(seed=2).double())
    z = op.A_pinv(y)
    torch.testing.assert_close(op.A_pinv(op.A(z)), z, atol=1e-8, rtol=0)  # A+ A A+ = A+
    assert z.abs().max() < 1e3  # no 1e5-fold noise amplification


def test_sr_operators_are_ddrm_pooling_and_bicubic():
    x0 = images(size=32)
    y = degrade.build("sr4x_pool", 32).operator().A(x0)
    torch.testing.assert_close(y, torch.nn.functional.avg_pool2d(x0, 4), atol=1e-6, rtol=0)
    taps = bicubic_taps(4)
    assert len(taps) == 16 and torch.allclose(taps, taps.flip(0)) and abs(taps.sum().item() - 1) < 1e-12
    flat = degrade.build("sr4x_bicubic", 32).operator().A(torch.full((1, 3, 32, 32), 0.3))
    torch.testing.assert_close(flat, torch.full((1, 3, 8, 8), 0.3), atol=1e-6, rtol=0)  # rows sum to 1


@pytest.mark.parametrize("kernel", [uniform_kernel(9), gaussian_kernel(5, 10.0)])
def test_ddrm_blur_scales_each_coefficient_by_a_tiled_singular_value(kernel):
    n = 16
    u, v, maps = ddrm_spectrum(kernel, n)
    h = torch.zeros(n, n)  # DDRM's 1-D matrix: offsets -k//2 .. k//2 - 1, the last tap dropped
    for i in range(n):
        for j in range(max(0, i - len(kernel) // 2), min(n, i + len(kernel) // 2)):
            h[i, j] = kernel[j - i + len(kernel) // 2]
    s = torch.linalg.svd(h)[1]
    s = torch.where(s < 3e-2, 0.0, s)
    ranked, perm = torch.outer(s, s).reshape(-1).sort(descending=True)
    for c in range(3):  # the coefficient at sorted position q, channel c gets ranked[(3q + c) mod n^2]
        q = torch.arange(n * n)
        assert torch.equal(maps[c].reshape(-1)[perm], ranked[(3 * q + c) % (n * n)])
    consistent = u @ torch.diag(s) @ v.T  # what H would be with each coefficient's own singular value
    grey = images(1, n)[:, :1].expand(-1, 3, -1, -1)
    authors = degrade.build("blur_uni" if len(kernel) == 9 else "blur_gauss", n).operator().A(grey)
    assert (authors - consistent @ grey @ consistent.T).abs().max() > 0.05  # not a plain blur
    assert (authors[:, 0] - authors[:, 1]).abs().max() > 1e-3  # and not the same blur for every channel


@pytest.mark.parametrize("task,kernel", [("blur_uni_conv", np.ones(9) / 9), ("blur_gauss_conv", None)])
def test_clean_blur_is_a_separable_convolution_with_symmetric_padding(task, kernel):
    if kernel is None:
        kernel = np.exp(-0.5 * (np.arange(-2, 3) / 10.0) ** 2)
        kernel /= kernel.sum()
    x0 = images(size=32).double()
    expected = correlate1d(correlate1d(x0.numpy(), kernel, axis=2, mode="reflect"), kernel, axis=3, mode="reflect")
    x1, _ = degrade.build(task, 32)(x0)
    np.testing.assert_allclose(x1.numpy(), expected, atol=1e-10)


def test_colorize_is_replicated_601_luminance():
    deg = degrade.build("colorize", 16)
    x0 = images(size=16)
    x1, _ = deg(x0)
    luma = 0.299 * x0[:, 0] + 0.587 * x0[:, 1] + 0.114 * x0[:, 2]
    for c in range(3):
        torch.testing.assert_close(x1[:, c], luma, atol=1e-6, rtol=0)
    op = deg.operator()
    assert op.A(x0).shape == (2, 1, 16, 16) and op.A_pinv(op.A(x0)).shape == (2, 3, 16, 16)


def test_inpaint_center_is_the_authors_box():
    deg = degrade.build("inpaint_center", 32)
    x1, mask = deg(images(3))
    assert mask.shape == (3, 1, 32, 32) and mask.sum() == 3 * 16 * 16
    assert mask[:, :, 8:24, 8:24].eq(1).all()
    assert torch.equal(deg.operator().lift(deg.operator().A(images(3))), x1)  # centre op needs no mask


# --- free-form masks ---


@pytest.mark.parametrize("task,low,high", [("inpaint_freeform1020", 0.1, 0.2), ("inpaint_freeform2030", 0.2, 0.3)])
def test_generated_freeform_hole_ratios(task, low, high, monkeypatch):
    monkeypatch.delenv("I2SB_FREEFORM_MASKS", raising=False)
    deg = degrade.build(task, 48)
    _, masks = deg(torch.zeros(64, 3, 48, 48), generator=torch.Generator().manual_seed(0))
    ratios = masks.mean((1, 2, 3))
    assert ratios.min() >= low and ratios.max() <= high
    assert ratios.max() - ratios.min() > (high - low) / 2  # spread over the range, not piled at one end
    assert len({m.numpy().tobytes() for m in masks}) == len(masks)  # all different


def test_generated_masks_follow_the_generator_and_any_size():
    sampler = BrushStrokeMasks(48, (0.1, 0.2))
    a = sampler.sample(4, torch.device("cpu"), torch.Generator().manual_seed(7))
    b = sampler.sample(4, torch.device("cpu"), torch.Generator().manual_seed(7))
    c = sampler.sample(4, torch.device("cpu"), torch.Generator().manual_seed(8))
    assert a.shape == (4, 1, 48, 48) and torch.equal(a, b) and not torch.equal(a, c)


def write_palette_file(path: Path, masks: dict[str, np.ndarray]) -> None:
    """Masks (N, 256, 256) uint8 per key, bit-packed over the flat array as Palette stores them."""
    np.savez(path, **{key: np.packbits(m.reshape(-1)) for key, m in masks.items()})


def test_palette_mask_file_is_unpacked_exactly(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    masks = {k: (rng.random((5, 256, 256)) < 0.15).astype(np.uint8) for k in ("10-20% freeform", "20-30% freeform")}
    path = tmp_path / "imagenet_freeform_masks.npz"
    write_palette_file(path, masks)
    deg = degrade.build("inpaint_freeform2030", 256, mask_file=str(path))
    _, drawn = deg(torch.zeros(3, 3, 256, 256), generator=torch.Generator().manual_seed(4))
    index = torch.randint(5, (3,), generator=torch.Generator().manual_seed(4))
    assert torch.equal(drawn[:, 0], torch.from_numpy(masks["20-30% freeform"][index.numpy()]).float())
    monkeypatch.setenv("I2SB_FREEFORM_MASKS", str(path))
    _, small = degrade.build("inpaint_freeform1020", 64)(torch.zeros(2, 3, 64, 64))
    assert small.shape == (2, 1, 64, 64)


def test_palette_mask_file_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        degrade.build("inpaint_freeform1020", 256, mask_file=str(tmp_path / "missing.npz"))
    path = tmp_path / "masks.npz"
    write_palette_file(path, {"30-40% freeform": np.zeros((1, 256, 256), np.uint8)})
    with pytest.raises(ValueError, match="no key '10-20% freeform'"):
        degrade.build("inpaint_freeform1020", 256, mask_file=str(path))
    monkeypatch.setenv("I2SB_FREEFORM_MASKS", str(tmp_path / "gone.npz"))
    with pytest.raises(FileNotFoundError, match="gone.npz"):
        degrade.build("inpaint_freeform2030", 256)
