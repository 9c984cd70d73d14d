"""scripts/bench_distill.py --quick on a tiny teacher: it distils a student with i2sb-distill, restores the demo's
held-out crops with the teacher (NFE 1 / 10 / 19, the top of its 20 bridge steps) and the student (NFE 1), and
reports every row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import write_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmark_distils_and_scores_every_row(tmp_path):
    teacher = write_run(tmp_path / "teacher", task={"ot_ode": False, "n_steps": 20})  # NFE 1, 10, 19
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_distill.py"), str(teacher), "--quick",
                             "--out", str(tmp_path / "bench"), "--json", str(tmp_path / "b.json"),
                             "trainer.precision=fp32", "data.params.length=8"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "bench" / "student" / "latest.pt").is_file()  # distilled with the stated settings
    out = result.stdout
    assert "2 updates of batch 2, lr 0.0001, 1 auxiliary updates" in out
    assert "avx2 " in out and "amx_bf16 " in out and "torch " in out
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert list(rows) == ["teacher NFE 1", "teacher NFE 10", "teacher NFE 19", "teacher NFE 19, seed b",
                          "student NFE 1"]
    for name, row in rows.items():
        assert row["ms"] > 0 and row["swd"] > 0 and 0 < row["psnr"] < 60, name
        assert f"| {name} | {row['psnr']:.2f} |" in out
    # two draws of the teacher differ, and the student is compared with the same reference draw
    assert rows["teacher NFE 19, seed b"]["swd_vs_teacher"] > 0 and rows["student NFE 1"]["swd_vs_teacher"] > 0
    assert "swd_vs_teacher" not in rows["teacher NFE 10"]


def test_bad_arguments_are_one_line_errors(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_distill.py"), str(tmp_path / "missing")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "teacher" in result.stderr and "no such file" in result.stderr
