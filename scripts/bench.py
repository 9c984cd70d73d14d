"""Speed and memory of training, restoration and data loading, variants side by side in one run.

    python scripts/bench.py                       # ~8M-parameter U-Net, 64x64, batch 8, this machine's device
    python scripts/bench.py --model adm256 --size 256 --batch 2 --device cuda
    python scripts/bench.py --sections train --compile --json bench.json
    python scripts/bench.py --sections quality --ckpt runs/demo/jpeg5     # bf16 vs fp32 restorations (PSNR)
    python scripts/bench.py --sections train,sample --authors ~/src/I2SB  # + the authors' step and sampler
    python scripts/bench.py --sections train --only "fp32 fused,default" --rounds 4 --authors ~/src/I2SB
    python scripts/bench.py --sections distill     # restoration latency: teacher NFE 1/10/100, student NFE 1
    python scripts/bench.py --sections distill --device cuda --model adm256 --size 256 --batch 2 --distill-nfes 1,10
                                                  # ADM-256 on a GPU: training step, NFE-1/10 latency, peak memory
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 python scripts/bench.py ...
                                                  # an AVX512 CPU run as an AVX2-only one (the header says so)

``--authors PATH`` (a clone of https://github.com/NVlabs/I2SB; needs ``pip install torch-ema``) adds their
training iteration (``Runner.train``'s loop body) and their NFE-n sampler (``Runner.ddpm_sampling``) on the same
U-Net, batch and device (``--device cuda``: their code on the same GPU), run through
``scripts/authors_code/`` in their own subprocesses, interleaved with ours; the ``x authors`` columns are
speed ratios (above 1: this library is faster). ``scripts/gpu_check.sh`` is the one command for a lent GPU.

Every variant runs in its own subprocess (clean peak-memory numbers, no cross-talk), warms up, then repeats;
the table shows medians with the spread (min–max) over the repeats; training variants are measured in
interleaved rounds (``--rounds``) so that slow drifts of the machine hit every variant alike. Training steps
go through the library's own ``Trainer.train_step`` (degradation, Eq. 11, forward, backward, AdamW, EMA),
so the "default" row is exactly what ``i2sb-train`` runs (also its allocator setting,
``i2sb.utils.allocator``; the authors' workers keep glibc's defaults, and one row of ours shows those).
Memory: peak RSS growth over the training steps (activations, gradients, optimizer state) on CPU,
``max_memory_allocated`` on CUDA. The sampler's overhead is ``time(sample at NFE n) / (n x time(one
forward))``, each sampling run paired with n forwards timed right after it (the median of the ratios, so
machine drift cancels).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from i2sb.utils.allocator import reuse_freed_memory  # noqa: E402  (after the path: runs from a checkout)

TRAIN_VARIANTS: dict[str, dict[str, Any]] = {
    "fp32 eager (baseline)": {"precision": "fp32", "fused_optimizer": False},
    "fp32 fused AdamW": {"precision": "fp32"},
    "fp32 fused AdamW, glibc malloc defaults": {"precision": "fp32", "malloc": "system"},
    "fp32 channels_last": {"precision": "fp32", "channels_last": True},
    "bf16 autocast": {"precision": "bf16"},
    "bf16 channels_last": {"precision": "bf16", "channels_last": True},
    "fp32 grad checkpointing": {"precision": "fp32", "use_checkpoint": True},
    "bf16 grad checkpointing": {"precision": "bf16", "use_checkpoint": True},
    "default (trainer=default)": {},
}
COMPILE_VARIANTS: dict[str, dict[str, Any]] = {
    "fp32 torch.compile": {"precision": "fp32", "compile": True},
    "bf16 torch.compile": {"precision": "bf16", "compile": True},
}
SAMPLE_NFES = (1, 5, 10, 100)


# ----------------------------------------------------------------------------------------- helpers
def rss_mb() -> float:
    """Current resident set size of this process (MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def device_sync(device: Any) -> Callable[[], None]:
    """Waits for the device's queued work (CUDA); a no-op on the CPU, which runs synchronously."""
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], Any], warmup: int, repeats: int, sync: Callable[[], None]) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times)}


def model_config(name: str, size: int | None) -> dict[str, Any]:
    import yaml

    cfg = yaml.safe_load((ROOT / "i2sb" / "configs" / "model" / f"{name}.yaml").read_text())
    if size is not None:
        cfg["image_size"] = size
    return cfg


# ----------------------------------------------------------------------------------------- workers
def train_worker(args: argparse.Namespace, variant: dict[str, Any]) -> dict[str, Any]:
    import torch

    from i2sb.methods import task_degradation
    from i2sb.training.dist import DistInfo
    from i2sb.training.trainer import Trainer
    from i2sb.utils.device import backend_flags, resolve_device

    cfg = bench_train_config(args, variant)
    device = resolve_device(args.device)
    with backend_flags(device, cfg.trainer.cudnn_benchmark, cfg.trainer.deterministic):  # as i2sb-train
        trainer = Trainer(cfg, DistInfo(device=device))
        deg = task_degradation(trainer.cfg.task, trainer.cfg.data.image_size)
        size = cfg.model.image_size
        batch = {"x0": torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1}
        base_rss = rss_mb()  # model, EMA copy and the batch exist; activations, gradients, Adam state do not yet
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = timed(lambda: trainer.train_step([batch], deg), args.warmup, args.repeats, device_sync(device))
    memory = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb() - base_rss
    return {**summary(times), "images_per_s": args.batch / statistics.median(times), "memory_mb": memory,
            "params_m": sum(p.numel() for p in trainer.unet.parameters()) / 1e6}


def authors_train_worker(args: argparse.Namespace, variant: dict[str, Any] | None) -> dict[str, Any]:
    """The authors' training iteration on the same U-Net, batch and device (their fp32; they have no autocast
    path); ``variant["microbatch"]``: their microbatch (default: the whole batch in one pass)."""
    import torch

    from authors_code import make_train_step, our_unet_kwargs
    from i2sb.utils.device import resolve_device

    device = resolve_device(args.device)
    size = model_config(args.model, args.size)["image_size"]
    kw = our_unet_kwargs(model_config(args.model, args.size))
    step = make_train_step(args.authors, kw, batch=args.batch, size=size, task=args.task, lr=5e-5, seed=0,
                           device=str(device), microbatch=(variant or {}).get("microbatch"))
    x0 = torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1  # their loader's
    base_rss = rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = timed(lambda: step(x0), args.warmup, args.repeats, device_sync(device))
    memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mb() - base_rss
    return {**summary(times), "images_per_s": args.batch / statistics.median(times), "memory_mb": memory,
            "params_m": step.model.n_params() / 1e6}


def authors_sample_worker(args: argparse.Namespace, _: Any) -> dict[str, Any]:
    """The authors' ``Runner.ddpm_sampling`` at each NFE on the same device, paired with their bare network
    forwards."""
    import torch

    from authors_code import make_sampler, our_unet_kwargs
    from i2sb.utils.device import resolve_device

    device = resolve_device(args.device)
    size = model_config(args.model, args.size)["image_size"]
    sample = make_sampler(args.authors, our_unet_kwargs(model_config(args.model, args.size)), size, task=args.task,
                          device=str(device))
    x1 = (torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device)
    step = torch.full((args.batch,), 500, device=device)
    forward = lambda: sample.model.net(x1, step)  # noqa: E731  their Image256Net forward
    with torch.no_grad():
        return sampling_rows(lambda nfe: sample(x1, nfe), forward, args, device_sync(device))


def sampling_rows(sample_at: Callable[[int], Any], forward: Callable[[], Any], args: argparse.Namespace,
                  sync: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Forward time and, per NFE, images/s and the overhead ``time(sample) / (n x time(forward))``."""
    rows = {"forward": summary(timed(forward, args.warmup, args.repeats, sync))}
    for nfe in args.sample_nfes:
        reps = max(1, args.repeats if nfe <= 10 else args.repeats // 3)
        sample_times, ratios = [], []
        for _ in range(reps):  # each sampling run is paired with nfe bare forwards timed right after it
            t_sample = timed(lambda: sample_at(nfe), 0, 1, sync)[0]
            t_forward = sum(timed(forward, 0, nfe, sync))
            sample_times.append(t_sample)
            ratios.append(t_sample / t_forward)
        t = summary(sample_times)
        t["images_per_s"] = args.batch / t["median_s"]
        t["overhead"] = statistics.median(ratios)
        rows[f"nfe{nfe}"] = t
    return rows


def sample_worker(args: argparse.Namespace, precision: str) -> dict[str, Any]:
    """Our restoration at ``precision`` (``"fp32 nchw"``: fp32 with the network fed NCHW instead of restoration's
    channels-last on CPUs, for the side-by-side row)."""
    import torch

    from i2sb.bridge import Bridge
    from i2sb.core.denoiser import BridgeDenoiser
    from i2sb.utils.device import resolve_device
    from i2sb.unet import UNet

    nchw = precision.endswith(" nchw")
    precision = precision.removesuffix(" nchw")
    device = resolve_device(args.device)
    cfg = model_config(args.model, args.size)
    cfg = {k: v for k, v in cfg.items() if k not in ("name", "init")}
    torch.manual_seed(0)
    unet = UNet(in_channels=3, **cfg)
    with torch.no_grad():  # a non-trivial network: perturb the zero-initialised output layers
        for p in unet.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    bridge = Bridge.symmetric(1000, 0.3)
    predictor = BridgeDenoiser(unet, bridge, precision=precision,
                               channels_last=device.type == "cpu" and not nchw).to(device).eval()
    size = cfg["image_size"]
    x1 = torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1
    sync = device_sync(device)
    step = torch.full((args.batch,), 500, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        return sampling_rows(lambda nfe: bridge.sample(predictor, x1, nfe, generator=g), lambda: predictor(x1, step),
                             args, sync)


def distill_worker(args: argparse.Namespace, param: dict[str, Any]) -> dict[str, Any]:
    """``param["part"]``: ``"train"``, one IBMD iteration of ``i2sb-distill`` (``--aux-steps`` auxiliary updates
    and one student update, :meth:`DistillTrainer.train_step`) on a teacher of ``--model`` (random weights: speed
    and memory do not depend on them); ``"restore"``, the restoration of a batch by the teacher (``who``
    ``teacher``, Algorithm 2) or the one-step student (``student``) at ``param["nfe"]`` (i2sb-sample's precision).
    Memory: ``max_memory_allocated`` on CUDA (weights included), peak RSS growth on the CPU."""
    import itertools

    import torch

    from i2sb.core.bridge import Bridge
    from i2sb.core.denoiser import BridgeDenoiser
    from i2sb.core.precision import resolve_precision
    from i2sb.distill import BridgeGenerator
    from i2sb.distill.data import to_degraded
    from i2sb.distill.schema import to_distill_config
    from i2sb.distill.trainer import DistillTrainer
    from i2sb.methods import task_degradation
    from i2sb.restoration import Restorer
    from i2sb.restoration.algorithms import BridgeRestoration
    from i2sb.restoration.trained_network import TrainedNetwork
    from i2sb.restoration.student import StudentInfo, StudentRestoration, student_denoiser
    from i2sb.training.dist import DistInfo
    from i2sb.training.trainer import build_unet
    from i2sb.utils.device import resolve_device

    device = resolve_device(args.device)
    base_rss = rss_mb()
    cfg = bench_train_config(args, {})
    task, size = cfg.task, cfg.model.image_size
    torch.manual_seed(0)
    unet = build_unet(cfg)
    with torch.no_grad():  # a non-trivial network: perturb the zero-initialised output layers
        for p in unet.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    bridge = Bridge.symmetric(task.n_steps, task.beta_max)
    teacher = BridgeDenoiser(unet, bridge, task.t0, task.T, task.cond_x1).to(device).eval()
    x0 = torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    sync = device_sync(device)
    if param["part"] == "train":
        dcfg = to_distill_config({"ckpt": "unused", "run_dir": "/tmp/i2sb-bench-distill", "device": args.device,
                                  "data": {"kind": "demo", "image_size": size}, "logging": {"progress": False},
                                  "distill": {"aux_steps": args.aux_steps},
                                  "trainer": {"batch_size": args.batch, "eval_batch": args.batch}})
        spec = TrainedNetwork(cfg.model.unet_kwargs(), {}, task, size)
        trainer = DistillTrainer(dcfg, DistInfo(device=device), spec, teacher, size)
        deg = task_degradation(task, size)
        batches = itertools.repeat({"x0": x0})
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        fn = lambda: trainer.train_step(batches, lambda b, g: to_degraded(b, deg, task, g, device))  # noqa: E731
        times = timed(fn, args.warmup, args.repeats, sync)
        precision = trainer.cfg.trainer.precision
    else:
        if param["who"] == "student":
            generator = BridgeGenerator.from_denoiser(teacher, 3, 0.1, torch.Generator().manual_seed(0))
            net = generator.net.to(device).eval()
            del teacher, unet, generator
            restorer = Restorer(student_denoiser(net, task, 3).to(device).eval(),
                                StudentRestoration(bridge, task, StudentInfo(3, 1)), task, size)
        else:
            restorer = Restorer(teacher, BridgeRestoration(bridge, task), task, size)
        x1, mask = task_degradation(task, size)(x0, generator=torch.Generator().manual_seed(1))
        x1 = x1.to(device)
        mask = None if mask is None else mask.to(device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        g = torch.Generator(device=device).manual_seed(0)
        options = restorer.options(nfe=param["nfe"])
        fn = lambda: restorer.restore(x1, mask=mask, generator=g, options=options)  # noqa: E731
        heavy = param["nfe"] > 10
        times = timed(fn, 1 if heavy else args.warmup, max(1, args.repeats // 3) if heavy else args.repeats, sync)
        precision = resolve_precision(options.precision, device)
    memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mb() - base_rss
    return {**summary(times), "per_image_s": statistics.median(times) / args.batch, "memory_mb": memory,
            "precision": str(precision)}


def bench_train_config(args: argparse.Namespace, variant: dict[str, Any]) -> Any:
    """The resolved i2sb-train config of ``--model``, ``--size``, ``--task``, ``--batch`` and ``variant``'s
    trainer keys (``use_checkpoint``: the model's)."""
    import yaml

    from i2sb.config import to_train_config

    trainer_cfg = yaml.safe_load((ROOT / "i2sb" / "configs" / "trainer" / "default.yaml").read_text())
    model = model_config(args.model, args.size)
    model["use_checkpoint"] = bool(variant.pop("use_checkpoint", False))
    trainer_cfg.update(batch_size=args.batch, microbatch=args.batch, **variant)
    return to_train_config({
        "task": yaml.safe_load((ROOT / "i2sb" / "configs" / "task" / f"{args.task}.yaml").read_text()),
        "model": model, "data": {"kind": "demo"}, "trainer": trainer_cfg,
        "run_dir": "/tmp/i2sb-bench", "device": args.device, "logging": {"progress": False},
    })


def data_worker(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    import torch

    from i2sb import degrade
    from i2sb.data import build_dataset, infinite_loader
    from i2sb.utils.device import resolve_device

    device = resolve_device(args.device)
    size = args.size or model_config(args.model, None)["image_size"]
    loader = infinite_loader(build_dataset("demo", size, "train", length=4096), args.batch, num_workers=workers,
                             pin_memory=device.type == "cuda")
    deg = degrade.build(args.task, size)
    g = torch.Generator(device=device).manual_seed(0)

    def fetch() -> None:
        x0 = next(loader)["x0"].to(device, non_blocking=True)
        deg(x0, generator=g)

    sync = device_sync(device)
    times = timed(fetch, 3, max(args.repeats * 4, 20), sync)
    return {**summary(times), "batches_per_s": 1 / statistics.median(times)}


def quality_worker(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    import i2sb
    from i2sb import degrade
    from i2sb.data import DemoImages
    from i2sb.evaluation.metrics import psnr

    restorer = i2sb.load(args.ckpt, device=args.device)
    size = restorer.image_size
    val = DemoImages(size, "val")
    x0 = torch.stack([val[i]["x0"] for i in range(len(val))]).to(restorer.device)
    x1, mask = degrade.build(restorer.task.degradation, size)(x0, generator=torch.Generator().manual_seed(0))
    out: dict[str, Any] = {"images": len(val), "psnr_input": float(psnr(x1.clamp(-1, 1), x0).mean())}
    for nfe in sorted({1, args.quality_nfe}):
        restored = {}
        for precision in ("fp32", "bf16"):  # the same noise for both: only the arithmetic differs
            g = torch.Generator(device=restorer.device).manual_seed(0)
            restored[precision] = restorer.restore(x1, nfe=nfe, mask=mask, generator=g, precision=precision).clamp(-1, 1)
        row = {p: float(psnr(r, x0).mean()) for p, r in restored.items()}
        row["delta_db"] = row["bf16"] - row["fp32"]
        row["max_abs_diff"] = float((restored["bf16"] - restored["fp32"]).abs().max())
        out[f"nfe{nfe}"] = row
    return out


def quality_table(q: dict[str, Any]) -> list[str]:
    lines = [f"| bf16 vs fp32 restorations ({q['images']} demo validation photos, input {q['psnr_input']:.2f} dB) "
             "| fp32 PSNR | bf16 PSNR | Δ dB | max abs diff |", "|---|--:|--:|--:|--:|"]
    for key, row in q.items():
        if key.startswith("nfe"):
            lines.append(f"| NFE {key[3:]} | {row['fp32']:.3f} | {row['bf16']:.3f} | {row['delta_db']:+.3f} "
                         f"| {row['max_abs_diff']:.4f} |")
    return lines


WORKERS = {"train": train_worker, "sample": sample_worker, "data": data_worker, "quality": quality_worker,
           "distill": distill_worker, "authors_train": authors_train_worker, "authors_sample": authors_sample_worker}
AUTHORS = "authors' code (NVlabs/I2SB, fp32)"
OUR_WORKERS = ("train", "sample", "data", "quality", "distill")


# ----------------------------------------------------------------------------------------- driver
def run_worker(args: argparse.Namespace, section: str, param: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", section, "--param", json.dumps(param)] + forward_args(args)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": last[:160]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def forward_args(args: argparse.Namespace) -> list[str]:
    out = ["--model", args.model, "--batch", str(args.batch), "--device", args.device, "--task", args.task,
           "--warmup", str(args.warmup), "--repeats", str(args.repeats), "--quality-nfe", str(args.quality_nfe),
           "--sample-nfes", ",".join(map(str, args.sample_nfes)), "--distill-nfes",
           ",".join(map(str, args.distill_nfes)), "--aux-steps", str(args.aux_steps)]
    if args.size:
        out += ["--size", str(args.size)]
    if args.ckpt:
        out += ["--ckpt", args.ckpt]
    if args.authors:
        out += ["--authors", args.authors]
    return out


def merge_times(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Several rounds' :func:`summary` of one measurement -> one: median of the round medians, overall spread."""
    medians = [r["median_s"] for r in rows]
    return {"median_s": statistics.median(medians), "min_s": min(r["min_s"] for r in rows),
            "max_s": max(r["max_s"] for r in rows), "n": sum(r["n"] for r in rows), "round_medians_s": medians}


def merge_rounds(runs: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """One training row from several rounds of the same variant (:func:`merge_times`)."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[0]
    times = merge_times(good)
    return {**times, "images_per_s": batch / times["median_s"],
            "memory_mb": statistics.median(r["memory_mb"] for r in good), "params_m": good[0]["params_m"]}


def merge_sample_rounds(runs: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """One restoration row (:func:`sampling_rows`) from several rounds: per NFE as :func:`merge_times`, the
    overhead as the median over rounds."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[0]
    out = {"forward": merge_times([r["forward"] for r in good])}
    for key in (k for k in good[0] if k != "forward"):
        times = merge_times([r[key] for r in good])
        out[key] = {**times, "images_per_s": batch / times["median_s"],
                    "overhead": statistics.median(r[key]["overhead"] for r in good)}
    return out


def ms(x: float) -> str:
    return f"{1000 * x:8.1f}"


def speed_ratio(reference: dict[str, Any] | None, row: dict[str, Any], key: str = "median_s") -> str:
    """``reference time / row time`` (above 1: the row is faster), or ``-``."""
    if not reference or "error" in reference or key not in reference:
        return "-"
    return f"{reference[key] / row[key]:.2f}"


def train_table(results: dict[str, dict[str, Any]]) -> list[str]:
    base, authors = results.get("fp32 eager (baseline)"), results.get(AUTHORS)
    lines = ["| training step | median ms | min–max ms | images/s | time × baseline | speed × authors | memory MB |",
             "|---|--:|--:|--:|--:|--:|--:|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | | |")
            continue
        ratio = f"{r['median_s'] / base['median_s']:.2f}" if base and "error" not in base else "-"
        lines.append(f"| {name} | {ms(r['median_s'])} | {ms(r['min_s']).strip()}–{ms(r['max_s']).strip()} | "
                     f"{r['images_per_s']:.1f} | {ratio} | {speed_ratio(authors, r)} | {r['memory_mb']:.0f} |")
    return lines


def sample_table(results: dict[str, dict[str, Any]], nfes: tuple[int, ...] = SAMPLE_NFES) -> list[str]:
    ref = 10 if 10 in nfes else max(nfes)
    authors = results.get(AUTHORS, {}).get(f"nfe{ref}")
    lines = ["| restoration | forward ms | " + " | ".join(f"NFE {n} img/s (overhead)" for n in nfes)
             + f" | NFE {ref} speed × authors |", "|---|--:|" + "--:|" * (len(nfes) + 1)]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} |")
            continue
        cells = [f"{r[f'nfe{n}']['images_per_s']:.2f} ({r[f'nfe{n}']['overhead']:.3f})" for n in nfes]
        lines.append(f"| {name} | {ms(r['forward']['median_s'])} | " + " | ".join(cells)
                     + f" | {speed_ratio(authors, r[f'nfe{ref}'])} |")
    return lines


def distill_rows(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The distill section: the teacher's training step (i2sb-train's default), one IBMD iteration, and
    restoration latency per image of the teacher at ``--distill-nfes`` and of the one-step student; each in its
    own subprocess (clean peak memory)."""
    rows = {f"teacher training step (i2sb-train, batch {args.batch})": run_worker(args, "train", {}),
            f"student iteration (i2sb-distill: {args.aux_steps} auxiliary + 1 student update, batch {args.batch})":
                run_worker(args, "distill", {"part": "train"})}
    for nfe in args.distill_nfes:
        rows[f"teacher restoration, NFE {nfe}"] = run_worker(args, "distill", {"part": "restore", "who": "teacher",
                                                                                "nfe": nfe})
    rows["student restoration, NFE 1"] = run_worker(args, "distill", {"part": "restore", "who": "student", "nfe": 1})
    return rows


def distill_table(results: dict[str, dict[str, Any]], batch: int) -> list[str]:
    lines = ["| distillation (IBMD) | median ms | min–max ms | ms / image | peak memory MB | precision |",
             "|---|--:|--:|--:|--:|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | |")
            continue
        per_image = r.get("per_image_s", r["median_s"] / batch)
        lines.append(f"| {name} | {ms(r['median_s'])} | {ms(r['min_s']).strip()}–{ms(r['max_s']).strip()} | "
                     f"{ms(per_image)} | {r['memory_mb']:.0f} | {r.get('precision', 'default')} |")
    return lines


def data_table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| data (demo photos + degradation) | batches/s | median ms |", "|---|--:|--:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r.get('batches_per_s', float('nan')):.1f} | {ms(r.get('median_s', float('nan')))} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small", help="configs/model/<name>.yaml (small: ~8M params, 64 px)")
    parser.add_argument("--size", type=int, default=None, help="image size (default: the model's)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--task", default="jpeg5")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds over the training variants and the restoration rows")
    parser.add_argument("--sections", default="train,sample,data",
                        help="comma list of train,sample,data,quality,distill")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compilation)")
    parser.add_argument("--only", default=None, metavar="NAMES",
                        help="comma list: time only the training variants whose name contains one of these "
                             "(and the restoration rows, fp32 and fp32 nchw | bf16, whose precision one of "
                             "them names)")
    parser.add_argument("--sample-nfes", default=",".join(map(str, SAMPLE_NFES)), metavar="N,N",
                        help="NFEs the restoration section times")
    parser.add_argument("--distill-nfes", default="1,10,100", metavar="N,N",
                        help="teacher NFEs the distill section times (the student: NFE 1)")
    parser.add_argument("--aux-steps", type=int, default=5, help="auxiliary updates per IBMD iteration (distill)")
    parser.add_argument("--workers", default="0,2", help="data loader worker counts to compare")
    parser.add_argument("--ckpt", default=None, help="trained checkpoint for the quality section")
    parser.add_argument("--quality-nfe", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--authors", default=None, metavar="PATH",
                        help="a clone of NVlabs/I2SB: add their training step and sampler as rows (needs torch-ema)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--param", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sample_nfes = tuple(int(n) for n in str(args.sample_nfes).split(","))
    args.distill_nfes = tuple(int(n) for n in str(args.distill_nfes).split(","))

    if args.worker:  # child process: one measurement, printed as the last line of JSON
        param = json.loads(args.param) if args.param else None
        system_malloc = isinstance(param, dict) and param.pop("malloc", None) == "system"
        if args.worker in OUR_WORKERS and not system_malloc:
            reuse_freed_memory()  # as i2sb-train and i2sb-sample do; the authors' workers keep glibc's defaults
        print(json.dumps(WORKERS[args.worker](args, param) if args.worker != "quality" else WORKERS["quality"](args)))
        return 0

    sections = args.sections.split(",")
    only = [part.strip() for part in args.only.split(",")] if args.only else []
    results: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k not in ("worker", "param", "json")}}
    results["machine"] = machine_info(args.device)
    print(f"# i2sb bench — {results['machine']['description']}; model={args.model} batch={args.batch}\n"
          f"# {results['machine']['class']}", flush=True)
    if "train" in sections:
        variants = dict(TRAIN_VARIANTS)
        if args.compile:
            variants.update(COMPILE_VARIANTS)
        if only:
            variants = {name: v for name, v in variants.items() if any(k in name for k in only)}
        if args.authors:
            variants[AUTHORS] = {"authors": True}
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for _ in range(args.rounds):  # interleaved rounds: slow drifts of the machine hit every variant alike
            for name, variant in variants.items():
                section = "authors_train" if variant.get("authors") else "train"
                rounds[name].append(run_worker(args, section, dict(variant)))
                print(f"  train  {name}: {rounds[name][-1]}", file=sys.stderr, flush=True)
        results["train"] = {name: merge_rounds(runs, args.batch) for name, runs in rounds.items()}
        print("\n".join(train_table(results["train"])) + "\n", flush=True)
    if "sample" in sections:
        names = ("fp32", "fp32 nchw", "bf16")
        rows = {p: ("sample", p) for p in names if not only or any(p.split()[0] in k for k in only)}
        if args.authors:
            rows[AUTHORS] = ("authors_sample", None)
        sample_runs: dict[str, list[dict[str, Any]]] = {name: [] for name in rows}
        for _ in range(args.rounds):  # interleaved as the training rounds
            for name, (section, param) in rows.items():
                sample_runs[name].append(run_worker(args, section, param))
                print(f"  sample {name}: {sample_runs[name][-1]}", file=sys.stderr, flush=True)
        results["sample"] = {name: merge_sample_rounds(runs, args.batch) for name, runs in sample_runs.items()}
        print("\n".join(sample_table(results["sample"], args.sample_nfes)) + "\n", flush=True)
    if "distill" in sections:
        results["distill"] = distill_rows(args)
        print("\n".join(distill_table(results["distill"], args.batch)) + "\n", flush=True)
    if "data" in sections:
        results["data"] = {f"{w} workers": run_worker(args, "data", int(w)) for w in args.workers.split(",")}
        print("\n".join(data_table(results["data"])) + "\n", flush=True)
    if "quality" in sections:
        if not args.ckpt:
            parser.error("--sections quality needs --ckpt")
        q = results["quality"] = run_worker(args, "quality", None)
        print("\n".join(quality_table(q)) if "error" not in q else f"quality: {q['error']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"results written to {args.json}")
    return 0


def machine_info(device: str) -> dict[str, Any]:
    import platform

    import torch

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    cores = torch.get_num_threads()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() and device != "cpu" else None
    text = f"{gpu} / " if gpu else ""
    return {"description": f"{text}{cpu}, {cores} threads, torch {torch.__version__}", "cpu": cpu, "gpu": gpu,
            "threads": cores, "torch": torch.__version__, "class": machine_class(device)}


CPU_FLAGS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")  # the flags that set a CPU's class, shown in tables


def machine_class(device: str) -> str:
    """The machine class that decides ``precision=auto`` (CUDA, or the CPU's flags), whether it runs bf16
    natively (:func:`i2sb.core.precision.native_bf16`, what auto asks) and what auto chose."""
    from i2sb.core.precision import native_bf16, resolve_precision
    from i2sb.utils.device import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        kind = "CUDA"
    else:
        words = set(next((l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")),
                         "").split())
        kind = "CPU " + (" ".join(f for f in CPU_FLAGS if f in words) or "without AVX2") + kernel_caps()
    native = "native bf16" if native_bf16(resolved) else "no native bf16"
    return f"machine class: {kind} ({native}); precision=auto chose {resolve_precision('auto', resolved)}"


def kernel_caps() -> str:
    """The instruction-set caps set in the environment (they make this CPU run as a lesser class), or ''."""
    names = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
    caps = [f"{name}={os.environ[name]}" for name in names if os.environ.get(name)]
    return f", kernels capped: {' '.join(caps)}" if caps else ""


if __name__ == "__main__":
    sys.exit(main())
