"""Training loop (Algorithm 1): ``train(cfg)`` — no Hydra in here; ``i2sb-train`` wraps it (``cli.py``).

Per optimiser step, each rank accumulates gradients over ``batch_size / (world_size * microbatch)``
microbatches (loss divided accordingly, DDP gradient sync on the last microbatch only), then AdamW,
StepLR and the EMA advance. Every random draw of step ``k`` (t, X_t noise, masks, x1 noise, dropout)
comes from generators seeded with ``(seed, rank, k)`` and the data stream is indexed by step, so a run
resumed from ``latest.pt`` continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

from . import checkpoint as ckpt_io
from . import data as data_lib
from . import degrade
from . import dist as dist_lib
from .config import ConfigError, TrainConfig, to_container, to_train_config
from .denoiser import resolve_precision
from .ema import EMA
from .evaluation_loop import Validator
from .methods import Pair, build_method
from .monitor import build_writer
from .unet import UNet


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. the loss stayed non-finite); the message says why."""


# ---------------------------------------------------------------------------- building blocks
def build_unet(cfg: TrainConfig, in_channels: int | None = None) -> UNet:
    """The U-Net of ``cfg.model``; 6 input channels with ``task.cond_x1`` unless ``in_channels`` is given."""
    kwargs = {k: v for k, v in to_container(cfg)["model"].items() if k not in ("name", "init")}
    return UNet(in_channels=in_channels or (6 if cfg.task.cond_x1 else 3), **kwargs)


def build_optimizer(params: list[nn.Parameter], cfg: TrainConfig, device: torch.device):
    """AdamW + StepLR with the authors' defaults; fused AdamW where the device supports it."""
    t = cfg.trainer
    fused = t.fused_optimizer and device.type in ("cuda", "cpu")
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, fused=fused or None)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=t.lr_step, gamma=t.lr_gamma)
    return optimizer, scheduler


def step_generator(seed: int, rank: int, step: int, device: torch.device) -> torch.Generator:
    """A generator owned by one (seed, rank, step): the randomness of a step never depends on history."""
    mixed = int(np.random.SeedSequence([seed, rank, step, 7]).generate_state(1, np.uint64)[0] >> np.uint64(1))
    return torch.Generator(device=device).manual_seed(mixed)


def micro_steps(cfg: TrainConfig, world_size: int) -> int:
    """Microbatches per rank and optimiser step; ``batch_size`` must split evenly."""
    t = cfg.trainer
    if t.batch_size % (world_size * t.microbatch):
        raise ConfigError(
            f"config key 'trainer.batch_size': {t.batch_size} is not divisible by world_size ({world_size}) "
            f"x trainer.microbatch ({t.microbatch})"
        )
    return t.batch_size // (world_size * t.microbatch)


def make_pair(batch: dict[str, Tensor], deg: Any, cfg: TrainConfig, g: torch.Generator, device: torch.device) -> Pair:
    """Clean batch -> boundary pair (authors' ``Runner.sample_batch``), degraded on the device."""
    x0 = batch["x0"].to(device, non_blocking=True)
    mask = None
    if "x1" in batch:
        x1 = batch["x1"].to(device, non_blocking=True)
    else:
        with torch.no_grad():
            x1, mask = deg(x0, generator=g)
    if mask is not None:  # the hole is filled with noise (paper App. C.1 (ii))
        x1 = (1.0 - mask) * x1 + mask * torch.randn(x1.shape, generator=g, device=device)
    cond = x1 if cfg.task.cond_x1 else None
    if cfg.task.add_x1_noise:
        x1 = x1 + torch.randn(x1.shape, generator=g, device=device)
    return Pair(x0, x1, mask, cond)


# ---------------------------------------------------------------------------- state
class Trainer:
    """Holds the model, EMA, optimiser and counters of one rank; ``run()`` trains to ``max_steps``."""

    def __init__(self, cfg: TrainConfig, info: dist_lib.DistInfo):
        precision = resolve_precision(cfg.trainer.precision, info.device)
        cfg = replace(cfg, trainer=replace(cfg.trainer, precision=precision))  # "auto" resolved for this device
        self.cfg, self.info, self.device = cfg, info, info.device
        self.run_dir = Path(cfg.run_dir)
        self.n_micro = micro_steps(cfg, info.world_size)
        self.method = build_method(cfg)
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.unet = build_unet(cfg, self.method.in_channels)
        if cfg.model.init:
            ckpt_io.load_adm_init(self.unet, cfg.model.init)
        self.unet.to(self.device)
        if cfg.trainer.channels_last:
            self.unet.to(memory_format=torch.channels_last)
        self.denoiser = self.method.denoiser(self.unet).to(self.device)
        self.ema = EMA(self.unet, cfg.trainer.ema, cfg.trainer.ema_warmup)
        self.optimizer, self.scheduler = build_optimizer(list(self.unet.parameters()), cfg, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.trainer.precision == "fp16")
        self.step = 0
        self.bad_total = torch.zeros((), dtype=torch.long, device=self.device)
        self.bad_run = torch.zeros((), dtype=torch.long, device=self.device)
        self.ddp = DDP(self.denoiser, device_ids=[self.device] if self.device.type == "cuda" else None) \
            if info.distributed else None
        self.model: nn.Module = self.ddp if self.ddp is not None else self.denoiser
        if cfg.trainer.compile:
            self.model = torch.compile(self.model)

    # ------------------------------------------------------------------ one step
    def train_step(self, batches: list[dict[str, Tensor]], deg: Any) -> Tensor:
        """One optimiser step over ``n_micro`` microbatches; returns the (device) mean loss."""
        g = step_generator(self.cfg.seed, self.info.rank, self.step, self.device)
        torch.manual_seed(g.initial_seed())  # dropout and any other global draw, per step
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for i, batch in enumerate(batches):
            pair = make_pair(batch, deg, self.cfg, g, self.device)
            last = i == len(batches) - 1
            with self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext():
                loss = self.method.loss(self.model, pair, g) / len(batches)
                self.scaler.scale(loss).backward()
            total += loss.detach()
        self._optimizer_step(total)
        return total

    def _optimizer_step(self, loss: Tensor) -> None:
        params = [p for p in self.unet.parameters() if p.grad is not None]
        self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.trainer.grad_clip if self.cfg.trainer.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        bad = ~(torch.isfinite(loss) & torch.isfinite(grad_norm))
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # skips non-finite steps itself
            self.scaler.update()
        elif getattr(self.optimizer, "defaults", {}).get("fused"):
            self.optimizer.found_inf = bad.float()  # fused AdamW skips the update on device, no sync
            self.optimizer.step()
            del self.optimizer.found_inf
        elif not bool(bad):
            self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.unet, skip=bad)
        self.bad_total += bad
        self.bad_run = (self.bad_run + 1) * bad

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": ckpt_io.FORMAT,
            "version": ckpt_io.VERSION,
            "step": self.step,
            "model": self.unet.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "cuda": _cuda_rng_states()},
            "stats": {"bad_steps": int(self.bad_total)},
            "config": to_container(self.cfg),
        }

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        _check_same_model(state.get("config", {}), to_container(self.cfg), source)
        self.unet.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["lr_scheduler"])
        self.scaler.load_state_dict(state["grad_scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step = int(state["step"])
        self.bad_total.fill_(int(state.get("stats", {}).get("bad_steps", 0)))

    def save(self, keep: bool = False) -> None:
        """Rank 0 writes ``latest.pt`` atomically (and ``ckpt_{step}.pt`` with ``keep``)."""
        if self.info.is_main:
            state = self.state_dict()
            ckpt_io.save_atomic(state, self.run_dir / ckpt_io.LATEST)
            if keep:
                ckpt_io.save_atomic(state, self.run_dir / f"ckpt_{self.step:09d}.pt")
        dist_lib.barrier(self.info)


def _cuda_rng_states() -> list[Tensor]:
    return torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []


def _check_same_model(saved: dict[str, Any], current: dict[str, Any], source: str) -> None:
    """Resuming must keep the method, the network and the bridge; the trainer section may change (e.g. max_steps)."""
    if "method" in saved and saved["method"] != current.get("method"):
        raise ConfigError(f"{source}: cannot resume: config key 'method' was {saved['method']!r} in the checkpoint "
                          f"but is {current.get('method')!r} now (use a new run_dir)")
    for section in ("model", "task"):
        for key, value in current.get(section, {}).items():
            if key in ("init",) or section not in saved:
                continue
            old = saved[section].get(key)
            if old != value:
                raise ConfigError(
                    f"{source}: cannot resume: config key '{section}.{key}' was {old!r} in the checkpoint but is "
                    f"{value!r} now (use a new run_dir, or resume=false to start over)"
                )


# ---------------------------------------------------------------------------- the loop
class _StopFlag:
    """Set by SIGTERM/SIGINT (preemption): the loop saves and exits at the next step boundary."""

    def __init__(self) -> None:
        self.raised = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def build_data(cfg: TrainConfig, info: dist_lib.DistInfo, start_step: int, n_micro: int) -> Iterator[dict]:
    d = cfg.data
    kwargs = dict(d.params)
    if d.root is not None:
        kwargs["root"] = d.root
    dataset = data_lib.build_dataset(d.kind, d.image_size, "train", **kwargs)
    return data_lib.infinite_loader(
        dataset, cfg.trainer.microbatch, rank=info.rank, world_size=info.world_size, seed=cfg.seed,
        num_workers=d.num_workers, pin_memory=d.pin_memory and info.device.type == "cuda",
        start_step=start_step * n_micro,
    )


def build_degradation(cfg: TrainConfig) -> Any:
    if cfg.task.degradation is None:
        return None
    return degrade.build(cfg.task.degradation, cfg.data.image_size, **dict(cfg.task.params))


def train(cfg: Any) -> dict[str, Any]:
    """Train per ``cfg`` (dict / DictConfig / TrainConfig) in this process; returns a summary dict.

    Runs under torchrun as well (one process per device). Resumes from ``run_dir/latest.pt``
    when ``resume`` is true and the file exists.
    """
    cfg = to_train_config(cfg)
    info = dist_lib.init(cfg.device)
    try:
        return _train(cfg, info)
    finally:
        dist_lib.shutdown(info)


def cpu_batch_hint(cfg: TrainConfig, device: torch.device) -> str | None:
    """A note when the authors' cluster batch (256, in microbatches) meets a CPU; None otherwise."""
    if device.type != "cpu" or cfg.trainer.batch_size < 64:
        return None
    return (f"[i2sb] note: trainer.batch_size={cfg.trainer.batch_size} (lr {cfg.trainer.lr:g}) is the authors' "
            "multi-GPU setting; on a CPU, trainer=cpu (batch 8, lr 1e-3) trains a small model in minutes")


def _train(cfg: TrainConfig, info: dist_lib.DistInfo) -> dict[str, Any]:
    trainer = Trainer(cfg, info)
    run_dir = trainer.run_dir
    hint = cpu_batch_hint(cfg, info.device)
    if hint:
        dist_lib.print0(info, hint)
    latest = ckpt_io.find_latest(run_dir) if cfg.resume else None
    if latest is not None:
        trainer.load_state_dict(ckpt_io.load_file(latest), str(latest))
        dist_lib.print0(info, f"[i2sb] resumed from {latest} at step {trainer.step}")
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt_io.cleanup_temp_files(run_dir)
        OmegaConf.save(OmegaConf.create(to_container(cfg)), run_dir / "config.yaml")
    deg = build_degradation(cfg)
    loader = build_data(cfg, info, trainer.step, trainer.n_micro)
    validator = Validator(cfg, trainer, deg) if info.is_main else None
    writer = build_writer(run_dir, cfg.logging.tensorboard, cfg.logging.wandb, cfg.logging.wandb_project,
                          to_container(cfg)) if info.is_main else None
    try:
        with _StopFlag() as stop:
            summary = _loop(cfg, info, trainer, loader, deg, validator, writer, stop)
    finally:
        if writer is not None:
            writer.close()
    return summary


def _loop(cfg, info, trainer, loader, deg, validator, writer, stop) -> dict[str, Any]:
    t = cfg.trainer
    bar = _progress(cfg, info, trainer.step)
    loss_sum = torch.zeros((), device=trainer.device)
    last_log, last_time, summary = trainer.step, time.perf_counter(), {"preempted": False}
    while trainer.step < t.max_steps:
        loss = trainer.train_step([next(loader) for _ in range(trainer.n_micro)], deg)
        loss_sum += torch.where(torch.isfinite(loss), loss, torch.zeros_like(loss))
        trainer.step += 1
        if bar is not None:
            bar.update(1)
        if trainer.step % t.log_every == 0 or trainer.step == t.max_steps:
            values = _log_values(trainer, loss_sum, trainer.step - last_log, time.perf_counter() - last_time)
            _check_bad_steps(trainer, info)
            if writer is not None:
                writer.scalars(trainer.step, values)
            if bar is not None:
                bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{values['lr']:.2e}")
            summary.update(values)
            loss_sum.zero_()
            last_log, last_time = trainer.step, time.perf_counter()
        if validator is not None and (trainer.step % t.eval_every == 0 or trainer.step == t.max_steps):
            values = validator.run(trainer.step, writer)
            _write_line(bar, validation_line(trainer.step, t.eval_nfe, values))
            summary.update(values)
        if trainer.step % t.ckpt_every == 0 or trainer.step == t.max_steps:
            trainer.save(keep=t.keep_every > 0 and trainer.step % t.keep_every == 0)
        if _should_stop(stop, info, trainer.step % t.log_every == 0):
            trainer.save()
            summary["preempted"] = True
            dist_lib.print0(info, f"[i2sb] stop requested: saved {cfg.run_dir}/latest.pt at step {trainer.step}")
            break
    if bar is not None:
        bar.close()
    summary.update(step=trainer.step, bad_steps=int(trainer.bad_total), run_dir=str(cfg.run_dir))
    return summary


def validation_line(step: int, nfe: int, values: dict[str, float]) -> str:
    """One console line for a validation: PSNR at ``nfe``, at NFE 1 (~ posterior mean) and of the input."""
    line = f"[i2sb] step {step}: validation PSNR {values['val_psnr']:.2f} dB at NFE {nfe}"
    if "val_psnr_nfe1" in values:
        line += f", {values['val_psnr_nfe1']:.2f} dB at NFE 1"
    return line + f" (degraded input {values['val_psnr_input']:.2f} dB)"


def _write_line(bar: Any, line: str) -> None:
    """Print above the progress bar when there is one (rank 0 only: only rank 0 validates)."""
    if bar is not None:
        bar.write(line)
    else:
        print(line, flush=True)


def _progress(cfg: TrainConfig, info: dist_lib.DistInfo, start: int):
    if not (cfg.logging.progress and info.is_main):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.trainer.max_steps, initial=start, desc=f"i2sb {cfg.task.name}", unit="it", dynamic_ncols=True)


def _log_values(trainer: Trainer, loss_sum: Tensor, n_steps: int, seconds: float) -> dict[str, float]:
    loss = dist_lib.all_reduce_mean(loss_sum, trainer.info) / max(n_steps, 1)
    return {
        "loss": float(loss),
        "lr": float(trainer.scheduler.get_last_lr()[0]),
        "bad_steps": int(trainer.bad_total),
        "it_per_s": n_steps / max(seconds, 1e-9),
    }


def _check_bad_steps(trainer: Trainer, info: dist_lib.DistInfo) -> None:
    run = int(trainer.bad_run)
    if run >= trainer.cfg.trainer.max_bad_steps:
        raise TrainingError(
            f"loss or gradients were non-finite for {run} consecutive steps (up to step {trainer.step}); "
            f"stopping. Last good checkpoint: {trainer.run_dir / ckpt_io.LATEST}. Try a lower trainer.lr, "
            f"trainer.precision=fp32 or trainer.grad_clip"
        )


def _should_stop(stop: _StopFlag, info: dist_lib.DistInfo, collective: bool) -> bool:
    """The local flag alone, or (distributed, at ``collective`` steps only: no per-step sync) any rank's."""
    if not info.distributed:
        return stop.raised
    if not collective:
        return False
    flag = torch.tensor(float(stop.raised), device=info.device)
    torch.distributed.all_reduce(flag)
    return bool(flag > 0)


if __name__ == "__main__":  # python -m i2sb.train key=value ...
    from .cli import train_main

    train_main()
