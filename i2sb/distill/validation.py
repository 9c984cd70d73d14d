"""Validation of a distilled student: its EMA restores a fixed batch at NFE 1 (and K) through the same
:class:`~i2sb.restoration.Restorer` as ``i2sb-sample``, scored by training's
:class:`~i2sb.training.validation.Validator` (PSNR, SWD of Laplacian-pyramid patches, an image grid, the record
that picks ``i2sb-sample``'s default NFE).

What the restorations are compared with: the clean images where the data has them (``data=demo``,
``data=imagefolder``); with ``data=degraded`` (no clean images) the teacher's own restorations at
``distill.reference_nfe`` of the same inputs (fixed noise), so PSNR and SWD then measure how close the student is to
its teacher's many-step sampler, not to the truth.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..core.denoiser import Denoiser
from ..degrade import Degradation
from ..restoration.algorithms import BridgeRestoration
from ..restoration.restorer import Restorer
from ..restoration.student import StudentRestoration, student_denoiser
from ..training.validation import BATCH_SEED, SAMPLER_SEED, ValidationBatch, Validator, validation_batch
from .data import lift
from .trainer import DistillTrainer


class StudentValidator(Validator):
    """A :class:`Validator` that also says, in its console line, what its reference images are."""

    reference_note = ""


def student_restorer(trainer: DistillTrainer, image_size: int) -> Restorer:
    """The student's restorer around its EMA network (it follows the EMA as it trains)."""
    task, info = trainer.task, trainer.student
    denoiser = student_denoiser(trainer.ema.module, task, info.z_channels).to(trainer.device)
    return Restorer(denoiser, StudentRestoration(trainer.bridge, task, info), task, image_size, info.steps)


def reference_batch(trainer: DistillTrainer, teacher: Denoiser, dataset: Dataset, image_size: int) -> ValidationBatch:
    """Degraded validation crops and, as their reference, the teacher's restorations at
    ``distill.reference_nfe`` (one fixed generator): the batch of ``data=degraded``."""
    cfg = trainer.cfg
    count = min(cfg.trainer.eval_batch, len(dataset))
    items = [dataset[round(i * (len(dataset) - 1) / max(count - 1, 1))] for i in range(count)]
    x1 = lift(trainer.task, torch.stack([it["x1"] for it in items]).to(trainer.device))
    restorer = Restorer(teacher, BridgeRestoration(trainer.bridge, trainer.task), trainer.task, image_size)
    g = torch.Generator(device=trainer.device).manual_seed(cfg.seed + BATCH_SEED + SAMPLER_SEED)
    reference = restorer.restore(x1, nfe=cfg.distill.reference_nfe, generator=g,
                                 precision=cfg.trainer.precision).clamp(-1, 1)
    return ValidationBatch(reference, x1, None)


def build_validator(trainer: DistillTrainer, teacher: Denoiser, deg: Degradation | None, dataset: Dataset,
                    image_size: int) -> StudentValidator:
    """The run's validator: against the clean images (demo, imagefolder) or the teacher's restorations (degraded)."""
    cfg = trainer.cfg
    if cfg.data.kind == "degraded":
        batch = reference_batch(trainer, teacher, dataset, image_size)
        note = f" [against the teacher's NFE-{cfg.distill.reference_nfe} restorations: no clean images]"
    else:
        batch = validation_batch(trainer.train_config, deg, trainer.device)
        note = ""
    nfes = tuple(sorted({1, cfg.distill.steps}))
    validator = StudentValidator(student_restorer(trainer, image_size), batch, cfg.distill.steps,
                                 cfg.trainer.precision, cfg.seed, Path(cfg.run_dir) / "samples", nfes)
    validator.reference_note = note
    return validator
