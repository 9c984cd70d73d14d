"""Smoke test of the authors' code: ``python scripts/authors_code PATH`` (or ``$I2SB_AUTHORS``), one training
step and one NFE-10 restoration of a small U-Net."""

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: run as a folder, not a package
from authors_code import make_sampler, make_train_step  # noqa: E402

if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("I2SB_AUTHORS")
    kw = dict(image_size=64, model_channels=64, out_channels=3, num_res_blocks=2, attention_resolutions=(4,),
              channel_mult=(1, 2, 2), num_heads=1, num_head_channels=32, use_scale_shift_norm=True,
              resblock_updown=True)
    step = make_train_step(path, kw, batch=8, size=64, task="jpeg10")
    x0 = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    t = time.perf_counter()
    print(f"params {step.model.n_params() / 1e6:.2f}M, loss {step(x0):.4f}, {time.perf_counter() - t:.2f} s/step;"
          f" stubbed: {', '.join(step.model.code.stubbed) or 'none'}")
    x1, _ = step.model.corrupt(x0)
    t = time.perf_counter()
    out = make_sampler(path, kw, 64, model=step.model)(x1, 10)
    print(f"NFE-10 restoration {tuple(out.shape)} in {time.perf_counter() - t:.2f} s, finite={bool(out.isfinite().all())}")
