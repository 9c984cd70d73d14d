"""i2sb.utils.allocator: after reuse_freed_memory() a U-Net forward reuses freed memory instead of
page-faulting fresh memory in (each run in a fresh interpreter: the setting is process-wide)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import resource, sys
import torch
from i2sb.utils.allocator import reuse_freed_memory
from i2sb.unet import UNet
applied = reuse_freed_memory() if sys.argv[1] == "tuned" else False
torch.set_num_threads(1)
net = UNet(image_size=64, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=1,
           attention_resolutions=(), channel_mult=(1, 2)).eval()
x, t = torch.randn(8, 3, 64, 64), torch.full((8,), 10)
with torch.no_grad():
    for _ in range(3):  # warm-up: the first forwards touch fresh memory whatever the allocator
        net(x, t)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        net(x, t)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def forward_faults(mode: str, **env: str) -> tuple[str, int]:
    """(whether the setting was applied, minor page faults over three warm forwards) in a fresh process."""
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_warm_forwards_reuse_freed_memory():
    applied, tuned = forward_faults("tuned")
    if applied != "True":
        pytest.skip("this C library has no mallopt (not glibc)")
    _, default = forward_faults("default")
    # 4 MB activations: glibc's defaults map and unmap them each forward (~20 000 faults per forward here),
    # tuned they come from freed heap memory
    assert tuned * 10 < default


def test_opt_out_leaves_the_allocator_alone():
    applied, _ = forward_faults("tuned", I2SB_MALLOC="system")
    assert applied == "False"
