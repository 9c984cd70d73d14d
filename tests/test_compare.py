"""scripts/compare.py (the small Figure 8) as a new user runs it: a --quick run on the demo photos, then a
rerun on the trained runs without training; the table, CSV, plot and sample grids are checked."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare.py"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def quick_run(compare, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compare")
    assert compare.main(["--quick", "--out", str(out), "--nfe", "1", "2"]) == 0
    return out


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # trains three networks (compare --quick)
def test_quick_run_writes_table_plot_and_samples(quick_run):
    rows = read_rows(quick_run / "results.csv")
    assert [(r["approach"], int(r["nfe"])) for r in rows] == [(m, n) for m in ("i2sb", "palette", "ddnm") for n in (1, 2)]
    for r in rows:
        assert math.isfinite(float(r["psnr"])) and -1.0 <= float(r["ssim"]) <= 1.0 and float(r["seconds"]) >= 0
        assert float(r["swd"]) > 0 and r["lpips"] == "" and r["fid"] == ""  # no weights given: no LPIPS / FID
    table = (quick_run / "results.md").read_text()
    assert "| NFE | I2SB PSNR / SSIM / SWD | Palette PSNR / SSIM / SWD | DDNM PSNR / SSIM / SWD |" in table
    assert "| 1 | " in table and "| 2 | " in table and "Degraded input: PSNR" in table and ", SWD " in table
    i2sb_nfe1 = next(r for r in rows if r["approach"] == "i2sb" and r["nfe"] == "1")
    cell = f"{float(i2sb_nfe1['psnr']):.2f} / {float(i2sb_nfe1['ssim']):.3f} / {float(i2sb_nfe1['swd']):.1f}"
    assert f"| 1 | {cell} |" in table
    with Image.open(quick_run / "figure8.png") as plot:
        assert plot.size == (1800, 480) and plot.mode in ("RGBA", "RGB")
        colours = np.unique(np.asarray(plot.convert("RGB")).reshape(-1, 3), axis=0)
        assert len(colours) > 50  # lines, labels, legend: not a blank canvas
    for nfe in (1, 2):  # 2 images x (degraded, 3 approaches, clean), 16 px tiles with 2 px padding
        with Image.open(quick_run / f"samples_nfe{nfe}.png") as grid:
            assert grid.size == (5 * 18 + 2, 2 * 18 + 2)
    for method in ("i2sb", "palette", "ddpm"):  # equal budgets: every run trained the same 2 steps
        assert (quick_run / "runs" / method / "latest.pt").is_file()


@pytest.mark.slow
def test_rerun_loads_the_given_runs_without_training(compare, quick_run, tmp_path):
    runs = quick_run / "runs"
    before = {m: (runs / m / "latest.pt").stat().st_mtime_ns for m in ("i2sb", "palette", "ddpm")}
    assert compare.main(["--quick", "--out", str(tmp_path), "--nfe", "1", "--i2sb", str(runs / "i2sb"),
                         "--palette", str(runs / "palette"), "--prior", str(runs / "ddpm")]) == 0
    assert not (tmp_path / "runs").exists()
    assert {m: (runs / m / "latest.pt").stat().st_mtime_ns for m in before} == before
    again = {(r["approach"], r["nfe"]): r for r in read_rows(tmp_path / "results.csv")}
    first = {(r["approach"], r["nfe"]): r for r in read_rows(quick_run / "results.csv")}
    for key in again:  # the same runs, images and seeds: the same numbers
        assert again[key]["psnr"] == first[key]["psnr"] and again[key]["swd"] == first[key]["swd"]


def test_ddnm_is_left_out_for_a_nonlinear_task(compare):
    args = compare.parse_args(["--quick", "--task", "jpeg5"])
    assert compare.usable_approaches(args) == ["i2sb", "palette"]
    assert compare.parse_args(["--quick", "--methods", "ddnm"]).approaches == ["ddnm"]  # the older flag
    assert compare.parse_args(["--quick"]).nfe == [1, 2]


def test_the_baselines_draw_uniform_steps_and_the_bridge_the_recipes(compare):
    """trainer=cpu's skewed steps (t_power) were measured for I2SB only: Palette and the prior keep Ho et al.'s
    uniform draws; everything else is shared, and a user's override still reaches every run."""
    from i2sb.config import to_train_config

    compose = compare.compose
    args = compare.parse_args(["--quick", "trainer.lr=3e-4"])
    cfgs = {m: to_train_config(compose("train", compare.train_overrides(args, m))) for m in ("i2sb", "palette", "ddnm")}
    assert cfgs["i2sb"].trainer.t_power == 2.0
    assert cfgs["palette"].trainer.t_power == cfgs["ddnm"].trainer.t_power == 1.0
    assert {c.trainer.lr for c in cfgs.values()} == {3e-4}
    assert {c.method for c in cfgs.values()} == {"i2sb", "palette", "ddpm"}


def test_lpips_and_fid_columns_appear_where_their_weights_are_given(compare, alexnet_file):
    pytest.importorskip("lpips")
    x0 = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    scorer = compare.Scorer(x0, lpips_weights=alexnet_file)
    same, noisy = scorer(x0), scorer((x0 + 0.3 * torch.randn(x0.shape, generator=torch.Generator())).clamp(-1, 1))
    assert same["swd"] == 0.0 and same["lpips"] == pytest.approx(0.0, abs=1e-6) and same["fid"] is None
    assert noisy["swd"] > 0 and noisy["lpips"] > 0 and noisy["psnr"] < same["psnr"]
    rows = [compare.Row("i2sb", 1, seconds=0.1, **noisy), compare.Row("i2sb", 2, seconds=0.2, **{**noisy, "fid": 7.5})]
    table = compare.markdown_table(rows, ["i2sb"], {**same, "psnr": 20.0})
    assert "| NFE | I2SB PSNR / SSIM / SWD / LPIPS / FID |" in table
    assert table.splitlines()[3].endswith(f" / {noisy['lpips']:.3f} / 7.5 |") and "LPIPS 0.000" in table
