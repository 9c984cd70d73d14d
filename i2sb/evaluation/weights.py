"""Where the pre-trained networks of the evaluation (FID's Inception, ResNet-50, LPIPS's backbones) come from and
where i2sb looks for their weights: names, URLs, environment variables. Plain data, no torch import, so
``i2sb-eval --help`` can say where to get each file without loading a network library."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path


def hub_dir() -> Path:
    """``torch.hub.get_dir()``: asked of torch when it is loaded (it may have been moved with ``set_dir``), else
    computed as torch does, ``$TORCH_HOME/hub`` (default ``$XDG_CACHE_HOME/torch``, ``~/.cache/torch``)."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "hub"):
        return Path(torch.hub.get_dir())
    home = os.getenv("TORCH_HOME") or os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(home)) / "hub"


@dataclass(frozen=True)
class WeightsSource:
    """Where a pre-trained network's weights come from and where this library looks for them."""

    what: str
    filename: str
    url: str
    env_var: str
    option: str  # the i2sb-eval key that names the file

    def cache_path(self) -> Path:
        """The file as torch.hub / clean-fid would have cached it: ``$TORCH_HOME/hub/checkpoints/``."""
        return hub_dir() / "checkpoints" / self.filename

    def missing_message(self) -> str:
        return (
            f"{self.what} weights not found: download {self.url} and give {self.option}=PATH (i2sb-eval), "
            f"set {self.env_var}=PATH, or put the file at {self.cache_path()}"
        )


# clean-fid legacy_pytorch = pytorch-fid's port of the TF Inception (cleanfid/inception_pytorch.py).
INCEPTION_WEIGHTS = WeightsSource(
    what="FID Inception (clean-fid legacy_pytorch)",
    filename="pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    env_var="I2SB_INCEPTION", option="inception",
)

TORCHVISION_MODELS = "https://download.pytorch.org/models/"  # where torchvision's IMAGENET1K_V1 files live


def torchvision_weights(what: str, filename: str, env_var: str, option: str) -> WeightsSource:
    """A torchvision weights file: its URL is the models folder plus its name."""
    return WeightsSource(what, filename, TORCHVISION_MODELS + filename, env_var, option)


# torchvision resnet50(pretrained=True) as in the authors' evaluation/resnet.py = IMAGENET1K_V1.
RESNET50_WEIGHTS = torchvision_weights("ResNet-50 (torchvision IMAGENET1K_V1)", "resnet50-0676ba61.pth",
                                       env_var="I2SB_RESNET50", option="resnet")

BACKBONE_WEIGHTS = {  # torchvision's IMAGENET1K_V1 files, what lpips.LPIPS(pretrained backbone) downloads
    "alex": torchvision_weights("LPIPS backbone AlexNet (torchvision IMAGENET1K_V1)", "alexnet-owt-7be5be79.pth",
                                env_var="I2SB_LPIPS_BACKBONE", option="lpips_weights"),
    "vgg": torchvision_weights("LPIPS backbone VGG-16 (torchvision IMAGENET1K_V1)", "vgg16-397923af.pth",
                               env_var="I2SB_LPIPS_BACKBONE", option="lpips_weights"),
}
