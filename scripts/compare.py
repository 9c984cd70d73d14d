"""Rerun the I2SB paper's Figure 8 in small: PSNR, SSIM and SWD against NFE for I2SB, Palette and DDNM.

All three use the same U-Net configuration, task, data, optimiser, batch and number of training steps
(``trainer=cpu``; its skewed training steps, ``t_power``, were measured for the bridge only, so the baselines
draw theirs uniformly, as their papers):

* **I2SB** (``method=i2sb``): the bridge from the degraded image, sampled with the authors' Algorithm 2;
* **Palette** (``method=palette``): the degraded image concatenated to x_t, sampled from N(0, I) with DDPM
  steps (the paper's setting for Fig. 8; x0 predictions clipped as in Palette's code);
* **DDNM** (``method=ddpm`` prior + the task's operator, zero-shot): DDIM with η = 0.85 as in DDNM's code.

For every NFE in ``--nfe`` (default 1 2 5 10 50 100) each approach restores the same held-out degraded images
with the same seed; the script writes ``results.csv``, ``results.md`` (a table, also printed),
``figure8.png`` (PSNR, SSIM and SWD against NFE on a log axis, the degraded input as a dashed line) and
``samples_nfe{N}.png`` (rows: images; columns: degraded | I2SB | Palette | DDNM | clean) into ``--out``.
Distortion (PSNR, SSIM) beside perception: SWD (x1e3, 7x7 Laplacian-pyramid patches, no weights,
:mod:`i2sb.evaluation.swd`; lower = local statistics closer to the clean images) for every row, LPIPS with
``--lpips-weights`` (torchvision's AlexNet file) and FID with ``--inception`` (clean-fid's Inception file; on
a few images FID is biased and only comparable at equal N).

    .venv/bin/python scripts/compare.py                        # demo photos, sr4x_pool, ~17 min on 2 CPU cores
    .venv/bin/python scripts/compare.py --task inpaint_center --steps 3000 --device cuda
    .venv/bin/python scripts/compare.py --train photos/train --val photos/val
    .venv/bin/python scripts/compare.py --i2sb runs/sr --palette runs/sr_palette --prior runs/sr_ddpm   # no training
    .venv/bin/python scripts/compare.py --quick                # smoke run: tiny network, 2 steps, nfe 1 2

Extra ``key=value`` arguments go to every ``i2sb-train`` run (e.g. ``trainer.lr=1e-3``). DDNM needs a linear
task (SR, blur, inpainting, colorization); for JPEG it is left out. Default budget: ``model=small`` with 32
channels and one residual block per level at 32 px, batch 8, 2000 steps per approach (see ``--help``): about a
quarter of an hour per task on a 2-core CPU (scripts/README.md); ``--steps`` scales it linearly.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid

from i2sb import degrade
from i2sb.cli import compose
from i2sb.data import build_dataset
from i2sb.evaluation import metrics, perceptual
from i2sb.evaluation.metrics import psnr, ssim
from i2sb.evaluation.swd import PatchSet, patch_sets, swd_between
from i2sb.restoration import Restorer, load, load_ddnm
from i2sb.train import train
from i2sb.utils.images import save_image

APPROACHES = ("i2sb", "palette", "ddnm")
TRAINED_AS = {"i2sb": "i2sb", "palette": "palette", "ddnm": "ddpm"}  # the i2sb-train method of each
SAMPLING: dict[str, dict[str, Any]] = {
    "i2sb": {"sampler": "ddpm", "clip_denoise": False},  # the authors' Algorithm 2 and default
    "palette": {"sampler": "ddpm", "clip_denoise": True},  # DDPM as in the paper's Fig. 8; Palette clips x0
    "ddnm": {"sampler": "implicit", "clip_denoise": False},  # DDNM's code: DDIM, eta 0.85, no clipping
}
LABELS = {"i2sb": "I2SB", "palette": "Palette", "ddnm": "DDNM", "input": "degraded input"}
DEFAULT_NFES = (1, 2, 5, 10, 50, 100)
DEFAULT_NETWORK = ("model.model_channels=32", "model.num_res_blocks=1")  # on top of model=small


@dataclass
class Row:
    """Mean metrics of one approach at one NFE over the validation images (SWD, LPIPS, FID: of the set)."""

    approach: str
    nfe: int
    psnr: float
    ssim: float
    seconds: float
    swd: float | None = None
    lpips: float | None = None
    fid: float | None = None


class Scorer:
    """PSNR, SSIM, SWD (and LPIPS / FID when their weights are given) of restorations against the clean batch
    ``x0`` (B, 3, H, W) in [-1, 1]; the clean batch's SWD patches and Inception features are computed once."""

    def __init__(self, x0: torch.Tensor, lpips_weights: Path | None = None, inception: Path | None = None):
        self.x0 = x0
        self.clean = patch_sets(len(x0), *x0.shape[-2:], count=1)[0]
        self.clean.add(x0)
        self.lpips = perceptual.load_lpips("alex", lpips_weights) if lpips_weights else None
        self.inception = metrics.load_inception(inception) if inception else None
        self.clean_features = self.features(x0) if self.inception is not None else None

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.inception((images.clamp(-1, 1) + 1) * 127.5)

    def __call__(self, restored: torch.Tensor) -> dict[str, float | None]:
        restored = restored.clamp(-1, 1)
        patches = PatchSet(self.clean.levels, self.clean.per_image, self.clean.settings)
        patches.add(restored)
        scores = {"psnr": float(psnr(restored, self.x0).mean()), "ssim": float(ssim(restored, self.x0).mean()),
                  "swd": swd_between(patches, self.clean).mean, "lpips": None, "fid": None}
        if self.lpips is not None and self.lpips.fits(*restored.shape[-2:]):
            scores["lpips"] = float(self.lpips(restored, self.x0).mean())
        if self.inception is not None:
            scores["fid"] = metrics.fid_from_features(self.features(restored), self.clean_features)
        return scores


# ---------------------------------------------------------------------------- arguments
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sr4x_pool", help="an i2sb task (configs/task), the same for all approaches")
    p.add_argument("--train", type=Path, help="folder of training images (default: the demo photographs)")
    p.add_argument("--val", type=Path, help="folder of held-out images (default: --train, or the demo val photos)")
    p.add_argument("--i2sb", type=Path, help="use this I2SB run instead of training one")
    p.add_argument("--palette", type=Path, help="use this Palette run instead of training one")
    p.add_argument("--prior", type=Path, help="use this DDPM prior (a method=ddpm run or ADM checkpoint) for DDNM")
    p.add_argument("--approaches", "--methods", nargs="+", default=list(APPROACHES), choices=APPROACHES,
                   help="restoration approaches to compare (--methods: the older name)")
    p.add_argument("--steps", type=int, default=2000, help="training steps per approach (equal budgets)")
    p.add_argument("--model", default="small", help="model config group (configs/model)")
    p.add_argument("--image-size", type=int, default=32, help="training and evaluation size")
    p.add_argument("--batch", type=int, default=8, help="training batch size")
    p.add_argument("--nfe", type=int, nargs="+", default=list(DEFAULT_NFES), help="NFEs to evaluate")
    p.add_argument("--n-val", type=int, default=8, help="held-out images to restore")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/compare"))
    p.add_argument("--lpips-weights", type=Path, help="torchvision's alexnet-owt-7be5be79.pth: adds LPIPS")
    p.add_argument("--inception", type=Path, help="clean-fid's pt_inception-2015-12-05-6726825d.pth: adds FID")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny network, 16 px, 2 steps, nfe 1 2, 2 images")
    p.add_argument("overrides", nargs="*", help="extra i2sb-train key=value overrides for every run")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.image_size, args.steps, args.n_val = "tiny", 16, 2, 2
        args.nfe = [n for n in args.nfe if n <= 2] if argv and "--nfe" in argv else [1, 2]
    if args.steps < 1 or args.n_val < 1 or min(args.nfe) < 1:
        p.error("--steps, --n-val and every --nfe must be positive")
    return args


# ---------------------------------------------------------------------------- training
def train_overrides(args: argparse.Namespace, approach: str) -> list[str]:
    """``i2sb-train`` overrides of one approach; everything but ``method`` and ``run_dir`` is shared."""
    data = ["data=demo"] if args.train is None else ["data=imagefolder", f"data.root={args.train}"]
    if args.val is not None:
        data.append(f"data.val_root={args.val}")
    network = [] if args.quick or args.model != "small" else list(DEFAULT_NETWORK)
    uniform = [] if TRAINED_AS[approach] == "i2sb" else ["trainer.t_power=1"]  # the baselines' Algorithm 1
    return [f"task={args.task}", f"model={args.model}", *data, "trainer=cpu", *uniform, *network,
            f"model.image_size={args.image_size}", f"trainer.batch_size={args.batch}",
            f"trainer.microbatch={args.batch}", f"trainer.max_steps={args.steps}",
            f"trainer.eval_every={max(args.steps, 1)}", f"trainer.ckpt_every={max(args.steps, 1)}",
            f"method={TRAINED_AS[approach]}", f"run_dir={args.out / 'runs' / TRAINED_AS[approach]}",
            f"device={args.device}", f"seed={args.seed}", "logging.progress=false", *args.overrides]


def trained_run(args: argparse.Namespace, approach: str) -> Path:
    """The run of ``approach``: given on the command line, or trained now (resumed if already there)."""
    given = {"i2sb": args.i2sb, "palette": args.palette, "ddnm": args.prior}[approach]
    if given is not None:
        return given
    overrides = train_overrides(args, approach)
    print(f"[compare] training {TRAINED_AS[approach]}: i2sb-train {' '.join(overrides)}", flush=True)
    start = time.perf_counter()
    summary = train(compose("train", overrides))
    loss = f"final loss {summary['loss']:.4f}" if "loss" in summary else "already trained"
    print(f"[compare] {TRAINED_AS[approach]}: {summary['step']} steps, {loss}, {time.perf_counter() - start:.0f} s",
          flush=True)
    return Path(summary["run_dir"])


def restorer_for(approach: str, run: Path, task: str, device: str) -> Restorer:
    """I2SB and Palette runs load as trained; DDNM takes the prior and the task's operator."""
    if approach == "ddnm":
        return load_ddnm(run, task=task, device=device)
    return load(run, device=device)


# ---------------------------------------------------------------------------- evaluation
def validation_batch(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(x0, x1, mask)``: ``n_val`` held-out images spread over the validation set, degraded once (seeded)."""
    folder = args.val or args.train
    dataset = build_dataset("demo", args.image_size, "val") if folder is None else \
        build_dataset("imagefolder", args.image_size, "val", root=str(folder))
    n = min(args.n_val, len(dataset))
    picks = [round(i * (len(dataset) - 1) / max(n - 1, 1)) for i in range(n)]
    x0 = torch.stack([dataset[i]["x0"] for i in picks])
    deg = degrade.build(args.task, args.image_size)
    x1, mask = deg(x0, generator=torch.Generator().manual_seed(args.seed + 1))
    return x0, x1, mask


def sweep(approach: str, restorer: Restorer, batch: tuple, nfes: list[int], seed: int,
          keep: dict[tuple[str, int], torch.Tensor], score: Scorer) -> list[Row]:
    """Restore the batch at every NFE with the same seed; ``keep`` collects the restorations."""
    x0, x1, mask = batch
    rows = []
    for nfe in nfes:
        start = time.perf_counter()
        generator = torch.Generator(device=restorer.device).manual_seed(seed)
        out = restorer.restore(x1, nfe=nfe, mask=mask, generator=generator, precision="fp32",  # exact comparisons
                               **SAMPLING[approach]).cpu()
        seconds = time.perf_counter() - start
        keep[(approach, nfe)] = out.clamp(-1, 1)
        rows.append(Row(approach, nfe, seconds=seconds, **score(out)))
        print(f"[compare] {LABELS[approach]:8s} nfe={nfe:4d}  PSNR {rows[-1].psnr:6.2f}  SSIM {rows[-1].ssim:.4f}  "
              f"SWD {rows[-1].swd:6.1f}  ({seconds:.1f} s)", flush=True)
    return rows


def usable_approaches(args: argparse.Namespace) -> list[str]:
    """``--approaches`` minus DDNM when the task has no linear operator (e.g. JPEG)."""
    approaches = list(args.approaches)
    if "ddnm" in approaches and not degrade.build(args.task, args.image_size).is_linear:
        print(f"[compare] DDNM needs a linear degradation; {args.task} is not, so it is left out", flush=True)
        approaches.remove("ddnm")
    return approaches


# ---------------------------------------------------------------------------- outputs
OPTIONAL = ("lpips", "fid")  # columns shown when their weights were given


def shown_metrics(rows: list[Row]) -> list[str]:
    """PSNR, SSIM, SWD, then LPIPS / FID where measured."""
    return ["psnr", "ssim", "swd", *(m for m in OPTIONAL if any(getattr(r, m) is not None for r in rows))]


def write_csv(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["approach", "nfe", "psnr", "ssim", "swd", "lpips", "fid", "seconds"])
        for r in rows:
            optional = ["" if v is None else f"{v:.5f}" for v in (r.lpips, r.fid)]
            writer.writerow([r.approach, r.nfe, f"{r.psnr:.4f}", f"{r.ssim:.5f}", f"{r.swd:.3f}", *optional,
                             f"{r.seconds:.2f}"])


FORMATS = {"psnr": ".2f", "ssim": ".3f", "swd": ".1f", "lpips": ".3f", "fid": ".1f"}
NAMES = {"psnr": "PSNR", "ssim": "SSIM", "swd": "SWD", "lpips": "LPIPS", "fid": "FID"}


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown_table(rows: list[Row], approaches: list[str], input_scores: dict[str, float | None]) -> str:
    """One line per NFE, PSNR / SSIM / SWD (/ LPIPS / FID) per approach; the degraded input's in the note below."""
    by_key = {(r.approach, r.nfe): r for r in rows}
    nfes = sorted({r.nfe for r in rows})
    shown = shown_metrics(rows)
    names = " / ".join(NAMES[m] for m in shown)
    lines = ["| NFE | " + " | ".join(f"{LABELS[m]} {names}" for m in approaches) + " |", "|" + "----:|" * (len(approaches) + 1)]
    for nfe in nfes:
        cells = [" / ".join(_cell(getattr(by_key[m, nfe], k), FORMATS[k]) for k in shown) for m in approaches]
        lines.append(f"| {nfe} | " + " | ".join(cells) + " |")
    given = ", ".join(f"{NAMES[k]} {input_scores[k]:{FORMATS[k]}}" for k in shown if input_scores.get(k) is not None)
    lines.append(f"\nDegraded input: {given} (PSNR dB; SWD x1e3 of the set, lower = closer to the clean images).")
    return "\n".join(lines)


def plot(rows: list[Row], approaches: list[str], input_scores: dict[str, float | None], title: str, path: Path) -> None:
    """PSNR, SSIM and SWD against NFE (log x) per approach, the degraded input as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    for ax, metric in zip(axes, ("psnr", "ssim", "swd")):
        baseline = input_scores[metric]
        for approach in approaches:
            points = sorted((r.nfe, getattr(r, metric)) for r in rows if r.approach == approach)
            ax.plot(*zip(*points), marker="o", label=LABELS[approach])
        ax.axhline(baseline, color="grey", linestyle="--", label=LABELS["input"])
        ax.set_xscale("log")
        ax.set_xticks(sorted({r.nfe for r in rows}), [str(n) for n in sorted({r.nfe for r in rows})])
        ax.minorticks_off()
        ax.set_xlabel("NFE")
        ax.set_ylabel({"psnr": "PSNR (dB)", "ssim": "SSIM", "swd": "SWD x1e3 (lower = more photo-like)"}[metric])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_samples(batch: tuple, keep: dict, approaches: list[str], nfe: int, path: Path) -> None:
    """Rows: images; columns: degraded | each approach at ``nfe`` | clean."""
    x0, x1, mask = batch
    shown = x1 if mask is None else (1 - mask) * x1 + mask
    columns = [shown, *(keep[(m, nfe)] for m in approaches), x0]
    grid = make_grid(torch.stack(columns, dim=1).flatten(0, 1), nrow=len(columns), padding=2, pad_value=1.0)
    save_image(grid, path)


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    approaches = usable_approaches(args)
    runs = {m: trained_run(args, m) for m in approaches}
    batch = validation_batch(args)
    score = Scorer(batch[0], args.lpips_weights, args.inception)
    shown = batch[1] if batch[2] is None else (1 - batch[2]) * batch[1] + batch[2]
    input_scores = score(shown)
    keep: dict[tuple[str, int], torch.Tensor] = {}
    rows = [row for m in approaches for row in
            sweep(m, restorer_for(m, runs[m], args.task, args.device), batch, args.nfe, args.seed, keep, score)]
    write_csv(rows, args.out / "results.csv")
    table = markdown_table(rows, approaches, input_scores)
    (args.out / "results.md").write_text(f"Task {args.task}, {len(batch[0])} held-out images.\n\n{table}\n")
    title = f"{args.task}: {args.steps} training steps per approach, {len(batch[0])} images"
    plot(rows, approaches, input_scores, title, args.out / "figure8.png")
    for nfe in sorted({min(args.nfe), max(args.nfe)}):
        save_samples(batch, keep, approaches, nfe, args.out / f"samples_nfe{nfe}.png")
    print(f"\n{table}\n\n[compare] wrote {args.out}/results.csv, results.md, figure8.png, samples_nfe*.png "
          f"in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
