"""scripts/gpu_check.sh, the one command for a lent GPU, run here on the CPU with a 16-px model so it cannot rot."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check_script", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.slow
def test_every_section_runs_on_the_cpu(tmp_path):
    result = run("--device", "cpu", "--quick", "--threads", "1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = [results["env"], *results["train"].values(), *results["sample"].values(), *results["ddp"].values(),
            *results["determinism"].values()]
    assert all("error" not in row for row in rows), [row["error"] for row in rows if "error" in row]
    assert results["train"]["fp32, microbatch auto"]["microbatch"] == 4  # the whole global batch of 4 on a CPU
    assert results["determinism"]["deterministic=true"]["bit_identical"]
    text = (tmp_path / "gpu_check.md").read_text()
    assert text == result.stdout and "| training step, global batch 4 |" in text and "NFE 10 ms/image" in text


def test_a_spent_budget_reports_every_section_as_skipped(tmp_path):
    result = run("--device", "cpu", "--quick", "--budget-s", "0", "--out", str(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "environment failed: skipped: time budget spent" in result.stdout
    assert result.stdout.count("failed: skipped: time budget spent") == 1 + 6 + 6 + 1 + 2  # env, train, sample, ddp, det.


def test_the_report_shows_cuda_rows_and_the_authors_beside_ours():
    gc = load_gpu_check()
    args = gc.parse_args(["--authors", "A"])
    row = {"median_s": 0.5, "min_s": 0.4, "max_s": 0.6, "images_per_s": 64.0, "memory_mb": 30000.0}
    timing = {"median_s": 0.1, "min_s": 0.1, "max_s": 0.1, "s_per_image": 0.01}
    results = {
        "env": {"gpu": "NVIDIA H100 80GB HBM3", "capability": "9.0", "memory_gb": 79.6, "gpus_visible": 1,
                "torch": "2.14.1", "cuda": "13.0", "cudnn": 92400, "class": "machine class: CUDA (native bf16); "
                "precision=auto chose bf16", "cpu": "x", "threads": 16},
        "train": {"bf16, microbatch auto": {**row, "microbatch": 16, "passes": 2, "precision": "bf16"},
                  "authors' code, fp32, microbatch 2": row},
        "sample": {"auto, batch 16": {"precision": "bf16", "nfe1": timing, "nfe10": timing, "memory_mb": 9000.0},
                   "authors' code, fp32, batch 16": {"precision": "fp32", "nfe1": timing, "nfe10": timing}},
        "ddp": {"nccl": {"error": "ncclInvalidUsage: Duplicate GPU detected"},
                "gloo": {"seconds": 30.0, "step": 3, "loss": 0.5, "it_per_s": 1.0}},
        "determinism": {"deterministic=true": {"bit_identical": True, "max_abs_diff": 0.0, "seconds": 20.0}},
    }
    text = gc.report(results, args)
    assert "NVIDIA H100 80GB HBM3 (compute capability 9.0, 79.6 GiB, 1 visible)" in text
    assert "| bf16, microbatch auto | bf16 | 16 x 2 | 500.0 | 400.0–600.0 | 64.00 | 30000 |" in text
    assert "| authors' code, fp32, microbatch 2 | fp32 | 2 |" in text
    assert "| backend nccl | failed: ncclInvalidUsage: Duplicate GPU detected |" in text
    assert "| deterministic=true | yes | 0 | 20.0 |" in text
    assert gc.parse_args([]).model == "adm256" and gc.parse_args([]).size == 256
