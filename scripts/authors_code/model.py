"""The authors' ``Runner`` for one configuration: one iteration of their training loop, their DDPM sampler."""

from __future__ import annotations

import functools
import logging
import os
import pickle
import tempfile
import time
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .loading import _stubbed_imports, load_authors
from .options import create_model_kwargs, options, set_seed

log = logging.getLogger("authors_i2sb")


class _Log:
    """Their ``Logger`` interface (``info``/``warning``) on top of :mod:`logging` (silent by default)."""

    def info(self, msg: str) -> None:
        log.debug(msg)

    def warning(self, msg: str) -> None:
        log.debug(msg)


class AuthorsI2SB:
    """Their ``Runner`` (built by its own ``__init__``), optimiser, scheduler and corruption for one config.

    Args:
        path: clone of NVlabs/I2SB.
        unet_kwargs: guided-diffusion ``UNetModel`` arguments (``in_channels`` is set from ``cond_x1``).
        task: one of :data:`TASKS` (our names); ``beta_max``/``ot_ode`` default to the authors' per task.
        image_size, batch_size, microbatch (default: ``batch_size``, one microbatch per step).
        lr, lr_gamma, lr_step, l2_norm, ema: their optimiser options (defaults: theirs).
        state_dict: optional ``UNetModel``/``i2sb.unet.UNet`` weights loaded before the EMA copy is taken
            (identical initial weights on both sides); otherwise their init after :func:`set_seed`.
        ddp: wrap the network in DistributedDataParallel as ``Runner.train`` does (world size 1, gloo).
        threads: ``torch.set_num_threads`` for this process (None: leave as is).
    """

    def __init__(self, path: str | os.PathLike, unet_kwargs: dict[str, Any], task: str = "jpeg10",
                 image_size: int = 64, batch_size: int = 8, microbatch: int | None = None, lr: float = 5e-5,
                 lr_gamma: float = 0.99, lr_step: int = 1000, l2_norm: float = 0.0, ema: float = 0.99,
                 beta_max: float | None = None, ot_ode: bool | None = None, cond_x1: bool = False,
                 clip_denoise: bool = False, seed: int = 0, state_dict: dict[str, Tensor] | None = None,
                 ddp: bool = False, device: str = "cpu", threads: int | None = None):
        if threads is not None:
            torch.set_num_threads(threads)
        self.code = load_authors(str(path))
        self.opt = options(task, image_size, batch_size, microbatch, lr, lr_gamma, lr_step, l2_norm, ema, beta_max,
                           ot_ode, cond_x1, clip_denoise, seed, device)
        self.log = _Log()
        set_seed(seed)
        model_kwargs = {**dict(unet_kwargs), "image_size": image_size}
        self.create_model_kwargs = create_model_kwargs(model_kwargs, 6 if cond_x1 else 3)
        self.runner = self._build_runner(state_dict)
        self.net = self.runner.net  # Image256Net: noise_levels[step] time input, optional cond concat
        self.unet = self.net.diffusion_model  # guided-diffusion UNetModel
        self.ema = self.runner.ema  # torch_ema.ExponentialMovingAverage over self.net.parameters()
        with _stubbed_imports():
            self.corrupt_method = self.code.corruption.build_corruption(self.opt, self.log)
        self.model = self._wrap_ddp() if ddp else self.net
        self.optimizer, self.sched = self.code.runner.build_optimizer_sched(self.opt, self.model, self.log)
        self.n_inner_loop = self.opt.batch_size // (self.opt.global_size * self.opt.microbatch)
        self.iteration = 0
        self.model.train()

    def _build_runner(self, state_dict: dict[str, Tensor] | None) -> Any:
        network = self.code.network
        with tempfile.TemporaryDirectory(prefix="authors-i2sb-") as ckpt_dir:
            name = network.I2SB_IMG256_COND_PKL if self.opt.cond_x1 else network.I2SB_IMG256_UNCOND_PKL
            with open(Path(ckpt_dir) / name, "wb") as f:
                pickle.dump(self.create_model_kwargs, f)

            def image_net(log: Any, noise_levels: Tensor, use_fp16: bool = False, cond: bool = False) -> Any:
                net = network.Image256Net(log, noise_levels=noise_levels, use_fp16=use_fp16, cond=cond,
                                          pretrained_adm=False, ckpt_dir=ckpt_dir)
                if state_dict is not None:
                    weights = {k.removeprefix("diffusion_model."): v for k, v in state_dict.items()}
                    net.diffusion_model.load_state_dict(weights)
                return net

            runner_module = self.code.runner
            original = runner_module.Image256Net
            runner_module.Image256Net = image_net
            try:
                return runner_module.Runner(self.opt, self.log, save_opt=False)
            finally:
                runner_module.Image256Net = original

    def _wrap_ddp(self) -> torch.nn.Module:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel as DDP

        if not dist.is_initialized():
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
            dist.init_process_group("gloo", rank=0, world_size=1)
        return DDP(self.net, device_ids=None if self.opt.device == "cpu" else [self.opt.device])

    # ------------------------------------------------------------------ training
    def _loader(self, x0: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """Their loader's items, ``(clean_img, y)``, one microbatch at a time."""
        y = torch.zeros(self.opt.microbatch, dtype=torch.long)
        for chunk in x0.split(self.opt.microbatch):
            yield chunk, y[: len(chunk)]

    def train_step(self, x0: Tensor) -> float:
        """One iteration of ``Runner.train`` on clean images ``x0`` (batch_size, 3, S, S) in [-1, 1]."""
        opt, runner, net, optimizer = self.opt, self.runner, self.model, self.optimizer
        if x0.shape[0] != opt.batch_size:
            raise ValueError(f"expected a batch of {opt.batch_size} images, got {x0.shape[0]}")
        loader = self._loader(x0)
        optimizer.zero_grad()
        for _ in range(self.n_inner_loop):
            # ===== sample boundary pair =====
            x0_, x1, mask, y, cond = runner.sample_batch(opt, loader, self.corrupt_method)
            # ===== compute loss =====
            step = torch.randint(0, opt.interval, (x0_.shape[0],))
            xt = runner.diffusion.q_sample(step, x0_, x1, ot_ode=opt.ot_ode)
            label = runner.compute_label(step, x0_, xt)
            pred = net(xt, step, cond=cond)
            assert xt.shape == label.shape == pred.shape
            if mask is not None:
                pred = mask * pred
                label = mask * label
            loss = F.mse_loss(pred, label)
            loss.backward()
        optimizer.step()
        self.ema.update()
        if self.sched is not None:
            self.sched.step()
        # -------- logging (every iteration in Runner.train) --------
        value = loss.item()
        self.log.info("train_it {}/{} | lr:{} | loss:{}".format(
            1 + self.iteration, opt.num_itr, "{:.2e}".format(optimizer.param_groups[0]["lr"]), "{:+.4f}".format(value)))
        self.iteration += 1
        return value

    def train(self, batches: Iterable[Tensor], seconds: float | None = None, steps: int | None = None,
              callback: Callable[[int, float, float], None] | None = None) -> dict[str, Any]:
        """Train on ``batches`` (clean images, ``batch_size`` each) until ``seconds`` of wall clock or ``steps``
        iterations (whichever first; at least one bound). ``callback(iteration, loss, elapsed_s)`` after each
        step. Returns ``{"steps", "seconds", "losses", "step_times"}``. Wall clock counts the train steps only
        (the time spent drawing from ``batches`` is excluded, as it is for ours in an equal-minutes run)."""
        if seconds is None and steps is None:
            raise ValueError("give seconds= or steps=")
        losses, step_times, elapsed, it = [], [], 0.0, 0
        batches = iter(batches)
        while (steps is None or it < steps) and (seconds is None or elapsed < seconds):
            x0 = next(batches)
            x0 = x0["x0"] if isinstance(x0, dict) else x0
            start = time.perf_counter()
            losses.append(self.train_step(x0))
            step_times.append(time.perf_counter() - start)
            elapsed += step_times[-1]
            it += 1
            if callback is not None:
                callback(it, losses[-1], elapsed)
        return {"steps": it, "seconds": elapsed, "losses": losses, "step_times": step_times}

    # ------------------------------------------------------------------ restoration
    @torch.no_grad()
    def corrupt(self, x0: Tensor) -> tuple[Tensor, Tensor | None]:
        """Their corruption of clean ``x0`` -> ``(x1, mask)`` as ``sample.compute_batch`` builds it."""
        out = self.corrupt_method(x0.to(self.opt.device))
        if isinstance(out, tuple):  # inpainting: hole filled with noise
            _, mask = out
            return x0 * (1.0 - mask) + mask * torch.randn_like(x0), mask
        return out, None

    @torch.no_grad()
    def restore(self, x1: Tensor, nfe: int = 10, mask: Tensor | None = None, cond: Tensor | None = None,
                log_count: int = 10) -> Tensor:
        """``Runner.ddpm_sampling`` (EMA weights) on degraded ``x1`` -> the restoration ``xs[:, 0]``."""
        if self.opt.cond_x1 and cond is None:
            cond = x1
        xs, _ = self.runner.ddpm_sampling(self.opt, x1, mask=mask, cond=cond, clip_denoise=self.opt.clip_denoise,
                                          nfe=nfe, log_count=log_count, verbose=False)
        return xs[:, 0]

    def ema_unet_state_dict(self) -> dict[str, Tensor]:
        """The EMA weights as a ``UNetModel`` state_dict (keys as ``i2sb.unet.UNet``'s)."""
        with self.ema.average_parameters():
            return {k: v.detach().clone() for k, v in self.unet.state_dict().items()}

    def n_params(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())


# ---------------------------------------------------------------------------- simple callables
def make_train_step(path: str | os.PathLike, unet_kwargs: dict[str, Any], batch: int, size: int,
                    task: str = "jpeg10", lr: float = 5e-5, seed: int = 0, **kwargs: Any) -> Callable[[Tensor], float]:
    """``step(x0) -> loss``: one iteration of their ``Runner.train`` on a clean batch (batch, 3, size, size).
    ``kwargs`` go to :class:`AuthorsI2SB` (microbatch, ema, state_dict, ddp, threads, ...); the model is
    ``step.model``."""
    model = AuthorsI2SB(path, unet_kwargs, task=task, image_size=size, batch_size=batch, lr=lr, seed=seed, **kwargs)
    step = model.train_step
    return _with_model(step, model)


def make_sampler(path: str | os.PathLike, unet_kwargs: dict[str, Any], size: int, task: str = "jpeg10",
                 seed: int = 0, model: AuthorsI2SB | None = None, **kwargs: Any) -> Callable[[Tensor, int], Tensor]:
    """``sample(x1, nfe) -> restored``: their ``Runner.ddpm_sampling`` on degraded ``x1`` (B, 3, size, size), with
    the EMA of ``model`` (a trained :class:`AuthorsI2SB`) or of a fresh one built from ``kwargs`` (pass
    ``state_dict=`` for given weights). The model is ``sample.model``."""
    if model is None:
        model = AuthorsI2SB(path, unet_kwargs, task=task, image_size=size, seed=seed, **kwargs)
    model.net.eval()

    def sample(x1: Tensor, nfe: int, mask: Tensor | None = None) -> Tensor:
        return model.restore(x1, nfe=nfe, mask=mask)

    return _with_model(sample, model)


def train_for(path: str | os.PathLike, unet_kwargs: dict[str, Any], batches: Iterable[Tensor],
              seconds: float | None = None, steps: int | None = None, size: int = 64, batch: int = 8,
              task: str = "jpeg10", lr: float = 5e-5, seed: int = 0, **kwargs: Any) -> AuthorsI2SB:
    """An :class:`AuthorsI2SB` trained with their loop body on ``batches`` for ``seconds`` / ``steps``; the
    run's ``{"steps", "seconds", "losses", "step_times"}`` is ``model.history``."""
    model = AuthorsI2SB(path, unet_kwargs, task=task, image_size=size, batch_size=batch, lr=lr, seed=seed, **kwargs)
    model.history = model.train(batches, seconds=seconds, steps=steps)
    model.net.eval()
    return model


def _with_model(fn: Callable, model: AuthorsI2SB) -> Callable:
    fn = functools.partial(fn) if isinstance(fn, types.MethodType) else fn
    fn.model = model
    return fn
