"""The switches for speed on GPUs, each computing what the plain path computes: the EMA update in groups, DDP's
buffer and bucket flags, batched tiles, channels-last restoration, cuDNN / deterministic flags and
``trainer.microbatch=auto`` (no timing here: scripts/bench.py, scripts/gpu_check.sh)."""

from __future__ import annotations

import copy
import math
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from helpers import bridge_restorer, tiny_config  # noqa: E402
from test_pins import images, tiny_unet  # noqa: E402

from i2sb.config import ConfigError, to_train_config  # noqa: E402
from i2sb.methods import task_degradation  # noqa: E402
from i2sb.restoration.tiling import TiledDenoiser  # noqa: E402
from i2sb.training import ema as ema_module  # noqa: E402
from i2sb.training.dist import DistInfo  # noqa: E402
from i2sb.training.ema import EMA, chunks  # noqa: E402
from i2sb.training.microbatch import choose_microbatch, divisors, largest_fitting, probe_fits  # noqa: E402
from i2sb.training.trainer import Trainer  # noqa: E402
from i2sb.utils.device import backend_flags  # noqa: E402

CPU = DistInfo(device=torch.device("cpu"))


# ---------------------------------------------------------------------------- EMA
def test_the_grouped_ema_update_is_torch_emas_formula_bit_for_bit(monkeypatch):
    model = tiny_unet()
    whole, grouped = EMA(model, 0.9, chunk_bytes=None), EMA(model, 0.9, chunk_bytes=64 * 1024)
    reference = [p.detach().clone() for p in model.parameters()]
    sizes = {"whole": [], "grouped": []}
    foreach_sub, current = torch._foreach_sub, ["whole"]
    monkeypatch.setattr(torch, "_foreach_sub", lambda a, b: sizes[current[0]].append(sum(t.numel() * 4 for t in a))
                        or foreach_sub(a, b))
    g = torch.Generator().manual_seed(0)
    for k in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        skip = torch.tensor(k == 2)
        for current[0], ema in (("whole", whole), ("grouped", grouped)):
            ema.update(model, skip)
        if k != 2:  # torch_ema: s <- s - (1 - d) (s - p), d = min(decay, (1 + n) / (10 + n))
            weight = 1 - min(0.9, (1 + k + 1) / (10 + k + 1))
            reference = [s - (s - p.detach()) * weight for s, p in zip(reference, model.parameters())]
    for a, b, r in zip(whole.module.parameters(), grouped.module.parameters(), reference):
        assert torch.equal(a, b) and torch.equal(a, r)
    largest = max(p.numel() * 4 for p in model.parameters())
    total = sum(p.numel() * 4 for p in model.parameters())
    assert max(sizes["whole"]) == total and max(sizes["grouped"]) <= max(64 * 1024, largest) < total


def test_chunks_cover_every_tensor_once_in_order():
    tensors = [torch.zeros(n) for n in (10, 10, 30, 5, 5, 100, 1)]
    groups = chunks(tensors, 80)
    assert [i for g in groups for i in range(len(tensors))[g]] == list(range(len(tensors)))
    assert all(sum(t.numel() * 4 for t in tensors[g]) <= 80 or g.stop - g.start == 1 for g in groups)
    assert chunks(tensors, None) == [slice(0, 7)] and ema_module.CHUNK_BYTES == 64 * 2**20


# ---------------------------------------------------------------------------- DDP flags
@pytest.fixture
def one_process_group():
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("broadcast, bucket_view", [(False, True), (True, False)])
def test_ddp_flags_reach_ddp_and_the_buffers_never_change(tmp_path, one_process_group, broadcast, bucket_view):
    cfg = to_train_config(tiny_config(tmp_path, trainer={"batch_size": 4, "microbatch": 2,
                                                         "ddp_broadcast_buffers": broadcast,
                                                         "ddp_bucket_view": bucket_view}))
    trainer = Trainer(cfg, DistInfo(world_size=2, device=torch.device("cpu")))  # a group of one stands for two
    sync = getattr(trainer.ddp, "forward_sync_buffers", getattr(trainer.ddp, "broadcast_buffers", None))
    assert sync is broadcast and trainer.ddp.gradient_as_bucket_view is bucket_view
    assert not list(trainer.ddp.named_buffers())  # DDP wraps the U-Net: no buffer to broadcast
    levels = trainer.denoiser.noise_levels.clone()  # the schedule's constant lives in the denoiser around it
    trainer.train_step([{"x0": images(2, 16, 16, 0)}], task_degradation(cfg.task, 16))
    assert trainer.denoiser.net is trainer.ddp and torch.equal(trainer.denoiser.noise_levels, levels)


# ---------------------------------------------------------------------------- batched tiles
class Pointwise(torch.nn.Module):
    """A network whose every output pixel depends on its input pixel only (batch-size invariant bit for bit);
    counts its calls and their batch sizes."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, xt, step, cond=None):
        self.calls.append(xt.shape[0])
        out = torch.tanh(0.7 * xt) + 0.001 * step.view(-1, 1, 1, 1)
        return out if cond is None else out + 0.5 * cond


@pytest.mark.parametrize("batch, tile_batch, calls", [(1, None, [1] * 6), (1, 1, [1] * 6), (1, 4, [4, 2]),
                                                      (2, 8, [8, 4]), (2, 3, [2] * 6), (1, 100, [6])])
def test_batched_tiles_blend_the_same_numbers_as_one_tile_at_a_time(batch, tile_batch, calls):
    x, cond = images(batch, 24, 36, 0), images(batch, 24, 36, 1)
    step = torch.full((batch,), 40)
    sequential, grouped = Pointwise(), Pointwise()
    ref = TiledDenoiser(sequential, 16, 4, tile_batch=1)(x, step, cond)
    out = TiledDenoiser(grouped, 16, 4, tile_batch=tile_batch)(x, step, cond)
    assert torch.equal(out, ref)
    assert grouped.calls == calls and len(sequential.calls) == 6  # 2 x 3 tiles


def test_batched_tiles_through_a_unet_equal_one_tile_at_a_time_up_to_its_rounding():
    """The U-Net's CPU kernels for a batch of one are not those for larger batches (the last bits move), which
    is why tiles go one at a time on the CPU by default; grouping them changes nothing else."""
    restorer = bridge_restorer(tiny_unet())
    x = images(1, 24, 24, 0)
    with torch.no_grad():
        default = restorer.restore(x, nfe=2, generator=torch.Generator().manual_seed(0), tile=16)
        sequential = restorer.restore(x, nfe=2, generator=torch.Generator().manual_seed(0), tile=16, tile_batch=1)
        grouped = restorer.restore(x, nfe=2, generator=torch.Generator().manual_seed(0), tile=16, tile_batch=8)
    assert torch.equal(default, sequential)
    torch.testing.assert_close(grouped, sequential, rtol=0, atol=0.05)


def test_tile_batch_is_checked():
    restorer = bridge_restorer(tiny_unet())
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="tile_batch"):
            restorer.options(tile_batch=bad)


# ---------------------------------------------------------------------------- channels-last restoration
def test_channels_last_restoration_converts_the_weights_and_restores_the_same_image():
    restorer = bridge_restorer(tiny_unet())
    x = images(2, 16, 16, 0)
    with torch.no_grad():
        ref = restorer.restore(x, nfe=2, generator=torch.Generator().manual_seed(0))
        out = restorer.restore(x, nfe=2, generator=torch.Generator().manual_seed(0), channels_last=True)
    convs = [m.weight for m in restorer.denoiser.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------- backend flags
def test_backend_flags_are_set_for_the_run_and_restored():
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32,
              torch.are_deterministic_algorithms_enabled(), os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    with backend_flags(torch.device("cpu"), benchmark=True):
        assert not cudnn.benchmark  # cuDNN is CUDA's
    with backend_flags(torch.device("cuda", 0), benchmark=True):
        assert cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    with backend_flags(torch.device("cuda", 0), benchmark=True, deterministic=True):
        assert not cudnn.benchmark and cudnn.deterministic and not cudnn.allow_tf32 and not matmul.allow_tf32
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
    after = (cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32,
             torch.are_deterministic_algorithms_enabled(), os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    assert after == before


# ---------------------------------------------------------------------------- microbatch=auto
def test_largest_fitting_is_a_binary_search_over_the_divisors():
    assert divisors(12) == [1, 2, 3, 4, 6, 12] and divisors(1) == [1]
    for limit in range(0, 14):
        tried = []
        chosen = largest_fitting(divisors(12), lambda m: tried.append(m) or m <= limit)
        assert chosen == max([d for d in divisors(12) if d <= limit], default=1)
        assert len(tried) <= math.ceil(math.log2(6))


@pytest.mark.parametrize("batch, expected", [(32, 8), (12, 6), (4, 4), (7, 7), (9, 3)])
def test_auto_microbatch_off_cuda_is_the_largest_divisor_up_to_8(tmp_path, batch, expected):
    cfg = to_train_config(tiny_config(tmp_path, trainer={"batch_size": batch, "microbatch": "auto"}))
    trainer = Trainer(cfg, CPU)
    assert trainer.cfg.trainer.microbatch == expected and trainer.n_micro * expected == batch
    assert trainer.cfg.trainer.batch_size == batch  # the global batch, hence the loss, unchanged


def test_the_probe_finds_the_largest_microbatch_that_fits_and_leaves_nothing_behind(tmp_path):
    """The CUDA probe, run on the CPU with a network that runs out of memory above 4 images."""
    cfg = to_train_config(tiny_config(tmp_path, trainer={"batch_size": 12, "microbatch": "auto"}))
    trainer = Trainer(cfg, CPU)
    weights = copy.deepcopy(trainer.unet.state_dict())

    def out_of_memory_above_4(module, args):
        if args[0].shape[0] > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (faked)")

    hook = trainer.unet.register_forward_pre_hook(out_of_memory_above_4)
    tried = []
    chosen = choose_microbatch(trainer, 12, fits=lambda m: tried.append(m) or probe_fits(trainer, m))
    hook.remove()
    assert chosen == 4 and 12 not in tried[1:]
    assert all(p.grad is None for p in trainer.unet.parameters())
    for key, value in trainer.unet.state_dict().items():
        assert torch.equal(value, weights[key]), key


@pytest.mark.parametrize("value", ["big", 0, -2, 1.5])
def test_microbatch_must_be_a_positive_integer_or_auto(tmp_path, value):
    with pytest.raises(ConfigError, match="trainer.microbatch"):
        to_train_config(tiny_config(tmp_path, trainer={"microbatch": value}))
