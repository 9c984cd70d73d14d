"""The CUDA situations that crashed or chose wrongly, reproduced on a CPU with ``torch.cuda`` faked: bf16 on
V100 / T4, resuming on fewer GPUs than at save time, and one GPU bound per Slurm task."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed

sys.path.insert(0, str(Path(__file__).parent))
from helpers import tiny_config  # noqa: E402

from i2sb.config import to_train_config  # noqa: E402
from i2sb.core import precision  # noqa: E402
from i2sb.methods import task_degradation  # noqa: E402
from i2sb.training import dist as dist_module  # noqa: E402
from i2sb.training.dist import DistInfo, init_distributed  # noqa: E402
from i2sb.training.trainer import Trainer  # noqa: E402
from i2sb.utils.device import DeviceError, resolve_device  # noqa: E402

GPUS = {(7, 0): "Tesla V100-SXM2-16GB", (7, 5): "Tesla T4", (8, 0): "NVIDIA A100-SXM4-80GB",
        (9, 0): "NVIDIA H100 80GB HBM3"}


@pytest.fixture
def gpus(monkeypatch):
    """``gpus(count, capability)``: a machine with ``count`` CUDA GPUs of that compute capability, faked down to
    ``get_device_properties`` so that torch's own ``is_bf16_supported`` / ``get_device_capability`` run."""

    def set_up(count: int = 1, capability: tuple[int, int] = (8, 0)) -> None:
        props = SimpleNamespace(major=capability[0], minor=capability[1], name=GPUS[capability],
                                total_memory=16 * 2**30)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
        monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)  # sm70/75 emulate bf16
        monkeypatch.setattr(torch.version, "hip", None)

    return set_up


# ---------------------------------------------------------------------------- 1. precision=auto
@pytest.mark.parametrize("capability, expected", [((7, 0), "fp32"), ((7, 5), "fp32"), ((8, 0), "bf16"),
                                                  ((9, 0), "bf16")])
def test_auto_precision_is_bf16_only_where_the_gpu_has_bf16_units(gpus, capability, expected):
    gpus(1, capability)
    assert torch.cuda.is_bf16_supported()  # torch's default answer counts emulation: yes on every one of them
    assert precision.resolve_precision("auto", "cuda") == expected
    assert precision.resolve_precision("auto", torch.device("cuda", 0)) == expected
    assert precision.resolve_precision("bf16", "cuda") == "bf16"  # asked for explicitly: given


def test_auto_precision_asks_the_device_itself_not_the_current_one(gpus, monkeypatch):
    gpus(2, (8, 0))
    old = SimpleNamespace(major=7, minor=0, name=GPUS[(7, 0)], total_memory=16 * 2**30)
    new = SimpleNamespace(major=8, minor=0, name=GPUS[(8, 0)], total_memory=80 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: old if torch.device(device).index == 1 else new)
    assert precision.resolve_precision("auto", "cuda:0") == "bf16"
    assert precision.resolve_precision("auto", "cuda:1") == "fp32"


def test_a_machine_without_cuda_never_resolves_cuda_bf16(gpus):
    gpus(0)
    assert not precision.native_bf16("cuda")


# ---------------------------------------------------------------------------- 2. resume on fewer GPUs
def test_a_checkpoint_with_eight_gpus_rng_states_resumes_on_one(tmp_path, gpus, monkeypatch):
    """Saved on an 8-GPU node (the old format held one CUDA RNG state per visible GPU), resumed where one GPU is
    visible: nothing tries to restore eight states, and the run continues exactly as the uninterrupted one."""
    cfg = to_train_config(tiny_config(tmp_path, trainer={"batch_size": 2, "microbatch": 2}))
    cpu = DistInfo(device=torch.device("cpu"))
    deg = task_degradation(cfg.task, 16)
    batch = [{"x0": torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(k)) * 2 - 1} for k in range(2)]
    first = Trainer(cfg, cpu)
    first.train_step(batch[:1], deg)
    state = copy.deepcopy(first.state_dict())  # the live tensors move on with the next step
    assert "cuda" not in state["rng"]  # nothing per GPU is saved any more
    state["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8) for _ in range(8)]  # as older versions saved
    expected = first.train_step(batch[1:], deg)

    gpus(1, (8, 0))

    def set_rng_state(new_state, device="cuda"):  # what torch does with a GPU this process cannot see
        if torch.device(device).index not in (None, 0):
            raise IndexError("list index out of range")

    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_rng_state)
    resumed = Trainer(cfg, cpu)
    resumed.load_state_dict(state, "latest.pt")
    assert resumed.step == 1
    monkeypatch.undo()  # the step itself runs on the CPU
    assert torch.equal(resumed.train_step(batch[1:], deg), expected)


# ---------------------------------------------------------------------------- 3. one GPU bound per task
SRUN = {"SLURM_STEP_NUM_TASKS": "4", "SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "3",
        "SLURM_JOB_ID": "77", "SLURM_STEP_NODELIST": "gpu001"}


@pytest.fixture
def srun_rank3(monkeypatch):
    """The environment of rank 3 of an ``srun`` step on one node; the process group is faked."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SUBMITIT_EXECUTOR", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in SRUN.items():
        monkeypatch.setenv(name, value)
    joined = {}
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: joined.setdefault("device", torch.device(device)))
    monkeypatch.setattr(dist_module, "rendezvous", lambda launch, timeout: "store")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group",
                        lambda backend, **kw: joined.update(backend=backend, **kw))
    return joined


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_one_gpu_bound_per_task_is_cuda0_on_every_rank(gpus, srun_rank3, device):
    """``srun --gpus-per-task=1`` (or cgroups): rank 3 sees one GPU, its own, as cuda:0."""
    gpus(1, (8, 0))
    info = init_distributed(device)
    assert (info.rank, info.local_rank, info.world_size) == (3, 3, 4)
    assert info.device == torch.device("cuda", 0) == srun_rank3["device"]
    assert srun_rank3["backend"] == "nccl" and srun_rank3["rank"] == 3


def test_every_gpu_visible_to_every_task_is_cuda_local_rank(gpus, srun_rank3):
    gpus(8, (8, 0))
    assert init_distributed("cuda").device == torch.device("cuda", 3)


def test_fewer_gpus_than_local_ranks_is_one_line(gpus, srun_rank3):
    gpus(2, (8, 0))
    with pytest.raises(DeviceError) as err:
        init_distributed("cuda")
    message = str(err.value)
    assert "\n" not in message and "local rank 3" in message and "sees 2 CUDA devices" in message
    assert "gpus-per-task=1" in message


def test_an_explicit_gpu_index_is_kept_or_refused(gpus):
    gpus(1, (8, 0))
    assert resolve_device("cuda:0", local_rank=3) == torch.device("cuda", 0)
    with pytest.raises(DeviceError, match="this machine has 1 CUDA device"):
        resolve_device("cuda:3", local_rank=0)
