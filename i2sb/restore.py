"""Restoring images with a trained bridge: load a checkpoint (ours or the authors'), pad, tile, sample.

>>> import i2sb
>>> restorer = i2sb.load("runs/jpeg5", device="cuda")          # or the authors' results/jpeg5/
>>> restored = restorer.restore(images, nfe=10)                # images: (B, 3, H, W) in [-1, 1]

Any image size works: sides are padded by reflection to a multiple of the U-Net's total down-sampling
``2**(len(channel_mult) - 1)`` and cropped back. Images larger than the training size are denoised in
overlapping tiles of the training size at every sampling step; the tiles' network outputs are blended with
a raised-cosine window whose weights are normalised to sum to one, so the state stays one image and no
seams appear. Smaller images are only padded to a valid size (the U-Net is convolutional).
``i2sb-sample`` (:func:`run_sample`) restores whole folders on top of :class:`Restorer`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor

from .authors import OPTIONS, NetworkSpec, authors_spec
from .bridge import Bridge, StepCallback
from .checkpoint import LATEST, check_compatible, is_i2sb_checkpoint, load_file, model_weights
from .config import ConfigError, to_container, to_train_config
from .denoiser import Denoiser, make_predictor
from .dist import resolve_device
from .samplers import check_sampler
from .samplers import sample as run_sampler
from .unet import UNet

MASKED_TASKS = frozenset({"inpaint_center", "inpaint_freeform1020", "inpaint_freeform2030"})
UNET_KEYS = frozenset(inspect.signature(UNet).parameters)
IN_KEY = "input_blocks.0.0.weight"  # the first convolution: its weight's shape[1] is the input channels


# ---------------------------------------------------------------------------- padding and tiling
def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad (B, C, H, W) at the bottom/right to sides divisible by ``multiple``: reflection, or edge
    replication where the image is too small to reflect. Crop back with ``[..., :H, :W]``."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Offsets of tiles of length ``tile`` covering ``[0, size)`` with at least ``overlap`` shared pixels."""
    if size <= tile:
        return [0]
    count = math.ceil((size - tile) / (tile - overlap)) + 1
    return [round(i * (size - tile) / (count - 1)) for i in range(count)]


def raised_cosine(length: int, taper: bool = True) -> Tensor:
    """1-D window ``sin^2(pi (i + 0.5) / length)`` (positive everywhere), or ones without ``taper``."""
    if not taper:
        return torch.ones(length, dtype=torch.float64)
    i = torch.arange(length, dtype=torch.float64)
    return torch.sin(math.pi * (i + 0.5) / length) ** 2


class TiledDenoiser:
    """``denoiser(xt, step, cond)`` evaluated on overlapping tiles and blended without seams.

    Each tile's output is weighted by a separable raised-cosine window; the weighted sum is divided by the
    sum of the weights, so the blend is a convex combination at every pixel (a constant output stays
    exactly that constant, an identity stays the identity). Shapes: (B, C, H, W) -> (B, 3, H, W).
    """

    def __init__(self, denoiser: Callable[..., Tensor], tile: int, overlap: int):
        if not 0 <= overlap < tile:
            raise ValueError(f"tile_overlap must be in 0..{tile - 1} for tile={tile}, got {overlap}")
        self.denoiser, self.tile, self.overlap = denoiser, tile, overlap

    def windows(self, height: int, width: int) -> list[tuple[slice, slice, Tensor]]:
        """``(rows, cols, weight (h, w) float64)`` of every tile of an image of ``height x width``."""
        th, tw = min(self.tile, height), min(self.tile, width)
        wy, wx = raised_cosine(th, th < height), raised_cosine(tw, tw < width)
        return [(slice(y, y + th), slice(x, x + tw), wy[:, None] * wx[None, :])
                for y in tile_starts(height, self.tile, self.overlap)
                for x in tile_starts(width, self.tile, self.overlap)]

    def __call__(self, xt: Tensor, step: Tensor, cond: Tensor | None = None) -> Tensor:
        height, width = xt.shape[-2:]
        tiles = self.windows(height, width)
        if len(tiles) == 1:
            return self.denoiser(xt, step, cond)
        total, norm = None, torch.zeros((height, width), dtype=xt.dtype, device=xt.device)
        for rows, cols, weight in tiles:
            part = self.denoiser(xt[..., rows, cols], step, None if cond is None else cond[..., rows, cols])
            weight = weight.to(device=xt.device, dtype=xt.dtype)
            if total is None:
                total = xt.new_zeros((*part.shape[:2], height, width))
            total[..., rows, cols] += part.to(xt.dtype) * weight
            norm[rows, cols] += weight
        return total / norm


def cropped_callback(callback: StepCallback | None, height: int, width: int) -> StepCallback | None:
    """``callback`` seeing the states and x0 predictions of padded images cropped back to ``height x width``."""
    if callback is None:
        return None

    def crop(prev_step: int, step: int, xt: Tensor, pred_x0: Tensor) -> None:
        callback(prev_step, step, xt[..., :height, :width], pred_x0[..., :height, :width])

    return crop


# ---------------------------------------------------------------------------- the restorer
class Restorer:
    """A trained I2SB network ready to restore images.

    Attributes: ``denoiser`` (:class:`~i2sb.denoiser.Denoiser`, eval mode), ``bridge``
    (:class:`~i2sb.bridge.Bridge`), ``task`` (dict of ``i2sb.config.TaskConfig`` fields), ``image_size``
    (training size, the default tile), ``default_nfe``, ``device``, ``down_factor``.
    """

    def __init__(self, denoiser: Denoiser, bridge: Bridge, task: dict[str, Any], image_size: int,
                 default_nfe: int = 10):
        self.denoiser, self.bridge, self.task = denoiser, bridge, dict(task)
        self.image_size, self.default_nfe = int(image_size), int(default_nfe)

    def __repr__(self) -> str:
        return (f"Restorer(task={self.task.get('name')!r}, image_size={self.image_size}, "
                f"n_steps={self.bridge.n_steps}, device={self.device})")

    @property
    def device(self) -> torch.device:
        return self.denoiser.noise_levels.device

    @property
    def down_factor(self) -> int:
        """Total down-sampling of the U-Net; padded sides are multiples of it."""
        return 2 ** (len(self.denoiser.net.config["channel_mult"]) - 1)

    @property
    def needs_mask(self) -> bool:
        """Inpainting checkpoints restore holes that a mask must mark."""
        return self.task.get("degradation") in MASKED_TASKS

    def check_nfe(self, nfe: int | None) -> int:
        """``nfe`` (None: ``default_nfe``) validated against the bridge's ``1 .. n_steps - 1``."""
        nfe = self.default_nfe if nfe is None else nfe
        self.bridge.timesteps(nfe)  # raises ValueError naming the valid range
        return int(nfe)

    def validate_sampler(self, sampler: str, eta: float | None, ot_ode: bool | None) -> bool:
        """``ot_ode`` resolved (None: as trained, ``task["ot_ode"]``) once ``sampler`` and ``eta`` are checked
        against it (:func:`i2sb.samplers.check_sampler`); ``ValueError`` otherwise."""
        ot_ode = bool(self.task.get("ot_ode", False)) if ot_ode is None else bool(ot_ode)
        check_sampler(sampler, ot_ode, eta)
        return ot_ode

    def tiling(self, tile: int | None, overlap: int | None) -> tuple[int, int]:
        """``(tile, overlap)``: None -> the training size (rounded to ``down_factor``); 0 -> no tiling."""
        m = self.down_factor
        tile = max(m, self.image_size // m * m) if tile is None else int(tile)
        if tile and tile % m:
            raise ValueError(f"tile={tile} must be a multiple of the network's down-sampling factor {m}")
        overlap = tile // 4 if overlap is None else int(overlap)
        if tile and not 0 <= overlap < tile:
            raise ValueError(f"tile_overlap must be in 0..{tile - 1} for tile={tile}, got {overlap}")
        return tile, overlap

    @torch.no_grad()
    def restore(self, images: Tensor, nfe: int | None = None, ot_ode: bool | None = None,
                mask: Tensor | None = None, clip_denoise: bool = False, generator: torch.Generator | None = None,
                precision: str = "auto", tile: int | None = None, tile_overlap: int | None = None,
                callback: StepCallback | None = None, sampler: str = "ddpm", eta: float | None = None) -> Tensor:
        """Restore degraded ``images`` (B, 3, H, W) in [-1, 1]; returns (B, 3, H, W) on their device.

        Args:
            nfe: network evaluations (None: ``default_nfe``), 1 .. n_steps - 1.
            ot_ode: deterministic OT-ODE sampler; None: as trained (``task["ot_ode"]``).
            sampler: ``ddpm`` (the authors'), ``implicit`` (SDE models), ``heun`` or ``multistep`` (OT-ODE
                models); see :mod:`i2sb.samplers`. ``eta``: the implicit sampler's stochasticity (None: 0).
            mask: inpainting mask (B or 1, 1, H, W), 1 = hole; the hole's pixels in ``images`` are ignored.
            clip_denoise: clamp every x0 prediction to [-1, 1].
            generator: ``torch.Generator`` on ``self.device`` for reproducible noise.
            precision: autocast precision of the network, auto | fp32 | bf16 | fp16 (auto: bf16 where the
                device runs it natively, see :func:`i2sb.denoiser.resolve_precision`; within 0.01 dB of fp32).
            tile, tile_overlap: see :meth:`tiling`; tiles are blended at every step.
            callback: ``callback(prev_step, step, x_prev, pred_x0)`` with cropped (B, 3, H, W) tensors,
                e.g. an ``i2sb.bridge.Trajectory``.
        """
        nfe = self.check_nfe(nfe)
        ot_ode = self.validate_sampler(sampler, eta, ot_ode)
        tile, tile_overlap = self.tiling(tile, tile_overlap)
        x1, mask = self._check_inputs(images, mask)
        height, width = x1.shape[-2:]
        x1 = pad_to_multiple(x1, self.down_factor)
        mask = None if mask is None else pad_to_multiple(mask, self.down_factor)
        x1, cond = self._boundary(x1, mask, generator)
        denoiser = TiledDenoiser(self.denoiser, tile, tile_overlap) if tile else self.denoiser
        predict_x0 = make_predictor(denoiser, self.bridge, cond, precision=precision)
        out = run_sampler(self.bridge, predict_x0, x1, nfe, sampler=sampler, eta=eta, ot_ode=ot_ode, mask=mask,
                          clip_denoise=clip_denoise, generator=generator,
                          callback=cropped_callback(callback, height, width))
        return out[..., :height, :width].to(device=images.device, dtype=images.dtype)

    def _check_inputs(self, images: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be a floating tensor (B, 3, H, W) in [-1, 1], got {shape}")
        x1 = images.to(device=self.device, dtype=torch.float32)
        if mask is None:
            return x1, None
        batch, _, height, width = x1.shape
        valid = mask.ndim == 4 and mask.shape[1] == 1 and mask.shape[0] in (1, batch)
        if not valid or mask.shape[-2:] != (height, width):
            raise ValueError(f"mask must have shape (B or 1, 1, {height}, {width}), got {tuple(mask.shape)}")
        return x1, mask.to(device=self.device, dtype=torch.float32)

    def _boundary(self, x1: Tensor, mask: Tensor | None,
                  generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        """``(x1, cond)`` as the authors' ``sample.compute_batch``: with a mask the hole is filled with noise
        (the conditioning image keeps this draw; ``Bridge.sample`` fills the hole of x1 once more, as their
        ``ddpm_sampling`` does, so the random draws come in their order); ``add_x1_noise`` then adds N(0, I)
        to x1 (paper App. C.1)."""
        cond_x1, add_noise = self.task.get("cond_x1", False), self.task.get("add_x1_noise", False)
        if mask is not None:
            x1 = (1.0 - mask) * x1 + mask * torch.randn(x1.shape, generator=generator, device=x1.device)
        cond = x1 if cond_x1 else None
        if add_noise:
            x1 = x1 + torch.randn(x1.shape, generator=generator, device=x1.device)
        return x1, cond


# ---------------------------------------------------------------------------- loading
def read_checkpoint(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` memory-mapped where the file allows it (big optimizer states stay on disk)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # legacy (non-zip) format, corrupt file, ...: the plain loader words the error
        return load_file(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a checkpoint dictionary (got {type(obj).__name__})")
    return obj


def _locate(ckpt: str | Path) -> Path:
    path = Path(ckpt)
    if path.is_dir():
        if not (path / LATEST).is_file():
            raise FileNotFoundError(f"{path}: no {LATEST} in this checkpoint directory")
        return path / LATEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (give a run directory, a .pt file, or the "
                                f"authors' results/NAME/ with {LATEST} and {OPTIONS})")
    return path


@dataclass
class RunSpec(NetworkSpec):
    """A :class:`NetworkSpec` that also names the training method (``cfg.method``: i2sb | ddpm | palette)."""

    method: str = "i2sb"


def own_spec(ckpt: dict[str, Any], use_ema: bool, overrides: dict[str, Any], source: str) -> RunSpec:
    """An i2sb training checkpoint -> :class:`RunSpec` (its stored config, then ``overrides``)."""
    try:
        cfg = to_train_config(ckpt.get("config") or {})
        weights = model_weights(ckpt, use_ema)
    except (ConfigError, KeyError, ValueError) as err:
        raise ValueError(f"{source}: {err}") from None
    config = to_container(cfg)
    kwargs = {k: v for k, v in config["model"].items() if k not in ("name", "init")}
    in_channels = weights[IN_KEY].shape[1] if IN_KEY in weights else (6 if cfg.task.cond_x1 else 3)
    kwargs = {**kwargs, "in_channels": int(in_channels), **overrides}
    image_size = int(overrides.get("image_size", cfg.data.image_size))
    return RunSpec(kwargs, weights, config["task"], image_size, cfg.trainer.eval_nfe, cfg.method)


def network_spec(ckpt: str | Path, use_ema: bool = True, overrides: dict[str, Any] | None = None) -> NetworkSpec:
    """Read a run directory, a checkpoint file or the authors' ``results/NAME/`` into a :class:`NetworkSpec`."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - UNET_KEYS)
    if unknown:
        raise ValueError(f"unknown model key '{unknown[0]}'; valid keys: {', '.join(sorted(UNET_KEYS))}")
    file = _locate(ckpt)
    state = read_checkpoint(file)
    if is_i2sb_checkpoint(state):
        return own_spec(state, use_ema, overrides, str(file))
    from .baselines.networks import adm_prior_spec, is_adm_checkpoint

    if is_adm_checkpoint(state):  # guided-diffusion's unconditional ADM: a prior for DDNM
        return adm_prior_spec(state, overrides, str(file))
    options = file.parent / OPTIONS
    if "net" in state and options.is_file():
        return authors_spec(state, options, use_ema, overrides, str(file))
    if "net" in state:
        raise FileNotFoundError(f"{options}: missing; the authors' {LATEST} needs the options.pkl written beside it")
    raise ValueError(f"{file}: not an i2sb checkpoint, the authors' or a guided-diffusion U-Net (no 'format', "
                     f"'net' or '{IN_KEY}' entry)")


def build_network(spec: NetworkSpec, device: torch.device | str = "cpu", source: str = "checkpoint") -> UNet:
    """Instantiate the U-Net of ``spec`` with its weights (float32, eval mode, no gradients) on ``device``."""
    try:
        with torch.device("meta"):
            unet = UNet(**spec.unet_kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: cannot build the U-Net: {err}") from None
    check_compatible(spec.weights, unet.state_dict(), source)
    unet.load_state_dict({k: v.to(torch.float32) for k, v in spec.weights.items()}, assign=True)
    return unet.to(device).eval().requires_grad_(False)


def build_restorer(spec: NetworkSpec, device: torch.device | str = "cpu", source: str = "checkpoint") -> Restorer:
    """The I2SB :class:`Restorer` of ``spec`` (the U-Net of :func:`build_network` in a bridge denoiser)."""
    unet = build_network(spec, device, source)
    t = spec.task
    denoiser = Denoiser(unet, t["n_steps"], t["t0"], t["T"], t["cond_x1"]).to(device).eval()
    return Restorer(denoiser, Bridge.symmetric(t["n_steps"], t["beta_max"]), t, spec.image_size, spec.default_nfe)


def load(ckpt: str | Path, device: torch.device | str = "cpu", use_ema: bool = True,
         **model_overrides: Any) -> Restorer:
    """A :class:`Restorer` from a run directory, a checkpoint file, or the authors' ``results/NAME/``.

    Baseline runs load as their restorers (``i2sb.baselines``): ``method=palette`` -> ``PaletteRestorer``,
    ``method=ddpm`` (and guided-diffusion's unconditional ADM) -> ``DDNMRestorer`` for the run's task.
    ``use_ema=False`` selects the raw weights; ``model_overrides`` replace U-Net arguments (guided-diffusion
    names, e.g. ``num_head_channels=64``), mostly needed for the authors' checkpoints.
    """
    device = resolve_device(str(device))
    spec = network_spec(ckpt, use_ema, model_overrides)
    if getattr(spec, "method", "i2sb") == "i2sb":
        return build_restorer(spec, device, str(ckpt))
    from .baselines.restorers import restorer_from_spec

    return restorer_from_spec(spec, device, str(ckpt))


def run_sample(cfg: DictConfig | dict[str, Any]) -> int:
    """``i2sb-sample``: restore a folder; 0 if every image was restored, 1 if some failed."""
    from .restore_folder import restore_folder

    return restore_folder(cfg)
