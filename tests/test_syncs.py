"""Host-device traffic per training step and per sampler step, counted on the CPU at the dispatcher.

On CUDA the host waits for the GPU whenever a tensor is read into Python (``item``, ``bool``, ``float``,
``int``: all ``aten._local_scalar_dense``), and copies to the GPU whenever a tensor is built from Python data
(``aten.lift_fresh``) or a host-side table is moved there (the bridge's schedule and the tile windows are
float64 tables on the host; every tensor on the device of an fp32 run is float32, int64 or bool, so a copy of a
float64 tensor is such a move). :class:`Traffic` counts these three events; they happen nowhere in a training
step or a sampler step (logging excepted), and once per restoration with tiling (the windows). A restoration also
reads one value at its edge, before any work: whether the input is in [-1, 1] units (``Restorer``'s range check, on
the input's own device, so none from a GPU for images on the CPU); it is counted apart (``input check``).
"""

from __future__ import annotations

import sys
import traceback
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).parent))
from helpers import bridge_restorer, tiny_config  # noqa: E402
from test_pins import hole, images, tiny_unet  # noqa: E402

from i2sb.config import to_train_config  # noqa: E402
from i2sb.methods import task_degradation  # noqa: E402
from i2sb.train import train  # noqa: E402
from i2sb.training.dist import DistInfo  # noqa: E402
from i2sb.training.trainer import Trainer  # noqa: E402

DATA = f"i2sb{'/'}data{'/'}"  # frames of the data pipeline: host work (in loader workers on a cluster)
INPUT_CHECK = "check_range"  # i2sb.restoration.restorer: the input's range, read once per restoration


class Traffic(TorchDispatchMode):
    """Counts ``read`` (a tensor read into Python), ``host data`` (a tensor from Python data) and ``host table``
    (a float64 tensor copied) per phase; :meth:`mark` starts a new phase."""

    def __init__(self, skip_data: bool = False):
        super().__init__()
        self.phases: list[Counter] = [Counter()]
        self.dtypes: Counter = Counter()
        self.skip_data = skip_data

    def mark(self) -> None:
        self.phases.append(Counter())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kind = event(func, args)
        if kind == "read" and any(f.name == INPUT_CHECK for f in traceback.extract_stack()):
            kind = "input check"
        if kind and not (self.skip_data and any(DATA in f.filename for f in traceback.extract_stack())):
            self.phases[-1][kind] += 1
            if kind == "read":
                self.dtypes[args[0].dtype] += 1
        return func(*args, **(kwargs or {}))

    def total(self, phases: slice = slice(None)) -> Counter:
        return sum(self.phases[phases], Counter())


def event(func, args) -> str | None:
    name = func.__name__
    if name.startswith("_local_scalar_dense"):
        return "read"
    if name.startswith("lift_fresh"):
        return "host data"
    if name.startswith("_to_copy") and args[0].dtype == torch.float64:
        return "host table"
    if name.startswith("copy_") and args[1].dtype == torch.float64:
        return "host table"
    return None


# ---------------------------------------------------------------------------- training
def test_a_training_step_reads_nothing_back_and_copies_nothing_from_the_host(tmp_path):
    cfg = to_train_config(tiny_config(tmp_path, trainer={"batch_size": 4, "microbatch": 2}))
    trainer = Trainer(cfg, DistInfo(device=torch.device("cpu")))
    deg = task_degradation(cfg.task, cfg.data.image_size)
    batches = [{"x0": images(2, 16, 16, k)} for k in range(2)]
    trainer.train_step(batches, deg)  # the optimiser's state is created at the first step
    with Traffic() as traffic:
        trainer.train_step(batches, deg)
        trainer.train_step(batches, deg)
    assert traffic.total() == Counter()


def test_the_training_loop_reads_back_at_logging_only(tmp_path):
    """Two runs that differ only in their number of steps read the same number of values: the steps read none
    (the reads are those of the final log line, the checkpoint's step count and the validation)."""
    counts = {}
    for steps in (2, 5):
        cfg = tiny_config(tmp_path / str(steps), trainer={"max_steps": steps, "log_every": 1000, "ckpt_every": 1000,
                                                          "eval_every": 1000, "batch_size": 2, "microbatch": 2})
        with Traffic(skip_data=True) as traffic:
            train(cfg)
        counts[steps] = traffic.total()
    assert counts[2] == counts[5]


# ---------------------------------------------------------------------------- restoration
CASES = {
    "ddpm": ({}, dict(nfe=4)),
    "ddpm ot_ode": ({"ot_ode": True}, dict(nfe=4)),
    "implicit": ({}, dict(nfe=4, sampler="implicit", eta=0.5)),
    "heun": ({"ot_ode": True}, dict(nfe=5, sampler="heun")),
    "multistep": ({"ot_ode": True}, dict(nfe=4, sampler="multistep")),
    "inpainting": ({}, dict(nfe=4, mask=hole(16, 16))),
    "inpainting implicit": ({}, dict(nfe=4, sampler="implicit", eta=0.5, mask=hole(16, 16))),
    "per-image generators": ({}, dict(nfe=4, generator=[torch.Generator().manual_seed(k) for k in range(2)])),
    "tiled": ({}, dict(nfe=4, tile=16, tile_overlap=4, size=(16, 28))),
    "tiled, batched": ({}, dict(nfe=4, tile=16, tile_overlap=4, tile_batch=4, size=(16, 28))),
}


@pytest.mark.parametrize("case", CASES)
def test_a_sampler_step_reads_nothing_back_and_copies_nothing_from_the_host(case):
    task, settings = CASES[case]
    restorer = bridge_restorer(tiny_unet(), **task)
    height, width = settings.pop("size", (16, 16))
    x1 = images(2, height, width, 0)
    settings.setdefault("generator", torch.Generator().manual_seed(0))
    with torch.no_grad():
        restorer.restore(x1, **settings)  # the bridge copies its tables to the device at first use, then keeps them
        traffic = Traffic()
        restorer.denoiser.net.register_forward_pre_hook(lambda *_: traffic.mark())  # a new phase per network call
        with traffic:
            restorer.restore(x1, **settings)
    setup, steps = traffic.phases[0], traffic.total(slice(1, None))
    assert steps == Counter(), f"{case}: in the sampling loop"
    tiled = settings.get("tile") and max(height, width) > settings["tile"]
    expected = Counter({"input check": 1, **({"host table": 1} if tiled else {})})
    assert setup - Counter(read=setup["read"]) == expected, case
    assert set(traffic.dtypes) <= {torch.float64}, "reads of anything but the host's schedule tables"


def test_a_generator_on_another_device_is_one_line_before_any_work(monkeypatch):
    restorer = bridge_restorer(tiny_unet())
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(type(restorer), "device", property(lambda self: cuda))  # a model on the GPU
    monkeypatch.setattr(restorer.kind, "sampler", lambda *a, **k: pytest.fail("restored anyway"))
    for generator in (torch.Generator(), [torch.Generator(), torch.Generator()]):
        with pytest.raises(ValueError) as err:
            restorer.restore(images(2, 16, 16, 0), generator=generator)
        message = str(err.value)
        assert "\n" not in message and "generator is on cpu but the model is on cuda:0" in message
        assert "torch.Generator(device='cuda:0')" in message
