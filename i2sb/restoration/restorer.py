"""The one restoration path: a trained network + the kind of restoration it was trained for, on images of any size.

>>> import i2sb
>>> restorer = i2sb.load("runs/jpeg5", device="cuda")          # or the authors' results/jpeg-5/
>>> restored = restorer.restore(images, nfe=10)                # images: (B, 3, H, W) in [-1, 1]

:class:`Restorer` does what every kind of model needs -- checks the inputs, resolves and validates the
sampling options once (:meth:`Restorer.options`, the edge: the samplers below it trust their values), pads to the
network's multiple, fixes how the denoiser calls its network (precision, clipping, tiling of large images, the
memory layout), calls the sampler of its :class:`RestorationKind` (:mod:`.algorithms`: I2SB's bridge samplers,
Palette, DDNM) and crops back. Validation during training, ``i2sb-sample``, ``i2sb.load(...).restore`` and
``scripts/compare.py`` all restore through it.

On CPUs the network is handed channels-last (NHWC) inputs: oneDNN's inference convolutions run faster on them
(``scripts/bench.py --sections sample`` compares both layouts); the weights keep theirs. Training keeps NCHW unless
``trainer.channels_last`` (the backward of the high-resolution convolutions is slower in NHWC). Other devices get
NCHW inputs unless asked otherwise (``channels_last``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from .. import degrade
from ..config import TaskConfig
from ..core.denoiser import Denoiser
from ..core.noise import Generators
from ..core.precision import PRECISIONS, resolve_precision
from ..core.types import StepCallback
from ..evaluation.record import ValidationRecord
from .tiling import TiledDenoiser, cropped_callback, pad_to_multiple, tile_starts

# Inputs are x1 in [-1, 1]; degraded images may leave it a little (the paper's DDRM JPEG spans about -1.9..1.7,
# kept exactly in .npy inputs), so values are refused only beyond this bound: 8-bit values (0..255) and the like.
INPUT_LIMIT = 3.0


class OptionError(ValueError):
    """A sampling option that does not fit the model; ``key`` names it, ``reason`` says why."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


@dataclass(frozen=True)
class SamplingOptions:
    """Sampling settings after :meth:`Restorer.options` resolved defaults and checked them against the model.

    ``eta`` is the value the sampler uses (None where it has no eta); ``precision`` is resolved for the device
    (fp32 | bf16 | fp16); ``steps`` the step indices the sampler visits, ascending; ``tile`` 0 means no tiling.
    """

    nfe: int
    steps: tuple[int, ...] = ()
    sampler: str = "ddpm"
    eta: float | None = None
    ot_ode: bool = False
    clip_denoise: bool = False
    precision: str = "fp32"
    tile: int = 0
    tile_overlap: int = 0
    tile_batch: int | None = None  # images per network call when tiling (None: see tiling.default_tile_batch)
    channels_last: bool = False  # the network's weights in channels-last memory (NHWC convolutions on CUDA)


class RestorationKind(Protocol):
    """How one kind of trained model restores (see :mod:`.algorithms`); :class:`Restorer` does the rest."""

    name: str
    max_nfe: int  # nfe ranges over 1 .. max_nfe
    pads: bool  # inputs may be padded to the network's multiple (False: the kind needs the exact size)
    schedule: Any  # what its samplers read (the Bridge, or a GaussianDiffusion)

    def resolve(self, sampler: str, eta: float | None, ot_ode: bool | None) -> tuple[float | None, bool]:
        """``(eta, ot_ode)`` the sampler runs with; :class:`OptionError` if ``sampler`` / ``eta`` / ``ot_ode``
        do not fit. The one check of these values."""

    def steps(self, sampler: str, nfe: int) -> list[int]:
        """The step indices the (checked) sampler visits for ``nfe`` evaluations, ascending."""

    def sampler(self, options: SamplingOptions) -> Callable[..., Tensor]:
        """``run(denoiser, x1, steps, schedule, *, mask, generator, callback)`` with its knobs bound."""

    def boundary(self, x1: Tensor, mask: Tensor | None, generator: Generators) -> tuple[Tensor, Tensor | None]:
        """``(x1, cond)``: the start of the sampler and the network's conditioning (None: unconditional)."""


def check_range(images: Tensor) -> None:
    """One-line ValueError for images that are not in [-1, 1] units (0..255 pixel values, NaN, inf); values up to
    :data:`INPUT_LIMIT` in magnitude pass (degraded images may leave [-1, 1] a little). Run on the images' own
    device before they move: one value read back per restoration (none from the GPU for images on the CPU), more
    only to word the error."""
    if images.numel() == 0 or not bool((~torch.isfinite(images) | (images.abs() > INPUT_LIMIT)).any()):
        return
    finite = images[torch.isfinite(images)]
    if finite.numel() < images.numel():
        raise ValueError("images hold NaN or infinite values; expected values in [-1, 1]")
    low, high = finite.min().item(), finite.max().item()
    hint = ": 8-bit pixel values? use x / 127.5 - 1" if low >= 0 and high <= 255 else ""
    raise ValueError(f"images must be in [-1, 1], got values in [{low:g}, {high:g}]{hint}")


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (cpu for an empty module)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


class Restorer:
    """A trained network ready to restore images.

    Attributes: ``denoiser`` (eval mode; ``denoiser.net`` is the U-Net), ``kind`` (:class:`RestorationKind`),
    ``task`` (:class:`~i2sb.config.TaskConfig`), ``image_size`` (training size, the default tile),
    ``validation`` (the model's :class:`~i2sb.evaluation.record.ValidationRecord`, PSNR and SWD per NFE its
    training validation tried, or None), ``default_nfe`` (the NFE of the best validation PSNR, else
    ``fallback_nfe``: the checkpoint's ``trainer.eval_nfe``), ``device``, ``down_factor``.
    """

    def __init__(self, denoiser: Denoiser, kind: RestorationKind, task: TaskConfig, image_size: int,
                 default_nfe: int = 10, validation: ValidationRecord | dict | None = None):
        self.denoiser, self.kind, self.task = denoiser, kind, task
        self.image_size, self.fallback_nfe = int(image_size), int(default_nfe)
        self.validation = ValidationRecord.from_dict(validation) if isinstance(validation, dict) else validation
        self.default_nfe = self.nfe_for("fidelity")

    def __repr__(self) -> str:
        return (f"Restorer({self.kind.name}, task={self.task.name!r}, image_size={self.image_size}, "
                f"device={self.device})")

    def choose_nfe(self, prefer: str = "fidelity") -> tuple[int, str]:
        """``(nfe, why)``: the NFE ``prefer`` (``fidelity``: best PSNR, ``realism``: lowest SWD) picks from the
        validation record, or ``fallback_nfe`` without one; ``why`` says which, in one line."""
        best = self.validation.best(prefer) if self.validation is not None else None
        if best is None or best.nfe > self.kind.max_nfe:
            missing = "no validation record" if self.validation is None else f"no {prefer} scores in its record"
            return self.fallback_nfe, f"the checkpoint's default (its trainer.eval_nfe; {missing})"
        return best.nfe, self.validation.reason(prefer)

    def nfe_for(self, prefer: str = "fidelity") -> int:
        """The NFE :meth:`choose_nfe` picks for ``prefer``."""
        return self.choose_nfe(prefer)[0]

    @property
    def device(self) -> torch.device:
        return module_device(self.denoiser)

    @property
    def down_factor(self) -> int:
        """Total down-sampling of the U-Net; padded sides are multiples of it."""
        return 2 ** (len(self.denoiser.net.config["channel_mult"]) - 1)

    @property
    def needs_mask(self) -> bool:
        """Inpainting checkpoints restore holes that a mask must mark."""
        task = self.task.degradation
        return task in degrade.TASKS and degrade.needs_mask(task)

    # ------------------------------------------------------------------ options, once
    def options(self, nfe: int | None = None, sampler: str = "ddpm", eta: float | None = None,
                ot_ode: bool | None = None, clip_denoise: bool = False, precision: str = "auto",
                tile: int | None = None, tile_overlap: int | None = None, tile_batch: int | None = None,
                channels_last: bool = False) -> SamplingOptions:
        """Resolve defaults and check every sampling option against this model; :class:`OptionError` otherwise.

        Args:
            nfe: network evaluations, 1 .. ``kind.max_nfe``; None: ``default_nfe``.
            sampler, eta, ot_ode: the sampler (I2SB: ``ddpm`` | ``implicit`` | ``heun`` | ``multistep``, see
                :mod:`i2sb.core.samplers`; baselines: ``ddpm`` | ``implicit``), its stochasticity, and the
                deterministic OT-ODE (None: as trained).
            clip_denoise: clamp every x0 prediction to [-1, 1].
            precision: autocast precision of the network, auto | fp32 | bf16 | fp16 (auto: bf16 where the device
                runs it natively, see :func:`i2sb.core.precision.resolve_precision`).
            tile, tile_overlap: None -> tiles of the training size (rounded to ``down_factor``) overlapping by a
                quarter; 0 -> never tile.
            tile_batch: at most this many images per network call when tiling (the tiles of a batch go through
                the network together; None: one tile per call on the CPU, ``max(batch, 8)`` images on GPUs; 1: one
                tile after another). The same result up to the network's rounding at another batch size.
            channels_last: convert the network's weights to channels-last memory before restoring (they stay so),
                so that convolutions run in NHWC (on CUDA: cuDNN's tensor-core layout; on CPU the inputs are
                channels-last anyway, :meth:`_configured`). Same values, another memory layout.
        """
        nfe = self.default_nfe if nfe is None else nfe
        if isinstance(nfe, bool) or not isinstance(nfe, Integral) or not 1 <= nfe <= self.kind.max_nfe:
            raise OptionError("nfe", f"must be in 1..{self.kind.max_nfe} for this checkpoint "
                                     f"({self.kind.name}), got {nfe!r}")
        eta_used, ot_ode_used = self.kind.resolve(sampler, eta, ot_ode)
        if precision not in PRECISIONS:
            raise OptionError("precision", f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        tile, tile_overlap = self._tiling(tile, tile_overlap)
        if tile_batch is not None and (isinstance(tile_batch, bool) or not isinstance(tile_batch, Integral)
                                       or tile_batch < 1):
            raise OptionError("tile_batch", f"must be None (auto) or a positive integer, got {tile_batch!r}")
        steps = tuple(self.kind.steps(sampler, int(nfe)))
        return SamplingOptions(int(nfe), steps, sampler, eta_used, ot_ode_used, bool(clip_denoise),
                               resolve_precision(precision, self.device), tile, tile_overlap,
                               None if tile_batch is None else int(tile_batch), bool(channels_last))

    def _tiling(self, tile: int | None, overlap: int | None) -> tuple[int, int]:
        m = self.down_factor
        tile = max(m, self.image_size // m * m) if tile is None else int(tile)
        if tile < 0 or tile % m:
            raise OptionError("tile", f"must be 0 (off) or a multiple of the network's down-sampling factor {m}, "
                                      f"got {tile}")
        overlap = tile // 4 if overlap is None else int(overlap)
        if tile and not 0 <= overlap < tile:
            raise OptionError("tile_overlap", f"must be in 0..{tile - 1} for tile={tile}, got {overlap}")
        return tile, overlap

    def tile_count(self, height: int, width: int, options: SamplingOptions) -> int:
        """Network evaluations per sampler step for one image of ``height x width``: its tiles (1 untiled)."""
        if not options.tile:
            return 1
        m = self.down_factor if self.kind.pads else 1
        padded = [-(-side // m) * m for side in (height, width)]
        return len(tile_starts(padded[0], options.tile, options.tile_overlap)) * \
            len(tile_starts(padded[1], options.tile, options.tile_overlap))

    # ------------------------------------------------------------------ restoring
    @torch.no_grad()
    def restore(self, images: Tensor, *, mask: Tensor | None = None, generator: Generators = None,
                callback: StepCallback | None = None, options: SamplingOptions | None = None,
                **settings) -> Tensor:
        """Restore degraded ``images`` (B, 3, H, W) in [-1, 1]; returns (B, 3, H, W) on their device and dtype.

        Args:
            mask: inpainting mask (B or 1, 1, H, W), 1 = hole; the hole's pixels in ``images`` are ignored.
            generator: ``torch.Generator`` on ``self.device`` for reproducible noise (or one per image); a
                generator on another device is a one-line ``ValueError`` before any work.
            callback: ``callback(prev_step, step, x_prev, pred_x0)`` with cropped (B, 3, H, W) tensors,
                e.g. an :class:`i2sb.core.trajectory.Trajectory`.
            options: resolved :class:`SamplingOptions`; otherwise ``settings`` (``nfe=``, ``sampler=``, ...)
                go through :meth:`options`.
        """
        options = self.options(**settings) if options is None else options
        self._check_generator(generator)
        x1, mask = self._check_inputs(images, mask)
        height, width = x1.shape[-2:]
        if self.kind.pads:
            x1 = pad_to_multiple(x1, self.down_factor)
            mask = None if mask is None else pad_to_multiple(mask, self.down_factor)
        elif height % self.down_factor or width % self.down_factor:
            raise ValueError(f"{self.kind.name} needs image sides divisible by {self.down_factor}, got "
                             f"{width}x{height}")
        if options.channels_last:
            self.denoiser.to(memory_format=torch.channels_last)
        x1, cond = self.kind.boundary(x1, mask, generator)
        run = self.kind.sampler(options)
        out = run(self._configured(options, cond), x1, options.steps, self.kind.schedule, mask=mask,
                  generator=generator, callback=cropped_callback(callback, height, width))
        return out[..., :height, :width].to(device=images.device, dtype=images.dtype)

    def _configured(self, options: SamplingOptions, cond: Tensor | None) -> Denoiser:
        """The denoiser as this restoration calls it: precision, clipping, tiles, layout and ``cond`` fixed."""
        tiles = None
        if options.tile:
            tiles = TiledDenoiser(self.denoiser.net_call, options.tile, options.tile_overlap, options.tile_batch)
        return self.denoiser.configured(precision=options.precision, clip_denoise=options.clip_denoise,
                                        channels_last=self.device.type == "cpu", cond=cond, tiles=tiles)

    def _check_generator(self, generator: Generators) -> None:
        """Every generator on this model's device (``torch.randn`` draws on the generator's device)."""
        generators = [generator] if isinstance(generator, torch.Generator) else list(generator or [])
        device = self.device
        for g in generators:
            if not isinstance(g, torch.Generator):
                raise ValueError(f"generator must be a torch.Generator (or one per image), got {type(g).__name__}")
            if g.device.type != device.type or (g.device.index or 0) != (device.index or 0):
                raise ValueError(f"generator is on {g.device} but the model is on {device}: create it with "
                                 f"torch.Generator(device={str(device)!r})")

    def _check_inputs(self, images: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be a floating tensor (B, 3, H, W) in [-1, 1], got {shape}")
        # contiguous: a view (e.g. load_image(...)[None], HWC strides) must give the bits of its copy, as
        # i2sb-sample's stacked batches do (CPU kernels, fp32 and bf16 alike, round differently per memory layout)
        check_range(images)
        x1 = images.to(device=self.device, dtype=torch.float32).contiguous()
        if mask is None:
            return x1, None
        batch, _, height, width = x1.shape
        valid = mask.ndim == 4 and mask.shape[1] == 1 and mask.shape[0] in (1, batch)
        if not valid or mask.shape[-2:] != (height, width):
            raise ValueError(f"mask must have shape (B or 1, 1, {height}, {width}), got {tuple(mask.shape)}")
        return x1, mask.to(device=self.device, dtype=torch.float32).contiguous()
