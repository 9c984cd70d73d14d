"""Shared test settings: small thread count and deterministic seeds for a 2-core CI machine."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
