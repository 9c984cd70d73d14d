"""LPIPS (Zhang et al., CVPR 2018) from the ``lpips`` package, with its backbone read from a local file.

The package ships its calibrated linear layers (``lpips/weights/v0.1/{alex,vgg}.pth``) but builds its
backbone with torchvision's ``pretrained=True``, i.e. a download on first use. Here the package builds the
backbone randomly initialised (``pnet_rand=True``: no download) and the backbone's torchvision ImageNet
state_dict, found like the other networks' weights (:func:`i2sb.evaluation.metrics.find_weights`), is
copied into it: the result is the network ``lpips.LPIPS(net=...)`` builds with torchvision's weights.

Convention: :class:`LPIPS` takes two ``(B, 3, H, W)`` float tensors in [-1, 1] (RGB) and returns ``(B,)``
distances, 0 for identical images. AlexNet (the default, as in most restoration papers) needs images of
at least 31x31 pixels, VGG-16 at least 16x16.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..utils.torchfile import load_torch
from .metrics import WeightsSource, find_weights
from .weights import BACKBONE_WEIGHTS  # noqa: F401  (re-exported)

MIN_SIZE = {"alex": 31, "vgg": 16}  # smallest image side the backbone's pooling accepts
PACKAGE_MISSING = "the lpips package is not installed: pip install lpips (or pip install 'i2sb[lpips]')"


class LPIPSUnavailable(RuntimeError):
    """LPIPS cannot be computed here (package or backbone file missing); the message says what to get."""


def import_lpips():
    """The ``lpips`` module, or :class:`LPIPSUnavailable` naming what to install."""
    try:
        import lpips  # optional dependency (extra "lpips"); only LPIPS needs it
    except ImportError as err:
        raise LPIPSUnavailable(PACKAGE_MISSING) from err
    return lpips


def _backbone_source(net: str) -> WeightsSource:
    if net not in BACKBONE_WEIGHTS:
        raise ValueError(f"unknown LPIPS network {net!r}; expected one of {sorted(BACKBONE_WEIGHTS)}")
    return BACKBONE_WEIGHTS[net]


def copy_backbone(trunk: nn.Module, state: dict[str, Tensor], source: WeightsSource, path: Path) -> None:
    """Load torchvision's ``features.I.*`` tensors into the package's trunk (``sliceK.I.*``), strictly.

    A whole torchvision state_dict (classifier included) or its ``features.*`` part alone is accepted.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    wanted = {key: "features." + key.split(".", 1)[1] for key in trunk.state_dict()}
    missing = [src for src in wanted.values() if src not in state]
    if missing:
        raise ValueError(f"{path} is not a {source.what} state_dict ({source.filename}): no {missing[0]!r}")
    try:
        trunk.load_state_dict({key: state[src] for key, src in wanted.items()})
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[-1].strip()
        raise ValueError(f"{path} is not a {source.what} state_dict ({source.filename}): {first_line}") from err


class LPIPS(nn.Module):
    """``lpips.LPIPS`` as a metric: ``(x, y)`` ``(B, 3, H, W)`` in [-1, 1] -> ``(B,)`` distances."""

    def __init__(self, model: nn.Module, net: str):
        super().__init__()
        self.model, self.net, self.min_size = model, net, MIN_SIZE[net]
        self.eval().requires_grad_(False)

    def fits(self, height: int, width: int) -> bool:
        """Whether images of this size are large enough for the backbone."""
        return min(height, width) >= self.min_size

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected two (B, 3, H, W) tensors of equal shape, got {tuple(x.shape)} {tuple(y.shape)}")
        if not self.fits(*x.shape[-2:]):
            raise ValueError(f"LPIPS ({self.net}) needs images of at least {self.min_size}x{self.min_size} pixels, "
                             f"got {x.shape[-1]}x{x.shape[-2]}")
        return self.model(x.float(), y.float()).flatten()


def load_lpips(net: str = "alex", path: str | Path | None = None, device: str | torch.device = "cpu") -> LPIPS:
    """LPIPS v0.1 on ``net`` ("alex" or "vgg") with the backbone state_dict from ``path`` or the default places.

    Raises :class:`LPIPSUnavailable` when the package is not installed or no backbone file is found at the
    default places (see :func:`find_weights`); a ``path`` or ``$I2SB_LPIPS_BACKBONE`` naming a missing file
    is a FileNotFoundError, a file of another network a ValueError.
    """
    source = _backbone_source(net)
    found = find_weights(source, path)  # an explicit path to a missing file is an error even without the package
    missing = [] if found is not None else [source.missing_message()]
    try:
        package = import_lpips()
    except LPIPSUnavailable as err:
        raise LPIPSUnavailable("; ".join([str(err), *missing])) from err.__cause__
    if missing:
        raise LPIPSUnavailable(missing[0])
    with warnings.catch_warnings():  # torchvision's deprecation of pretrained=, which the package passes
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        model = package.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    copy_backbone(model.net, load_torch(found, mmap=True), source, found)
    return LPIPS(model, net).to(device)
