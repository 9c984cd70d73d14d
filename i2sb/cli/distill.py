"""``i2sb-distill``: a Hydra application on ``configs/distill.yaml`` whose task function runs
:func:`i2sb.distill.loop.distill` in Hydra's output directory (the run directory), with ``i2sb-train``'s
conventions (:mod:`.hydra_app`: checks before anything is written, ``--help``, ``--cfg job``, sweeps)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..distill.schema import DistillConfig, to_distill_config
from ..utils.allocator import reuse_freed_memory
from .hydra_app import HydraTool, job_failed, output_dir, run
from .hydra_errors import key_message
from .jobs import JobPlace

PROG = "i2sb-distill"


def distill_job(cfg: DictConfig) -> None:
    """One distillation run (a plain top-level function: Hydra's submitit launcher pickles it)."""
    from ..distill.loop import DistillError, distill  # lazy: --help and --cfg do not import torch
    from ..training.stop import TrainingInterrupted  # lazy: as above

    cfg.run_dir = output_dir()
    reuse_freed_memory()
    try:
        distill(cfg)
    except TrainingInterrupted:  # Ctrl-C: latest.pt saved, the line saying so already printed
        raise SystemExit(130) from None
    except DistillError as err:
        job_failed(PROG, 1, str(err))
    except (ValueError, FileNotFoundError) as err:
        job_failed(PROG, 2, f"error: {key_message(err)}")


def check_inputs(cfg: DistillConfig, place: JobPlace) -> None:
    """What the run itself would refuse, checked before Hydra writes into the run directory: the device, the
    teacher (it loads and is a bridge model; its task bounds ``distill.steps``), the data folders (with images),
    and the run directory's ``latest.pt``, if any (it loads and is a student of this teacher and shape)."""
    from ..distill.data import build_split  # lazy: --help does not import torch
    from ..distill.loop import read_teacher  # lazy: as above
    from ..utils.device import resolve_device  # lazy: as above

    if not place.remote:
        resolve_device(cfg.device)
    if cfg.trainer.batch_size % place.world_size:
        raise ValueError(f"config key 'trainer.batch_size': {cfg.trainer.batch_size} is not divisible by "
                         f"world_size ({place.world_size})")
    try:
        spec = read_teacher(cfg)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"ckpt: {err}") from None
    for key in ("root", "val_root"):
        path = getattr(cfg.data, key)
        if path is not None and not Path(path).expanduser().is_dir():
            raise FileNotFoundError(f"data.{key}: {path}: no such folder")
    for split, key in (("train", "root"), ("val", "val_root" if cfg.data.val_root else "root")):
        if getattr(cfg.data, key) is None:
            continue
        try:  # a folder without images, too small for the crops or given unknown params fails here
            build_split(cfg.data, spec.task, cfg.data.image_size or spec.image_size, split)
        except ValueError as err:
            raise ValueError(f"data.{key}: {err}") from None
        except TypeError as err:  # the dataset's constructor refused a key of data.params
            raise ValueError(f"data.params: {err} (data={cfg.data.kind})") from None
    if cfg.resume and place.output_dir is not None:
        check_latest(cfg, spec, place.output_dir)


def check_latest(cfg: DistillConfig, spec: Any, run_dir: Path) -> None:
    """The run directory's ``latest.pt``, if any, loads and is a student of this teacher and shape."""
    from ..distill.trainer import check_distill_resumable, student_config  # lazy: --help does not import torch
    from ..restoration.checkpoints import LATEST  # lazy: as above
    from ..restoration.student import StudentInfo  # lazy: as above
    from ..training.resume import read_latest  # lazy: as above

    latest = run_dir / LATEST
    if latest.is_file():
        current = student_config(cfg, spec, cfg.data.image_size or spec.image_size)
        student = StudentInfo(cfg.distill.z_channels, cfg.distill.steps)
        check_distill_resumable(read_latest(latest, mmap=True), current, student, str(latest))


TOOL = HydraTool(PROG, "distill", distill_job, to_distill_config, check_inputs)


def main(argv: list[str] | None = None) -> None:
    """``i2sb-distill ckpt=TEACHER run_dir=OUT [data=...] [key=value ...]`` and Hydra's flags (``--help``)."""
    sys.exit(run(TOOL, sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":  # torchrun --nproc_per_node N -m i2sb.cli.distill ...
    main()
