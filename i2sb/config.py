"""Typed configuration schemas (OmegaConf structured configs) shared by training and sampling.

The YAML files in ``configs/`` are validated against these dataclasses, so a misspelt key or a missing
required value is reported as one line naming the key. ``i2sb.train.train`` accepts a plain dict, a
``DictConfig`` or a :class:`TrainConfig`; Hydra is only used by the command-line entry points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
T = TypeVar("T")


@dataclass
class TaskConfig:
    """What to learn: the degradation and the bridge (authors' ``scripts/train.sh``)."""

    name: str = MISSING  # run name / task id, e.g. "jpeg5"
    degradation: Optional[str] = None  # i2sb.degrade task; None for paired data (no known operator)
    params: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of degrade.build
    beta_max: float = 0.3  # 0.3 for JPEG and SR, 1.0 for deblurring and inpainting
    ot_ode: bool = False  # train and sample the OT-ODE (Prop. 3.4)
    cond_x1: bool = False  # also feed x1 to the network (general translation, Sec. 5.3)
    add_x1_noise: bool = False  # x1 <- x1 + N(0, I) after conditioning (authors' colorization setup)
    n_steps: int = 1000  # discrete steps ("interval")
    t0: float = 1e-4  # network time input: linspace(t0, T, n_steps) * n_steps
    T: float = 1.0


@dataclass
class ModelConfig:
    """ADM U-Net arguments, named and meant as guided-diffusion's ``UNetModel`` (in_channels derived)."""

    name: str = "custom"
    image_size: int = 64
    model_channels: int = 64
    out_channels: int = 3
    num_res_blocks: int = 2
    attention_resolutions: list[int] = field(default_factory=lambda: [4])  # down-sampling factors
    dropout: float = 0.0
    channel_mult: list[int] = field(default_factory=lambda: [1, 2, 2])
    conv_resample: bool = True
    num_heads: int = 1
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    use_new_attention_order: bool = False
    use_checkpoint: bool = False  # gradient checkpointing
    init: Optional[str] = None  # guided-diffusion ADM checkpoint to start from


@dataclass
class DataConfig:
    kind: str = "demo"  # imagefolder | paired | demo
    root: Optional[str] = None  # training images (imagefolder / paired)
    val_root: Optional[str] = None  # validation images; default: the training folder
    image_size: int = "${model.image_size}"  # type: ignore[assignment]
    num_workers: int = 0
    pin_memory: bool = False
    params: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the dataset


@dataclass
class TrainerConfig:
    """Optimisation; defaults are the authors' (AdamW 5e-5, StepLR 0.99/1000, EMA 0.99, batch 256)."""

    batch_size: int = 256  # global batch, all ranks and microbatches together
    microbatch: int = 2  # per-rank forward/backward size; gradients accumulate up to batch_size
    lr: float = 5e-5
    weight_decay: float = 0.0
    lr_gamma: float = 0.99
    lr_step: int = 1000
    ema: float = 0.99
    ema_warmup: bool = True  # torch_ema's decay = min(ema, (1 + n) / (10 + n)), as the authors
    max_steps: int = 1_000_000
    grad_clip: float = 0.0  # 0 disables
    precision: str = "auto"  # auto (bf16 where native, else fp32) | fp32 | bf16 | fp16 (autocast; GradScaler for fp16)
    channels_last: bool = False
    compile: bool = False
    fused_optimizer: bool = True  # fused AdamW where the device supports it
    ckpt_every: int = 1000  # write run_dir/latest.pt
    keep_every: int = 0  # also keep run_dir/ckpt_{step}.pt every N steps (0: never)
    eval_every: int = 1000  # validation PSNR + image grid
    log_every: int = 10
    eval_nfe: int = 10
    eval_batch: int = 8
    max_bad_steps: int = 5  # stop after this many consecutive non-finite losses


@dataclass
class LoggingConfig:
    progress: bool = True  # tqdm bar on rank 0
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "i2sb"


@dataclass
class TrainConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    method: str = "i2sb"  # training method (i2sb.methods.METHODS)
    run_dir: str = "runs/${task.name}"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    resume: bool = True  # continue from run_dir/latest.pt when it exists


class ConfigError(ValueError):
    """A configuration problem, reported as one line naming the key."""


def validated(schema: type[T], cfg: Any) -> T:
    """``cfg`` (dict / DictConfig / dataclass) merged into the structured ``schema``, interpolations resolved.

    Unknown keys, wrong types and missing values raise a one-line :class:`ConfigError` naming the key.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        OmegaConf.resolve(merged)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        msg = str(err).splitlines()[0]
        raise ConfigError(f"config key '{key}': {msg}" if key else f"config: {msg}") from None


def to_train_config(cfg: Any) -> TrainConfig:
    """Validate ``cfg`` (dict / DictConfig / TrainConfig) against :class:`TrainConfig`; resolve interpolations."""
    result = validated(TrainConfig, cfg)
    _check_values(result)
    return result


def _check_values(cfg: TrainConfig) -> None:
    t = cfg.trainer
    if t.precision not in PRECISIONS:
        raise ConfigError(f"config key 'trainer.precision': must be one of {', '.join(PRECISIONS)}, got '{t.precision}'")
    for key in ("batch_size", "microbatch", "max_steps", "lr_step", "ckpt_every", "eval_every", "log_every"):
        if getattr(t, key) <= 0:
            raise ConfigError(f"config key 'trainer.{key}': must be positive, got {getattr(t, key)}")
    if not 0.0 <= t.ema < 1.0:
        raise ConfigError(f"config key 'trainer.ema': must be in [0, 1), got {t.ema}")
    if cfg.task.n_steps < 2 or cfg.task.n_steps % 2:
        raise ConfigError(f"config key 'task.n_steps': must be an even integer >= 2, got {cfg.task.n_steps}")
    if cfg.data.kind in ("imagefolder", "paired") and not cfg.data.root:
        raise ConfigError(f"config key 'data.root': required for data.kind={cfg.data.kind} (the training images folder)")
    if not 1 <= t.eval_nfe < cfg.task.n_steps:
        raise ConfigError(f"config key 'trainer.eval_nfe': must be in 1..{cfg.task.n_steps - 1}, got {t.eval_nfe}")


def to_container(cfg: TrainConfig | DictConfig) -> dict[str, Any]:
    """Plain nested dict (for checkpoints and ``config.yaml``)."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.structured(cfg)
    return OmegaConf.to_container(cfg, resolve=True)
