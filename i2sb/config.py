"""Typed configuration schemas (OmegaConf structured configs) of training (:class:`TrainConfig`) and
restoration (:class:`SampleConfig`, ``i2sb-sample``).

The YAML files in ``configs/`` are validated against these dataclasses, so a misspelt key or a missing
required value is reported as one line naming the key. The schemas import no torch (``--help`` and Hydra's
composition stay fast); the checks of values import the registries they check against when they run. ``i2sb.train.train`` accepts a plain dict, a
``DictConfig`` or a :class:`TrainConfig`; Hydra is only used by the command-line entry points.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .utils.limits import DEFAULT_MAX_PIXELS

T = TypeVar("T")
NOT_UNET_KEYS = ("name", "init")  # ModelConfig keys that are not UNet arguments


@dataclass
class TaskConfig:
    """What to learn: the degradation and the bridge (authors' ``scripts/train.sh``)."""

    name: str = MISSING  # run name / task id, e.g. "jpeg5"
    degradation: Optional[str] = None  # i2sb.degrade task; None for paired data (no known operator)
    params: dict[str, Any] = field(default_factory=dict)  # the degradation's parameters, e.g. quality (jpeg)
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

    def unet_kwargs(self) -> dict[str, Any]:
        """The :class:`~i2sb.nets.unet.UNet` arguments (all keys but ``name`` and ``init``; no ``in_channels``)."""
        return {k: v for k, v in asdict(self).items() if k not in NOT_UNET_KEYS}


@dataclass
class DataConfig:
    kind: str = "demo"  # imagefolder | paired | demo
    root: Optional[str] = MISSING  # training images (imagefolder / paired); null for demo (left out of a dict: null)
    val_root: Optional[str] = MISSING  # validation images; null: the training folder (left out of a dict: null)
    image_size: int = "${model.image_size}"  # type: ignore[assignment]
    num_workers: int = 0
    pin_memory: bool = False
    crop: str = "native"  # imagefolder / paired: native-resolution patches | resize (the authors' resize + centre crop)
    params: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the dataset


@dataclass
class TrainerConfig:
    """Optimisation; defaults are the authors' (AdamW 5e-5, StepLR 0.99/1000, EMA 0.99, batch 256)."""

    batch_size: int = 256  # global batch, all ranks and microbatches together
    microbatch: Any = 2  # per-rank forward/backward size (gradients accumulate up to batch_size), or auto: the
    # largest that fits, probed once at the start on CUDA (elsewhere: up to 8); same global batch and loss
    lr: float = 5e-5
    weight_decay: float = 0.0
    lr_gamma: float = 0.99
    lr_step: int = 1000
    lr_warmup: int = 0  # linear warm-up of the learning rate over this many steps (0: none, as the authors)
    adam_beta2: float = 0.999  # AdamW's second-moment decay (the authors': torch's default)
    ema: float = 0.99
    ema_warmup: bool = True  # torch_ema's decay = min(ema, (1 + n) / (10 + n)), as the authors
    max_steps: int = 1_000_000
    grad_clip: float = 0.0  # 0 disables
    precision: str = "auto"  # auto (bf16 where native, else fp32) | fp32 | bf16 | fp16 (autocast; GradScaler for fp16)
    channels_last: bool = False  # network weights and inputs in channels-last memory (NHWC convolutions)
    compile: bool = False
    fused_optimizer: bool = True  # fused AdamW where the device supports it
    cudnn_benchmark: bool = True  # CUDA: cuDNN times its convolution algorithms per shape and keeps the fastest
    deterministic: bool = False  # deterministic kernels, TF32 off (CUDA: bit-exact reruns and resumes, slower)
    ddp_broadcast_buffers: bool = False  # DDP re-sends buffers every step (none of the networks' buffers change)
    ddp_bucket_view: bool = True  # DDP gradient_as_bucket_view: gradients live in the all-reduce buckets
    ckpt_every: int = 1000  # write run_dir/latest.pt
    keep_every: int = 0  # also keep run_dir/ckpt_{step}.pt every N steps (0: never)
    eval_every: int = 1000  # validation PSNR + image grid
    log_every: int = 10
    eval_nfe: int = 10
    eval_nfes: list[int] = field(default_factory=lambda: [1, 2, 5])  # validated besides eval_nfe (PSNR and SWD)
    eval_batch: int = 8
    t_power: float = 1.0  # training steps t = N u^(1/t_power), u ~ U(0, 1); 1: uniform (Algorithm 1, the authors')
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
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
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


DATA_ROOTS = ("root", "val_root")  # required where a config says ??? (configs/data, experiments); else null


def to_train_config(cfg: Any) -> TrainConfig:
    """Validate ``cfg`` (dict / DictConfig / TrainConfig) against :class:`TrainConfig`; resolve interpolations.
    Data roots a dict leaves out are null (the demo photos need none); ``???`` is a missing value."""
    result = validated(TrainConfig, _roots_default_to_null(cfg))
    _check_values(result)
    return result


def _roots_default_to_null(cfg: Any) -> Any:
    if not isinstance(cfg, (dict, DictConfig)):
        return cfg
    data = cfg.get("data") or {}
    absent = {key: None for key in DATA_ROOTS if key not in set(data.keys())}  # a DictConfig hides ??? from `in`
    return OmegaConf.merge(cfg, {"data": absent}) if absent else cfg


def _check_values(cfg: TrainConfig) -> None:
    from .core.precision import PRECISIONS  # lazy: the schemas stay torch-free
    trainer = cfg.trainer
    if trainer.precision not in PRECISIONS:
        raise ConfigError(f"config key 'trainer.precision': must be one of {', '.join(PRECISIONS)}, got '{trainer.precision}'")
    if (microbatch := trainer.microbatch) != "auto" and (isinstance(microbatch, bool) or not isinstance(microbatch, int)):
        raise ConfigError(f"config key 'trainer.microbatch': must be a positive integer or auto, got {microbatch!r}")
    for key in ("batch_size", *(("microbatch",) if microbatch != "auto" else ()), "max_steps", "lr_step",
                "ckpt_every", "eval_every", "log_every"):
        if getattr(trainer, key) <= 0:
            raise ConfigError(f"config key 'trainer.{key}': must be positive, got {getattr(trainer, key)}")
    for key in ("ema", "adam_beta2"):
        if not 0.0 <= getattr(trainer, key) < 1.0:
            raise ConfigError(f"config key 'trainer.{key}': must be in [0, 1), got {getattr(trainer, key)}")
    if not trainer.t_power > 0:
        raise ConfigError(f"config key 'trainer.t_power': must be > 0 (1: uniform steps, as the paper), got {trainer.t_power}")
    if trainer.lr_warmup < 0:
        raise ConfigError(f"config key 'trainer.lr_warmup': must be >= 0 (0: no warm-up), got {trainer.lr_warmup}")
    if cfg.task.n_steps < 2 or cfg.task.n_steps % 2:
        raise ConfigError(f"config key 'task.n_steps': must be an even integer >= 2, got {cfg.task.n_steps}")
    if cfg.data.kind in ("imagefolder", "paired") and not cfg.data.root:
        raise ConfigError(f"config key 'data.root': required for data.kind={cfg.data.kind} (the training images folder)")
    _check_crop(cfg.data)
    check_task_params(cfg.task)
    for key, nfe in [("trainer.eval_nfe", trainer.eval_nfe)] + [("trainer.eval_nfes", n) for n in trainer.eval_nfes]:
        if not 1 <= nfe < cfg.task.n_steps:
            raise ConfigError(f"config key '{key}': must be in 1..{cfg.task.n_steps - 1}, got {nfe}")


def _check_crop(data: DataConfig) -> None:
    from .data.datasets import CROPS  # lazy: the schemas stay torch-free
    if data.crop not in CROPS:
        raise ConfigError(f"config key 'data.crop': must be one of {', '.join(CROPS)}, got '{data.crop}'")
    if data.kind == "demo" and data.crop != "native":
        raise ConfigError("config key 'data.crop': the demo photos give native-resolution patches only")


def check_task_params(task: TaskConfig) -> None:
    """``task.degradation`` is known and ``task.params`` are exactly its parameters (required ones given)."""
    from .degrade import TASKS, check_params  # lazy: the schemas stay torch-free
    if task.degradation is None:
        if task.params:
            raise ConfigError(f"config key 'task.params.{next(iter(task.params))}': task.degradation is null "
                              "(paired data), it takes no parameters")
        return
    if task.degradation not in TASKS:
        raise ConfigError(f"config key 'task.degradation': unknown '{task.degradation}'; one of {', '.join(TASKS)}")
    try:
        check_params(task.degradation, task.params, prefix="task.params.")
    except ValueError as err:
        key, reason = str(err).split(": ", 1)
        raise ConfigError(f"config key '{key}': {reason}") from None


def to_container(cfg: TrainConfig | DictConfig) -> dict[str, Any]:
    """Plain nested dict (for checkpoints and ``config.yaml``)."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.structured(cfg)
    return OmegaConf.to_container(cfg, resolve=True)


# ---------------------------------------------------------------------------- i2sb-sample
TRAJ_FORMATS = ("gif", "png")  # i2sb.restoration.folder.TRAJECTORY_WRITERS
OUTPUT_FORMATS = ("png", "jpg", "webp")  # i2sb.restoration.outputs.ENCODERS


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
    attention_resolutions: Optional[list[int]] = None
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
    """DDNM / DDNM+ settings (``baseline=ddnm``, or a ``method=ddpm`` run as ``ckpt``); see configs/sample.yaml."""

    sigma_y: float = 0.0
    travel_length: int = 1
    travel_repeat: int = 1


BASELINES = ("ddnm",)  # zero-shot baselines (need prior= and task=); null: the checkpoint restores itself


@dataclass
class SampleConfig:
    """``i2sb-sample`` keys and types; described in configs/sample.yaml, which ``--help`` prints beside them."""

    ckpt: Optional[str] = None
    baseline: Optional[str] = None
    prior: Optional[str] = None
    task: Optional[TaskConfig] = None
    input: str = MISSING
    output: str = MISSING
    mask: Optional[str] = None
    nfe: Optional[int] = None
    prefer: str = "fidelity"
    ot_ode: Optional[bool] = None
    sampler: str = "ddpm"
    eta: Optional[float] = None
    clip_denoise: bool = False
    seed: int = 0
    batch_size: int = 4
    device: str = "auto"
    precision: str = "auto"
    n_samples: int = 1
    save_traj: bool = False
    traj_format: str = "gif"
    traj_frames: int = 10
    traj_dir: Optional[str] = None
    tile: Optional[int] = None
    tile_overlap: Optional[int] = None
    use_ema: bool = True
    skip_existing: Optional[bool] = None
    overwrite: bool = False
    format: str = "png"
    quality: Optional[int] = None
    keep_exif: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    upscale: Optional[bool] = None
    progress: bool = True
    model: ModelOverrides = field(default_factory=ModelOverrides)
    ddnm: DDNMConfig = field(default_factory=DDNMConfig)


def to_sample_config(cfg: Any) -> SampleConfig:
    """Validate ``cfg`` (dict / DictConfig / SampleConfig) -> :class:`SampleConfig`; one-line ``ConfigError``."""
    result = validated(SampleConfig, cfg)
    check_values(result)
    return result


_POSITIVE = ("batch_size", "n_samples", "traj_frames")
_NON_NEGATIVE = ("max_pixels",)


def check_values(cfg: SampleConfig) -> None:
    """Range checks that need no checkpoint. The sampling values (``nfe``, ``sampler``, ``eta``, ``ot_ode``,
    ``precision``, ``tile``, ``tile_overlap``) are checked once, against the loaded model, by
    :meth:`i2sb.restoration.Restorer.options` (its errors name the key)."""
    from .evaluation.record import PREFERENCES  # lazy: the schemas stay torch-free
    for key in _POSITIVE:
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"config key '{key}': must be positive, got {getattr(cfg, key)}")
    for key in _NON_NEGATIVE:
        if getattr(cfg, key) < 0:
            raise ConfigError(f"config key '{key}': must be >= 0 (0: no limit), got {getattr(cfg, key)}")
    for key, choices in (("traj_format", TRAJ_FORMATS), ("prefer", PREFERENCES)):
        if getattr(cfg, key) not in choices:
            raise ConfigError(f"config key '{key}': must be one of {', '.join(choices)}, got '{getattr(cfg, key)}'")
    check_outputs(cfg)
    check_baseline(cfg)


def check_outputs(cfg: SampleConfig) -> None:
    """The output keys: ``format``, its ``quality``, and ``overwrite`` against the old ``skip_existing``."""
    if cfg.format not in OUTPUT_FORMATS:
        raise ConfigError(f"config key 'format': must be one of {', '.join(OUTPUT_FORMATS)}, got '{cfg.format}'")
    if cfg.quality is not None and cfg.format == "png":
        raise ConfigError("config key 'quality': applies to format=jpg or format=webp (png is lossless)")
    if cfg.quality is not None and not 1 <= cfg.quality <= 100:
        raise ConfigError(f"config key 'quality': must be in 1..100, got {cfg.quality}")
    if cfg.skip_existing and cfg.overwrite:
        raise ConfigError("config key 'skip_existing': contradicts overwrite=true (existing outputs are skipped "
                          "by default; drop skip_existing)")


def check_baseline(cfg: SampleConfig) -> None:
    """``ckpt`` for a trained restorer, or ``baseline=ddnm`` with ``prior`` (and ``task``); DDNM ranges."""
    if cfg.baseline is not None and cfg.baseline not in BASELINES:
        raise ConfigError(f"config key 'baseline': must be null (the checkpoint's own) or one of {', '.join(BASELINES)}, "
                          f"got '{cfg.baseline}'")
    if cfg.baseline == "ddnm":
        if cfg.prior is None:
            raise ConfigError("config key 'prior': baseline=ddnm needs an unconditional prior (a method=ddpm run or "
                              "guided-diffusion's 256x256_diffusion_uncond.pt)")
        if cfg.ckpt is not None:
            raise ConfigError("config key 'ckpt': baseline=ddnm takes its network as prior=, not ckpt=")
    else:
        if cfg.ckpt is None:
            raise ConfigError("config key 'ckpt': Missing mandatory value: ckpt (a run directory, checkpoint file or "
                              "the authors' results/NAME/; or baseline=ddnm prior=...)")
        for key in ("prior", "task"):
            if getattr(cfg, key) is not None:
                raise ConfigError(f"config key '{key}': only used with baseline=ddnm")
    if cfg.task is not None:
        check_task_params(cfg.task)
    d = cfg.ddnm
    if d.sigma_y < 0:
        raise ConfigError(f"config key 'ddnm.sigma_y': must be >= 0, got {d.sigma_y}")
    for key in ("travel_length", "travel_repeat"):
        if getattr(d, key) < 1:
            raise ConfigError(f"config key 'ddnm.{key}': must be >= 1, got {getattr(d, key)}")
