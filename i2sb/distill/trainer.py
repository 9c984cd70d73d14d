"""One rank's distillation state (:class:`DistillTrainer`): the frozen teacher, the student ``G`` and its EMA, the
auxiliary model, their optimisers, and one IBMD iteration (Algorithm 1: ``distill.aux_steps`` bridge-matching updates
of the auxiliary model, then one student update, :mod:`.alternate`).

Every random draw of iteration ``k`` (z, bridge steps and noise, the degradation, the K-step level) comes from a
generator seeded with ``(seed, rank, k)``, so a resumed run continues as the uninterrupted one would. The student's
checkpoint is a training checkpoint of this project (``i2sb.restoration.checkpoints``) whose ``config`` is the
teacher's task and network with ``method: ibmd``, and whose ``student`` record holds ``z_channels`` and ``steps``:
``i2sb.load``, ``i2sb-sample`` and ``i2sb-export`` read it as any other.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import DataConfig, ModelConfig, TrainConfig, to_container, to_train_config
from ..core.bridge import Bridge
from ..core.denoiser import BridgeDenoiser
from ..core.precision import AUTOCAST_DTYPES, resolve_precision
from ..restoration.trained_network import TrainedNetwork
from ..restoration.student import METHOD, StudentInfo, student_steps
from ..training.dist import DistInfo, barrier, wrap_ddp
from ..training.ema import EMA
from ..training.resume import check_resumable
from ..training.trainer import build_optimizer
from ..utils.file_formats import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, LATEST
from ..utils.seeds import seeded_generator
from ..utils.torchfile import save_torch
from .alternate import Degraded, aux_step, student_step
from .generator import BridgeGenerator
from .schema import DistillConfig

STEP_STREAM = 11  # the last word of an iteration's seed (seed, rank, step, 11)
INIT_STREAM = 13  # the seed word of the student's new input weights


def student_config(cfg: DistillConfig, teacher: TrainedNetwork, image_size: int) -> TrainConfig:
    """The training config the student's checkpoint records: the teacher's task and network (the student's
    input width is read off its weights), this run's data, trainer and seed, ``method: ibmd``, ``eval_nfe`` K."""
    names = {f.name for f in fields(ModelConfig)}
    model = {k: list(v) if isinstance(v, tuple) else v for k, v in teacher.unet_kwargs.items() if k in names}
    model["image_size"] = image_size
    data = cfg.data
    trainer = replace(cfg.trainer, eval_nfe=cfg.distill.steps, eval_nfes=[])
    return to_train_config({
        "task": asdict(teacher.task), "model": {**asdict(ModelConfig()), **model, "name": "student", "init": None},
        "data": asdict(DataConfig(kind=data.kind, root=data.root, val_root=data.val_root, image_size=image_size,
                                  num_workers=data.num_workers, crop=data.crop, params=dict(data.params))),
        "trainer": asdict(trainer), "logging": asdict(cfg.logging), "method": METHOD, "run_dir": cfg.run_dir,
        "seed": cfg.seed, "device": cfg.device, "resume": cfg.resume})


class DistillTrainer:
    """Teacher ``D*`` (frozen), student ``G`` (:class:`~.generator.BridgeGenerator`, from the teacher), auxiliary
    model ``f`` (from the teacher), the student's EMA, two AdamW optimisers with the trainer's schedule, and the
    iteration counter :attr:`step` (student updates). ``teacher_denoiser``: the teacher's x0-:class:`BridgeDenoiser`."""

    def __init__(self, cfg: DistillConfig, info: DistInfo, teacher: TrainedNetwork, teacher_denoiser: BridgeDenoiser,
                 image_size: int):
        precision = resolve_precision(cfg.trainer.precision, info.device)
        self.cfg = replace(cfg, trainer=replace(cfg.trainer, precision=precision))
        self.info, self.device, self.run_dir = info, info.device, Path(cfg.run_dir)
        self.task, self.student = teacher.task, StudentInfo(cfg.distill.z_channels, cfg.distill.steps)
        self.train_config = student_config(self.cfg, teacher, image_size)
        self.bridge = Bridge.symmetric(self.task.n_steps, self.task.beta_max)
        self.steps = student_steps(self.bridge, cfg.distill.steps)
        self.teacher = teacher_denoiser.eval().requires_grad_(False)  # x0, differentiable in its input
        init = seeded_generator(cfg.seed, INIT_STREAM)
        self.G = BridgeGenerator.from_denoiser(teacher_denoiser, cfg.distill.z_channels,
                                               cfg.distill.z_init, init).to(self.device).train().requires_grad_(True)
        aux_net = copy.deepcopy(teacher_denoiser.net).train().requires_grad_(True)
        t = self.task
        self.aux = BridgeDenoiser(aux_net, self.bridge, t.t0, t.T, t.cond_x1).to(self.device)
        self.ema = EMA(self.G.net, cfg.trainer.ema, cfg.trainer.ema_warmup)
        self.optimizer, self.scheduler = build_optimizer(list(self.G.net.parameters()), self.cfg, self.device)
        aux_cfg = replace(self.cfg, trainer=replace(self.cfg.trainer, lr=cfg.distill.aux_lr or cfg.trainer.lr))
        self.aux_optimizer, self.aux_scheduler = build_optimizer(list(aux_net.parameters()), aux_cfg, self.device)
        self.step, self.validation, self.bad_steps, self.bad_run = 0, {}, 0, 0
        self.G_model, self.aux_model = self.G, self.aux
        if info.distributed:  # the student's own (unwrapped) modules serve where no gradient reaches their weights
            t = self.cfg.trainer
            self.G_model = wrap_ddp(self.G, self.device, t.ddp_broadcast_buffers, t.ddp_bucket_view)
            self.G_model.z_channels = self.G.z_channels  # read by draw_z (generator.py)
            self.aux_model = wrap_ddp(self.aux, self.device, t.ddp_broadcast_buffers, t.ddp_bucket_view)

    # ------------------------------------------------------------------ one iteration
    def _autocast(self) -> contextlib.AbstractContextManager:
        """The trainer's autocast (``trainer.precision``, resolved at start) around the three networks' calls."""
        dtype = AUTOCAST_DTYPES[self.cfg.trainer.precision]
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    def train_step(self, batches: Any, degraded: Any) -> dict[str, Tensor]:
        """One IBMD iteration; ``batches`` yields data batches, ``degraded(batch, g)`` turns one into ``(x1, cond)``
        on the device. Returns the last auxiliary loss, the student's loss and the gap (device scalars)."""
        d = self.cfg.distill
        g = seeded_generator(self.cfg.seed, self.info.rank, self.step, STEP_STREAM, device=self.device)
        torch.manual_seed(g.initial_seed())
        loss_aux = torch.full((), float("nan"), device=self.device)
        for _ in range(d.aux_steps):
            self.aux_optimizer.zero_grad(set_to_none=True)
            batch: Degraded = degraded(next(batches), g)
            with self._autocast():
                loss_aux = aux_step(self.aux_model, self.G, self.bridge, batch, self.steps, generator=g,
                                    weighting=d.weighting)
            loss_aux.backward()
            self._update(self.aux_optimizer, self.aux_scheduler, self.aux.parameters(), loss_aux)
        self.optimizer.zero_grad(set_to_none=True)
        batch = degraded(next(batches), g)
        with self._autocast():
            loss, gap = student_step(self.G_model, self.teacher, self.aux, self.bridge, batch, self.steps,
                                     generator=g, weighting=d.weighting)
        loss.backward()
        bad = self._update(self.optimizer, self.scheduler, self.G.parameters(), loss)
        self.ema.update(self.G.net, skip=bad)
        self.bad_run = self.bad_run + 1 if bool(bad) else 0
        self.step += 1
        return {"aux_loss": loss_aux.detach(), "student_loss": loss.detach(), "gap": gap.detach()}

    def _update(self, optimizer: torch.optim.Optimizer, scheduler: Any, params: Any, loss: Tensor) -> Tensor:
        """Clip (``trainer.grad_clip``), step unless the loss or gradients are non-finite, advance the schedule;
        returns the 0-d "skipped" flag."""
        params = [p for p in params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
        if self.cfg.trainer.grad_clip > 0:
            torch.nn.utils.clip_grads_with_norm_(params, self.cfg.trainer.grad_clip, norm, foreach=True)
        bad = ~(torch.isfinite(loss.detach()) & torch.isfinite(norm))
        if not bool(bad):
            optimizer.step()
        else:
            self.bad_steps += 1
        scheduler.step()
        return bad

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": self.step,
            "model": self.G.net.state_dict(), "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(), "lr_scheduler": self.scheduler.state_dict(),
            "aux": self.aux.net.state_dict(), "aux_optimizer": self.aux_optimizer.state_dict(),
            "aux_lr_scheduler": self.aux_scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state()}, "stats": {"bad_steps": self.bad_steps},
            "validation": self.validation, "config": to_container(self.train_config),
            "student": self.student.as_dict(), "distill": to_container_plain(self.cfg),
        }

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        check_distill_resumable(state, self.train_config, self.student, source)
        self.G.net.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["lr_scheduler"])
        self.aux.net.load_state_dict(state["aux"])
        self.aux_optimizer.load_state_dict(state["aux_optimizer"])
        self.aux_scheduler.load_state_dict(state["aux_lr_scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        self.step = int(state["step"])
        self.validation = dict(state.get("validation") or {})
        self.bad_steps = int(state.get("stats", {}).get("bad_steps", 0))

    def save(self) -> None:
        """Rank 0 writes ``latest.pt`` atomically (a temporary file renamed over it)."""
        if self.info.is_main:
            save_torch(self.state_dict(), self.run_dir / LATEST)
        barrier(self.info)


def to_container_plain(cfg: DistillConfig) -> dict[str, Any]:
    """The distillation config as a plain dict (saved with the checkpoint and in ``config.yaml``)."""
    return asdict(cfg)


def check_distill_resumable(state: dict[str, Any], current: TrainConfig, student: StudentInfo, source: str) -> None:
    """A run resumes only as the student it is: the same method, teacher task and network (``current``: the config
    the student's checkpoint records, as ``i2sb-train``'s :func:`~i2sb.training.resume.check_resumable`), noise
    channels and student steps; one-line ValueError otherwise."""
    saved = state.get("student") or {}
    if (state.get("config") or {}).get("method") != METHOD or not saved:
        raise ValueError(f"{source}: cannot resume: not an i2sb-distill checkpoint (use a new run_dir)")
    check_resumable(state["config"], to_container(current), source)
    for key, now in student.as_dict().items():
        if int(saved.get(key, -1)) != now:
            raise ValueError(f"{source}: cannot resume: config key 'distill.{key}' was {saved.get(key)!r} in the "
                             f"checkpoint but is {now!r} now (use a new run_dir, or resume=false to start over)")
