"""PSNR / SSIM / FID / classifier helpers of i2sb.metrics, checked against closed forms, skimage and clean-fid."""

import math
import socket
import sys
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage import data as skdata
from skimage.metrics import structural_similarity

from i2sb.evaluation import metrics, perceptual


def _nchw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None]


def _photo_pair(name: str, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 48x64 crop of a skimage photo (uint8) and a noisy, clipped, re-quantised copy."""
    img = getattr(skdata, name)()[40:88, 60:124]
    rng = np.random.default_rng(seed)
    noisy = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).round().astype(np.uint8)
    return img, noisy


# ------------------------------------------------------------------------------------------- PSNR


def test_psnr_identical_images_is_inf():
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    assert torch.isinf(metrics.psnr(x, x)).all()


@pytest.mark.parametrize("offset", [0.01, 0.1, 0.5])
def test_psnr_of_constant_offset_has_closed_form(offset):
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64) * 2 - 1
    expected = 10 * math.log10(2.0**2 / offset**2)  # MSE = offset^2, range 2
    torch.testing.assert_close(metrics.psnr(x, x + offset), torch.full((2,), expected, dtype=torch.float64))


def test_psnr_is_per_image_and_range_convention_free():
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64) * 2 - 1
    y = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)
    y[2] = x[2] + 0.3
    p = metrics.psnr(x, y)
    assert p.shape == (4,) and p[2] < p[0]
    torch.testing.assert_close(metrics.psnr((x + 1) / 2, (y + 1) / 2, data_range=1.0), p)
    torch.testing.assert_close(metrics.psnr((x + 1) * 127.5, (y + 1) * 127.5, data_range=255.0), p)


def test_psnr_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal shape"):
        metrics.psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


# ------------------------------------------------------------------------------------------- SSIM


def test_gaussian_window_matches_scipy_gaussian_filter():
    impulse = np.zeros(11)
    impulse[5] = 1.0
    taps = ndimage.gaussian_filter1d(impulse, sigma=1.5, truncate=3.5, mode="constant")
    np.testing.assert_allclose(metrics.gaussian_window(11, 1.5).numpy(), taps, rtol=1e-12)


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_ssim_matches_skimage_on_photos(name):
    img, noisy = _photo_pair(name, noise=25.0)
    ref = structural_similarity(
        img, noisy, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2
    )
    a, b = _nchw(img.astype(np.float64)), _nchw(noisy.astype(np.float64))
    assert abs(metrics.ssim(a, b, data_range=255.0).item() - ref) < 1e-10
    # the library's [-1, 1] convention gives the same number as skimage on the uint8 files
    assert abs(metrics.ssim(a / 127.5 - 1, b / 127.5 - 1).item() - ref) < 1e-10
    assert abs(metrics.ssim(a / 255, b / 255, data_range=1.0).item() - ref) < 1e-10
    assert abs(metrics.ssim(a.float(), b.float(), data_range=255.0).item() - ref) < 1e-4


def test_ssim_is_batched_and_one_for_identical_images():
    pairs = [_photo_pair(n, noise=s) for n, s in [("astronaut", 5.0), ("chelsea", 40.0)]]
    x = torch.cat([_nchw(a.astype(np.float64)) for a, _ in pairs]) / 127.5 - 1
    y = torch.cat([_nchw(b.astype(np.float64)) for _, b in pairs]) / 127.5 - 1
    s = metrics.ssim(x, y)
    assert s.shape == (2,) and s[0] > s[1]
    torch.testing.assert_close(s[1:], metrics.ssim(x[1:], y[1:]))
    torch.testing.assert_close(metrics.ssim(x, x), torch.ones(2, dtype=torch.float64))


def test_ssim_rejects_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(torch.zeros(1, 3, 10, 32), torch.zeros(1, 3, 10, 32))


# -------------------------------------------------------------------------------------------- FID


def test_fid_of_identical_features_is_zero():
    f = np.random.default_rng(0).normal(size=(200, 8))
    assert abs(metrics.fid_from_features(f, f)) < 1e-8


def test_fid_of_gaussians_has_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.5, 2.0, size=5), rng.uniform(0.5, 2.0, size=5)
    # diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert metrics.fid_from_stats(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # a pure shift of one covariance: only the mean term remains
    q = rng.normal(size=(5, 5))
    s = q @ q.T + np.eye(5)
    assert metrics.fid_from_stats(mu1, s, mu2, s) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-8)


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")  # inside clean-fid
def test_fid_agrees_with_clean_fid():
    from cleanfid import fid as cfid

    rng = np.random.default_rng(2)
    f1 = rng.normal(size=(300, 16)).astype(np.float32)
    f2 = (rng.normal(size=(250, 16)) * 1.3 + 0.2).astype(np.float32)
    ours = metrics.fid_from_features(f1, torch.from_numpy(f2))
    assert ours == pytest.approx(cfid.fid_from_feats(f1, f2), rel=1e-6)
    mu1, s1 = metrics.feature_stats(f1)
    mu2, s2 = metrics.feature_stats(f2)
    assert metrics.fid_from_stats(mu1, s1, mu2, s2) == pytest.approx(cfid.frechet_distance(mu1, s1, mu2, s2), rel=1e-12)


def test_feature_stats_are_mean_and_unbiased_covariance():
    f = np.random.default_rng(3).normal(size=(50, 4))
    mu, sigma = metrics.feature_stats(torch.from_numpy(f).float())
    np.testing.assert_allclose(mu, f.mean(0), atol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(f, rowvar=False), atol=1e-6)
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.feature_stats(f[:1])


def test_fid_rejects_statistics_of_different_dimension():
    with pytest.raises(ValueError, match="differ in dimension"):
        metrics.fid_from_stats(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_load_fid_stats_accepts_clean_fid_and_adm_layouts(tmp_path):
    mu, sigma = np.arange(3.0), np.eye(3) * 2
    np.savez(tmp_path / "cleanfid.npz", mu=mu, sigma=sigma)
    np.savez(
        tmp_path / "adm.npz", arr_0=np.zeros((2, 8, 8, 3), np.uint8), mu=mu, sigma=sigma, mu_s=mu[:2], sigma_s=np.eye(2)
    )
    for name in ["cleanfid.npz", "adm.npz"]:
        got_mu, got_sigma = metrics.load_fid_stats(tmp_path / name)
        np.testing.assert_array_equal(got_mu, mu)
        np.testing.assert_array_equal(got_sigma, sigma)
    np.savez(tmp_path / "bad.npz", mean=mu, cov=sigma)
    with pytest.raises(ValueError, match=r"bad\.npz has no key"):
        metrics.load_fid_stats(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        metrics.load_fid_stats(tmp_path / "missing.npz")


# ------------------------------------------------------------------------- clean-fid Inception


def test_resize_matches_clean_fid_legacy_pytorch_resizer():
    from cleanfid.resize import build_resizer

    with warnings.catch_warnings():  # clean-fid's resizer silences all warnings globally
        resize = build_resizer("legacy_pytorch")
        img = np.random.default_rng(4).integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
        ref = resize(img)
    ours = metrics.resize_legacy_pytorch(_nchw(img))[0].permute(1, 2, 0).numpy()
    assert ours.shape == ref.shape == (299, 299, 3)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


@pytest.fixture(scope="module")
def inception_state():
    """Random FID-Inception weights with BN variances chosen so that features are of order 1."""
    torch.manual_seed(0)
    state = metrics.fid_inception_v3().state_dict()
    return {k: torch.full_like(v, 0.15) if k.endswith("running_var") else v for k, v in state.items()}


@pytest.fixture(scope="module")
def inception(inception_state):
    net = metrics.fid_inception_v3()
    net.load_state_dict(inception_state)
    return metrics.CleanFIDInception(net)


def test_inception_equals_clean_fid_legacy_pytorch_extractor(inception_state, inception):
    from cleanfid import inception_pytorch
    from cleanfid.resize import build_resizer

    with (
        warnings.catch_warnings(),
        mock.patch.object(inception_pytorch, "load_state_dict_from_url", return_value=inception_state),
    ):
        warnings.simplefilter("ignore")
        reference = inception_pytorch.InceptionV3(output_blocks=[3], resize_input=False).eval()
        resize = build_resizer("legacy_pytorch")
        images = np.random.default_rng(5).integers(0, 256, size=(2, 48, 40, 3), dtype=np.uint8)
        resized = torch.stack([torch.from_numpy(resize(im).transpose(2, 0, 1).copy()) for im in images])
    with torch.no_grad():
        expected = reference(resized / 255)[0].squeeze(-1).squeeze(-1)  # clean-fid's model_fn
        got = inception(torch.from_numpy(images).permute(0, 3, 1, 2).float())
    assert got.shape == (2, 2048) and expected.abs().mean() > 1e-2
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_load_inception_from_file_env_var_and_hub_cache(inception_state, inception, tmp_path, monkeypatch):
    monkeypatch.delenv(metrics.INCEPTION_WEIGHTS.env_var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert metrics.find_weights(metrics.INCEPTION_WEIGHTS) is None
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth") as err:
        metrics.load_inception()
    assert metrics.INCEPTION_WEIGHTS.url in str(err.value) and "inception=PATH" in str(err.value)

    cached = tmp_path / "torch" / "hub" / "checkpoints" / metrics.INCEPTION_WEIGHTS.filename
    cached.parent.mkdir(parents=True)
    torch.save({f"module.{k}": v for k, v in inception_state.items()}, cached)  # DataParallel prefix
    assert metrics.find_weights(metrics.INCEPTION_WEIGHTS) == cached
    x = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        torch.testing.assert_close(metrics.load_inception()(x), inception(x))

    monkeypatch.setenv(metrics.INCEPTION_WEIGHTS.env_var, str(tmp_path / "elsewhere.pth"))
    with pytest.raises(FileNotFoundError, match="elsewhere.pth"):
        metrics.find_weights(metrics.INCEPTION_WEIGHTS)
    assert metrics.find_weights(metrics.INCEPTION_WEIGHTS, cached) == cached  # explicit path wins


def test_wrong_weights_file_is_a_one_line_error(tmp_path):
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    for name in ["other.pth", "garbage.pth"]:
        with pytest.raises(ValueError, match=rf"{name} is not a FID Inception .* state_dict") as err:
            metrics.load_inception(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="is not a ResNet-50"):
        metrics.load_resnet50(tmp_path / "other.pth")


# ---------------------------------------------------------------------------------- classifier


def test_classifier_preprocessing_follows_the_authors_resnet_wrapper():
    net = torch.nn.Identity()
    clf = metrics.ImageNetClassifier(net)
    x = torch.full((2, 3, 64, 48), 0.2)
    out = clf(x)
    assert out.shape == (2, 3, 224, 224)
    mean, std = torch.tensor(clf.MEAN).view(1, 3, 1, 1), torch.tensor(clf.STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, ((0.6 - mean) / std).expand(2, 3, 224, 224))
    y = torch.rand(1, 3, 32, 32) * 2 - 1
    manual = F.interpolate((y + 1) / 2, size=(224, 224), mode="bicubic", align_corners=False)
    torch.testing.assert_close(clf(y), (manual - mean) / std)


def test_load_resnet50_from_state_dict(tmp_path, monkeypatch):
    from torchvision.models import resnet50

    net = resnet50(weights=None).eval()
    torch.save(net.state_dict(), tmp_path / "r50.pth")
    monkeypatch.delenv(metrics.RESNET50_WEIGHTS.env_var, raising=False)
    clf = metrics.load_resnet50(tmp_path / "r50.pth")
    x = torch.rand(2, 3, 40, 40) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(clf(x), metrics.ImageNetClassifier(net)(x))
    assert not clf.training
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="resnet50-0676ba61.pth"):
        metrics.load_resnet50()


def test_top1_correct():
    logits = torch.tensor([[0.1, 2.0, 0.3], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert metrics.top1_correct(logits, torch.tensor([1, 2, 2])).tolist() == [True, False, True]


# ------------------------------------------------------------------------------------------- LPIPS


def _no_lpips_backbone(monkeypatch, tmp_path):
    monkeypatch.delenv(perceptual.BACKBONE_WEIGHTS["alex"].env_var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-home"))


def _no_network(monkeypatch):
    """Any attempt to open a connection (a torchvision or hub download) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("LPIPS tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


def _photo(noise: float, seed: int = 0) -> torch.Tensor:
    """A 40x48 RGB crop of a skimage photo in [-1, 1], with Gaussian noise of ``noise`` grey levels."""
    img = skdata.astronaut()[100:140, 160:208].astype(np.float64)
    img = np.clip(img + np.random.default_rng(seed).normal(0, noise, img.shape), 0, 255).round()
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1


@pytest.fixture(scope="module")
def alex_lpips(alexnet_file):
    pytest.importorskip("lpips")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _no_network(monkeypatch)
        return perceptual.load_lpips("alex", alexnet_file)


def test_lpips_is_zero_for_identical_images_and_grows_with_noise(alex_lpips):
    metric = alex_lpips
    clean = _photo(0)
    assert metric(clean, clean).tolist() == [0.0]
    distances = [metric(_photo(noise), clean).item() for noise in (2, 8, 32)]
    assert 0 < distances[0] < distances[1] < distances[2]
    assert metric(torch.cat([clean, _photo(8)]), torch.cat([clean, clean])).shape == (2,)
    assert not metric.training and not any(p.requires_grad for p in metric.parameters())


def test_lpips_equals_the_package_with_the_same_backbone_weights(alexnet_file, monkeypatch):
    """lpips.LPIPS(net="alex") builds its backbone with torchvision's alexnet(pretrained=True); given the
    same state_dict that way, it computes what load_lpips computes (linear layers from the package)."""
    lpips = pytest.importorskip("lpips")
    from torchvision.models import alexnet  # slow import (all of torchvision.models)

    _no_network(monkeypatch)
    backbone = alexnet()
    backbone.load_state_dict(torch.load(alexnet_file, weights_only=True), strict=False)  # features.* only
    monkeypatch.setattr(lpips.pretrained_networks.tv, "alexnet", lambda pretrained=True, **kw: backbone)
    reference = lpips.LPIPS(net="alex", verbose=False)  # the package's own pretrained-backbone path
    ours = perceptual.load_lpips("alex", alexnet_file)
    x, y = torch.cat([_photo(4, 1), _photo(16, 2)]), torch.cat([_photo(0), _photo(30, 3)])
    with torch.no_grad():
        expected = reference(x, y).flatten()
    torch.testing.assert_close(ours(x, y), expected, rtol=1e-5, atol=1e-7)
    packaged = torch.load(Path(lpips.__file__).parent / "weights/v0.1/alex.pth", "cpu", weights_only=True)
    torch.testing.assert_close(ours.model.lin0.model[1].weight, packaged["lin0.model.1.weight"])


def test_lpips_backbone_found_by_environment_variable_or_torch_home(alexnet_file, tmp_path, monkeypatch):
    pytest.importorskip("lpips")
    _no_lpips_backbone(monkeypatch, tmp_path)
    monkeypatch.setenv("I2SB_LPIPS_BACKBONE", str(alexnet_file))
    assert perceptual.find_weights(perceptual.BACKBONE_WEIGHTS["alex"]) == alexnet_file
    monkeypatch.delenv("I2SB_LPIPS_BACKBONE")
    cache = tmp_path / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "alexnet-owt-7be5be79.pth").symlink_to(alexnet_file)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    assert perceptual.load_lpips("alex").net == "alex"


def test_lpips_without_backbone_file_says_what_to_get(tmp_path, monkeypatch):
    pytest.importorskip("lpips")
    _no_lpips_backbone(monkeypatch, tmp_path)
    with pytest.raises(perceptual.LPIPSUnavailable) as err:
        perceptual.load_lpips("alex")
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in str(err.value)
    assert "lpips_weights=PATH" in str(err.value) and "I2SB_LPIPS_BACKBONE" in str(err.value)
    with pytest.raises(FileNotFoundError, match="weights file not found: .*nowhere.pth"):
        perceptual.load_lpips("alex", tmp_path / "nowhere.pth")
    with pytest.raises(ValueError, match="unknown LPIPS network 'squeeze'"):
        perceptual.load_lpips("squeeze")


def test_lpips_without_the_package_says_what_to_install(alexnet_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # "import lpips" raises ImportError
    with pytest.raises(perceptual.LPIPSUnavailable, match=r"pip install lpips") as err:
        perceptual.load_lpips("alex", alexnet_file)
    assert "alexnet-owt" not in str(err.value)  # the backbone file is there
    monkeypatch.delenv("I2SB_LPIPS_BACKBONE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(alexnet_file.parent / "no-torch-home"))
    with pytest.raises(perceptual.LPIPSUnavailable, match=r"pip install lpips.*; .*alexnet-owt-7be5be79.pth"):
        perceptual.load_lpips("alex")  # both missing: both named


def test_lpips_rejects_other_files_and_small_images(alexnet_file, alex_lpips, tmp_path):
    pytest.importorskip("lpips")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other.pth is not a LPIPS backbone AlexNet .*'features.0.weight'"):
        perceptual.load_lpips("alex", tmp_path / "other.pth")
    state = torch.load(alexnet_file, weights_only=True)
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    features["features.3.weight"] = torch.zeros(3, 3, 5, 5)
    torch.save(features, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad.pth is not a LPIPS backbone AlexNet"):
        perceptual.load_lpips("alex", tmp_path / "bad.pth")
    metric = alex_lpips
    assert metric.fits(31, 40) and not metric.fits(30, 40)
    metric(torch.zeros(1, 3, 31, 31), torch.zeros(1, 3, 31, 31))
    with pytest.raises(ValueError, match="at least 31x31 pixels, got 40x30"):
        metric(torch.zeros(1, 3, 30, 40), torch.zeros(1, 3, 30, 40))
