"""Worker for test_ddp.py, run under torchrun: trains a tiny model and records, per rank, the final
weights and a fingerprint of every microbatch it saw (test-only instrumentation via monkeypatching)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import tiny_config  # noqa: E402

from i2sb.train import train  # noqa: E402
from i2sb.training.trainer import Trainer  # noqa: E402

run_dir = Path(sys.argv[1])
seen: list[float] = []
initial: dict[str, torch.Tensor] = {}
original_step = Trainer.train_step
original_save = Trainer.save


def recording_step(self, batches, deg):
    if not initial:
        initial.update({k: v.clone() for k, v in self.unet.state_dict().items()})
    seen.extend(float(b["x0"].double().sum()) for b in batches)
    return original_step(self, batches, deg)


def recording_save(self, keep=False):
    original_save(self, keep)
    state = {"model": self.unet.state_dict(), "ema": self.ema.module.state_dict(), "seen": torch.tensor(seen),
             "initial": initial}
    torch.save(state, run_dir / f"rank{self.info.rank}.pt")


Trainer.train_step = recording_step
Trainer.save = recording_save
train(tiny_config(run_dir, trainer={"batch_size": 8, "microbatch": 2, "max_steps": 3, "ckpt_every": 3}))
