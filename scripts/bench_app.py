"""A bounded load test of ``i2sb-app``: N concurrent ``gradio_client`` users x M requests each against the server
on 127.0.0.1, with a tiny model; prints a table (and returns the figures to ``tests/test_app_load.py``).

    .venv/bin/python scripts/bench_app.py                      # 20 clients x 3 requests, an untrained tiny run
    .venv/bin/python scripts/bench_app.py --ckpt runs/demo/jpeg5 --size 64 --nfe 10

Checks what a shared page must do: every request answered (none lost, none failed), the queue served in order
(no request started before one that joined the queue clearly earlier: processing order is read from the server's
log, one line per request), and the server's resident memory back to its baseline after the burst (the baseline is
taken after a warm-up burst of the same size, so caches that fill once are in it).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test helpers: a tiny run, the server process

from app_server import AppServer  # noqa: E402
from helpers import random_image, write_run  # noqa: E402

ORDER_MARGIN_S = 0.5  # a request that joined this much earlier must have been served first


@dataclass
class Figures:
    """What one burst measured."""

    clients: int
    requests: int
    answered: int = 0
    failed: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    order_violations: int = 0
    logged: int = 0  # requests found in the server's log (the order is checked among these)
    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_end_mb: float = 0.0


def client_loop(url: str, photos: list[Path], model: str, nfe: int, start: threading.Barrier,
                record: list, figures: Figures) -> None:
    from gradio_client import Client, handle_file  # the test extra's client, imported where it is used

    client = Client(url, verbose=False)
    start.wait()
    for photo in photos:
        submitted = time.monotonic()
        try:
            result = client.predict(model, [handle_file(str(photo))], None, nfe, "ddpm", 0, 1, api_name="/restore")
            if Path(result[2][0]).name != photo.name:
                raise RuntimeError(f"{photo.name}: answered with {result[2][0]}")
        except Exception as err:  # any failure is a figure of the table, not a crash of the benchmark
            figures.failed.append(f"{photo.name}: {' '.join(str(err).split())[:200]}")
            continue
        done = time.monotonic()
        record.append((photo.stem, submitted, done))
        figures.latencies.append(done - submitted)
        figures.answered += 1


def served_order(lines: list[str], names: set[str]) -> list[str]:
    """The photo names in the order the server logged them: ``i2sb-app: MODEL nfe=...: NAME.png: WxH, ...``, one
    line per request, written when it is done (one runs at a time, so also the order they started in)."""
    found = (re.search(r": ([^:;]+)\.png: \d+x\d+", line) for line in lines if line.startswith("i2sb-app: "))
    return [m.group(1) for m in found if m is not None and m.group(1) in names]


def order_violations(record: list, order: list[str]) -> int:
    """Pairs served against their queue order: a joined clearly (ORDER_MARGIN_S) before b, b served first."""
    position = {stem: i for i, stem in enumerate(order)}
    joined = {stem: submitted for stem, submitted, _ in record}
    stems = [s for s in joined if s in position]
    return sum(1 for a in stems for b in stems
               if joined[a] + ORDER_MARGIN_S < joined[b] and position[b] < position[a])


def burst(server: AppServer, folder: Path, tag: str, clients: int, requests: int, model: str, nfe: int,
          image: Path) -> Figures:
    """``clients`` threads, each sending ``requests`` photos (copies of ``image`` named TAG_cXX_rY.png)."""
    figures = Figures(clients, requests, rss_start_mb=server.rss_mb())
    photos = [[folder / f"{tag}_c{c:02d}_r{r}.png" for r in range(requests)] for c in range(clients)]
    for path in (p for row in photos for p in row):
        shutil.copyfile(image, path)
    record: list = []
    barrier = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=client_loop, args=(server.url, row, model, nfe, barrier, record, figures))
               for row in photos]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.monotonic()
    peak = [figures.rss_start_mb]
    while any(t.is_alive() for t in threads):
        peak.append(server.rss_mb())
        time.sleep(0.1)
    figures.wall_s = time.monotonic() - start
    time.sleep(1.0)  # the last log line and Gradio's post-processing
    figures.rss_peak_mb, figures.rss_end_mb = max(peak), server.rss_mb()
    order = served_order(server.lines, {p.stem for row in photos for p in row})
    figures.logged, figures.order_violations = len(order), order_violations(record, order)
    return figures


def table(figures: Figures, baseline_mb: float) -> str:
    lat = sorted(figures.latencies) or [float("nan")]
    total = figures.clients * figures.requests
    rows = [("clients x requests", f"{figures.clients} x {figures.requests}"),
            ("answered / lost / failed", f"{figures.answered} / {total - figures.answered - len(figures.failed)} / "
                                         f"{len(figures.failed)}"),
            ("queue order violations", f"{figures.order_violations} (among {figures.logged} logged)"),
            ("wall time", f"{figures.wall_s:.1f} s ({figures.answered / figures.wall_s:.2f} requests/s)"),
            ("latency p50 / p95 / max", f"{statistics.median(lat):.2f} / {lat[int(0.95 * (len(lat) - 1))]:.2f} / "
                                        f"{lat[-1]:.2f} s"),
            ("server RSS baseline / peak / after", f"{baseline_mb:.0f} / {figures.rss_peak_mb:.0f} / "
                                                   f"{figures.rss_end_mb:.0f} MiB"),
            ("after - baseline", f"{figures.rss_end_mb - baseline_mb:+.1f} MiB")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k:<{width}} | {v} |" for k, v in rows)


def load_test(ckpt: Path | None = None, clients: int = 20, requests: int = 3, nfe: int = 2, size: int = 16,
              folder: Path | None = None, log=print) -> tuple[Figures, float]:
    """Warm-up burst, then the measured burst; returns (its figures, the baseline RSS in MiB)."""
    folder = Path(folder or tempfile.mkdtemp(prefix="bench_app_"))
    ckpt = ckpt or write_run(folder / "tiny_jpeg5", task={"degradation": "jpeg5", "ot_ode": False})
    image = folder / "photo.png"
    random_image(size, size, seed=0).save(image)
    with AppServer([ckpt]) as server:
        model = Path(ckpt).name
        warm = burst(server, folder, "warm", clients, 1, model, nfe, image)
        log(f"warm-up: {warm.answered} answered, RSS {warm.rss_start_mb:.0f} -> {warm.rss_end_mb:.0f} MiB")
        baseline = server.rss_mb()
        figures = burst(server, folder, "load", clients, requests, model, nfe, image)
    return figures, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, default=None, help="a checkpoint (default: an untrained tiny run)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=3, help="requests per client")
    parser.add_argument("--nfe", type=int, default=2)
    parser.add_argument("--size", type=int, default=16, help="side of the uploaded square photo, pixels")
    args = parser.parse_args()
    figures, baseline = load_test(args.ckpt, args.clients, args.requests, args.nfe, args.size)
    print(f"i2sb-app load test: {args.size}x{args.size} photo, NFE {args.nfe}, one thread per process "
          f"(OMP_NUM_THREADS=1), queue concurrency 1")
    print(table(figures, baseline))
    for line in figures.failed[:10]:
        print("failed:", line)


if __name__ == "__main__":
    main()
