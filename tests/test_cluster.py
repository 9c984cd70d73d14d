"""Launch environments (torchrun, srun, submitit), one-line launch errors instead of hangs, and coordinated stops
across ranks: a signal to one rank or to torchrun's agent stops every rank at the same step, saves once, resumes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from i2sb.training.dist import rendezvous
from i2sb.training.launchers import Launch, LaunchError, detect_launch, first_host, port_from_job_id
from i2sb.utils.torchfile import load_torch

WORKER = Path(__file__).parent / "workers" / "stop_train.py"
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")
ENV = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS and not k.startswith(("SLURM_", "SUBMITIT_"))}
ENV.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
CLI_TINY = ["task=jpeg5", "model=tiny", "data=demo", "trainer=cpu", "data.image_size=16", "data.num_workers=0",
            "device=cpu", "logging.progress=false"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- reading the environment
def test_torchrun_environment():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "node7", "MASTER_PORT": "29500",
           "TORCHELASTIC_RUN_ID": "x", "SLURM_NTASKS": "2"}
    assert detect_launch(env) == Launch(3, 4, 1, "node7", 29500, "torchrun")
    assert detect_launch({}) == Launch()


@pytest.mark.parametrize("env, missing", [
    ({"WORLD_SIZE": "2", "RANK": "0"}, "WORLD_SIZE=2 but MASTER_ADDR is not set: launch with torchrun"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "a"}, "MASTER_PORT is not set"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE is set but RANK is not: launch with torchrun"),
    ({"SLURM_NTASKS": "4", "SLURM_PROCID": "0"}, "SLURM_NTASKS=4 but SLURM_STEP_NUM_TASKS/SLURM_PROCID are not set"),
    ({"SLURM_STEP_NUM_TASKS": "2", "SLURM_LOCALID": "0"}, "SLURM_PROCID is not: start the tasks with srun"),
])
def test_incomplete_environments_are_one_line_errors(env, missing):
    with pytest.raises(LaunchError, match=missing) as err:
        detect_launch(env)
    assert "\n" not in str(err.value)


def test_srun_environment():
    env = {"SLURM_STEP_NUM_TASKS": "16", "SLURM_NTASKS": "16", "SLURM_PROCID": "9", "SLURM_LOCALID": "1",
           "SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "gpu[017-018,020],cpu1"}
    assert detect_launch(env) == Launch(9, 16, 1, "gpu017", port_from_job_id("4242"), "srun")
    assert detect_launch({**env, "MASTER_ADDR": "h", "MASTER_PORT": "1234"}) == Launch(9, 16, 1, "h", 1234, "srun")
    assert detect_launch({**env, "SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}).world_size == 1


@pytest.mark.parametrize("nodelist, host", [("node1", "node1"), ("gpu[003-005,9],cpu1", "gpu003"),
                                            ("a1,b[2-3]", "a1"), ("rack[1-2]-n[07-08]", "rack1-n07"),
                                            ("x[10]", "x10")])
def test_first_host_of_a_slurm_nodelist(nodelist, host):
    assert first_host(nodelist) == host


def test_port_from_job_id_is_stable_and_below_the_ephemeral_range():
    ports = {port_from_job_id(str(j)) for j in range(1000)}
    assert port_from_job_id("4242") == port_from_job_id("4242") and len(ports) > 900
    assert all(10000 <= p < 30000 for p in ports)


def test_submitit_environment(monkeypatch):
    pytest.importorskip("submitit")
    for key, value in {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "777", "SUBMITIT_LOCAL_NTASKS": "2",
                       "SUBMITIT_LOCAL_GLOBALID": "1", "SUBMITIT_LOCAL_LOCALID": "1", "SUBMITIT_LOCAL_NODEID": "0",
                       "SUBMITIT_LOCAL_JOB_NUM_NODES": "1"}.items():
        monkeypatch.setenv(key, value)
    assert detect_launch() == Launch(1, 2, 1, socket.gethostname(), port_from_job_id("777"), "submitit")


# ---------------------------------------------------------------- no hangs
def run_cli(env: dict, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "i2sb.train", *CLI_TINY, *args], env={**ENV, **env},
                            capture_output=True, text=True, timeout=120)
    return result, time.monotonic() - start


def test_slurm_ntasks_without_srun_fails_fast_with_one_line(tmp_path):
    result, seconds = run_cli({"SLURM_NTASKS": "4", "SLURM_PROCID": "0", "SLURM_JOB_ID": "1"}, f"run_dir={tmp_path}")
    assert result.returncode != 0 and seconds < 60
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "SLURM_NTASKS=4" in lines[0] and "srun" in lines[0], result.stderr


def test_rendezvous_timeout_is_one_line_within_the_timeout(tmp_path):
    env = {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "I2SB_RDZV_TIMEOUT_S": "3"}
    result, seconds = run_cli(env, f"run_dir={tmp_path}", "trainer.microbatch=4")  # batch 8 splits over 2 ranks
    assert result.returncode != 0 and seconds < 60
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "rendezvous failed (env, rank 0 of 2): waited 3 s for all processes" in lines[0]


def test_rendezvous_timeout_of_a_rank_that_cannot_reach_rank_0():
    start = time.monotonic()
    with pytest.raises(LaunchError, match=r"rank 1 of 2\): waited 1 s to reach rank 0 at 127\.0\.0\.1"):
        rendezvous(Launch(1, 2, 0, "127.0.0.1", free_port(), "srun"), 1.0)
    assert time.monotonic() - start < 5


def test_a_batch_that_does_not_split_over_the_ranks_is_refused_before_the_rendezvous(tmp_path):
    env = {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    result, seconds = run_cli(env, f"run_dir={tmp_path / 'run'}", "trainer.batch_size=6", "trainer.microbatch=2")
    assert result.returncode == 2 and seconds < 60 and not (tmp_path / "run").exists()
    assert result.stderr.strip() == ("i2sb-train: error: trainer.batch_size: 6 is not divisible by world_size (2) "
                                     "x trainer.microbatch (2)")


# ---------------------------------------------------------------- coordinated stops
def start_rank(run_dir: Path, env: dict, max_steps: int, sleep: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), str(run_dir), str(max_steps), str(sleep)],
                            env={**ENV, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_torchrun(run_dir: Path, max_steps: int, sleep: float) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(WORKER), str(run_dir), str(max_steps), str(sleep)]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_step(run_dir: Path, rank: int, step: int, procs: list, timeout: float = 120.0) -> None:
    path, deadline = run_dir / f"steps{rank}", time.monotonic() + timeout
    while not (path.is_file() and str(step) in path.read_text().split()):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def finished(run_dir: Path, rank: int) -> dict:
    return json.loads((run_dir / f"rank{rank}.json").read_text())


@pytest.mark.slow
def test_srun_tasks_stop_together_when_one_rank_is_signalled(tmp_path):
    common = {"SLURM_STEP_NUM_TASKS": "2", "SLURM_NTASKS": "2", "SLURM_JOB_ID": "99", "MASTER_PORT": str(free_port()),
              "SLURM_STEP_NODELIST": "localhost", "MASTER_ADDR": "127.0.0.1"}
    procs = [start_rank(tmp_path, {**common, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)}, 100, 0.5)
             for r in (0, 1)]
    wait_for_step(tmp_path, 1, 2, procs)
    procs[1].send_signal(signal.SIGUSR1)  # one rank only: the vote stops both at the same step
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    step = finished(tmp_path, 0)["step"]
    assert finished(tmp_path, 0) == finished(tmp_path, 1) == {"step": step, "preempted": True}
    assert 2 <= step < 100 and load_torch(tmp_path / "latest.pt")["step"] == step
    assert "stopped (another rank) at step" in outputs[0][0]


@pytest.mark.slow
def test_torchrun_stops_save_once_and_resume_exactly(tmp_path):
    run, reference = tmp_path / "run", tmp_path / "reference"
    # a signal to both ranks (Slurm's --signal=USR1 without B: reaches every task): torchrun exits 0
    agent = start_torchrun(run, 100, 0.5)
    wait_for_step(run, 0, 2, [agent])
    for rank in (0, 1):
        os.kill(int((run / f"pid{rank}").read_text()), signal.SIGUSR1)
    out, err = agent.communicate(timeout=60)
    assert agent.returncode == 0, err[-3000:]
    first = finished(run, 0)
    assert first == finished(run, 1) and first["preempted"] and load_torch(run / "latest.pt")["step"] == first["step"]
    # SIGTERM to the agent: it forwards it, both ranks save at one step and return; torchrun itself then
    # re-raises the signal it got (exit status 1, torch's design), whatever the ranks did
    agent = start_torchrun(run, 100, 0.5)
    wait_for_step(run, 0, first["step"] + 2, [agent])
    agent.send_signal(signal.SIGTERM)
    agent.communicate(timeout=60)
    second = finished(run, 0)
    assert second == finished(run, 1) and second["preempted"] and second["step"] > first["step"]
    assert load_torch(run / "latest.pt")["step"] == second["step"]
    # resume to the end, and compare with an uninterrupted run
    final = second["step"] + 1
    for run_dir in (run, reference):
        agent = start_torchrun(run_dir, final, 0.0)
        out, err = agent.communicate(timeout=120)
        assert agent.returncode == 0, err[-3000:]
        assert finished(run_dir, 0) == finished(run_dir, 1) == {"step": final, "preempted": False}
    a, b = load_torch(run / "latest.pt"), load_torch(reference / "latest.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["ema"]["state_dict"][key], b["ema"]["state_dict"][key]), key
