"""The distillation benchmark: an I2SB teacher at NFE 1 / 10 / 100 beside its one-step IBMD student
(``i2sb-distill``) on the demo's held-out photographs (``chelsea`` and ``coffee``, never seen in training).

    python scripts/bench_distill.py runs/demo/jpeg5                          # distils a student first
    python scripts/bench_distill.py runs/demo/jpeg5 --student runs/jpeg5_student
    python scripts/bench_distill.py runs/demo/jpeg5 --steps 300 --batch 8 --lr 1e-4 --aux-steps 5 --json b.json
    python scripts/bench_distill.py TEACHER --quick                           # a smoke run (seconds, tiny models)

The crops are the demo's held-out validation crops at native resolution (``DemoImages(size, "val")``, the
crops ``scripts/demo.py`` restores; ``size``: the teacher's training size unless ``--crop-size``), degraded once
by the teacher's task with a fixed seed. Every row restores the same batch (fp32; one generator per row,
seeded): PSNR and SSIM per image (mean), SWD of the set against the clean crops (:func:`i2sb.evaluation.swd.swd`,
Karras et al. 2018, App. D; x1e3, lower = local statistics closer to the clean photos'), and milliseconds per
image (wall time of the batch / its size). The realism check of IBMD: SWD(student NFE 1, teacher NFE 100 seed a)
beside SWD(teacher NFE 100 seed b, teacher NFE 100 seed a), two draws of the same sampler, the distance that no
sampler of the teacher's distribution can beat by much.

Without ``--student`` the student is distilled first with ``i2sb-distill data=demo`` at the stated settings
(``--steps``, ``--batch``, ``--lr``, ``--aux-steps``; extra ``key=value`` arguments go to ``i2sb-distill``); the
table's header says which settings and how long it took, the CPU's flags and torch's version.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import i2sb  # noqa: E402  (after the path: runs from a checkout)
from i2sb import degrade  # noqa: E402
from i2sb.data import DemoImages  # noqa: E402
from i2sb.evaluation.metrics import psnr, ssim  # noqa: E402
from i2sb.evaluation.swd import swd  # noqa: E402
from i2sb.restoration import Restorer  # noqa: E402

BIN = Path(sys.executable).parent
TEACHER_NFES = (1, 10, 100)
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
SEED_A, SEED_B = 0, 1


def cpu_flags() -> str:
    """``avx2 yes, avx512f no, ...``: the CPU flags that decide this machine's class (from /proc/cpuinfo)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    words = set(next((line for line in lines if line.startswith("flags")), "").split())
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    return f"{model}; " + ", ".join(f"{f} {'yes' if f in words else 'no'}" for f in CPU_FLAGS)


def held_out_batch(task: str, size: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(x0, x1, mask)``: ``n`` held-out demo crops (n, 3, size, size) in [-1, 1] at native resolution, spread
    evenly over the validation grid as ``scripts/demo.py`` writes them, degraded once with ``seed``."""
    dataset = DemoImages(size, "val")
    n = min(n, len(dataset))
    picks = [round(i * (len(dataset) - 1) / max(n - 1, 1)) for i in range(n)]
    x0 = torch.stack([dataset[i]["x0"] for i in picks])
    x1, mask = degrade.build(task, size)(x0, generator=torch.Generator().manual_seed(seed))
    return x0, x1.clamp(-1, 1), mask


def restore(restorer: Restorer, batch: tuple, nfe: int, seed: int) -> tuple[torch.Tensor, float]:
    """The batch restored at ``nfe`` with a generator seeded ``seed``; ``(images (B, 3, H, W), ms per image)``."""
    _, x1, mask = batch
    device = restorer.device
    x1 = x1.to(device)
    mask = None if mask is None else mask.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = restorer.restore(x1, nfe=nfe, mask=mask, generator=generator, precision="fp32")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out.clamp(-1, 1).cpu(), 1000 * (time.perf_counter() - start) / len(x1)


def scores(out: torch.Tensor, x0: torch.Tensor) -> dict[str, float]:
    """PSNR / SSIM per image (mean) and the set's SWD against the clean crops ``x0``."""
    return {"psnr": float(psnr(out, x0).mean()), "ssim": float(ssim(out, x0).mean()), "swd": swd(out, x0).mean}


def distil(args: argparse.Namespace, top_nfe: int) -> tuple[Path, float]:
    """Run ``i2sb-distill data=demo`` on the teacher at the stated settings; ``(run directory, seconds)``."""
    run_dir = args.out / "student"
    cmd = [str(BIN / "i2sb-distill"), f"ckpt={args.teacher}", f"run_dir={run_dir}", "data=demo",
           f"trainer.max_steps={args.steps}", f"trainer.batch_size={args.batch}", f"trainer.lr={args.lr}",
           f"distill.aux_steps={args.aux_steps}", f"distill.reference_nfe={top_nfe}", f"device={args.device}",
           f"trainer.eval_every={max(args.steps, 1)}", f"trainer.eval_batch={args.batch}", "logging.progress=false",
           *args.distill_overrides]
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return run_dir, time.perf_counter() - start


def table(rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| restoration | PSNR dB | SSIM | SWD vs clean | SWD vs teacher NFE 100 (seed a) | ms / image |",
             "|---|--:|--:|--:|--:|--:|"]
    for name, r in rows.items():
        vs = "-" if r.get("swd_vs_teacher") is None else f"{r['swd_vs_teacher']:.1f}"
        lines.append(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['swd']:.1f} | {vs} | {r['ms']:.1f} |")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teacher", type=Path, help="the teacher: anything i2sb-sample ckpt= reads")
    parser.add_argument("--student", type=Path, default=None, help="an i2sb-distill run (default: distil one)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_distill"), help="where a new student goes")
    parser.add_argument("--steps", type=int, default=300, help="student updates when distilling")
    parser.add_argument("--batch", type=int, default=8, help="student batch when distilling")
    parser.add_argument("--lr", type=float, default=1e-4, help="student (and auxiliary) learning rate")
    parser.add_argument("--aux-steps", type=int, default=5, help="auxiliary updates per student update")
    parser.add_argument("--crops", type=int, default=12, help="held-out crops (the demo restores 12)")
    parser.add_argument("--crop-size", type=int, default=None,
                        help="their side in pixels, native resolution (default: the teacher's training size, 64 for "
                             "the demo's models: one network call per crop, no tiling)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON (atomically)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 4 crops; a new student gets 2 updates of batch 2, 1 auxiliary update")
    parser.add_argument("distill_overrides", nargs="*", help="extra i2sb-distill key=value overrides")
    args = parser.parse_intermixed_args(argv)  # key=value overrides may follow the options
    if args.quick:
        args.crops, args.steps, args.batch, args.aux_steps = 4, 2, 2, 1
    for key in ("steps", "batch", "aux_steps", "crops", "crop_size"):
        if getattr(args, key) is not None and getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be positive, got {getattr(args, key)}")
    if not args.teacher.exists():
        parser.error(f"teacher {args.teacher}: no such file or folder")
    if args.student is not None and not args.student.exists():
        parser.error(f"--student {args.student}: no such file or folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    teacher = i2sb.load(args.teacher, device=args.device)
    nfes = sorted({min(n, teacher.kind.max_nfe) for n in TEACHER_NFES})
    top = nfes[-1]
    setup = f"student: {args.student}"
    if args.student is None:
        args.student, seconds = distil(args, top)
        setup = (f"student distilled here: {args.steps} updates of batch {args.batch}, lr {args.lr:g}, "
                 f"{args.aux_steps} auxiliary updates each, {seconds:.0f} s")
    student = i2sb.load(args.student, device=args.device)
    args.crop_size = args.crop_size or teacher.image_size
    batch = held_out_batch(teacher.task.degradation, args.crop_size, args.crops, seed=1)
    x0 = batch[0]
    rows: dict[str, dict[str, Any]] = {}
    outputs: dict[str, torch.Tensor] = {}
    for nfe in nfes:
        outputs[f"teacher NFE {nfe}"], ms = restore(teacher, batch, nfe, SEED_A)
        rows[f"teacher NFE {nfe}"] = {"ms": ms, **scores(outputs[f"teacher NFE {nfe}"], x0)}
    reference = outputs[f"teacher NFE {top}"]
    second, ms = restore(teacher, batch, top, SEED_B)
    rows[f"teacher NFE {top}, seed b"] = {"ms": ms, **scores(second, x0), "swd_vs_teacher": swd(second, reference).mean}
    out, ms = restore(student, batch, 1, SEED_A)
    rows["student NFE 1"] = {"ms": ms, **scores(out, x0), "swd_vs_teacher": swd(out, reference).mean}
    header = [f"# held-out demo crops: {len(x0)} of {args.crop_size} px, task {teacher.task.degradation}; "
              f"teacher {args.teacher}; {setup}",
              f"# {cpu_flags()}; torch {torch.__version__}; {torch.get_num_threads()} threads; device {args.device}"]
    print("\n".join(header + table(rows)), flush=True)
    if args.json is not None:
        tmp = args.json.with_name(args.json.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"header": header, "rows": rows, "args": {k: str(v) for k, v in vars(args).items()}},
                                  indent=2))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
