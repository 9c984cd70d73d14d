"""The README's main job (scripts/demo.py) end to end, with a 2-step budget: every stage runs and reports."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    cmd = [sys.executable, str(DEMO), "--tasks", "sr4x_pool", "--steps", "2", "--nfe", "2", "--crops", "2",
           "--rows", "1", "--out", str(tmp_path), "trainer.eval_every=1000", "logging.progress=false"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "sr4x_pool"
    assert (run / "latest.pt").is_file() and (run / "side_by_side.png").is_file()
    for folder in ("clean", "degraded", "restored_nfe1", "restored_nfe2"):
        assert len(list((run / "images" / folder).glob("*.png"))) == 4, folder  # 2 crops + 2 whole photos
    table = (tmp_path / "results.md").read_text()
    assert re.search(r"^\| sr4x_pool +\|", table, re.M) and "I2SB, NFE 1" in table and "I2SB, NFE 2" in table
