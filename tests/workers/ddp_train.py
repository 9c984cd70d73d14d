"""Worker for test_ddp.py, run under torchrun: trains a tiny model and records, per rank, the final
weights and a fingerprint of every microbatch it saw (test-only instrumentation via monkeypatching)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import tiny_config  # noqa: E402

import i2sb.train as train_mod  # noqa: E402

run_dir = Path(sys.argv[1])
seen: list[float] = []
original_step = train_mod.Trainer.train_step
original_save = train_mod.Trainer.save


def recording_step(self, batches, deg):
    seen.extend(float(b["x0"].double().sum()) for b in batches)
    return original_step(self, batches, deg)


def recording_save(self, keep=False):
    original_save(self, keep)
    state = {"model": self.unet.state_dict(), "ema": self.ema.module.state_dict(), "seen": torch.tensor(seen)}
    torch.save(state, run_dir / f"rank{self.info.rank}.pt")


train_mod.Trainer.train_step = recording_step
train_mod.Trainer.save = recording_save
train_mod.train(tiny_config(run_dir, trainer={"batch_size": 8, "microbatch": 2, "max_steps": 3, "ckpt_every": 3}))
