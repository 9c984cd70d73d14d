"""Two CPU processes under torchrun (gloo): identical weights on both ranks, different data on each."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).parent / "workers" / "ddp_train.py"


@pytest.mark.slow  # torchrun starts two processes (up to 300 s on a busy CPU)
def test_torchrun_two_ranks_sync_weights_and_split_data(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER), str(tmp_path)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in r0["model"]:
        assert torch.equal(r0["model"][key], r1["model"][key]), key
        assert torch.equal(r0["ema"][key], r1["ema"][key]), key
    # 8 / (2 ranks x 2) = 2 microbatches per step, 3 steps
    assert len(r0["seen"]) == len(r1["seen"]) == 6
    assert not torch.isclose(r0["seen"], r1["seen"]).any()
    # the weights moved away from the (shared) initialisation, and rank 0 wrote the shared checkpoint
    assert all(torch.equal(r0["initial"][k], r1["initial"][k]) for k in r0["initial"])
    assert not all(torch.equal(r0["initial"][k], r0["model"][k]) for k in r0["model"])
    latest = torch.load(tmp_path / "latest.pt", weights_only=True)
    assert latest["step"] == 3
    assert all(torch.equal(latest["model"][k], r0["model"][k]) for k in r0["model"])
