"""What a lent GPU should tell us, in one command (``scripts/gpu_check.sh``, under 8 minutes on one GPU).

    scripts/gpu_check.sh                              # this machine's GPU; ADM-256 at 256x256
    scripts/gpu_check.sh --authors ~/src/I2SB         # + the authors' training step and sampler (needs torch-ema)
    scripts/gpu_check.sh --device cpu --quick         # the same sections on the CPU with a 16-px model (the test)

Sections, each in its own subprocess (a failure is one row, not the end of the check; peak memory per row):

* ``env``: GPU, compute capability, memory, torch / CUDA / cuDNN versions, what ``precision=auto`` chose;
* ``train``: the trainer's own step (degradation, Eq. 11, forward, backward, fused AdamW, EMA) at a global batch
  of ``--train-batch`` images, at ``trainer.microbatch`` 2 (the authors') and ``auto`` (the largest that fits,
  probed), fp32 and bf16, plus bf16 channels-last: ms per step, images/s, peak memory;
* ``sample``: ``Restorer.restore`` latency per image at NFE 1 and 10, batch 1 and 16, ``precision`` auto and fp32;
* ``authors`` (with ``--authors PATH``): the authors' training step at microbatch 2 and their sampler, same device;
* ``ddp``: two processes training through ``i2sb.train`` on one device (NCCL on CUDA; NCCL refuses two ranks on
  one GPU, then gloo over the same GPU), each seeing it as its own (one GPU bound per task);
* ``determinism``: a run split by a resume against an uninterrupted one, with ``trainer.deterministic`` true and
  false: bit-identical weights or not.

The tables are printed as Markdown and written as JSON (``--out DIR``). Sections run while ``--budget-s`` lasts.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS.parent))
sys.path.insert(0, str(SCRIPTS))

import bench  # noqa: E402  (scripts/bench.py: timing helpers, machine description)

QUICK = {"model": "tiny", "size": 16, "train_batch": 4, "sample_batches": "1,2", "warmup": 0, "repeats": 1,
         "det_model": "tiny", "det_size": 16}


# ----------------------------------------------------------------------------------------- workers
def env_worker(args: argparse.Namespace, _: Any) -> dict[str, Any]:
    import torch

    from i2sb.core.precision import resolve_precision
    from i2sb.utils.device import resolve_device

    device = resolve_device(args.device)
    out = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "precision_auto": resolve_precision("auto", device), "class": bench.machine_class(args.device),
           "cpu": bench.machine_info("cpu")["cpu"], "threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(gpu=props.name, capability=f"{props.major}.{props.minor}", memory_gb=props.total_memory / 2**30,
                   gpus_visible=torch.cuda.device_count())
    return out


def train_config(args: argparse.Namespace, model: str, size: int, trainer: dict[str, Any], run_dir: str) -> dict:
    import yaml

    groups = bench.ROOT / "i2sb" / "configs"
    return {"task": yaml.safe_load((groups / "task" / "jpeg5.yaml").read_text()),
            "model": {**bench.model_config(model, size), "init": None},
            "data": {"kind": "demo", "image_size": size, "params": {"length": 64}},
            "trainer": {**yaml.safe_load((groups / "trainer" / "default.yaml").read_text()), **trainer},
            "logging": {"progress": False}, "run_dir": run_dir, "device": args.device}


def train_worker(args: argparse.Namespace, variant: dict[str, Any]) -> dict[str, Any]:
    """The trainer's step at ``variant`` (precision, microbatch, channels_last) on a global batch of train_batch."""
    import torch

    from i2sb.config import to_train_config
    from i2sb.methods import task_degradation
    from i2sb.training.dist import DistInfo
    from i2sb.training.trainer import Trainer
    from i2sb.utils.device import backend_flags, resolve_device

    device = resolve_device(args.device)
    cfg = to_train_config(train_config(args, args.model, args.size, {"batch_size": args.train_batch, **variant},
                                       tempfile.mkdtemp(prefix="i2sb-gpu-check-")))
    with backend_flags(device, cfg.trainer.cudnn_benchmark):
        trainer = Trainer(cfg, DistInfo(device=device))
        deg = task_degradation(cfg.task, args.size)
        m = trainer.cfg.trainer.microbatch
        x0 = torch.rand(args.train_batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)) * 2 - 1
        batches = [{"x0": chunk} for chunk in x0.split(m)]
        sync = bench.device_sync(device)
        base_rss = bench.rss_mb()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = bench.timed(lambda: trainer.train_step(batches, deg), max(args.warmup, 1), args.repeats, sync)
        cuda = device.type == "cuda"
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else bench.peak_rss_mb() - base_rss
    return {**bench.summary(times), "microbatch": m, "passes": trainer.n_micro,
            "precision": trainer.cfg.trainer.precision, "memory_mb": peak,
            "images_per_s": args.train_batch / statistics.median(times)}


def sample_worker(args: argparse.Namespace, variant: dict[str, Any]) -> dict[str, Any]:
    """``Restorer.restore`` at NFE 1 and 10 for ``variant`` (precision, batch; benchmark: cuDNN benchmarking,
    channels_last): seconds per image."""
    import torch

    from i2sb.bridge import Bridge
    from i2sb.config import TaskConfig
    from i2sb.core.denoiser import BridgeDenoiser
    from i2sb.core.precision import resolve_precision
    from i2sb.restoration import Restorer
    from i2sb.restoration.algorithms import BridgeRestoration
    from i2sb.unet import UNet
    from i2sb.utils.device import backend_flags, resolve_device

    device = resolve_device(args.device)
    kwargs = {k: v for k, v in bench.model_config(args.model, args.size).items() if k not in ("name", "init")}
    torch.manual_seed(0)
    task = TaskConfig(name="jpeg5", degradation=None)
    bridge = Bridge.symmetric(1000, 0.3)
    restorer = Restorer(BridgeDenoiser(UNet(in_channels=3, **kwargs), bridge).to(device).eval(),
                        BridgeRestoration(bridge, task), task, args.size)
    batch = variant["batch"]
    x1 = torch.rand(batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1
    sync = bench.device_sync(device)
    out = {"precision": resolve_precision(variant["precision"], device)}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    options = restorer.options(precision=variant["precision"], channels_last=variant.get("channels_last", False))
    with backend_flags(device, benchmark=variant.get("benchmark", False)), torch.no_grad():
        for nfe in (1, 10):
            g = torch.Generator(device=device).manual_seed(0)
            settings = replace(options, nfe=nfe)
            times = bench.timed(lambda: restorer.restore(x1, generator=g, options=settings), max(args.warmup, 1),
                                args.repeats, sync)
            out[f"nfe{nfe}"] = {**bench.summary(times), "s_per_image": statistics.median(times) / batch}
    out["memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return out


def authors_train_worker(args: argparse.Namespace, _: Any) -> dict[str, Any]:
    bench_args = argparse.Namespace(**{**vars(args), "batch": args.train_batch, "task": "jpeg5"})
    return bench.authors_train_worker(bench_args, {"microbatch": 2})


def authors_sample_worker(args: argparse.Namespace, variant: dict[str, Any]) -> dict[str, Any]:
    bench_args = argparse.Namespace(**{**vars(args), "batch": variant["batch"], "sample_nfes": (1, 10),
                                       "task": "jpeg5", "warmup": max(args.warmup, 1)})
    rows = bench.authors_sample_worker(bench_args, None)
    return {"precision": "fp32", **{k: {**v, "s_per_image": v["median_s"] / variant["batch"]}
                                    for k, v in rows.items() if k.startswith("nfe")}}


def ddp_rank_worker(args: argparse.Namespace, variant: dict[str, Any]) -> dict[str, Any]:
    """One rank of a two-process run of ``i2sb.train`` (the launcher's variables are in the environment);
    ``variant["backend"]`` gloo: the group is made here first, so that training uses it instead of NCCL."""
    import torch.distributed as dist

    from i2sb.train import train

    if variant["backend"] == "gloo":
        dist.init_process_group("gloo")
    cfg = train_config(args, args.det_model, args.det_size, {"batch_size": 4, "microbatch": 2, "max_steps": 3,
                                                             "log_every": 1, "eval_every": 1000, "ckpt_every": 1000},
                       variant["run_dir"])
    start = time.perf_counter()
    summary = train(cfg)
    return {"seconds": time.perf_counter() - start, "it_per_s": summary.get("it_per_s"), "loss": summary.get("loss"),
            "step": summary["step"]}


def determinism_worker(args: argparse.Namespace, variant: dict[str, Any]) -> dict[str, Any]:
    """An uninterrupted run of 4 steps against one stopped after 2 and resumed: same weights, bit for bit?"""
    import torch

    from i2sb.train import train

    root = Path(tempfile.mkdtemp(prefix="i2sb-gpu-check-"))
    common = {"batch_size": 4, "microbatch": 2, "log_every": 1000, "eval_every": 1000, "ckpt_every": 1000,
              "deterministic": variant["deterministic"], "precision": "fp32"}

    def run(name: str, steps: int) -> dict[str, Any]:
        train(train_config(args, args.det_model, args.det_size, {**common, "max_steps": steps}, str(root / name)))
        return torch.load(root / name / "latest.pt", weights_only=True, map_location="cpu")

    start = time.perf_counter()
    whole = run("whole", 4)
    run("split", 2)
    resumed = run("split", 4)
    pairs = list(zip(whole["model"].values(), resumed["model"].values()))
    return {"bit_identical": all(torch.equal(a, b) for a, b in pairs), "seconds": time.perf_counter() - start,
            "max_abs_diff": max(float((a.float() - b.float()).abs().max()) for a, b in pairs)}


WORKERS = {"env": env_worker, "train": train_worker, "sample": sample_worker, "authors_train": authors_train_worker,
           "authors_sample": authors_sample_worker, "ddp_rank": ddp_rank_worker, "determinism": determinism_worker}


# ----------------------------------------------------------------------------------------- driver
class Budget:
    """Wall-clock budget of the whole check: each worker may use what is left."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def run_worker(args: argparse.Namespace, name: str, param: Any, budget: Budget,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    if budget.left() < 5:
        return {"error": "skipped: time budget spent"}
    cmd = [sys.executable, __file__, "--worker", name, "--param", json.dumps(param)] + forward_args(args)
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=budget.left(), env=env)
    except subprocess.TimeoutExpired:
        return {"error": "stopped: time budget spent"}
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()] or ["?"]
        return {"error": lines[-1][:200]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def forward_args(args: argparse.Namespace) -> list[str]:
    out = ["--device", args.device, "--model", args.model, "--size", str(args.size), "--train-batch",
           str(args.train_batch), "--warmup", str(args.warmup), "--repeats", str(args.repeats), "--det-model",
           args.det_model, "--det-size", str(args.det_size), "--sample-batches", args.sample_batches]
    out += ["--threads", str(args.threads)] if args.threads else []
    return out + (["--authors", args.authors] if args.authors else [])


DDP_CAP_S = 150.0  # one two-process attempt at most (a refused NCCL group may leave a rank waiting)


def ddp_rows(args: argparse.Namespace, budget: Budget) -> dict[str, Any]:
    """Two ranks on this one device: NCCL first on CUDA (the real path), gloo over the same device if NCCL refuses."""
    rows: dict[str, Any] = {}
    if budget.left() < 5:
        return {"all": {"error": "skipped: time budget spent"}}
    backends = ["nccl", "gloo"] if args.device != "cpu" and bench_device(args).type == "cuda" else ["default"]
    for backend in backends:
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="i2sb-gpu-check-ddp-") as run_dir:
            procs = [start_rank(args, rank, port, backend, run_dir) for rank in range(2)]
            first = finish_rank(procs[0], budget)
            results = [first, finish_rank(procs[1], budget, DDP_CAP_S if "error" not in first else 10.0)]
        rows[backend] = results[0] if all("error" not in r for r in results) else \
            next(r for r in results if "error" in r)
        if "error" not in rows[backend]:
            break
    return rows


def start_rank(args: argparse.Namespace, rank: int, port: int, backend: str, run_dir: str) -> subprocess.Popen:
    env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port), "I2SB_RDZV_TIMEOUT_S": "60"}
    if backend != "default":  # both ranks see the first GPU only, as tasks bound to one GPU each
        env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    param = json.dumps({"backend": backend, "run_dir": run_dir})
    cmd = [sys.executable, __file__, "--worker", "ddp_rank", "--param", param] + forward_args(args)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_rank(proc: subprocess.Popen, budget: Budget, cap_s: float = DDP_CAP_S) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=max(min(budget.left(), cap_s), 1))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": f"stopped after {min(budget.left(), cap_s):.0f} s"}
    if proc.returncode != 0:
        lines = [line for line in err.strip().splitlines() if line.strip()] or ["?"]
        return {"error": lines[-1][:200]}
    return json.loads(out.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_device(args: argparse.Namespace):
    from i2sb.utils.device import resolve_device

    return resolve_device(args.device)


TRAIN_VARIANTS = {  # name -> trainer keys; the first four first, the rest after every other section
    "fp32, microbatch 2": {"precision": "fp32", "microbatch": 2},
    "fp32, microbatch auto": {"precision": "fp32", "microbatch": "auto"},
    "bf16, microbatch 2": {"precision": "bf16", "microbatch": 2},
    "bf16, microbatch auto": {"precision": "bf16", "microbatch": "auto"},
    "bf16, microbatch auto, channels_last": {"precision": "bf16", "microbatch": "auto", "channels_last": True},
    "bf16, microbatch auto, no cudnn.benchmark": {"precision": "bf16", "microbatch": "auto", "cudnn_benchmark": False},
}
MAIN_TRAIN = 4


def sample_variants(batches: list[int]) -> dict[str, dict[str, Any]]:
    """name -> restoration settings: precision auto and fp32 at every batch (as i2sb-sample runs: no cuDNN
    benchmarking), then the switches at the largest batch."""
    main = {f"{p}, batch {b}": {"precision": p, "batch": b} for p in ("auto", "fp32") for b in batches}
    top = max(batches)
    extra = {f"auto, batch {top}, cudnn.benchmark": {"precision": "auto", "batch": top, "benchmark": True},
             f"auto, batch {top}, channels_last": {"precision": "auto", "batch": top, "channels_last": True}}
    return {**main, **extra}


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every section, most wanted first, while the budget lasts (a skipped row says so)."""
    budget = Budget(args.budget_s)
    results: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k not in ("worker", "param")}}
    results["env"] = run_worker(args, "env", None, budget)
    train, sample = list(TRAIN_VARIANTS.items()), list(sample_variants(_batches(args)).items())
    n_sample = 2 * len(_batches(args))
    results["train"] = {name: run_worker(args, "train", v, budget) for name, v in train[:MAIN_TRAIN]}
    results["sample"] = {name: run_worker(args, "sample", v, budget) for name, v in sample[:n_sample]}
    if args.authors:
        results["train"]["authors' code, fp32, microbatch 2"] = run_worker(args, "authors_train", None, budget)
        for b in _batches(args):
            results["sample"][f"authors' code, fp32, batch {b}"] = run_worker(args, "authors_sample", {"batch": b},
                                                                              budget)
    results["ddp"] = ddp_rows(args, budget)
    results["determinism"] = {"deterministic=true": run_worker(args, "determinism", {"deterministic": True}, budget)}
    results["train"].update({name: run_worker(args, "train", v, budget) for name, v in train[MAIN_TRAIN:]})
    results["sample"].update({name: run_worker(args, "sample", v, budget) for name, v in sample[n_sample:]})
    results["determinism"]["deterministic=false"] = run_worker(args, "determinism", {"deterministic": False}, budget)
    return results


def _batches(args: argparse.Namespace) -> list[int]:
    return [int(b) for b in args.sample_batches.split(",")]


# ----------------------------------------------------------------------------------------- tables
def header(env: dict[str, Any], args: argparse.Namespace) -> list[str]:
    if "error" in env:
        return [f"# gpu_check: environment failed: {env['error']}"]
    where = (f"{env['gpu']} (compute capability {env['capability']}, {env['memory_gb']:.1f} GiB, "
             f"{env['gpus_visible']} visible)" if env.get("gpu") else f"{env['cpu']}, {env['threads']} threads")
    return [f"# gpu_check: {where}; torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}",
            f"# {env['class']}; model={args.model} at {args.size}x{args.size}"]


def fmt_ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def table(head: list[str], align: str, rows: dict[str, Any], cells: Callable[[dict[str, Any]], list[str]]) -> list[str]:
    """A Markdown table: one row per ``rows`` entry, its name then ``cells(row)``, or the error it failed with."""
    lines = ["| " + " | ".join(head) + " |", align]
    for name, r in rows.items():
        values = cells(r) if "error" not in r else [f"failed: {r['error']}"] + [""] * (len(head) - 2)
        lines.append("| " + " | ".join([name, *values]) + " |")
    return lines


def train_table(rows: dict[str, Any], args: argparse.Namespace) -> list[str]:
    head = [f"training step, global batch {args.train_batch}", "precision", "microbatch x passes", "median ms",
            "min–max ms", "images/s", "peak memory MiB"]
    return table(head, "|---|---|--:|--:|--:|--:|--:|", rows, lambda r: [
        r.get("precision", "fp32"), f"{r['microbatch']} x {r['passes']}" if "passes" in r else "2",
        fmt_ms(r["median_s"]), f"{fmt_ms(r['min_s'])}–{fmt_ms(r['max_s'])}", f"{r['images_per_s']:.2f}",
        f"{r['memory_mb']:.0f}"])


def sample_table(rows: dict[str, Any]) -> list[str]:
    head = ["restoration", "precision", "NFE 1 ms/image", "NFE 10 ms/image", "peak memory MiB"]
    return table(head, "|---|---|--:|--:|--:|", rows, lambda r: [
        r["precision"], fmt_ms(r["nfe1"]["s_per_image"]), fmt_ms(r["nfe10"]["s_per_image"]),
        f"{r['memory_mb']:.0f}" if r.get("memory_mb") is not None else "-"])


def ddp_table(rows: dict[str, Any]) -> list[str]:
    head = ["two training processes on one device (i2sb.train, 3 steps)", "result"]
    named = {f"backend {backend}": r for backend, r in rows.items()}
    return table(head, "|---|---|", named, lambda r: [
        f"ran: {r['step']} steps in {r['seconds']:.1f} s (process start included), loss {r['loss']:.4f}"])


def determinism_table(rows: dict[str, Any]) -> list[str]:
    head = ["resumed after 2 of 4 steps vs uninterrupted (fp32)", "weights bit-identical", "max abs diff", "s"]
    return table(head, "|---|---|--:|--:|", rows, lambda r: [
        "yes" if r["bit_identical"] else "no", f"{r['max_abs_diff']:.3g}", f"{r['seconds']:.1f}"])


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    parts = [header(results["env"], args), train_table(results["train"], args), sample_table(results["sample"]),
             ddp_table(results["ddp"]), determinism_table(results["determinism"])]
    return "\n\n".join("\n".join(p) for p in parts) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="adm256", help="configs/model/<name>.yaml for train and sample")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--train-batch", type=int, default=32, help="global batch of the training rows")
    parser.add_argument("--sample-batches", default="1,16")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--det-model", default="small", help="model of the ddp and determinism sections")
    parser.add_argument("--det-size", type=int, default=64)
    parser.add_argument("--authors", default=None, metavar="PATH", help="a clone of NVlabs/I2SB (needs torch-ema)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no worker after this many seconds")
    parser.add_argument("--quick", action="store_true", help="a 16-px model, one repeat (the test suite's run)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in every worker")
    parser.add_argument("--out", type=Path, default=None, help="write gpu_check.json and gpu_check.md here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--param", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:  # child process: one measurement, printed as the last line of JSON
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(WORKERS[args.worker](args, json.loads(args.param) if args.param else None)))
        return 0
    results = run_all(args)
    text = report(results, args)
    print(text, end="")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
        (args.out / "gpu_check.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
