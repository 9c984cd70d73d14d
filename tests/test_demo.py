"""The README's main job (scripts/demo.py) end to end, with a 2-step budget: every stage runs and reports."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from i2sb.evaluation.record import ValidationRecord
from i2sb.utils.torchfile import load_torch

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    cmd = [sys.executable, str(DEMO), "--tasks", "sr4x_pool", "--steps", "2", "--nfe", "2", "--crops", "2",
           "--rows", "1", "--out", str(tmp_path), "trainer.eval_every=1000", "logging.progress=false"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "sr4x_pool"
    assert (run / "latest.pt").is_file() and (run / "side_by_side.png").is_file()
    for folder in ("clean", "degraded", "lowres", "bicubic", "restored_nfe1", "restored_nfe2", "restored_default"):
        assert len(list((run / "images" / folder).glob("*.png"))) == 4, folder  # 2 crops + 2 whole photos
    with Image.open(run / "images" / "lowres" / "chelsea_whole.png") as low, \
            Image.open(run / "images" / "bicubic" / "chelsea_whole.png") as bicubic:
        assert low.size == (32, 32) and bicubic.size == (128, 128)  # the baseline is computed from the low-res photo
    table = (tmp_path / "results.md").read_text()
    assert "| task | restoration | PSNR dB | SSIM | SWD | time s |" in table
    assert re.search(r"^\| sr4x_pool +\| degraded input \| [\d.]+ \| [\d.]+ \| [\d.]+ \| +\d+ \|$", table, re.M)
    assert "| bicubic upsampling (the baseline) |" in table and "| I2SB, NFE 1 |" in table and "| I2SB, NFE 2 |" in table
    default = re.search(r"\| \*\*I2SB, default: NFE (\d+)\*\* \(i2sb-sample without nfe=\) \|", table)
    validated = load_torch(run / "latest.pt")["validation"]
    assert default and int(default.group(1)) == ValidationRecord.from_dict(validated).best("fidelity").nfe
    assert "i2sb-sample: nfe=" in result.stdout and "highest PSNR in the model's validation" in result.stdout
