"""One rank's training state (:class:`Trainer`) and one optimiser step of Algorithm 1.

Per optimiser step, each rank accumulates gradients over ``batch_size / (world_size * microbatch)``
microbatches (loss divided accordingly, DDP gradient sync on the last microbatch only), then AdamW, the
learning-rate schedule (StepLR, optionally under a linear warm-up) and the EMA advance. Every random draw
of step ``k`` (t, X_t noise, masks, x1 noise, dropout) comes from generators seeded with ``(seed, rank,
k)``, so a run resumed from ``latest.pt`` continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import ConfigError, TrainConfig, to_container
from ..core.denoiser import Denoiser
from ..core.precision import resolve_precision
from ..degrade import Degradation
from ..methods import Method, build_method, make_pair
from ..nets.guided_diffusion import load_adm_init
from ..nets.unet import UNet
from ..utils.file_formats import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, LATEST
from ..utils.seeds import seeded_generator
from ..utils.torchfile import save_torch
from .dist import DistInfo, barrier, print0, wrap_ddp
from .ema import EMA
from .microbatch import AUTO, choose_microbatch
from .resume import check_resumable

STEP_STREAM = 7  # the last word of a step's seed (seed, rank, step, 7): kept so old runs resume identically


def resolved(cfg: TrainConfig, device: torch.device) -> TrainConfig:
    """``cfg`` with everything that depends on the device decided (``trainer.precision: auto`` -> bf16 | fp32);
    the config the run trains with, saves in ``config.yaml`` and in its checkpoints."""
    precision = resolve_precision(cfg.trainer.precision, device)
    return replace(cfg, trainer=replace(cfg.trainer, precision=precision))


def build_unet(cfg: TrainConfig, method: Method | None = None) -> UNet:
    """The U-Net of ``cfg.model`` with the input channels of ``method`` (6 with x1 conditioning; None: the
    method of ``cfg``)."""
    method = build_method(cfg.method, cfg.task) if method is None else method
    return UNet(in_channels=method.in_channels, **cfg.model.unet_kwargs())


def build_optimizer(params: list[nn.Parameter], cfg: TrainConfig, device: torch.device):
    """AdamW + StepLR with the authors' defaults; fused AdamW where the device supports it.

    With ``lr_warmup`` > 0 the rate of step ``k`` is ``lr * min(1, (k + 1) / lr_warmup) * lr_gamma **
    (k // lr_step)``: StepLR's decay under a linear warm-up (a LambdaLR; StepLR itself otherwise, so runs
    without warm-up resume from older checkpoints).
    """
    opt = cfg.trainer
    fused = opt.fused_optimizer and device.type in ("cuda", "cpu")
    optimizer = torch.optim.AdamW(params, lr=opt.lr, betas=(0.9, opt.adam_beta2), weight_decay=opt.weight_decay,
                                  fused=fused or None)
    if opt.lr_warmup <= 0:
        return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=opt.lr_step, gamma=opt.lr_gamma)
    factor = _WarmupStepFactor(opt.lr_warmup, opt.lr_step, opt.lr_gamma)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _WarmupStepFactor:
    """The learning-rate factor of step ``k``: a linear warm-up times StepLR's ``gamma ** (k // step)``."""

    def __init__(self, warmup: int, step: int, gamma: float):
        self.warmup, self.step, self.gamma = warmup, step, gamma

    def __call__(self, k: int) -> float:
        return min(1.0, (k + 1) / self.warmup) * self.gamma ** (k // self.step)


def step_generator(seed: int, rank: int, step: int, device: torch.device) -> torch.Generator:
    """The generator of one (seed, rank, step): every draw of a step, never dependent on history."""
    return seeded_generator(seed, rank, step, STEP_STREAM, device=device)


def micro_steps(cfg: TrainConfig, world_size: int) -> int:
    """Microbatches per rank and optimiser step; ``batch_size`` must split evenly (with ``microbatch=auto``:
    over the ranks, and 1 until the microbatch is chosen)."""
    batch, micro = cfg.trainer.batch_size, cfg.trainer.microbatch
    if micro == AUTO:
        if batch % world_size:
            raise ConfigError(f"config key 'trainer.batch_size': {batch} is not divisible by world_size "
                              f"({world_size})")
        return 1
    if batch % (world_size * micro):
        raise ConfigError(
            f"config key 'trainer.batch_size': {batch} is not divisible by world_size ({world_size}) "
            f"x trainer.microbatch ({micro})"
        )
    return batch // (world_size * micro)


class Trainer:
    """The model, EMA, optimiser, step counter and the one resolved config (:attr:`cfg`) of one rank.

    :meth:`train_step` does one optimiser step and advances :attr:`step`; :meth:`save` / :meth:`load_state_dict`
    write and restore everything a bit-exact resume needs. The global random generators are not part of it:
    every step reseeds them (CPU and every GPU) from ``(seed, rank, step)``, so a checkpoint holds no per-GPU
    state and resumes on any number of visible GPUs (older checkpoints' per-GPU states are ignored).
    """

    def __init__(self, cfg: TrainConfig, info: DistInfo):
        cfg = resolved(cfg, info.device)
        self.cfg, self.info, self.device = cfg, info, info.device
        self.run_dir = Path(cfg.run_dir)
        self.n_micro = micro_steps(cfg, info.world_size)
        opt = cfg.trainer
        self.method = build_method(cfg.method, cfg.task, opt.t_power)
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.unet = build_unet(cfg, self.method)
        if cfg.model.init:
            load_adm_init(self.unet, cfg.model.init)
        self.unet.to(self.device)
        if opt.channels_last:
            self.unet.to(memory_format=torch.channels_last)
        self.denoiser = self._denoiser(self.unet)
        self.ema = EMA(self.unet, opt.ema, opt.ema_warmup)
        self._choose_microbatch()
        self.optimizer, self.scheduler = build_optimizer(list(self.unet.parameters()), cfg, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.trainer.precision == "fp16")
        self.step = 0
        self.validation: dict[str, Any] = {}  # the last validation's record (i2sb.evaluation.record)
        self.bad_total = torch.zeros((), dtype=torch.long, device=self.device)
        self.bad_run = torch.zeros((), dtype=torch.long, device=self.device)
        self.ddp = wrap_ddp(self.unet, self.device, opt.ddp_broadcast_buffers, opt.ddp_bucket_view) \
            if info.distributed else None
        net: nn.Module = self.ddp if self.ddp is not None else self.unet
        if opt.compile:
            net = torch.compile(net)
        if net is not self.unet:
            self.denoiser = self._denoiser(net)

    def _denoiser(self, net: nn.Module) -> Denoiser:
        """The method's denoiser around ``net`` (the U-Net, or it under DDP / compiled): autocast per
        ``trainer.precision``, ``xt`` channels-last per ``trainer.channels_last``."""
        opt = self.cfg.trainer
        return self.method.denoiser(net, precision=opt.precision, channels_last=opt.channels_last).to(self.device)

    def _choose_microbatch(self) -> None:
        """``trainer.microbatch=auto`` -> the largest that fits (:mod:`.microbatch`), in :attr:`cfg` from here on."""
        opt = self.cfg.trainer
        if opt.microbatch != AUTO:
            return
        per_rank = opt.batch_size // self.info.world_size
        chosen = choose_microbatch(self, per_rank)
        self.cfg = replace(self.cfg, trainer=replace(opt, microbatch=chosen))
        self.n_micro = micro_steps(self.cfg, self.info.world_size)
        print0(self.info, f"[i2sb] trainer.microbatch=auto: {chosen} on {self.device} ({self.n_micro} passes of "
                          f"{chosen} per step and rank, batch {opt.batch_size})")

    # ------------------------------------------------------------------ one step
    def train_step(self, batches: list[dict[str, Tensor]], deg: Degradation | None) -> Tensor:
        """One optimiser step over ``n_micro`` microbatches, then ``step += 1``; returns the (device) mean loss."""
        g = step_generator(self.cfg.seed, self.info.rank, self.step, self.device)
        torch.manual_seed(g.initial_seed())  # dropout and any other global draw, per step
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for i, batch in enumerate(batches):
            pair = make_pair(batch, deg, self.cfg.task, g, self.device)
            last = i == len(batches) - 1
            with self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext():
                loss = self.method.loss(self.denoiser, pair, g) / len(batches)
                self.scaler.scale(loss).backward()
            total += loss.detach()
        self._optimizer_step(total)
        self.step += 1
        return total

    def _optimizer_step(self, loss: Tensor) -> None:
        params = [p for p in self.unet.parameters() if p.grad is not None]
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
        if self.cfg.trainer.grad_clip > 0:  # without clipping the norm only serves the finite check
            torch.nn.utils.clip_grads_with_norm_(params, self.cfg.trainer.grad_clip, grad_norm, foreach=True)
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
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "model": self.unet.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state()},  # see load_state_dict: no CUDA states
            "stats": {"bad_steps": int(self.bad_total)},
            "validation": self.validation,
            "config": to_container(self.cfg),
        }

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        check_resumable(state.get("config", {}), to_container(self.cfg), source)
        self.unet.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["lr_scheduler"])
        self.scaler.load_state_dict(state["grad_scaler"])
        torch.set_rng_state(state["rng"]["torch"])  # device-independent; older checkpoints' "cuda" list is ignored
        self.step = int(state["step"])
        self.validation = dict(state.get("validation") or {})
        self.bad_total.fill_(int(state.get("stats", {}).get("bad_steps", 0)))

    def save(self, keep: bool = False) -> None:
        """Rank 0 writes ``latest.pt`` atomically (and ``ckpt_{step}.pt`` with ``keep``)."""
        if self.info.is_main:
            state = self.state_dict()
            save_torch(state, self.run_dir / LATEST)
            if keep:
                save_torch(state, self.run_dir / f"ckpt_{self.step:09d}.pt")
        barrier(self.info)
