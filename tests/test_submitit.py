"""A 2-task submitit job (LocalExecutor, gloo) is preempted: SIGUSR2, submitit's preemption signal, reaches both
tasks; they save latest.pt at one step boundary, then submitit's own handler checkpoints the callable and requeues
the job, which resumes and ends with the weights of an uninterrupted job, bit for bit."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from i2sb.utils.torchfile import load_torch

WORKERS = Path(__file__).parent / "workers"
MAX_STEPS = 6


@pytest.fixture
def executor(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    # the job's processes inherit this environment: they unpickle workers/stop_train.py's TrainJob
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(WORKERS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.syspath_prepend(str(WORKERS))
    ex = submitit.LocalExecutor(folder=tmp_path / "submitit", max_num_timeout=3)
    ex.update_parameters(tasks_per_node=2, timeout_min=10)
    return ex


def wait_for_step(run_dir: Path, step: int, job, timeout: float = 120.0) -> None:
    path, deadline = run_dir / "steps0", time.monotonic() + timeout
    while not (path.is_file() and str(step) in path.read_text().split()):
        assert not job.done(), job.stderr()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_preempted_job_saves_requeues_and_resumes_exactly(tmp_path, executor):
    from stop_train import TrainJob

    run, reference = tmp_path / "run", tmp_path / "reference"
    job = executor.submit(TrainJob(str(run), MAX_STEPS, 0.5))
    wait_for_step(run, 2, job)
    for rank in (0, 1):  # as Slurm's --signal=USR2@... does: every task
        os.kill(int((run / f"pid{rank}").read_text()), signal.SIGUSR2)
    results = job.results()
    assert [r["step"] for r in results] == [MAX_STEPS, MAX_STEPS] and not any(r["preempted"] for r in results)
    log = job.stdout() + (job.stderr() or "")
    assert "stopped (SIGUSR2) at step" in log and "Requeued job" in log, log[-3000:]
    stop_step = int(log.split("stopped (SIGUSR2) at step ")[1].split(":")[0])
    assert 2 <= stop_step < MAX_STEPS and f"resumed from {run / 'latest.pt'} at step {stop_step}" in log

    done = executor.submit(TrainJob(str(reference), MAX_STEPS, 0.0)).results()
    assert [r["step"] for r in done] == [MAX_STEPS, MAX_STEPS]
    a, b = load_torch(run / "latest.pt"), load_torch(reference / "latest.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["ema"]["state_dict"][key], b["ema"]["state_dict"][key]), key
    assert sys.modules["stop_train"].TrainJob is TrainJob


@pytest.mark.slow
def test_hydra_submitit_local_launcher_trains_two_ranks_and_a_rerun_resumes(tmp_path):
    """The whole user path: ``i2sb-train -m hydra/launcher=submitit_local`` with 2 tasks (gloo): both ranks train
    one job, whose directory holds the run; the same command with more steps (same job directory) resumes it."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(steps: int) -> None:
        argv = ["-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2",
                "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=jpeg5", "task=jpeg5", "model=tiny",
                "data=demo", "trainer=cpu", "trainer.batch_size=4", "trainer.microbatch=2",
                f"trainer.max_steps={steps}", "trainer.eval_every=1000", "trainer.ckpt_every=1", "task.n_steps=100",
                "logging.progress=false", "device=cpu"]
        proc = subprocess.run([sys.executable, "-m", "i2sb.train", *argv], capture_output=True, text=True,
                              env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]

    run(2)
    [job_dir] = [p.parent for p in sweep.glob("*/latest.pt")]
    assert load_torch(job_dir / "latest.pt")["step"] == 2
    logs = sorted((sweep / ".submitit").glob("*/*_log.out"))
    assert [p.name.split("_")[1] for p in logs] == ["0", "1"]  # task 0 and task 1 of one job
    run(4)
    assert load_torch(job_dir / "latest.pt")["step"] == 4
    rerun = sorted((sweep / ".submitit").glob("*/*_0_log.out"), key=lambda p: p.stat().st_mtime)[-1]
    assert f"resumed from {job_dir / 'latest.pt'} at step 2" in rerun.read_text()
