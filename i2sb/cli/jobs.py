"""What is known of a job before Hydra starts it -- its output directory (the run directory), how many processes
train together, whether its launcher runs it on other machines -- and the launcher itself (a Slurm launcher needs
Slurm); ``--cfg``'s printout of a config that did not pass the checks, with its missing values marked."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from ..training.launchers import detect_launch

SLURM_COMMANDS = ("sbatch", "srun")  # what submitit's Slurm executor runs
_MISSING_LINE = re.compile(r"^(\s*(?:- )?[^\s#][^:\n]*: )\?\?\?$", re.MULTILINE)


@dataclass(frozen=True)
class JobPlace:
    """Where a job will run, as far as the command line tells before Hydra starts it."""

    output_dir: Path | None  # Hydra's output directory: the run directory (None: only the launcher will know)
    world_size: int = 1  # processes that train together: torchrun's or srun's, or the submitit launcher's tasks
    remote: bool = False  # a Slurm launcher runs it on other machines: this machine's devices do not count


def split_hydra(cfg: DictConfig) -> tuple[DictConfig, DictConfig]:
    """A config composed with its ``hydra`` node -> (the job's config, a copy of the ``hydra`` node)."""
    hydra = OmegaConf.create({"hydra": OmegaConf.to_container(cfg.hydra)}).hydra
    job = cfg.copy()
    with read_write(job), open_dict(job):
        del job["hydra"]
    return job, hydra


def job_place(cfg: DictConfig, multirun: bool, env: Mapping[str, str] | None = None) -> JobPlace:
    """The :class:`JobPlace` of a job composed with its ``hydra`` node (``cfg.hydra``): ``hydra.run.dir``, or for
    a sweep's job ``hydra.sweep.dir/hydra.sweep.subdir``; the launch environment's world size (torchrun, srun),
    or a submitit launcher's ``nodes x tasks_per_node``."""
    launcher = cfg.hydra.get("launcher") or {}
    tasks = launcher.get("tasks_per_node") if multirun else None
    if tasks is not None:
        world_size = int(tasks) * int(launcher.get("nodes") or 1)
        remote = str(launcher.get("_target_", "")).endswith("SlurmLauncher")
    else:
        world_size, remote = detect_launch(env).world_size, False
    try:
        output = Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir) if multirun else Path(cfg.hydra.run.dir)
    except OmegaConfBaseException:  # e.g. a directory named after ${hydra.job.num}, which the launcher sets
        output = None
    return JobPlace(output, world_size, remote)


def check_launcher(cfg: DictConfig, multirun: bool) -> None:
    """A launcher other than ``basic`` runs the jobs of a sweep (``-m``); a Slurm launcher needs Slurm's commands
    here. ``ValueError`` (one line: what is missing, what to do) otherwise."""
    choice = cfg.hydra.runtime.choices.get("hydra/launcher")
    if choice in (None, "basic"):
        return
    if not multirun:
        raise ValueError(f"hydra/launcher={choice}: a launcher runs the jobs of a sweep; add -m (--multirun), "
                         f"or leave hydra/launcher out to train here")
    target = str(cfg.hydra.launcher.get("_target_", ""))
    missing = [name for name in SLURM_COMMANDS if shutil.which(name) is None]
    if target.endswith("SlurmLauncher") and missing:
        raise ValueError(f"hydra/launcher={choice}: Slurm's {' and '.join(missing)} not found on this machine; "
                         f"submit from a Slurm login node, or use hydra/launcher=submitit_local to run the jobs here")


def render(cfg: DictConfig, kind: str, package: str | None = None, resolve: bool = False) -> str:
    """What ``--cfg KIND [--package P] [--resolve]`` prints for ``cfg`` (composed with its ``hydra`` node), as
    Hydra prints it, with ``# missing`` after every value still ``???``; interpolations that do not resolve
    yet (they point at a missing value) are left as written."""
    job, hydra = split_hydra(cfg)
    shown = job if kind == "job" else OmegaConf.create({"hydra": hydra}) if kind == "hydra" else cfg.copy()
    if package not in (None, "", "_global_"):
        shown = OmegaConf.select(shown, package)
    header = f"# @package {package}\n" if package not in (None, "", "_global_") else ""
    if not isinstance(shown, DictConfig):
        return f"{shown}\n"
    if resolve:
        _resolve_what_resolves(shown)
    return header + _MISSING_LINE.sub(r"\1???  # missing", OmegaConf.to_yaml(shown))


def _resolve_what_resolves(node: DictConfig) -> None:
    with read_write(node), open_dict(node):
        for key in list(node.keys()):
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
                _resolve_what_resolves(child)
            elif OmegaConf.is_interpolation(node, key):
                try:
                    node[key] = node[key]
                except OmegaConfBaseException:
                    pass
