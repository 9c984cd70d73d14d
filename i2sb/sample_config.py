"""Typed schema of ``i2sb-sample`` (``configs/sample.yaml``): every key, its default and its check.

``run_sample`` validates the composed Hydra config against :class:`SampleConfig`, so a misspelt key,
a wrong type or a missing ``ckpt``/``input``/``output`` is one line naming the key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from .config import PRECISIONS, ConfigError, TaskConfig, validated
from .samplers import SAMPLERS

TRAJ_FORMATS = ("gif", "png")  # i2sb.restore_folder.TRAJECTORY_WRITERS


@dataclass
class ModelOverrides:
    """U-Net arguments (guided-diffusion names) that replace the checkpoint's; null = keep.

    Needed for the authors' checkpoints only where the weights cannot tell, e.g. ``num_head_channels``.
    """

    image_size: Optional[int] = None
    in_channels: Optional[int] = None
    model_channels: Optional[int] = None
    out_channels: Optional[int] = None
    num_res_blocks: Optional[int] = None
    attention_resolutions: Optional[list[int]] = None  # down-sampling factors, as in configs/model/
    dropout: Optional[float] = None
    channel_mult: Optional[list[int]] = None
    conv_resample: Optional[bool] = None
    num_heads: Optional[int] = None
    num_head_channels: Optional[int] = None
    num_heads_upsample: Optional[int] = None
    use_scale_shift_norm: Optional[bool] = None
    resblock_updown: Optional[bool] = None
    use_new_attention_order: Optional[bool] = None

    def given(self) -> dict[str, Any]:
        """The keys the user set (not null)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class DDNMConfig:
    """DDNM / DDNM+ settings (``method=ddnm``, or a ``method=ddpm`` run given as ``ckpt``)."""

    sigma_y: float = 0.0  # measurement noise std in [-1, 1] units; > 0 switches to DDNM+
    travel_length: int = 1  # time travel L (positions of the respaced chain)
    travel_repeat: int = 1  # time travel r (1: none)


METHODS = ("ddnm",)  # values of ``method`` besides null (the checkpoint's own)


@dataclass
class SampleConfig:
    """``i2sb-sample`` keys; see ``configs/sample.yaml`` for the user-facing description of each."""

    ckpt: Optional[str] = None  # run directory, checkpoint file, or the authors' results/NAME/ (required unless ddnm)
    method: Optional[str] = None  # null: the checkpoint's (i2sb | palette | ddpm -> DDNM); ddnm: zero-shot with prior
    prior: Optional[str] = None  # method=ddnm: a method=ddpm run or guided-diffusion's unconditional ADM checkpoint
    task: Optional[TaskConfig] = None  # method=ddnm: a configs/task group (its degradation); null: the prior's
    input: str = MISSING  # folder (or one file) of degraded images
    output: str = MISSING  # folder for the restored PNGs (must not be inside input)
    mask: Optional[str] = None  # inpainting masks, same relative names as input, white = hole
    nfe: Optional[int] = None  # null: the checkpoint's trainer.eval_nfe, else 10
    ot_ode: Optional[bool] = None  # null: the checkpoint's task.ot_ode
    sampler: str = "ddpm"  # ddpm | implicit (SDE models) | heun | multistep (OT-ODE models), see i2sb.samplers
    eta: Optional[float] = None  # implicit sampler's stochasticity in [0, 1]; null: 0 (1 = ddpm)
    clip_denoise: bool = False
    seed: int = 0
    batch_size: int = 4
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (autocast; auto: bf16 where native)
    n_samples: int = 1  # restorations per input: NAME_s0.png, NAME_s1.png, ...
    save_traj: bool = False
    traj_format: str = "gif"  # gif (animation) | png (strip: states on top, x0 predictions below)
    traj_frames: int = 10  # at most this many logged steps (the authors' log_count)
    traj_dir: Optional[str] = None  # null: "<output>_traj"
    tile: Optional[int] = None  # null: the training size; 0: never tile; N: tiles of N pixels
    tile_overlap: Optional[int] = None  # null: tile // 4
    use_ema: bool = True
    skip_existing: bool = False  # leave images whose outputs all exist (counted as skipped)
    progress: bool = True
    model: ModelOverrides = field(default_factory=ModelOverrides)
    ddnm: DDNMConfig = field(default_factory=DDNMConfig)


def to_sample_config(cfg: Any) -> SampleConfig:
    """Validate ``cfg`` (dict / DictConfig / SampleConfig) -> :class:`SampleConfig`; one-line ``ConfigError``."""
    result = validated(SampleConfig, cfg)
    check_values(result)
    return result


_POSITIVE = ("batch_size", "n_samples", "traj_frames")


def check_values(cfg: SampleConfig) -> None:
    """Range checks that need no checkpoint (``nfe``'s upper bound is checked once it is loaded)."""
    for key in _POSITIVE:
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"config key '{key}': must be positive, got {getattr(cfg, key)}")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"config key 'precision': must be one of {', '.join(PRECISIONS)}, got '{cfg.precision}'")
    if cfg.traj_format not in TRAJ_FORMATS:
        raise ConfigError(
            f"config key 'traj_format': must be one of {', '.join(TRAJ_FORMATS)}, got '{cfg.traj_format}'")
    if cfg.sampler not in SAMPLERS:
        raise ConfigError(f"config key 'sampler': must be one of {', '.join(SAMPLERS)}, got '{cfg.sampler}'")
    if cfg.eta is not None and not 0.0 <= cfg.eta <= 1.0:
        raise ConfigError(f"config key 'eta': must be in [0, 1], got {cfg.eta}")
    check_method(cfg)
    if cfg.nfe is not None and cfg.nfe < 1:
        raise ConfigError(f"config key 'nfe': must be at least 1, got {cfg.nfe}")
    if cfg.tile is not None and cfg.tile < 0:
        raise ConfigError(f"config key 'tile': must be 0 (off), null (auto) or a positive size, got {cfg.tile}")
    if cfg.tile_overlap is not None and cfg.tile_overlap < 0:
        raise ConfigError(f"config key 'tile_overlap': must be >= 0, got {cfg.tile_overlap}")


def check_method(cfg: SampleConfig) -> None:
    """``ckpt`` for a trained restorer, or ``method=ddnm`` with ``prior`` (and ``task``); DDNM ranges."""
    if cfg.method is not None and cfg.method not in METHODS:
        raise ConfigError(f"config key 'method': must be null (the checkpoint's own) or one of {', '.join(METHODS)}, "
                          f"got '{cfg.method}'")
    if cfg.method == "ddnm":
        if cfg.prior is None:
            raise ConfigError("config key 'prior': method=ddnm needs an unconditional prior (a method=ddpm run or "
                              "guided-diffusion's 256x256_diffusion_uncond.pt)")
        if cfg.ckpt is not None:
            raise ConfigError("config key 'ckpt': method=ddnm takes its network as prior=, not ckpt=")
    else:
        if cfg.ckpt is None:
            raise ConfigError("config key 'ckpt': Missing mandatory value: ckpt (a run directory, checkpoint file or "
                              "the authors' results/NAME/; or method=ddnm prior=...)")
        for key in ("prior", "task"):
            if getattr(cfg, key) is not None:
                raise ConfigError(f"config key '{key}': only used with method=ddnm")
    d = cfg.ddnm
    if d.sigma_y < 0:
        raise ConfigError(f"config key 'ddnm.sigma_y': must be >= 0, got {d.sigma_y}")
    for key in ("travel_length", "travel_repeat"):
        if getattr(d, key) < 1:
            raise ConfigError(f"config key 'ddnm.{key}': must be >= 1, got {getattr(d, key)}")
