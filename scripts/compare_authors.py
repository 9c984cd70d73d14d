"""Equal wall-clock budget against the authors' code: train both for the same minutes, score on held-out photos.

    .venv/bin/python scripts/compare_authors.py --authors ~/src/I2SB            # jpeg10 and sr4x_bicubic, 10 min
    .venv/bin/python scripts/compare_authors.py --authors ~/src/I2SB --minutes 2 --tasks jpeg10
    .venv/bin/python scripts/compare_authors.py --authors ~/src/I2SB trainer.lr=5e-4   # our recipe, changed
    .venv/bin/python scripts/compare_authors.py --authors ~/src/I2SB \
        --ours trainer.precision=fp32 --ours trainer.precision=auto                      # two of ours, one column each

PATH is a clone of https://github.com/NVlabs/I2SB (``pip install torch-ema``); their code runs unmodified through
``scripts/authors_code/`` (their ``Runner.train`` loop body and ``Runner.ddpm_sampling``). For each task
both sides get:

* the same U-Net (``model=small`` with 32 channels: mult 1,2,2, 2 res blocks, attention at 16 px, 1.9 M
  parameters), batch 8 of 64x64 native-resolution crops of the demo's seven training photos, drawn from the
  same stream (``data=demo``), and the same wall clock of training steps (data drawing not counted);
* their optimisation: the authors' code with ``--authors-lr`` (default 1e-3; their default 5e-5 is for batch
  256 on GPUs) and its own defaults otherwise (AdamW, StepLR, EMA 0.99, no clipping); ours: ``trainer=cpu``
  plus any ``key=value`` overrides given here;
* the same scoring: every native-resolution 64x64 crop of the held-out photos (chelsea, coffee: the demo's
  validation grid), degraded by the task with a fixed seed, restored with the EMA weights at each ``--nfe``
  (theirs: ``Runner.ddpm_sampling``; ours: :class:`i2sb.restoration.Restorer`), PSNR in dB.

Each ``--ours "key=value ..."`` adds a column of ours with those overrides (default: one column, the trailing
overrides). By default all trainings of a task run at the same time with one thread each (``--threads``), so
drifts of the machine hit all alike; ``--sequential`` runs them one after the other with ``--threads`` each. The table
(``results.md``, also printed) names the CPU's flags and what ``precision=auto`` chose on it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

ROOT = Path(__file__).resolve().parents[1]
NETWORK = ["model=small", "model.model_channels=32", "model.num_res_blocks=2"]
SIDES = ("authors", "ours")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--authors", required=True, metavar="PATH", help="a clone of NVlabs/I2SB")
    p.add_argument("--tasks", nargs="+", default=["jpeg10", "sr4x_bicubic"])
    p.add_argument("--minutes", type=float, default=10.0, help="training wall clock per side and task")
    p.add_argument("--nfe", type=int, nargs="+", default=[1, 5])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--authors-lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1, help="torch threads per side")
    p.add_argument("--sequential", action="store_true", help="train one side after the other")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/compare_authors"))
    p.add_argument("--ours", action="append", metavar="OVERRIDES",
                   help="a column of ours: space-separated key=value overrides (repeat for several)")
    p.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--task", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="i2sb-train key=value overrides for our side")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------- one side
def our_config(args: argparse.Namespace, task: str) -> Any:
    from i2sb.cli.compose import compose
    from i2sb.config import to_train_config

    overrides = [f"task={task}", *NETWORK, "data=demo", "trainer=cpu", f"model.image_size={args.size}",
                 f"trainer.batch_size={args.batch}", f"trainer.microbatch={args.batch}", "device=cpu",
                 f"seed={args.seed}", f"run_dir={args.out / f'ours_{task}'}", *args.overrides]
    return to_train_config(compose("train", overrides))


def clean_batches(cfg: Any) -> Iterator[torch.Tensor]:
    """The demo's training stream (native-resolution crops), one (batch, 3, S, S) tensor at a time."""
    from i2sb.training.dist import DistInfo
    from i2sb.training.loop import build_data

    loader = build_data(cfg, DistInfo(), 0, 1)
    while True:
        yield next(loader)["x0"]


def train_ours(cfg: Any, batches: Iterator[torch.Tensor], seconds: float) -> tuple[Callable, dict[str, Any]]:
    """Our ``Trainer.train_step`` for ``seconds`` of steps; returns ``restore(x1, nfe, generator)`` and a log."""
    from i2sb.methods import task_degradation
    from i2sb.training.dist import DistInfo
    from i2sb.training.trainer import Trainer
    from i2sb.training.validation import validation_restorer

    trainer = Trainer(cfg, DistInfo())
    deg = task_degradation(trainer.cfg.task, trainer.cfg.data.image_size)
    elapsed, steps = 0.0, 0
    while elapsed < seconds:
        x0 = next(batches)
        start = time.perf_counter()
        trainer.train_step([{"x0": x0}], deg)
        elapsed += time.perf_counter() - start
        steps += 1
    restorer = validation_restorer(trainer.cfg, trainer.method.denoiser(trainer.ema.module).eval())

    def restore(x1: torch.Tensor, nfe: int, generator: torch.Generator) -> torch.Tensor:
        options = restorer.options(nfe=nfe, precision=trainer.cfg.trainer.precision)
        return restorer.restore(x1, generator=generator, options=options)

    precision = trainer.cfg.trainer.precision
    return restore, {"steps": steps, "seconds": elapsed, "precision": precision}


def train_authors(args: argparse.Namespace, cfg: Any, batches: Iterator[torch.Tensor],
                  seconds: float) -> tuple[Callable, dict[str, Any]]:
    """Their training iteration for ``seconds`` of steps on the same stream; returns their restorer and a log."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from authors_code import our_unet_kwargs, train_for  # noqa: E402  scripts/ is not a package

    from i2sb.config import to_container

    kw = our_unet_kwargs(to_container(cfg)["model"])
    model = train_for(args.authors, kw, batches, seconds=seconds, size=args.size, batch=args.batch,
                      task=args.task, lr=args.authors_lr, seed=args.seed)

    def restore(x1: torch.Tensor, nfe: int, generator: torch.Generator) -> torch.Tensor:
        torch.manual_seed(int(torch.randint(2**31, (), generator=generator)))  # their sampler draws globally
        return model.restore(x1, nfe=nfe)

    return restore, {"steps": model.history["steps"], "seconds": model.history["seconds"], "precision": "fp32"}


@torch.no_grad()
def score(cfg: Any, restore: Callable, nfes: list[int], seed: int) -> dict[str, float]:
    """Mean PSNR (dB) over the demo's held-out native-resolution crops: the degraded input and each NFE."""
    from i2sb.data import build_split
    from i2sb.evaluation.metrics import psnr
    from i2sb.methods import task_degradation

    val = build_split(cfg.data, "val")
    x0 = torch.stack([val[i]["x0"] for i in range(len(val))])
    x1, mask = task_degradation(cfg.task, cfg.data.image_size)(x0, generator=torch.Generator().manual_seed(seed))
    if mask is not None:
        raise SystemExit(f"task {cfg.task.name}: inpainting is not compared here (their x1 differs per draw)")
    result = {"n_images": len(x0), "input": float(psnr(x1.clamp(-1, 1), x0).mean())}
    for nfe in nfes:
        g = torch.Generator().manual_seed(seed + nfe)
        restored = torch.cat([restore(chunk, nfe, g) for chunk in x1.split(16)])
        result[f"nfe{nfe}"] = float(psnr(restored.clamp(-1, 1), x0).mean())
    return result


def worker(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    cfg = our_config(args, args.task)
    batches = clean_batches(cfg)
    seconds = 60 * args.minutes
    if args.worker == "ours":
        from i2sb.utils.allocator import reuse_freed_memory

        reuse_freed_memory()  # as i2sb-train does; the authors' side keeps glibc's defaults
        restore, log = train_ours(cfg, batches, seconds)
    else:
        restore, log = train_authors(args, cfg, batches, seconds)
    return {**log, **score(cfg, restore, args.nfe, args.seed + 7)}


# ----------------------------------------------------------------------------------------- driver
def columns(args: argparse.Namespace) -> dict[str, tuple[str, list[str]]]:
    """Column label -> (worker side, our overrides): the authors' code, then each ``--ours`` variant."""
    variants = [v.split() for v in args.ours] if args.ours else [args.overrides]
    cols = {"authors": ("authors", [])}
    for i, overrides in enumerate(variants):
        cols["ours" if i == 0 else f"ours{i + 1}"] = ("ours", overrides)
    return cols


def worker_argv(args: argparse.Namespace, side: str, task: str, overrides: list[str]) -> list[str]:
    """The command line of one worker: this run's settings, one side, one task, its overrides."""
    argv = ["--authors", str(args.authors), "--minutes", str(args.minutes), "--nfe", *map(str, args.nfe),
            "--size", str(args.size), "--batch", str(args.batch), "--authors-lr", str(args.authors_lr),
            "--threads", str(args.threads), "--seed", str(args.seed), "--out", str(args.out)]
    return [sys.executable, __file__, *argv, "--worker", side, "--task", task, *overrides]


def launch(args: argparse.Namespace, name: str, task: str) -> subprocess.Popen:
    side, overrides = columns(args)[name]
    log = open(args.out / f"{name}_{task}.log", "w")
    return subprocess.Popen(worker_argv(args, side, task, overrides), stdout=subprocess.PIPE, stderr=log, text=True)


def collect(proc: subprocess.Popen, name: str, task: str) -> dict[str, Any]:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        return {"error": f"{name} on {task} failed (exit {proc.returncode}); see {name}_{task}.log"}
    return json.loads(out.strip().splitlines()[-1])


def machine_line() -> str:
    """This machine as the bench tables describe it: CPU, torch, and its class for ``precision=auto``."""
    from bench import machine_info  # scripts/bench.py, beside this script

    info = machine_info("cpu")
    return f"{info['cpu']}, torch {info['torch']}; {info['class']}"


def table(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> str:
    nfes = " / ".join(f"NFE {n}" for n in args.nfe)
    cols = columns(args)
    heads = [f"authors' code, lr {args.authors_lr:g}"] + [f"i2sb {' '.join(o) or 'trainer=cpu'}"
                                                          for side, o in cols.values() if side == "ours"]
    lines = ["| task | degraded | " + " | ".join(f"{h}: {nfes} (steps)" for h in heads) + " |",
             "|---|--:|" + "--:|" * len(heads)]
    for task, sides in results.items():
        best = {n: max(r.get(f"nfe{n}", float("-inf")) for r in sides.values()) for n in args.nfe}
        cells = []
        for r in sides.values():
            if "error" in r:
                cells.append(r["error"])
                continue
            values = [(f"**{r[f'nfe{n}']:.2f}**" if r[f"nfe{n}"] == best[n] else f"{r[f'nfe{n}']:.2f}") for n in args.nfe]
            cells.append(" / ".join(values) + f" ({r['steps']}, {r['precision']})")
        degraded = next((f"{r['input']:.2f}" for r in sides.values() if "input" in r), "-")
        lines.append(f"| {task} | {degraded} | " + " | ".join(cells) + " |")
    mode = "one after the other" if args.sequential else "at the same time"
    return "\n".join(lines) + (f"\n\n{args.minutes:g} minutes of training steps each, {mode}, {args.threads} "
                               f"thread(s) each; PSNR (dB) on native-resolution {args.size}x{args.size} crops of "
                               f"held-out photos. {machine_line()}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for task in args.tasks:
        print(f"[compare-authors] {task}: training {len(columns(args))} models for {args.minutes:g} min", flush=True)
        if args.sequential:
            results[task] = {name: collect(launch(args, name, task), name, task) for name in columns(args)}
        else:
            procs = {name: launch(args, name, task) for name in columns(args)}
            results[task] = {name: collect(proc, name, task) for name, proc in procs.items()}
        print(f"[compare-authors] {task}: {json.dumps(results[task])}", flush=True)
    text = table(args, results)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "results.md").write_text(text + "\n")
    print("\n" + text + f"\n\n[compare-authors] written to {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
