"""Small shared builders for tests (tiny configs and checkpoints)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CONFIGS = Path(__file__).resolve().parents[1] / "i2sb" / "configs"


def group(name: str, option: str) -> dict[str, Any]:
    """The contents of ``configs/{name}/{option}.yaml``."""
    return yaml.safe_load((CONFIGS / name / f"{option}.yaml").read_text())


def tiny_config(run_dir: Path | str, task: str = "jpeg5", **sections: dict[str, Any]) -> dict[str, Any]:
    """A complete training config for a 16 px tiny U-Net on the demo photos, CPU, a few steps."""
    cfg = {
        "task": group("task", task),
        "model": group("model", "tiny"),
        "data": {"kind": "demo", "image_size": 16, "num_workers": 0, "params": {"length": 64}},
        "trainer": {
            **group("trainer", "cpu"),
            "batch_size": 4,
            "microbatch": 2,
            "lr": 1e-3,
            "max_steps": 4,
            "ckpt_every": 2,
            "eval_every": 1000,
            "log_every": 1,
            "eval_nfe": 2,
            "eval_batch": 2,
            "precision": "fp32",  # exactness tests; "auto" is tested on its own
        },
        "logging": {"progress": False},
        "run_dir": str(run_dir),
        "device": "cpu",
        "seed": 0,
    }
    for key, values in sections.items():
        cfg[key] = {**cfg.get(key, {}), **copy.deepcopy(values)}
    return cfg
