"""scripts/compare_authors.py's driver: one column per variant of ours, each worker gets its own overrides
and this run's settings, the table marks the best value per NFE (the workers need the authors' code and are
not run here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_authors.py"


@pytest.fixture(scope="module")
def ca():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("compare_authors_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(SCRIPT.parent))


def test_one_column_per_ours_variant(ca):
    args = ca.parse_args(["--authors", "A", "--ours", "trainer.precision=fp32", "--ours", "trainer.precision=auto seed=1"])
    assert ca.columns(args) == {"authors": ("authors", []), "ours": ("ours", ["trainer.precision=fp32"]),
                                "ours2": ("ours", ["trainer.precision=auto", "seed=1"])}
    default = ca.parse_args(["--authors", "A", "trainer.lr=5e-4"])
    assert ca.columns(default) == {"authors": ("authors", []), "ours": ("ours", ["trainer.lr=5e-4"])}


def test_worker_gets_the_run_settings_and_only_its_overrides(ca):
    args = ca.parse_args(["--authors", "A", "--minutes", "2", "--nfe", "1", "3", "--seed", "4",
                          "--ours", "trainer.lr=2e-3", "--ours", "seed=1"])
    argv = ca.worker_argv(args, "ours", "jpeg10", ["seed=1"])
    parsed = ca.parse_args(argv[2:])
    assert (parsed.worker, parsed.task, parsed.overrides) == ("ours", "jpeg10", ["seed=1"])
    assert (parsed.minutes, parsed.nfe, parsed.seed, parsed.authors) == (2.0, [1, 3], 4, "A")
    assert parsed.ours is None  # a worker trains one variant


def test_table_marks_the_best_per_nfe_and_reports_errors(ca):
    args = ca.parse_args(["--authors", "A", "--ours", "trainer.precision=fp32", "--ours", "trainer.precision=auto"])
    row = lambda a, b, steps, prec: {"input": 27.0, "nfe1": a, "nfe5": b, "steps": steps, "precision": prec}  # noqa: E731
    results = {"jpeg10": {"authors": row(28.5, 27.2, 300, "fp32"), "ours": row(28.6, 27.1, 310, "fp32"),
                          "ours2": row(28.4, 27.3, 450, "bf16")},
               "sr4x_bicubic": {"authors": row(29.0, 26.9, 280, "fp32"), "ours": {"error": "ours failed"},
                                "ours2": row(29.3, 27.1, 380, "bf16")}}
    lines = ca.table(args, results).splitlines()
    assert "i2sb trainer.precision=fp32" in lines[0] and "i2sb trainer.precision=auto" in lines[0]
    assert lines[2] == ("| jpeg10 | 27.00 | 28.50 / 27.20 (300, fp32) | **28.60** / 27.10 (310, fp32) | "
                        "28.40 / **27.30** (450, bf16) |")
    assert "ours failed" in lines[3] and "**29.30** / **27.10** (380, bf16)" in lines[3]
