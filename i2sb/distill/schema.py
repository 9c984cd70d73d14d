"""The configuration of ``i2sb-distill`` (:class:`DistillConfig`), validated like ``i2sb-train``'s; torch-free, so
``i2sb-distill --help`` and Hydra's composition stay fast. The teacher decides the task, the bridge and the network;
this config says where the teacher and the data are and how to distil (IBMD; ``i2sb/distill/README.md``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from ..config import ConfigError, LoggingConfig, TrainerConfig, validated

DATA_KINDS = ("demo", "imagefolder", "degraded")  # clean photos degraded by the teacher's task, or degraded ones
WEIGHTINGS = ("eps", "x0")  # i2sb.distill.objective.WEIGHTINGS (kept torch-free here)
PRECISIONS = ("auto", "fp32", "bf16")  # no fp16: the two alternating optimisers run without a GradScaler


@dataclass
class DistillData:
    """Where the degraded inputs come from: ``demo`` / ``imagefolder`` (clean photos degraded on the fly by the
    teacher's task; validation against the clean images) or ``degraded`` (a folder of degraded photos, no clean
    counterparts; validation against the teacher's many-step restorations)."""

    kind: str = "demo"
    root: Optional[str] = None  # imagefolder: clean images; degraded: degraded images (SR: the low-resolution photos)
    val_root: Optional[str] = None  # validation images of the same kind (null: root; demo: its held-out photos)
    image_size: Optional[int] = None  # crops of this side (null: the teacher's training size)
    num_workers: int = 0
    pin_memory: bool = False
    crop: str = "native"  # imagefolder: native | resize (as i2sb-train); demo and degraded: native only
    params: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the dataset


@dataclass
class DistillSettings:
    """IBMD's choices (Gushchin et al., ICML 2025, Algorithm 1 and Table 7)."""

    steps: int = 1  # K: student evaluations per restoration (its NFE), at the teacher's NFE-K steps
    z_channels: int = 3  # noise channels appended to the network's input (0: no noise, e.g. inpainting)
    z_init: float = 0.1  # the new input weights ~ N(0, (z_init * std(old weights))^2)
    aux_steps: int = 5  # auxiliary (bridge-matching) updates per student update (IBMD Table 7: 5)
    aux_lr: Optional[float] = None  # the auxiliary model's learning rate (null: trainer.lr, as IBMD)
    weighting: str = "eps"  # eps: w(n) = 1/std_fwd[n]^2 (the teacher's Eq. 12 loss) | x0: w = 1
    reference_nfe: int = 100  # data=degraded: the teacher's NFE whose restorations validation compares with


@dataclass
class DistillConfig:
    ckpt: str = MISSING  # the teacher: a run directory, a checkpoint file, an exported folder, results/NAME/
    use_ema: bool = True  # the teacher's EMA weights (false: its raw weights)
    data: DistillData = field(default_factory=DistillData)
    distill: DistillSettings = field(default_factory=DistillSettings)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    run_dir: str = MISSING
    seed: int = 0
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
    resume: bool = True  # continue from run_dir/latest.pt when it exists


def to_distill_config(cfg: Any) -> DistillConfig:
    """Validate ``cfg`` (dict / DictConfig / DistillConfig) against :class:`DistillConfig`; one-line ConfigError."""
    result = validated(DistillConfig, cfg)
    check_values(result)
    return result


def _fail(key: str, reason: str) -> ConfigError:
    return ConfigError(f"config key '{key}': {reason}")


def check_values(cfg: DistillConfig) -> None:
    """Range checks that need no teacher (its task bounds ``distill.steps`` once it is read)."""
    d, t, data = cfg.distill, cfg.trainer, cfg.data
    if data.kind not in DATA_KINDS:
        raise _fail("data.kind", f"must be one of {', '.join(DATA_KINDS)}, got '{data.kind}'")
    if data.kind in ("imagefolder", "degraded") and not data.root:
        raise _fail("data.root", f"required for data.kind={data.kind} (the folder of "
                                 f"{'degraded' if data.kind == 'degraded' else 'clean'} images)")
    if data.kind != "imagefolder" and data.crop != "native":
        raise _fail("data.crop", f"data.kind={data.kind} gives native-resolution patches only")
    if data.image_size is not None and data.image_size < 1:
        raise _fail("data.image_size", f"must be positive (null: the teacher's), got {data.image_size}")
    for key in ("steps", "aux_steps", "reference_nfe"):
        if getattr(d, key) < (0 if key == "aux_steps" else 1):
            raise _fail(f"distill.{key}", f"must be {'>= 0' if key == 'aux_steps' else 'positive'}, "
                                          f"got {getattr(d, key)}")
    if d.z_channels < 0 or d.z_init < 0:
        raise _fail("distill.z_channels" if d.z_channels < 0 else "distill.z_init", "must be >= 0")
    if d.weighting not in WEIGHTINGS:
        raise _fail("distill.weighting", f"must be one of {', '.join(WEIGHTINGS)}, got '{d.weighting}'")
    if d.aux_lr is not None and d.aux_lr <= 0:
        raise _fail("distill.aux_lr", f"must be positive (null: trainer.lr), got {d.aux_lr}")
    if t.precision not in PRECISIONS:
        raise _fail("trainer.precision", f"must be one of {', '.join(PRECISIONS)}, got '{t.precision}'")
    for key in ("batch_size", "max_steps", "lr_step", "ckpt_every", "eval_every", "log_every", "eval_batch"):
        if getattr(t, key) <= 0:
            raise _fail(f"trainer.{key}", f"must be positive, got {getattr(t, key)}")
    if not 0.0 <= t.ema < 1.0:
        raise _fail("trainer.ema", f"must be in [0, 1), got {t.ema}")
