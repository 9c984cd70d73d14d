"""Shared test settings: a small thread count and deterministic seeds for a 2-core CI machine."""

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def alexnet_file(tmp_path_factory):
    """A torchvision AlexNet state_dict with random weights under torchvision's file name (the LPIPS backbone;
    its convolutional ``features.*`` only -- what LPIPS uses -- 10 MB instead of the classifier's 240 MB)."""
    from torchvision.models import alexnet  # slow import (all of torchvision.models); only the LPIPS tests need it

    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("lpips") / "alexnet-owt-7be5be79.pth"
    torch.save({k: v for k, v in alexnet().state_dict().items() if k.startswith("features.")}, path)
    return path
