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
    """A torchvision AlexNet state_dict with random weights, saved as torchvision's alexnet-owt-7be5be79.pth is
    (the LPIPS backbone; ~240 MB, written once per session)."""
    from torchvision.models import alexnet  # slow import (all of torchvision.models); only the LPIPS tests need it

    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("lpips") / "alexnet-owt-7be5be79.pth"
    torch.save(alexnet().state_dict(), path)
    return path
