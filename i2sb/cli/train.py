"""``i2sb-train``: a Hydra application on ``configs/train.yaml`` whose task function runs
:func:`i2sb.training.loop.train` in Hydra's output directory (the run directory)."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..config import ConfigError, TrainConfig, to_container, to_train_config
from ..utils.allocator import reuse_freed_memory
from ..utils.file_formats import LATEST
from .compose import group_options
from .hydra_app import HydraTool, job_failed, output_dir, run
from .jobs import JobPlace
from .hydra_errors import key_message

PROG = "i2sb-train"
ADM_HINT = "i2sb-download adm puts guided-diffusion's 256x256_diffusion_uncond.pt into data/"


def train_job(cfg: DictConfig) -> None:
    """One training run (a plain top-level function: Hydra's submitit launcher pickles it). ``run_dir`` is
    Hydra's output directory, so ``run_dir=``, ``hydra.run.dir=`` and a sweep's job directories agree."""
    from ..training.loop import TrainingError, train  # lazy: --help and --cfg do not import torch
    from ..training.stop import TrainingInterrupted  # lazy: as above

    cfg.run_dir = output_dir()
    reuse_freed_memory()  # ~10-20 % faster CPU steps (i2sb.utils.allocator)
    try:
        train(cfg)
    except TrainingInterrupted:  # Ctrl-C: latest.pt saved, the line saying so already printed
        raise SystemExit(130) from None
    except TrainingError as err:
        job_failed(PROG, 1, str(err))
    except (ValueError, FileNotFoundError) as err:
        job_failed(PROG, 2, f"error: {key_message(err)}")


def validate(cfg: DictConfig) -> TrainConfig:
    """:func:`~i2sb.config.to_train_config`, with what to write when no task is chosen."""
    if OmegaConf.is_missing(cfg.task, "name"):
        raise ConfigError(f"task: missing; add task=<name>, one of: {', '.join(group_options('task'))}; "
                          f"or experiment=<name>, one of: {', '.join(group_options('experiment'))}")
    return to_train_config(cfg)


def check_inputs(cfg: TrainConfig, place: JobPlace) -> None:
    """What the run itself would refuse, checked before Hydra creates or writes into the run directory: the device
    is here (unless a Slurm launcher runs the job elsewhere), the batch splits over the job's processes, the files
    and folders the run reads exist (a data folder holds at least one image), and the run directory's
    ``latest.pt``, if any, loads and was trained with this network, task and method (a resume that would be
    refused leaves the run's record untouched)."""
    from ..training.resume import check_resume  # lazy: --help does not import torch
    from ..training.trainer import micro_steps  # lazy: as above
    from ..utils.device import resolve_device  # lazy: as above
    from ..utils.listing import extensions_text, has_images  # lazy: as above

    if not place.remote:
        resolve_device(cfg.device)  # DeviceError (a ValueError): one line, exit 2
    micro_steps(cfg, place.world_size)
    if cfg.data.kind == "degraded":
        raise ValueError("data.kind: degraded photos without clean ones are i2sb-distill's data; i2sb-train "
                         "learns from clean images (data=imagefolder, paired or demo)")
    folders = {"data.root": cfg.data.root, "data.val_root": cfg.data.val_root} \
        if cfg.data.kind in ("imagefolder", "paired") else {}
    files = {"model.init": cfg.model.init, "task.params.mask_file": cfg.task.params.get("mask_file")}
    for key, path in folders.items():
        if path is not None and not Path(path).expanduser().is_dir():
            raise FileNotFoundError(f"{key}: {path}: no such folder")
        if path is not None and not has_images(Path(path).expanduser()):
            raise ValueError(f"{key}: {path}: no images found (supported extensions: {extensions_text()})")
    for key, path in files.items():
        if path is not None and not Path(path).expanduser().is_file():
            hint = f" ({ADM_HINT}; or set model.init=PATH)" if key == "model.init" else ""
            raise FileNotFoundError(f"{key}: {path}: no such file{hint}")
    if cfg.resume and place.output_dir is not None:
        check_resume(to_container(cfg), place.output_dir / LATEST)


TOOL = HydraTool(PROG, "train", train_job, validate, check_inputs)


def main(argv: list[str] | None = None) -> None:
    """``i2sb-train task=jpeg5 [group=option ...] [key=value ...]`` and Hydra's flags (``--help``)."""
    sys.exit(run(TOOL, sys.argv[1:] if argv is None else argv))
