"""The demo: train small I2SB models on the built-in photographs, restore held-out photographs, evaluate.

Run with ``make demo`` (or ``.venv/bin/python scripts/demo.py``). For each task (default: JPEG quality 5 and
4x super-resolution) it

1. trains a small U-Net with ``i2sb-train ... data=demo`` on random crops of 7 scikit-image photographs,
2. writes held-out clean photographs (``chelsea`` and ``coffee``, never seen in training) and degrades them,
3. restores them with ``i2sb-sample`` at NFE 1 (the one-step prediction) and NFE 10 (Algorithm 2),
4. evaluates with ``i2sb-eval`` (PSNR/SSIM of the degraded input and of both restorations),
5. writes ``runs/demo/<task>/side_by_side.png`` (columns: degraded | NFE 1 | NFE 10 | clean) and prints a table
   (also saved as ``runs/demo/results.md``).

Everything runs on the CPU by default, in 7 to 20 minutes on 2 cores (see the README); ``--steps`` and
``--tasks`` trade time for quality, extra ``key=value`` arguments go to ``i2sb-train``.
"""

from __future__ import annotations

import argparse
import json
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
NOTE = (
    "NFE 1 is the bridge's one-step prediction, close to the posterior mean E[x0 | x1]: the best PSNR. More NFE\n"
    "draw a sample of p(x0 | x1) (sharper, with plausible detail); an exact posterior sample has twice the MMSE,\n"
    "i.e. ~3 dB less PSNR than the posterior mean: pixel metrics favour blurry estimates (the paper, App. C.1,\n"
    "reports FID and classifier accuracy for this reason)."
)


def run(cmd: list[str]) -> None:
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True)


def write_clean_photos(folder: Path, crop_size: int, n_crops: int, photo_size: int) -> None:
    """Held-out photographs: ``n_crops`` validation crops at the training size plus both whole photos."""
    write_demo_folder(folder, split="val", image_size=crop_size, n=n_crops)
    for name, array in demo_photos("val"):
        side = min(array.shape[:2])
        top, left = (array.shape[0] - side) // 2, (array.shape[1] - side) // 2
        square = Image.fromarray(array[top : top + side, left : left + side]).resize((photo_size, photo_size), Image.BICUBIC)
        square.save(folder / f"{name}_whole.png")


def degrade_folder(task: str, clean: Path, degraded: Path, seed: int) -> None:
    """Degrade every clean image with the task's operator (built per image size)."""
    degraded.mkdir(parents=True, exist_ok=True)
    cache: dict[int, object] = {}
    for i, path in enumerate(sorted(clean.glob("*.png"))):
        x0 = load_image(path)[None]
        size = x0.shape[-1]
        deg = cache.setdefault(size, degrade.build(task, size))
        x1, _ = deg(x0, generator=torch.Generator().manual_seed(seed + i))
        save_image(x1[0].clamp(-1, 1), degraded / path.name)


def side_by_side(folders: list[Path], names: list[str], out: Path) -> None:
    """One row per image: the same file name from each folder, left to right (shown at one size, nearest)."""
    rows = [load_image(folder / name) for name in names for folder in folders]
    size = max(r.shape[-1] for r in rows)
    rows = [torch.nn.functional.interpolate(r[None], size=(size, size), mode="nearest")[0] for r in rows]
    grid = make_grid(torch.stack(rows), nrow=len(folders), padding=4, pad_value=1.0)
    save_image(grid, out)


def summary_row(task: str, metrics: dict[str, dict], seconds: float) -> str:
    cells = [f"{metrics[k]['psnr']:6.2f} / {metrics[k]['ssim']:.3f}" for k in metrics]
    return f"| {task:<12} | " + " | ".join(cells) + f" | {seconds:5.0f} |"


def demo_task(task: str, args: argparse.Namespace, root: Path) -> str:
    t0 = time.perf_counter()
    run_dir, work = root / task, root / task / "images"
    clean, degraded = work / "clean", work / "degraded"
    run([str(BIN / "i2sb-train"), f"task={task}", "model=small", "data=demo", "trainer=cpu",
         f"trainer.max_steps={args.steps}", f"run_dir={run_dir}", f"device={args.device}", *DEMO_NET,
         *args.train_overrides])
    write_clean_photos(clean, crop_size=64, n_crops=args.crops, photo_size=128)
    degrade_folder(task, clean, degraded, seed=1)
    folders = {"input": degraded}
    for nfe in sorted({1, args.nfe}):
        folders[f"nfe{nfe}"] = work / f"restored_nfe{nfe}"
        run([str(BIN / "i2sb-sample"), f"ckpt={run_dir}", f"input={degraded}", f"output={folders[f'nfe{nfe}']}",
             f"nfe={nfe}", f"device={args.device}", "seed=0", "upscale=false",  # inputs are x1, as training saw
             "overwrite=true"])  # the demo's own folder: a re-run restores again
    metrics = {}
    for label, folder in folders.items():
        json_path = run_dir / f"metrics_{label}.json"
        run([str(BIN / "i2sb-eval"), f"restored={folder}", f"reference={clean}", "fid=false", f"json={json_path}",
             f"device={args.device}"])
        metrics[label] = json.loads(json_path.read_text())
    names = sorted(p.name for p in clean.glob("*_whole.png")) + sorted(p.name for p in clean.glob("*.png"))[: args.rows]
    side_by_side([*folders.values(), clean], names, run_dir / "side_by_side.png")
    print(f"[demo] {task}: side-by-side image ({' | '.join(folders)} | clean): {run_dir / 'side_by_side.png'}")
    return summary_row(task, metrics, time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["jpeg5", "sr4x_pool"], help="tasks to train and restore")
    parser.add_argument("--steps", type=int, default=600, help="training steps per task")
    parser.add_argument("--nfe", type=int, default=10, help="network evaluations per restoration")
    parser.add_argument("--crops", type=int, default=12, help="held-out 64 px crops to restore (plus 2 whole photos)")
    parser.add_argument("--rows", type=int, default=4, help="crops shown in the side-by-side image")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("train_overrides", nargs="*", help="extra i2sb-train key=value overrides")
    args = parser.parse_args()
    rows = [demo_task(task, args, args.out) for task in args.tasks]
    nfes = sorted({1, args.nfe})
    table = "\n".join([
        "| task | degraded input | " + " | ".join(f"I2SB, NFE {n}" for n in nfes) + " | time s |",
        "|---|--:|" + "--:|" * len(nfes) + "--:|",
        *rows,
    ])
    print("\nHeld-out photographs (chelsea, coffee), PSNR dB / SSIM, mean over images:\n" + table)
    print(NOTE)
    (args.out / "results.md").write_text(table + "\n\n" + NOTE + "\n")
    print(f"\n[demo] table written to {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
