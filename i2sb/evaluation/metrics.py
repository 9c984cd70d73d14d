"""Image-restoration metrics: PSNR, SSIM, FID (clean-fid ``legacy_pytorch``) and ResNet-50 accuracy.

Conventions (shared by every function here):
- images are float tensors ``(B, 3, H, W)``; PSNR/SSIM take any range given its ``data_range``
  (2.0 for the library's [-1, 1] images, 1.0 for [0, 1], 255.0 for [0, 255]);
- the FID feature extractor takes ``(B, 3, H, W)`` floats in [0, 255] (clean-fid's convention) and
  returns ``(B, D)`` features;
- the classifier takes ``(B, 3, H, W)`` floats in [-1, 1] and returns ``(B, K)`` logits
  (the I2SB authors' ``evaluation/resnet.py`` convention).

The paper (Sec. 5, "Evaluation") reports FID with clean-fid's ``legacy_pytorch`` mode and the top-1
accuracy of a pre-trained torchvision ResNet-50. Neither network can be downloaded by this library:
weights are loaded from local files, see :func:`find_weights`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import Tensor, nn

from ..utils.loaderrors import UnreadableFile
from ..utils.torchfile import load_torch
from .weights import INCEPTION_WEIGHTS, RESNET50_WEIGHTS, WeightsSource  # noqa: F401  (re-exported)

# ---------------------------------------------------------------------------------------------
# PSNR and SSIM
# ---------------------------------------------------------------------------------------------


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def psnr(x: Tensor, y: Tensor, data_range: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio per image, ``10 log10(data_range^2 / MSE)`` in dB.

    x, y: ``(B, C, H, W)`` in a range of width ``data_range`` (2 for [-1, 1], 1 for [0, 1], 255 for
    [0, 255]); the MSE is taken over C, H, W. Returns ``(B,)`` in x's dtype; identical images give
    ``+inf``. The value does not depend on the range convention as long as ``data_range`` matches it.
    """
    _check_pair(x, y)
    mse = (x - y).square().flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5, *, dtype=torch.float64, device=None) -> Tensor:
    """Normalised 1-D Gaussian taps ``(size,)``: ``exp(-k^2 / (2 sigma^2))``, k = -size//2 .. size//2.

    The 2-D window of Wang et al. (2004) is the outer product of this with itself (separable).
    """
    k = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    w = torch.exp(-(k**2) / (2 * sigma**2))
    return w / w.sum()


def _filter_valid(img: Tensor, taps: Tensor) -> Tensor:
    """Separable 'valid' Gaussian filtering of ``(B, C, H, W)`` -> ``(B, C, H-s+1, W-s+1)``."""
    c, s = img.shape[1], taps.numel()
    rows = taps.view(1, 1, s, 1).expand(c, 1, s, 1)
    cols = taps.view(1, 1, 1, s).expand(c, 1, 1, s)
    return F.conv2d(F.conv2d(img, rows, groups=c), cols, groups=c)


_DEFAULT_LOW = {2.0: -1.0}  # data_range -> lower end of the range; any other range starts at 0


def ssim(
    x: Tensor,
    y: Tensor,
    data_range: float = 2.0,
    *,
    low: float | None = None,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Structural similarity per image (Wang et al. 2004, Eq. 13), ``(B, C, H, W)`` pairs -> ``(B,)``.

    Value range: ``data_range=2`` means the library's [-1, 1] images, ``1`` and ``255`` mean [0, 1]
    and [0, 255]; ``low`` overrides the lower end. SSIM's luminance term is not shift-invariant, so the
    images are first shifted by ``-low`` into ``[0, data_range]``: the result is the usual SSIM of the
    images saved as [0, 255] / [0, 1] files, whatever range the tensors are in.

    Gaussian window ``window_size`` x ``window_size`` with std ``sigma``, population (co)variances,
    ``C1 = (k1 R)^2``, ``C2 = (k2 R)^2`` with ``R = data_range``. The SSIM map is evaluated only where
    the window lies inside the image ("valid" filtering, no padding), averaged over the pixels of each
    channel and then over the channels. This equals
    ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=R, channel_axis=...)``, which filters with reflect
    padding but then crops the 5-pixel border, leaving exactly the valid region.
    Float tensors, computed in x's dtype (float32 agrees with skimage to ~1e-5, float64 to ~1e-12).
    """
    _check_pair(x, y)
    if min(x.shape[-2:]) < window_size:
        raise ValueError(f"SSIM needs images of at least {window_size}x{window_size} pixels, got {tuple(x.shape[-2:])}")
    low = _DEFAULT_LOW.get(float(data_range), 0.0) if low is None else low
    x, y = x - low, y - low
    taps = gaussian_window(window_size, sigma, dtype=x.dtype, device=x.device)
    mu_x, mu_y = _filter_valid(x, taps), _filter_valid(y, taps)
    var_x = _filter_valid(x * x, taps) - mu_x**2
    var_y = _filter_valid(y * y, taps) - mu_y**2
    cov_xy = _filter_valid(x * y, taps) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(2).mean(dim=2).mean(dim=1)


# ---------------------------------------------------------------------------------------------
# Fréchet Inception Distance
# ---------------------------------------------------------------------------------------------


def feature_stats(feats: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (unbiased, as ``np.cov``) of features ``(N, D)``, float64."""
    f = feats.detach().cpu().double().numpy() if isinstance(feats, Tensor) else np.asarray(feats, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"feature statistics need an (N, D) array with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def fid_from_stats(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` between two Gaussians.

    Same computation as clean-fid's ``frechet_distance`` (Heusel et al. 2017, Eq. 6; the stable
    variant of D. Sutherland): ``scipy.linalg.sqrtm`` of ``S1 S2``; if that is not finite, ``eps`` is
    added to both diagonals; an imaginary part above 1e-3 on the diagonal is an error, a smaller one
    is dropped.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"FID statistics differ in dimension: {mu1.shape} vs {mu2.shape}, {sigma1.shape} vs {sigma2.shape}"
        )
    diff = mu1 - mu2
    with warnings.catch_warnings():  # clean-fid calls sqrtm(disp=False): no "singular matrix" warning
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: imaginary component {np.max(np.abs(covmean.imag))} in sqrtm(S1 S2)")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(feats1: np.ndarray | Tensor, feats2: np.ndarray | Tensor) -> float:
    """FID between two feature sets ``(N1, D)`` and ``(N2, D)`` (clean-fid's ``fid_from_feats``)."""
    return fid_from_stats(*feature_stats(feats1), *feature_stats(feats2))


def load_fid_stats(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Load ``mu`` ``(D,)`` and ``sigma`` ``(D, D)`` from a ``.npz``.

    Both clean-fid's stats files and ADM's reference batches (e.g. ``VIRTUAL_imagenet256_labeled.npz``,
    which also holds ``arr_0`` images and spatial ``mu_s``/``sigma_s``, left unread) store them under the
    keys ``mu`` and ``sigma``. ADM computed its statistics with the TensorFlow Inception; the I2SB authors
    compare their ``legacy_pytorch`` features with them anyway (4x super-resolution, ``compute_metrices.py``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FID reference statistics not found: {path}")
    with np.load(path) as stats:
        missing = [k for k in ("mu", "sigma") if k not in stats.files]
        if missing:
            raise ValueError(f"{path} has no key(s) {missing} (found {stats.files}); expected 'mu' and 'sigma'")
        mu, sigma = stats["mu"].astype(np.float64), stats["sigma"].astype(np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path}: 'mu' {mu.shape} and 'sigma' {sigma.shape} are not (D,) and (D, D)")
    return mu, sigma


# ---------------------------------------------------------------------------------------------
# Pre-trained networks, loaded from local files only (where they come from: .weights)
# ---------------------------------------------------------------------------------------------


def find_weights(source: WeightsSource, path: str | Path | None = None) -> Path | None:
    """Resolve a weights file: explicit ``path`` > ``$env_var`` > torch.hub cache; ``None`` if absent.

    An explicit path or environment variable that names a missing file is an error.
    """
    given = path if path is not None else os.environ.get(source.env_var) or None
    if given is not None:
        if not Path(given).is_file():
            raise FileNotFoundError(f"{source.what} weights file not found: {given}")
        return Path(given)
    cached = source.cache_path()
    return cached if cached.is_file() else None


def _load_weights(net: nn.Module, path: Path, source: WeightsSource) -> nn.Module:
    """Load a state_dict file (a DataParallel ``module.`` prefix is dropped) into ``net``, strictly."""
    try:
        state = load_torch(path)
        net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    except UnreadableFile as err:
        raise ValueError(f"{path} is not a {source.what} state_dict ({source.filename}): {err.cause}") from None
    except RuntimeError as err:  # missing, unexpected or mis-shaped keys
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} is not a {source.what} state_dict ({source.filename}): {first_line}") from None
    return net


def resize_legacy_pytorch(images: Tensor, size: int = 299) -> Tensor:
    """clean-fid's ``legacy_pytorch`` resizer (cleanfid/resize.py, ``make_resizer("PyTorch", False,
    "bilinear", (299, 299))``): bilinear, ``align_corners=False``, no antialiasing, then clip to
    [0, 255] without quantising. ``(B, 3, H, W)`` in [0, 255] -> ``(B, 3, size, size)`` float32."""
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False)
    return out.clamp(0, 255)


def fid_inception_v3() -> nn.Module:
    """The FID Inception-v3 graph of cleanfid/inception_pytorch.py, without fetching its weights."""
    from cleanfid import inception_pytorch as cfi  # clean-fid's patched FID blocks
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    patched = {
        "Mixed_5b": cfi.FIDInceptionA(192, pool_features=32),
        "Mixed_5c": cfi.FIDInceptionA(256, pool_features=64),
        "Mixed_5d": cfi.FIDInceptionA(288, pool_features=64),
        "Mixed_6b": cfi.FIDInceptionC(768, channels_7x7=128),
        "Mixed_6c": cfi.FIDInceptionC(768, channels_7x7=160),
        "Mixed_6d": cfi.FIDInceptionC(768, channels_7x7=160),
        "Mixed_6e": cfi.FIDInceptionC(768, channels_7x7=192),
        "Mixed_7b": cfi.FIDInceptionE_1(1280),
        "Mixed_7c": cfi.FIDInceptionE_2(2048),
    }
    for name, block in patched.items():
        setattr(net, name, block)
    return net


class CleanFIDInception(nn.Module):
    """clean-fid ``legacy_pytorch`` feature extractor: images in [0, 255] ``(B, 3, H, W)`` -> ``(B, 2048)``.

    Resizes as :func:`resize_legacy_pytorch`, scales to [-1, 1] (``2 x / 255 - 1``, as clean-fid's
    ``model(x / 255)`` followed by pytorch-fid's ``normalize_input``) and returns the final average
    pool of the FID Inception-v3 (``InceptionV3(output_blocks=[3])``). ``net``: :func:`fid_inception_v3`
    with its weights loaded (see :func:`load_inception`).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.trunk = nn.Sequential(  # blocks 0-3 of clean-fid's InceptionV3, up to the final average pool
            net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
            net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
            net.Mixed_5b, net.Mixed_5c, net.Mixed_5d,
            net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e,
            net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1)),
        )  # fmt: skip
        self.eval().requires_grad_(False)

    def forward(self, images: Tensor) -> Tensor:
        x = resize_legacy_pytorch(images) / 255
        return self.trunk(2 * x - 1).flatten(1)


def load_inception(path: str | Path | None = None, device: str | torch.device = "cpu") -> CleanFIDInception:
    """The clean-fid ``legacy_pytorch`` Inception with weights from ``path`` (see :func:`find_weights`)."""
    found = find_weights(INCEPTION_WEIGHTS, path)
    if found is None:
        raise FileNotFoundError(INCEPTION_WEIGHTS.missing_message())
    return CleanFIDInception(_load_weights(fid_inception_v3(), found, INCEPTION_WEIGHTS)).to(device)


class ImageNetClassifier(nn.Module):
    """Wraps an ImageNet classifier for [-1, 1] images, as the authors' ``evaluation/resnet.py``.

    ``(B, 3, H, W)`` in [-1, 1] -> ``(x + 1) / 2`` -> bicubic resize to 224x224 (``align_corners=False``,
    no antialiasing, no clamping) -> ImageNet mean/std normalisation -> ``net`` -> logits ``(B, K)``.
    """

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, net: nn.Module, size: int = 224):
        super().__init__()
        self.net, self.size = net, size
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def forward(self, images: Tensor) -> Tensor:
        x = F.interpolate((images.float() + 1) / 2, size=(self.size, self.size), mode="bicubic")
        return self.net((x - self.mean) / self.std)


def load_resnet50(path: str | Path | None = None, device: str | torch.device = "cpu") -> ImageNetClassifier:
    """torchvision ResNet-50 from a local state_dict (see :func:`find_weights`), wrapped for [-1, 1] input."""
    from torchvision.models import resnet50  # slow to import (all of torchvision.models); only i2sb-eval needs it

    found = find_weights(RESNET50_WEIGHTS, path)
    if found is None:
        raise FileNotFoundError(RESNET50_WEIGHTS.missing_message())
    return ImageNetClassifier(_load_weights(resnet50(weights=None), found, RESNET50_WEIGHTS)).to(device)


def top1_correct(logits: Tensor, labels: Tensor) -> Tensor:
    """Boolean ``(B,)``: whether the arg-max of ``logits`` ``(B, K)`` equals ``labels`` ``(B,)``."""
    return logits.argmax(dim=1) == labels.to(logits.device)
