"""Where this process sits in a distributed job, read from its launcher's environment.

Four launchers are recognised, in this order:

* ``torchrun`` (or any launcher exporting ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` /
  ``MASTER_PORT``);
* submitit (``SUBMITIT_EXECUTOR`` set): ``submitit.JobEnvironment()`` gives the ranks and the hosts;
* plain ``srun`` (``SLURM_STEP_NUM_TASKS`` set, which only srun does): ``SLURM_PROCID`` / ``SLURM_LOCALID``,
  the first host of the step's node list as the master, a port derived from the job id;
* nothing: one process.

An incomplete environment -- ``SLURM_NTASKS=4`` in a batch script that did not use srun, ``WORLD_SIZE=2``
without ``MASTER_ADDR`` -- is a one-line :class:`LaunchError` naming the missing variable and the fix.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass
from typing import Mapping

PORT_BASE, PORT_SPAN = 10000, 20000  # derived ports stay below Linux's ephemeral range (32768+)


class LaunchError(ValueError):
    """The launch environment is incomplete, or the processes could not meet; the message says how to fix it."""


@dataclass(frozen=True)
class Launch:
    """This process's place in the job: ``rank`` of ``world_size`` (``local_rank`` on its node), the
    rendezvous address (None for one process) and the launcher's name."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None
    launcher: str = "single"


def detect_launch(env: Mapping[str, str] | None = None) -> Launch:
    """The :class:`Launch` described by ``env`` (default ``os.environ``)."""
    env = os.environ if env is None else env
    if _set(env, "RANK") or _set(env, "WORLD_SIZE"):
        return from_torchrun_env(env)
    if _set(env, "SUBMITIT_EXECUTOR"):
        return from_submitit(env)
    if _set(env, "SLURM_STEP_NUM_TASKS"):
        return from_srun(env)
    ntasks = _int(env, "SLURM_NTASKS", 1)
    if ntasks > 1:
        raise LaunchError(
            f"SLURM_NTASKS={ntasks} but SLURM_STEP_NUM_TASKS/SLURM_PROCID are not set: this process was not "
            f"started by srun; launch one task per GPU with `srun python -m i2sb.train ...` (or one torchrun "
            f"per node with `srun torchrun ...`)")
    return Launch()


def from_torchrun_env(env: Mapping[str, str]) -> Launch:
    """``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT`` (torchrun sets them all)."""
    launcher = "torchrun" if _set(env, "TORCHELASTIC_RUN_ID") else "env"
    for name in ("RANK", "WORLD_SIZE"):
        if not _set(env, name):
            raise LaunchError(f"{_other(name)} is set but {name} is not: launch with torchrun, or export RANK, "
                              f"WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT on every process")
    world_size = _int(env, "WORLD_SIZE", 1)
    launch = Launch(_int(env, "RANK", 0), world_size, _int(env, "LOCAL_RANK", 0), launcher=launcher)
    if world_size == 1:
        return launch
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not _set(env, name):
            raise LaunchError(f"WORLD_SIZE={world_size} but {name} is not set: launch with torchrun (which sets it), "
                              f"or export MASTER_ADDR and MASTER_PORT (the rank-0 host and a free port)")
    return Launch(launch.rank, world_size, launch.local_rank, env["MASTER_ADDR"], _int(env, "MASTER_PORT", 0),
                  launcher)


def from_submitit(env: Mapping[str, str]) -> Launch:
    """The ranks and hosts of the submitit job this process runs in (``MASTER_ADDR``/``MASTER_PORT`` override)."""
    try:
        import submitit  # optional extra, only inside submitit jobs
    except ImportError:
        raise LaunchError("SUBMITIT_EXECUTOR is set but submitit is not installed: pip install submitit") from None
    job = submitit.JobEnvironment()
    if job.num_tasks == 1:
        return Launch(launcher="submitit")
    addr = env.get("MASTER_ADDR") or job.hostnames[0]
    port = _int(env, "MASTER_PORT", 0) or port_from_job_id(str(job.job_id))
    return Launch(job.global_rank, job.num_tasks, job.local_rank, addr, port, "submitit")


def from_srun(env: Mapping[str, str]) -> Launch:
    """One task per device started by ``srun``: Slurm's task ids, the step's first node as the master."""
    world_size = _int(env, "SLURM_STEP_NUM_TASKS", 1)
    for name in ("SLURM_PROCID", "SLURM_LOCALID"):
        if not _set(env, name):
            raise LaunchError(f"SLURM_STEP_NUM_TASKS is set but {name} is not: start the tasks with srun")
    launch = Launch(_int(env, "SLURM_PROCID", 0), world_size, _int(env, "SLURM_LOCALID", 0), launcher="srun")
    if world_size == 1:
        return launch
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not (nodelist or _set(env, "MASTER_ADDR")):
        raise LaunchError("srun task without SLURM_STEP_NODELIST/SLURM_JOB_NODELIST: export MASTER_ADDR")
    if not (_set(env, "SLURM_JOB_ID") or _set(env, "MASTER_PORT")):
        raise LaunchError("srun task without SLURM_JOB_ID: export MASTER_PORT")
    addr = env.get("MASTER_ADDR") or first_host(nodelist or "")
    port = _int(env, "MASTER_PORT", 0) or port_from_job_id(env["SLURM_JOB_ID"])
    return Launch(launch.rank, world_size, launch.local_rank, addr, port, "srun")


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list: ``gpu[003-005,9],cpu1`` -> ``gpu003``, ``a[1-2]-b[07-08]`` -> ``a1-b07``
    (what ``scontrol show hostnames`` prints first)."""
    head = re.match(r"(?:[^,\[]|\[[^\]]*\])+", nodelist.strip())
    if head is None:
        raise LaunchError(f"cannot read the Slurm node list {nodelist!r}: export MASTER_ADDR")
    return re.sub(r"\[([^\]\-,]+)[^\]]*\]", r"\1", head.group(0))


def port_from_job_id(job_id: str) -> int:
    """A port every task of one job derives alike (``PORT_BASE`` + crc32(job id) mod ``PORT_SPAN``)."""
    return PORT_BASE + zlib.crc32(job_id.encode()) % PORT_SPAN


def _set(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "") != ""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise LaunchError(f"{name}={value!r} is not an integer") from None


def _other(name: str) -> str:
    return "WORLD_SIZE" if name == "RANK" else "RANK"
