"""The distillation loop: ``distill(cfg)`` -- no Hydra in here; ``i2sb-distill`` wraps it (``i2sb.cli.distill``).

``distill`` joins the process group (torchrun / Slurm, as ``i2sb-train``), reads the teacher (anything
``i2sb-sample ckpt=`` reads; its task, bridge and network), builds the :class:`~.trainer.DistillTrainer`, resumes
from ``run_dir/latest.pt``, and runs IBMD iterations until ``trainer.max_steps`` student updates: logging
(``metrics.jsonl``, progress bar), validation of the student's EMA (:mod:`.validation`), checkpoints, and the
stop signals of :mod:`i2sb.training.stop` (Ctrl-C saves ``latest.pt`` and raises
:class:`~i2sb.training.stop.TrainingInterrupted`; SIGTERM / SIGUSR1 / SIGUSR2 save and return).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Iterator

import torch
from omegaconf import OmegaConf
from torch import Tensor
from tqdm.auto import tqdm

from .. import degrade
from ..config import TaskConfig
from ..data import infinite_loader
from ..methods import task_degradation
from ..restoration.checkpoints import LATEST, network_spec
from ..restoration.loading import denoiser_from_spec
from ..restoration.trained_network import TrainedNetwork
from ..training.dist import DistInfo, all_reduce_mean, init_distributed, print0, shutdown
from ..training.resume import read_latest
from ..training.stop import StopSignals, StopVote, TrainingInterrupted
from ..training.loop import stopped_here, write_line
from ..training.validation import validation_line
from ..training.writers import build_writer
from ..utils.device import backend_flags
from ..utils.files import remove_temp_files
from .alternate import Degraded
from .data import build_split, to_degraded
from .schema import DistillConfig, to_distill_config
from .trainer import DistillTrainer
from .validation import build_validator

TEACHER_METHOD = "i2sb"


def read_teacher(cfg: DistillConfig) -> TrainedNetwork:
    """The teacher's :class:`TrainedNetwork`, checked to be a bridge model that fits this run; one-line errors
    (``FileNotFoundError`` for a missing teacher, ``ValueError`` otherwise) naming the key."""
    spec = network_spec(cfg.ckpt, cfg.use_ema)
    if spec.method != TEACHER_METHOD:
        raise ValueError(f"ckpt: {cfg.ckpt}: a method={spec.method} checkpoint, not an I2SB bridge model; "
                         f"i2sb-distill distils a bridge (a method=i2sb run, its export, or the authors' results/NAME)")
    check_against_teacher(cfg, spec.task)
    return spec


def check_against_teacher(cfg: DistillConfig, task: TaskConfig) -> None:
    """The settings the teacher's task bounds: student steps, the reference NFE, where x1 comes from."""
    top = task.n_steps - 1
    for key in ("steps", "reference_nfe"):
        if not 1 <= getattr(cfg.distill, key) <= top:
            raise ValueError(f"config key 'distill.{key}': must be in 1..{top} for this teacher "
                             f"({task.n_steps} bridge steps), got {getattr(cfg.distill, key)}")
    masked = task.degradation in degrade.TASKS and degrade.needs_mask(task.degradation)
    if cfg.data.kind == "degraded" and masked:
        raise ValueError(f"config key 'data.kind': an inpainting teacher ({task.degradation}) needs the masks; "
                         f"use data=imagefolder (clean photos, masks drawn by the task) or data=demo")
    if cfg.data.kind != "degraded" and task.degradation is None:
        raise ValueError(f"config key 'data.kind': the teacher's task {task.name} has no degradation to apply to "
                         f"clean photos; give its degraded inputs with data=degraded root=DIR")


def distill(cfg: Any) -> dict[str, Any]:
    """Distil per ``cfg`` (dict / DictConfig / DistillConfig) in this process; returns a summary dict.

    Runs under torchrun, srun or submitit as ``i2sb-train`` does; resumes from ``run_dir/latest.pt`` when
    ``resume`` is true and the file exists. A stop request saves ``latest.pt`` at the next iteration boundary:
    SIGTERM / SIGUSR1 / SIGUSR2 then return with ``summary["preempted"]`` true, Ctrl-C raises
    :class:`~i2sb.training.stop.TrainingInterrupted` (exit 130).
    """
    cfg = to_distill_config(cfg)
    info = init_distributed(cfg.device)
    try:
        with backend_flags(info.device, cfg.trainer.cudnn_benchmark, cfg.trainer.deterministic):
            return _distill(cfg, info)
    finally:
        shutdown(info)


def _distill(cfg: DistillConfig, info: DistInfo) -> dict[str, Any]:
    spec = read_teacher(cfg)
    if cfg.trainer.batch_size % info.world_size:
        raise ValueError(f"config key 'trainer.batch_size': {cfg.trainer.batch_size} is not divisible by "
                         f"world_size ({info.world_size})")
    image_size = cfg.data.image_size or spec.image_size
    teacher = denoiser_from_spec(spec, info.device, cfg.ckpt)
    trainer = DistillTrainer(cfg, info, spec, teacher, image_size)
    cfg, run_dir = trainer.cfg, trainer.run_dir
    latest = run_dir / LATEST
    if cfg.resume and latest.is_file():
        trainer.load_state_dict(read_latest(latest), str(latest))
        print0(info, f"[i2sb] resumed from {latest} at step {trainer.step}")
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_temp_files(run_dir)
        OmegaConf.save(OmegaConf.create(asdict(cfg)), run_dir / "config.yaml")
    deg = task_degradation(spec.task, image_size) if cfg.data.kind != "degraded" else None
    dataset = build_split(cfg.data, spec.task, image_size, "train")
    per_rank = cfg.trainer.batch_size // info.world_size
    draws = cfg.distill.aux_steps + 1  # batches per iteration
    loader = infinite_loader(dataset, per_rank, rank=info.rank, world_size=info.world_size, seed=cfg.seed,
                             num_workers=cfg.data.num_workers, drop_last=len(dataset) >= per_rank,
                             pin_memory=cfg.data.pin_memory and info.device.type == "cuda",
                             start_step=trainer.step * draws)
    val_split = build_split(cfg.data, spec.task, image_size, "val")
    validator = build_validator(trainer, teacher, deg, val_split, image_size) if info.is_main else None
    writer = build_writer(run_dir, cfg.logging.tensorboard, cfg.logging.wandb, cfg.logging.wandb_project,
                          asdict(cfg)) if info.is_main else None
    vote = StopVote(info)
    try:
        with StopSignals() as stop:
            summary = _loop(cfg, info, trainer, loader, deg, validator, writer, stop, vote)
        vote.close()
    finally:
        if writer is not None:
            writer.close()
    if summary["preempted"]:
        if stop.interrupted:
            raise TrainingInterrupted(summary["stop_message"])
        stop.run_deferred_handlers()
    return summary


def _loop(cfg: DistillConfig, info: DistInfo, trainer: DistillTrainer, loader: Iterator[dict], deg, validator,
          writer, stop: StopSignals, vote: StopVote) -> dict[str, Any]:
    t = cfg.trainer
    bar = tqdm(total=t.max_steps, initial=trainer.step, desc=f"i2sb-distill {trainer.task.name}", unit="it",
               dynamic_ncols=True) if cfg.logging.progress and info.is_main else None
    sums: dict[str, Tensor] = {}
    last_log, last_time, summary = trainer.step, time.perf_counter(), {"preempted": False}

    def degraded(batch: dict[str, Tensor], g: torch.Generator) -> Degraded:
        return to_degraded(batch, deg, trainer.task, g, trainer.device)

    while trainer.step < t.max_steps:
        for key, value in trainer.train_step(loader, degraded).items():
            finite = torch.where(torch.isfinite(value), value, torch.zeros_like(value))
            sums[key] = sums.get(key, torch.zeros_like(value)) + finite
        if bar is not None:
            bar.update(1)
        if trainer.step % t.log_every == 0 or trainer.step == t.max_steps:
            n, seconds = trainer.step - last_log, time.perf_counter() - last_time
            values = {k: float(all_reduce_mean(v, info)) / max(n, 1) for k, v in sums.items()}
            values.update(lr=float(trainer.scheduler.get_last_lr()[0]), bad_steps=trainer.bad_steps,
                          it_per_s=n / max(seconds, 1e-9))
            _check_bad_steps(trainer)
            if writer is not None:
                writer.scalars(trainer.step, values)
            if bar is not None:
                bar.set_postfix(loss=f"{values['student_loss']:.4f}", gap=f"{values['gap']:.4f}")
            summary.update(values)
            sums, last_log, last_time = {}, trainer.step, time.perf_counter()
        if validator is not None and (trainer.step % t.eval_every == 0 or trainer.step == t.max_steps):
            values = validator.run(trainer.step, writer)
            trainer.validation = validator.record  # saved with the checkpoint: i2sb-sample's default NFE
            write_line(bar, validation_line(trainer.step, cfg.distill.steps, values) + validator.reference_note)
            summary.update(values)
        saved = trainer.step % t.ckpt_every == 0 or trainer.step == t.max_steps
        if saved:
            trainer.save()
        if stopped_here(trainer, saved, t.max_steps, stop, vote, bar, summary):
            break
    if bar is not None:
        bar.close()
    summary.update(step=trainer.step, bad_steps=trainer.bad_steps, run_dir=str(cfg.run_dir))
    return summary


class DistillError(RuntimeError):
    """Distillation cannot continue (the losses stayed non-finite); the message says why."""


def _check_bad_steps(trainer: DistillTrainer) -> None:
    if trainer.bad_run >= trainer.cfg.trainer.max_bad_steps:
        raise DistillError(f"the student's loss or gradients were non-finite for {trainer.bad_run} consecutive "
                           f"iterations (up to {trainer.step}); stopping. Last good checkpoint: "
                           f"{trainer.run_dir / LATEST}. Try a lower trainer.lr or trainer.precision=fp32")
