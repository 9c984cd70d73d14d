"""A bounded load test of ``i2sb-app`` (``scripts/bench_app.py``): 20 concurrent ``gradio_client`` users x 3 requests
against the server on 127.0.0.1 with a tiny model: every request answered, none lost, the queue served in order,
the server's memory back to its baseline."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_app.py"
MEMORY_SLACK_MB = 64  # measured +6 MiB (README); Python's heap may keep a few arenas


def bench():
    """scripts/bench_app.py as a module (registered first: its dataclasses look their module up)."""
    if "bench_app" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_app", SCRIPT)
        sys.modules["bench_app"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["bench_app"])
    return sys.modules["bench_app"]


@pytest.mark.slow
def test_twenty_clients_three_requests_each_all_answered_in_order(tmp_path):
    pytest.importorskip("gradio_client")
    figures, baseline = bench().load_test(clients=20, requests=3, nfe=2, size=16, folder=tmp_path, log=lambda m: None)
    assert figures.failed == [] and figures.answered == 60
    assert figures.logged == 60, "every request has its line in the server's log"
    assert figures.order_violations == 0
    assert figures.rss_end_mb - baseline < MEMORY_SLACK_MB, (baseline, figures.rss_peak_mb, figures.rss_end_mb)


def test_served_order_reads_the_servers_log_lines():
    lines = ["i2sb-app: serving tiny (Ctrl-C stops)",
             "i2sb-app: tiny nfe=2 sampler=ddpm seed=0 samples=1: load_c01_r0.png: 16x16, 0.05 s per image",
             "i2sb-app: tiny nfe=2 sampler=ddpm seed=0 samples=1: load_c00_r0.png: 16x16, 0.04 s per image"]
    module = bench()
    order = module.served_order(lines, {"load_c00_r0", "load_c01_r0"})
    assert order == ["load_c01_r0", "load_c00_r0"]
    record = [("load_c00_r0", 0.0, 1.0), ("load_c01_r0", 1.0, 2.0)]  # c00 joined 1 s earlier but was served last
    assert module.order_violations(record, order) == 1
    assert module.order_violations(record, order[::-1]) == 0
