"""The authors' I2SB code (NVlabs/I2SB) driven from a clone, for side-by-side speed and quality checks.

Nothing of the authors' code lives in this repository: every function here imports their modules at run
time from PATH, a clone (or ``git archive``) of https://github.com/NVlabs/I2SB, i.e. a folder holding
``i2sb/runner.py``, ``i2sb/diffusion.py``, ``i2sb/network.py``, ``guided_diffusion/`` and ``corruption/``.
This module imports without PATH; only calling its functions needs it.

What runs is their code, unmodified:

* ``Runner.__init__`` (their schedule, ``Diffusion``, ``noise_levels``, ``Image256Net``, ``torch_ema``), with
  one substitution: ``Image256Net`` reads its guided-diffusion ``create_model`` arguments from a pickle in
  ``ckpt_dir``; we write that pickle for the requested (small) U-Net and pass ``pretrained_adm=False``,
  so ``create_model`` / ``UNetModel`` build the network exactly as they would build ADM-256.
* one training iteration = the body of ``Runner.train``'s loop: ``optimizer.zero_grad()``, per microbatch
  ``Runner.sample_batch`` (their corruption, on the fly), ``torch.randint`` step, ``Diffusion.q_sample``,
  ``Runner.compute_label``, ``net(xt, step, cond=cond)`` (their time conversion), ``F.mse_loss``,
  ``backward``; then ``optimizer.step()`` (their ``build_optimizer_sched``: AdamW with PyTorch's default
  implementation, StepLR), ``ema.update()``, ``sched.step()`` and the per-iteration ``loss.item()`` log.
  Their DDP wrapper is optional (``ddp=True``: a world-size-1 gloo group on the CPU); DDP with one process
  adds only bucket copies, and a CPU user running their code without torchrun would not have it.
* restoration = ``Runner.ddpm_sampling`` (EMA weights swapped in, ``Diffusion.ddpm_sampling``, trajectory
  copies at the log steps), returning ``xs[:, 0]`` as their ``sample.py`` does.

Modules their files import that have no part in these paths are stubbed while their modules load, when not
installed: ``ipdb`` (``set_trace``), ``wandb``, ``torch.utils.tensorboard``, ``torchmetrics``, ``gdown``,
``prefetch_generator``, ``easydict``. ``torch_ema`` is real and required (``pip install torch-ema``). Their
package is loaded under the name ``authors_i2sb`` (never ``i2sb``, which is ours); PATH is appended to the
end of ``sys.path`` for their top-level packages (``guided_diffusion``, ``corruption``, ...).

API::

    from authors_adapter import AuthorsI2SB, make_train_step, make_sampler, train_for
    kw = dict(image_size=64, model_channels=64, out_channels=3, num_res_blocks=2, attention_resolutions=(4,),
              channel_mult=(1, 2, 2), num_heads=1, num_head_channels=32, use_scale_shift_norm=True,
              resblock_updown=True)                      # guided-diffusion UNetModel names (= i2sb.unet.UNet)
    step = make_train_step(PATH, kw, batch=8, size=64, task="jpeg10", lr=5e-5, seed=0)
    loss = step(x0)                                      # x0 (8, 3, 64, 64) in [-1, 1]; one optimiser step
    sample = make_sampler(PATH, kw, size=64, task="jpeg10", state_dict=our_unet.state_dict())
    restored = sample(x1, 10)                            # their NFE-10 DDPM sampler on degraded x1
    model = train_for(PATH, kw, batches, seconds=600)    # an AuthorsI2SB trained for 10 minutes
    model.restore(x1, nfe=10); model.ema_unet_state_dict()   # -> loads into i2sb.unet.UNet (same keys)
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import os
import pickle
import random
import sys
import tempfile
import time
import types
from argparse import Namespace
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

PACKAGE = "authors_i2sb"  # their i2sb/ is loaded under this name
REQUIRED = ("i2sb/runner.py", "i2sb/diffusion.py", "i2sb/network.py", "guided_diffusion/unet.py", "corruption/jpeg.py")
N_CLASSES = 1000  # guided-diffusion's NUM_CLASSES (class_cond)
CORRUPTION_MODULES = ("jpeg", "superresolution", "blur", "inpaint")

# our task names -> (their --corrupt, --beta-max, --ot-ode) as in their scripts/train.sh. Freeform inpainting
# is left out: their masks come from a download (corruption/inpaint.py, load_freeform_masks).
TASKS: dict[str, tuple[str, float, bool]] = {
    "jpeg5": ("jpeg-5", 0.3, False),
    "jpeg10": ("jpeg-10", 0.3, False),
    "sr4x_pool": ("sr4x-pool", 0.3, False),
    "sr4x_bicubic": ("sr4x-bicubic", 0.3, False),
    "blur_uni": ("blur-uni", 1.0, True),
    "blur_gauss": ("blur-gauss", 1.0, True),
    "inpaint_center": ("inpaint-center", 1.0, True),
}

log = logging.getLogger("authors_i2sb")


class AuthorsCodeError(RuntimeError):
    """PATH is not a usable clone of NVlabs/I2SB, or a module it needs is missing."""


# ---------------------------------------------------------------------------- loading their modules
def _stub(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    module.__authors_adapter_stub__ = True
    return module


class _Anything:
    """Placeholder class for names of stubbed modules (never instantiated on the paths we run)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AuthorsCodeError(f"{type(self).__name__}: stubbed by authors_adapter (not installed)")


def _stubs() -> dict[str, types.ModuleType]:
    """Stand-ins for modules their files import but that the benchmarked paths never use."""
    return {
        "ipdb": _stub("ipdb", set_trace=lambda *a, **k: None),
        "wandb": _stub("wandb", login=lambda *a, **k: False, init=lambda *a, **k: None, log=lambda *a, **k: None,
                       Image=_Anything),
        "torch.utils.tensorboard": _stub("torch.utils.tensorboard", SummaryWriter=_Anything),
        "torchmetrics": _stub("torchmetrics", Accuracy=_Anything),
        "gdown": _stub("gdown", download=lambda *a, **k: None),
        "prefetch_generator": _stub("prefetch_generator", BackgroundGenerator=iter),
        "easydict": _stub("easydict", EasyDict=dict),
    }


def _installed(name: str) -> bool:
    if name == "torch.utils.tensorboard":
        name = "tensorboard"
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def _stubbed_imports() -> Iterator[list[str]]:
    """Temporarily register stubs for the missing optional modules; removed again afterwards, so that
    other code in this process still sees them as missing (their modules keep the names they bound)."""
    added = []
    for name, module in _stubs().items():
        if name not in sys.modules and not _installed(name):
            sys.modules[name] = module
            added.append(name)
    try:
        yield added
    finally:
        for name in added:
            if getattr(sys.modules.get(name), "__authors_adapter_stub__", False):
                del sys.modules[name]


def check_path(path: str | os.PathLike) -> Path:
    """``path`` resolved, or AuthorsCodeError naming what is missing."""
    if path is None:
        raise AuthorsCodeError("no path to the authors' code: pass a clone of https://github.com/NVlabs/I2SB")
    root = Path(path).expanduser().resolve()
    missing = [p for p in REQUIRED if not (root / p).is_file()]
    if missing:
        raise AuthorsCodeError(f"{root}: not a clone of NVlabs/I2SB (missing {', '.join(missing)})")
    return root


@functools.lru_cache(maxsize=None)
def load_authors(path: str | os.PathLike) -> types.SimpleNamespace:
    """Their modules, imported from ``path``: ``runner``, ``diffusion``, ``network``, ``util``,
    ``script_util``, ``unet`` (guided-diffusion), ``corruption`` and the stub names used (``stubbed``)."""
    root = check_path(path)
    if importlib.util.find_spec("torch_ema") is None:
        raise AuthorsCodeError("the authors' Runner needs torch_ema: pip install torch-ema")
    for top in ("guided_diffusion", "corruption"):
        loaded = sys.modules.get(top)
        if loaded is not None and not str(getattr(loaded, "__file__", "")).startswith(str(root)):
            raise AuthorsCodeError(f"a different '{top}' is already imported ({loaded.__file__}); "
                                   "use a fresh process per authors' path")
    if str(root) not in sys.path:
        sys.path.append(str(root))  # appended: our own i2sb, earlier on sys.path, keeps the name i2sb
    if PACKAGE not in sys.modules:  # their i2sb/ as a package named authors_i2sb, without its __init__
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(root / "i2sb")]
        package.__package__ = PACKAGE
        package.__file__ = str(root / "i2sb" / "__init__.py")
        sys.modules[PACKAGE] = package
    elif sys.modules[PACKAGE].__path__ != [str(root / "i2sb")]:
        raise AuthorsCodeError(f"{PACKAGE} is already loaded from {sys.modules[PACKAGE].__path__}")
    with _stubbed_imports() as stubbed:
        try:
            modules = types.SimpleNamespace(
                root=root,
                runner=importlib.import_module(f"{PACKAGE}.runner"),
                diffusion=importlib.import_module(f"{PACKAGE}.diffusion"),
                network=importlib.import_module(f"{PACKAGE}.network"),
                util=importlib.import_module(f"{PACKAGE}.util"),
                script_util=importlib.import_module("guided_diffusion.script_util"),
                unet=importlib.import_module("guided_diffusion.unet"),
                corruption=importlib.import_module("corruption"),
                stubbed=tuple(stubbed),
            )
            for name in CORRUPTION_MODULES:  # build_corruption imports these lazily; load them while stubbed
                importlib.import_module(f"corruption.{name}")
        except ImportError as err:
            raise AuthorsCodeError(f"importing the authors' code from {root}: {err}") from err
    for name, module in vars(modules).items():
        file = getattr(module, "__file__", None)
        if file and not str(file).startswith(str(root)):
            raise AuthorsCodeError(f"{name} was imported from {file}, not from {root}")
    return modules


# ---------------------------------------------------------------------------- configuration
def create_model_kwargs(unet_kwargs: dict[str, Any], in_channels: int) -> dict[str, Any]:
    """guided-diffusion ``UNetModel`` arguments (our ``i2sb.unet.UNet``'s) -> ``create_model`` arguments,
    the content of the pickle ``Image256Net`` reads (``attention_resolutions`` as pixel sizes, "16")."""
    kw = {k: v for k, v in unet_kwargs.items() if k not in ("name", "init", "in_channels")}
    size = int(kw["image_size"])
    if kw.pop("dims", 2) != 2 or not kw.pop("conv_resample", True):
        raise ValueError("the authors' create_model builds 2-D U-Nets with conv_resample=True only")
    out = int(kw.pop("out_channels", 3))
    if out not in (3, 6):
        raise ValueError(f"create_model has out_channels 3 (or 6 with learn_sigma), got {out}")
    mult = tuple(kw.pop("channel_mult"))
    if any(float(m) != int(m) for m in mult):
        raise ValueError(f"create_model parses integer channel multipliers only, got {mult}")
    ds = tuple(int(d) for d in kw.pop("attention_resolutions"))
    resolutions = [size // d for d in ds]
    if any(size // r != d for r, d in zip(resolutions, ds)):
        raise ValueError(f"attention down-sampling factors {ds} are not image_size // resolution for {size}")
    num_classes = kw.pop("num_classes", None)
    if num_classes not in (None, N_CLASSES):
        raise ValueError(f"create_model supports num_classes None or {N_CLASSES}, got {num_classes}")
    return dict(
        image_size=size, num_channels=int(kw.pop("model_channels")), num_res_blocks=int(kw.pop("num_res_blocks")),
        channel_mult=",".join(str(int(m)) for m in mult), learn_sigma=out == 6, class_cond=num_classes is not None,
        attention_resolutions=",".join(str(r) for r in resolutions), in_channels=in_channels,
        use_checkpoint=bool(kw.pop("use_checkpoint", False)), num_heads=int(kw.pop("num_heads", 1)),
        num_head_channels=int(kw.pop("num_head_channels", -1)), num_heads_upsample=int(kw.pop("num_heads_upsample", -1)),
        use_scale_shift_norm=bool(kw.pop("use_scale_shift_norm", False)), dropout=float(kw.pop("dropout", 0.0)),
        resblock_updown=bool(kw.pop("resblock_updown", False)), use_fp16=bool(kw.pop("use_fp16", False)),
        use_new_attention_order=bool(kw.pop("use_new_attention_order", False)),
        **_no_leftovers(kw),
    )


def _no_leftovers(kw: dict[str, Any]) -> dict[str, Any]:
    kw.pop("image_size", None)
    if kw:
        raise ValueError(f"unknown U-Net arguments for the authors' create_model: {sorted(kw)}")
    return {}


def options(task: str, image_size: int, batch_size: int, microbatch: int | None = None, lr: float = 5e-5,
            lr_gamma: float = 0.99, lr_step: int = 1000, l2_norm: float = 0.0, ema: float = 0.99,
            beta_max: float | None = None, ot_ode: bool | None = None, cond_x1: bool = False,
            clip_denoise: bool = False, seed: int = 0, device: str = "cpu", interval: int = 1000) -> Namespace:
    """The argparse Namespace their ``train.py`` would build (``create_training_options`` defaults), for one
    process (``global_size`` 1, not distributed)."""
    if task not in TASKS:
        raise ValueError(f"task '{task}' has no counterpart in the authors' code; known: {', '.join(TASKS)}")
    corrupt, default_beta, default_ot = TASKS[task]
    microbatch = microbatch or batch_size
    if batch_size % microbatch:
        raise ValueError(f"batch_size {batch_size} is not divisible by microbatch {microbatch}")
    return Namespace(
        seed=seed, name=task, image_size=image_size, corrupt=corrupt, t0=1e-4, T=1.0, interval=interval,
        beta_max=default_beta if beta_max is None else beta_max, ot_ode=default_ot if ot_ode is None else ot_ode,
        clip_denoise=clip_denoise, cond_x1=cond_x1, add_x1_noise=False, batch_size=batch_size,
        microbatch=microbatch, num_itr=10**9, lr=lr, lr_gamma=lr_gamma, lr_step=lr_step, l2_norm=l2_norm, ema=ema,
        device=device, distributed=False, use_fp16=False, load=None, global_rank=0, local_rank=0, global_size=1,
        log_writer=None, ckpt_path=None,
    )


class _Log:
    """Their ``Logger`` interface (``info``/``warning``) on top of :mod:`logging` (silent by default)."""

    def info(self, msg: str) -> None:
        log.debug(msg)

    def warning(self, msg: str) -> None:
        log.debug(msg)


def set_seed(seed: int) -> None:
    """Their ``train.set_seed`` (random, numpy, torch; PYTHONHASHSEED) without the CUDA calls."""
    import numpy as np

    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------- the authors' model
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


def our_unet_kwargs(model_yaml: dict[str, Any], size: int | None = None) -> dict[str, Any]:
    """Our ``configs/model/*.yaml`` -> UNetModel arguments (drops ``name``/``init``; optional size)."""
    kw = {k: v for k, v in model_yaml.items() if k not in ("name", "init")}
    if size is not None:
        kw["image_size"] = size
    return kw


if __name__ == "__main__":  # smoke test: python scripts/authors_adapter.py PATH
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("I2SB_AUTHORS")
    kw = dict(image_size=64, model_channels=64, out_channels=3, num_res_blocks=2, attention_resolutions=(4,),
              channel_mult=(1, 2, 2), num_heads=1, num_head_channels=32, use_scale_shift_norm=True,
              resblock_updown=True)
    step = make_train_step(path, kw, batch=8, size=64, task="jpeg10")
    x0 = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    t = time.perf_counter()
    print(f"params {step.model.n_params() / 1e6:.2f}M, loss {step(x0):.4f}, {time.perf_counter() - t:.2f} s/step;"
          f" stubbed: {', '.join(step.model.code.stubbed) or 'none'}")
    x1, _ = step.model.corrupt(x0)
    t = time.perf_counter()
    out = make_sampler(path, kw, 64, model=step.model)(x1, 10)
    print(f"NFE-10 restoration {tuple(out.shape)} in {time.perf_counter() - t:.2f} s, finite={bool(out.isfinite().all())}")
