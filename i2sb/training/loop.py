"""The training loop (Algorithm 1): ``train(cfg)`` -- no Hydra in here; ``i2sb-train`` wraps it (``i2sb.cli``).

``train`` joins the process group (torchrun / Slurm), builds the :class:`~.trainer.Trainer` (which resolves the
config for the device once), resumes from ``run_dir/latest.pt``, and runs steps until ``trainer.max_steps``:
logging, validation (rank 0, through the same :class:`~i2sb.restoration.Restorer` as ``i2sb-sample``),
checkpoints, and a clean stop (:mod:`.stop`): Ctrl-C saves ``latest.pt`` and raises
:class:`~.stop.TrainingInterrupted`; SIGTERM / SIGUSR1 / SIGUSR2 (preemption) save and return; a handler that
was installed before (submitit's requeue) runs after the save.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import torch
from omegaconf import OmegaConf
from torch import Tensor
from tqdm.auto import tqdm

from ..config import TrainConfig, to_container, to_train_config
from ..data import build_split, infinite_loader
from ..methods import task_degradation
from ..utils.file_formats import LATEST, RUN_CONFIG
from ..utils.device import backend_flags
from ..utils.files import remove_temp_files
from .dist import DistInfo, all_reduce_mean, init_distributed, print0, shutdown
from .resume import read_latest
from .stop import StopSignals, StopVote, TrainingInterrupted, stop_message
from .trainer import Trainer
from .validation import build_validator, validation_line
from .writers import build_writer


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. the loss stayed non-finite); the message says why."""


def build_data(cfg: TrainConfig, info: DistInfo, start_step: int, n_micro: int) -> Iterator[dict]:
    """The endless, resumable stream of this rank's training microbatches from ``start_step`` on."""
    dataset = build_split(cfg.data, "train")
    return infinite_loader(
        dataset, cfg.trainer.microbatch, rank=info.rank, world_size=info.world_size, seed=cfg.seed,
        num_workers=cfg.data.num_workers, pin_memory=cfg.data.pin_memory and info.device.type == "cuda",
        start_step=start_step * n_micro,
    )


def train(cfg: Any) -> dict[str, Any]:
    """Train per ``cfg`` (dict / DictConfig / TrainConfig) in this process; returns a summary dict.

    Runs under torchrun, srun or submitit as well (one process per device; :mod:`.launchers`). Resumes from
    ``run_dir/latest.pt`` when ``resume`` is true and the file exists. A stop request saves ``latest.pt`` at the
    next step boundary (:mod:`.stop`): SIGTERM / SIGUSR1 / SIGUSR2 then return with ``summary["preempted"]``
    true, Ctrl-C raises :class:`~.stop.TrainingInterrupted` (a ``KeyboardInterrupt``: exit 130). An incomplete
    launch environment or a missed rendezvous raises :class:`~.launchers.LaunchError` (a ``ValueError``).
    """
    cfg = to_train_config(cfg)
    info = init_distributed(cfg.device)
    try:
        with backend_flags(info.device, cfg.trainer.cudnn_benchmark, cfg.trainer.deterministic):
            trainer, deg, loader, validator, writer = _start(cfg, info)
            cfg, vote = trainer.cfg, StopVote(info)  # from here on the one resolved config
            try:
                with StopSignals() as stop:
                    summary = _loop(cfg, info, trainer, loader, deg, validator, writer, stop, vote)
                vote.close()
            finally:
                if writer is not None:
                    writer.close()
            if summary["preempted"]:
                _after_stop(stop, summary["stop_message"])
            return summary
    finally:
        shutdown(info)


def _start(cfg: TrainConfig, info: DistInfo) -> tuple[Trainer, Any, Iterator[dict], Any, Any]:
    """``(trainer, degradation, loader, validator, writer)`` of a run: the trainer resumed from ``latest.pt`` when
    asked, the run's resolved config saved (validator and writer on rank 0 only, None elsewhere)."""
    trainer = Trainer(cfg, info)
    cfg, run_dir = trainer.cfg, trainer.run_dir
    hint = cpu_batch_hint(cfg, info.device)
    if hint:
        print0(info, hint)
    latest = run_dir / LATEST
    if cfg.resume and latest.is_file():
        trainer.load_state_dict(read_latest(latest), str(latest))
        print0(info, f"[i2sb] resumed from {latest} at step {trainer.step}")
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_temp_files(run_dir)
        OmegaConf.save(OmegaConf.create(to_container(cfg)), run_dir / RUN_CONFIG)
    deg = task_degradation(cfg.task, cfg.data.image_size)
    loader = build_data(cfg, info, trainer.step, trainer.n_micro)
    validator = build_validator(cfg, trainer.method.denoiser(trainer.ema.module), deg, info.device) \
        if info.is_main else None
    writer = build_writer(run_dir, cfg.logging.tensorboard, cfg.logging.wandb, cfg.logging.wandb_project,
                          to_container(cfg)) if info.is_main else None
    return trainer, deg, loader, validator, writer


def cpu_batch_hint(cfg: TrainConfig, device: torch.device) -> str | None:
    """A note when the authors' cluster batch (256, in microbatches) meets a CPU; None otherwise."""
    if device.type != "cpu" or cfg.trainer.batch_size < 64:
        return None
    return (f"[i2sb] note: trainer.batch_size={cfg.trainer.batch_size} (lr {cfg.trainer.lr:g}) is the authors' "
            "multi-GPU setting; on a CPU, trainer=cpu (batch 8, lr 1e-3) trains a small model in minutes")


def _after_stop(stop: StopSignals, message: str) -> None:
    """Ctrl-C ends in :class:`TrainingInterrupted`; otherwise the handlers that were there before ours (submitit's
    requeue on its preemption signal) run now that ``latest.pt`` is saved."""
    if stop.interrupted:
        raise TrainingInterrupted(message)
    stop.run_deferred_handlers()


def _loop(cfg, info, trainer, loader, deg, validator, writer, stop: StopSignals, vote: StopVote) -> dict[str, Any]:
    opt = cfg.trainer
    bar = _progress(cfg, info, trainer.step)
    loss_sum = torch.zeros((), device=trainer.device)
    last_log, last_time, summary = trainer.step, time.perf_counter(), {"preempted": False}
    while trainer.step < opt.max_steps:
        loss = trainer.train_step([next(loader) for _ in range(trainer.n_micro)], deg)
        loss_sum += torch.where(torch.isfinite(loss), loss, torch.zeros_like(loss))
        if bar is not None:
            bar.update(1)
        if trainer.step % opt.log_every == 0 or trainer.step == opt.max_steps:
            values = _log_values(trainer, loss_sum, trainer.step - last_log, time.perf_counter() - last_time)
            _check_bad_steps(trainer, info)
            if writer is not None:
                writer.scalars(trainer.step, values)
            if bar is not None:
                bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{values['lr']:.2e}")
            summary.update(values)
            loss_sum.zero_()
            last_log, last_time = trainer.step, time.perf_counter()
        if validator is not None and (trainer.step % opt.eval_every == 0 or trainer.step == opt.max_steps):
            values = validator.run(trainer.step, writer)
            trainer.validation = validator.record  # saved with the checkpoint: i2sb-sample's default NFE
            write_line(bar, validation_line(trainer.step, opt.eval_nfe, values))
            summary.update(values)
        saved = trainer.step % opt.ckpt_every == 0 or trainer.step == opt.max_steps
        if saved:
            trainer.save(keep=opt.keep_every > 0 and trainer.step % opt.keep_every == 0)
        if stopped_here(trainer, saved, opt.max_steps, stop, vote, bar, summary):
            break
    if bar is not None:
        bar.close()
    summary.update(step=trainer.step, bad_steps=int(trainer.bad_total), run_dir=str(cfg.run_dir))
    return summary


def stopped_here(trainer: Any, saved: bool, max_steps: int, stop: StopSignals, vote: StopVote, bar: Any,
                 summary: dict[str, Any]) -> bool:
    """Whether a stop any rank received (SIGTERM, SIGUSR1, Ctrl-C) ends the run after this step: then
    ``latest.pt`` is saved (unless this step saved it), ``summary`` says why and rank 0 prints the line."""
    if not vote(stop.requested) or trainer.step >= max_steps:
        return False
    if not saved:
        trainer.save()
    message = stop_message(stop.reason(), str(trainer.run_dir / LATEST), trainer.step, stop.interrupted)
    summary.update(preempted=True, stop_reason=stop.reason(), stop_message=message)
    if trainer.info.is_main:
        write_line(bar, message)
    return True


def write_line(bar: Any, line: str) -> None:
    """Print above the progress bar when there is one (rank 0 only: only rank 0 validates)."""
    if bar is not None:
        bar.write(line)
    else:
        print(line, flush=True)


def _progress(cfg: TrainConfig, info: DistInfo, start: int):
    if not (cfg.logging.progress and info.is_main):
        return None
    return tqdm(total=cfg.trainer.max_steps, initial=start, desc=f"i2sb {cfg.task.name}", unit="it", dynamic_ncols=True)


def _log_values(trainer: Trainer, loss_sum: Tensor, n_steps: int, seconds: float) -> dict[str, float]:
    loss = all_reduce_mean(loss_sum, trainer.info) / max(n_steps, 1)
    return {
        "loss": float(loss),
        "lr": float(trainer.scheduler.get_last_lr()[0]),
        "bad_steps": int(trainer.bad_total),
        "it_per_s": n_steps / max(seconds, 1e-9),
    }


def _check_bad_steps(trainer: Trainer, info: DistInfo) -> None:
    run = int(trainer.bad_run)
    if run >= trainer.cfg.trainer.max_bad_steps:
        raise TrainingError(
            f"loss or gradients were non-finite for {run} consecutive steps (up to step {trainer.step}); "
            f"stopping. Last good checkpoint: {trainer.run_dir / LATEST}. Try a lower trainer.lr, "
            f"trainer.precision=fp32 or trainer.grad_clip"
        )
