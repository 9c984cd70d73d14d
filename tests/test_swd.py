"""SWD (Karras et al. 2018, App. D): the pyramid and the 1-D distance against scipy, what the numbers mean on real
photos (blur scores worse than the photos themselves, more than two draws of the same photos differ), and the
promises of i2sb.evaluation.swd: deterministic for a seed, independent of image order and value range."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage, stats

from i2sb.data import demo_photos
from i2sb.evaluation import swd as S

KARRAS_FILTER = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0  # progressive_growing_of_gans' gaussian_filter
FEWER = S.SWDSettings(patches_per_level=2**11)  # 128 patches per crop: quicker, the same behaviour


@pytest.fixture(scope="module")
def photo_crops() -> torch.Tensor:
    """16 crops of 48 px from chelsea (a cat: fur, edges), in [-1, 1], (16, 3, 48, 48)."""
    photo = torch.from_numpy(dict(demo_photos("val"))["chelsea"]).permute(2, 0, 1).double() / 127.5 - 1
    crops = [photo[:, 20 + 60 * i: 68 + 60 * i, 30 + 100 * j: 78 + 100 * j] for i in range(4) for j in range(4)]
    return torch.stack(crops)


def blur(x: torch.Tensor) -> torch.Tensor:
    return S._binomial_blur(S._binomial_blur(x, 1.0), 1.0)


def test_pyramid_is_karras_pyr_down_and_pyr_up_and_reconstructs():
    x = torch.rand(2, 3, 32, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    karras_down = ndimage.convolve(x.numpy(), KARRAS_FILTER[None, None], mode="mirror")[:, :, ::2, ::2]
    assert np.allclose(S.pyr_down(x).numpy(), karras_down, atol=1e-12)
    small = S.pyr_down(x)
    zeros = np.zeros(x.shape)
    zeros[:, :, ::2, ::2] = small.numpy()
    karras_up = ndimage.convolve(zeros, 4 * KARRAS_FILTER[None, None], mode="mirror")
    assert np.allclose(S.pyr_up(small, (32, 48)).numpy(), karras_up, atol=1e-12)
    odd = torch.rand(1, 3, 37, 50, dtype=torch.float64)
    pyramid = S.laplacian_pyramid(odd, 3)
    assert [tuple(p.shape[-2:]) for p in pyramid] == [(37, 50), (19, 25), (10, 13)]
    rebuilt = pyramid[-1]
    for band in reversed(pyramid[:-1]):  # bands + residual sum back to the image exactly
        rebuilt = band + S.pyr_up(rebuilt, band.shape[-2:])
    assert torch.allclose(rebuilt, odd, atol=1e-12)


def test_levels_follow_karras_16_px_floor():
    assert S.level_count(1024, 1024) == 7  # Karras: 1024, 512, ..., 16
    assert S.level_count(64, 64) == 3 and S.level_count(64, 200) == 3 and S.level_count(31, 31) == 2  # 31 -> 16 px
    assert S.level_count(30, 30) == 1 and S.level_count(16, 16) == 1 and S.level_count(8, 8) == 1
    with pytest.raises(ValueError, match="at least 7x7"):
        S.level_count(6, 40)


@pytest.mark.parametrize("n, m", [(50, 50), (13, 40), (1, 6)])
def test_one_dimensional_distance_is_scipys(n, m):
    rng = np.random.default_rng(n + m)
    a, b = rng.normal(size=(n, 3)), rng.gamma(2.0, size=(m, 3))
    ours = S.wasserstein_1d(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert np.allclose(ours, [stats.wasserstein_distance(a[:, k], b[:, k]) for k in range(3)], rtol=1e-12)


def test_sliced_distance_is_the_mean_over_directions_of_sorted_projections():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(64, 5)), rng.normal(0.5, 1.0, size=(64, 5))
    dirs = S.directions(5, S.SWDSettings(projections=3, repeats=2), level=0)
    exact = np.mean([np.mean(np.abs(np.sort(a @ d[:, k]) - np.sort(b @ d[:, k])))
                     for d in dirs.numpy() for k in range(3)])  # Karras' sliced_wasserstein
    assert S.sliced_wasserstein(torch.from_numpy(a), torch.from_numpy(b), dirs) == pytest.approx(exact, rel=1e-12)
    assert torch.allclose(dirs.norm(dim=1), torch.ones(2, 3, dtype=torch.float64))


def test_identical_sets_score_zero_and_a_duplicated_set_too(photo_crops):
    result = S.swd(photo_crops, photo_crops)
    assert result.levels == (0.0, 0.0) and result.mean == 0.0  # 48 px: levels 48 and 24
    twice = S.swd(torch.cat([photo_crops, photo_crops]), photo_crops, FEWER)  # same empirical distribution
    assert twice.mean == pytest.approx(0.0, abs=1e-2) and twice.descriptors[0] == (2 * 16 * 128, 16 * 128)


def test_blur_scores_worse_than_other_crops_of_the_same_photos(photo_crops):
    first, second = photo_crops[:8], photo_crops[8:]
    floor = S.swd(first, second, FEWER).mean  # other crops of the same photo: what "as real" looks like
    blurred = S.swd(blur(first), second, FEWER)
    assert blurred.mean > 1.3 * floor > 0
    assert blurred.levels[0] > blurred.levels[-1]  # blur removes the finest band first
    assert S.swd(blur(blur(first)), second, FEWER).mean > blurred.mean  # more blur, further away


def test_deterministic_for_a_seed_and_independent_of_image_order(photo_crops):
    settings = S.SWDSettings(patches_per_image=64, seed=3)
    x, y = blur(photo_crops[:8]), photo_crops[8:]
    first = S.swd(x, y, settings)
    assert S.swd(x, y, settings) == first
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    assert S.swd(x[order], y[order.flip(0)], settings).levels == pytest.approx(first.levels, rel=1e-5)  # float32 sums
    other = S.swd(x, y, S.SWDSettings(patches_per_image=64, seed=4))
    assert other.mean != first.mean and other.mean == pytest.approx(first.mean, rel=0.3)


def test_value_range_and_dtype_do_not_matter(photo_crops):
    x, y = blur(photo_crops[:8]), photo_crops[8:]
    unit = S.swd(x, y, FEWER).mean
    assert S.swd((x + 1) * 127.5, (y + 1) * 127.5, FEWER).mean == pytest.approx(unit, rel=1e-5)  # per-set scale
    assert S.swd(x.float(), y.float(), FEWER).mean == pytest.approx(unit, rel=1e-4)


def test_patch_counts_follow_the_settings():
    settings = S.SWDSettings(patches_per_level=1000)
    assert settings.per_image(10) == 100 and settings.per_image(3) == 334
    assert S.SWDSettings(patches_per_image=128).per_image(10_000) == 128
    dense = S.PatchSet(1, 10_000)
    assert len(dense.positions(0, 16, 16)) == 100  # every 7x7 position of a 16 px level, once
    sampled = S.PatchSet(1, 50)
    where = sampled.positions(0, 40, 30)
    assert where.shape == (50, 2) and where[:, 0].max() <= 33 and where[:, 1].max() <= 23 and where.min() >= 0
    with pytest.raises(ValueError, match="projections must be positive"):
        S.SWDSettings(projections=0)


def test_sets_of_other_settings_or_too_small_images_are_refused():
    a, b = S.PatchSet(2, 10), S.PatchSet(2, 20)
    with pytest.raises(ValueError, match="different levels or settings"):
        S.swd_between(a, b)
    with pytest.raises(ValueError, match="at least 32 px"):
        a.add(torch.zeros(1, 3, 20, 20))
