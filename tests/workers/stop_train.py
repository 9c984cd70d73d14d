"""Worker for test_stop.py / test_cluster.py: trains the tiny model so a test can signal it mid-run.

Run as ``python stop_train.py RUN_DIR MAX_STEPS [STEP_SLEEP_S]`` (alone, under torchrun, or with a fake srun
environment), or submit :class:`TrainJob` with submitit. Test-only instrumentation (monkeypatching, as in
ddp_train.py): every rank writes ``pid{rank}`` at start, sleeps ``STEP_SLEEP_S`` after each step (a slow step
leaves time to signal) and appends the step to ``steps{rank}``; at the end it writes ``rank{rank}.json`` (the
summary) or exits 130 on Ctrl-C, as ``i2sb-train`` does.
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import tiny_config  # noqa: E402

from i2sb.train import train  # noqa: E402
from i2sb.training.trainer import Trainer  # noqa: E402

BATCH = {"batch_size": 8, "microbatch": 2}  # 2 ranks x 2 microbatches of 2


def config(run_dir: Path, max_steps: int) -> dict:
    return tiny_config(run_dir, trainer={**BATCH, "max_steps": max_steps, "ckpt_every": 2})


def instrument(run_dir: Path, step_sleep_s: float) -> None:
    original = Trainer.train_step

    def slow_step(self, batches, deg):
        loss = original(self, batches, deg)
        with open(run_dir / f"steps{self.info.rank}", "a") as f:
            f.write(f"{self.step}\n")
        time.sleep(step_sleep_s)
        return loss

    Trainer.train_step = slow_step


def run(run_dir: Path, max_steps: int, step_sleep_s: float) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    rank = os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or os.environ.get("SUBMITIT_LOCAL_GLOBALID") or "0"
    (run_dir / f"pid{rank}").write_text(str(os.getpid()))
    instrument(run_dir, step_sleep_s)
    summary = train(config(run_dir, max_steps))
    (run_dir / f"rank{rank}.json").write_text(json.dumps({k: summary.get(k) for k in ("step", "preempted")}))
    return summary


try:
    from submitit.helpers import Checkpointable, DelayedSubmission
except ImportError:  # submitit is optional; only the submitit test uses TrainJob
    Checkpointable = object


class TrainJob(Checkpointable):
    """A submitit callable as hydra-submitit-launcher's: ``checkpoint()`` resubmits the same call."""

    def __init__(self, run_dir: str, max_steps: int, step_sleep_s: float):
        self.args = (Path(run_dir), max_steps, step_sleep_s)

    def __call__(self) -> dict:
        return run(*self.args)

    def checkpoint(self, *args, **kwargs):
        return DelayedSubmission(self, *args, **kwargs)


if __name__ == "__main__":
    try:
        run(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
    except KeyboardInterrupt as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr, flush=True)
        sys.exit(130)
