"""Stopping training: Ctrl-C saves and exits 130, a second Ctrl-C aborts, SIGTERM/SIGUSR1 save and exit 0,
handlers are scoped, a launcher's own handler (submitit's requeue) runs after the save, resume is exact."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from helpers import tiny_config
from i2sb.data import infinite_loader
from i2sb.train import train
from i2sb.training.stop import StopSignals, TrainingInterrupted
from i2sb.training.trainer import Trainer
from i2sb.utils.torchfile import load_torch

WORKER = Path(__file__).parent / "workers" / "stop_train.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
CLI_TINY = ["task=jpeg5", "model=tiny", "data=demo", "trainer=cpu", "data.image_size=16", "data.num_workers=0",
            "+data.params.length=64", "trainer.batch_size=4", "trainer.microbatch=2", "trainer.log_every=1",
            "trainer.eval_every=100000", "trainer.ckpt_every=100000", "trainer.precision=fp32", "device=cpu",
            "logging.progress=false"]


def handlers() -> dict:
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)}


def test_signals_only_record_a_request_and_handlers_are_restored():
    before = handlers()
    with StopSignals() as stop:
        assert not stop.requested
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGUSR1)
        assert stop.requested and not stop.interrupted and stop.reason() == "SIGTERM+SIGUSR1"
    assert handlers() == before


@pytest.mark.parametrize("inherited", [signal.default_int_handler, signal.SIG_IGN], ids=["python-default", "ignored"])
def test_a_second_ctrl_c_aborts_at_once(inherited):
    """Whatever SIGINT handler the process had (Python's, or SIG_IGN under ``nohup`` / ``&``), two Ctrl-C abort
    inside the block and the handler is given back afterwards."""
    outer = signal.signal(signal.SIGINT, inherited)
    try:
        with StopSignals(same_ctrl_c_s=0.0) as stop:
            signal.raise_signal(signal.SIGINT)
            assert stop.interrupted
            with pytest.raises(KeyboardInterrupt, match="second Ctrl-C"):
                signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is inherited
    finally:
        signal.signal(signal.SIGINT, outer)


def test_under_torchrun_the_forwarded_copy_of_a_ctrl_c_is_not_a_second_one():
    now = [100.0]
    with StopSignals(same_ctrl_c_s=1.0, clock=lambda: now[0]) as stop:
        signal.raise_signal(signal.SIGINT)
        now[0] += 0.01  # the agent's forwarded SIGINT
        signal.raise_signal(signal.SIGINT)
        assert stop.received == [signal.SIGINT]
        now[0] += 2.0  # the user presses again
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)


def test_the_previous_python_handler_runs_after_the_save_not_in_the_step():
    calls = []
    old = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))
    try:
        with StopSignals() as stop:
            signal.raise_signal(signal.SIGUSR2)
            assert calls == [] and stop.requested
        stop.run_deferred_handlers()
        assert calls == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, old)


def test_outside_the_main_thread_nothing_is_installed():
    before, seen = handlers(), []

    def enter():
        with StopSignals() as stop:
            seen.append(stop._previous)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert seen == [{}] and handlers() == before


def signal_during_step(monkeypatch, step: int, sig: signal.Signals) -> None:
    """Raise ``sig`` in the middle of optimiser step ``step`` (counting from 1)."""
    original = Trainer.train_step

    def step_then_signal(self, batches, deg):
        loss = original(self, batches, deg)
        if self.step == step:
            signal.raise_signal(sig)
        return loss

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)


@pytest.mark.slow
def test_preemption_saves_at_the_step_boundary_and_resume_is_exact(tmp_path, monkeypatch):
    sig = signal.SIGTERM
    full, split = tmp_path / "full", tmp_path / "split"
    train(tiny_config(full, trainer={"max_steps": 5, "ckpt_every": 100}))
    with monkeypatch.context() as patch:
        signal_during_step(patch, 3, sig)
        summary = train(tiny_config(split, trainer={"max_steps": 5, "ckpt_every": 100}))
    assert summary["preempted"] and summary["step"] == 3 and summary["stop_reason"] == sig.name
    assert load_torch(split / "latest.pt")["step"] == 3
    assert train(tiny_config(split, trainer={"max_steps": 5, "ckpt_every": 100}))["step"] == 5
    a, b = load_torch(full / "latest.pt"), load_torch(split / "latest.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["ema"]["state_dict"][key], b["ema"]["state_dict"][key]), key


def test_ctrl_c_saves_then_raises_training_interrupted(tmp_path, monkeypatch):
    signal_during_step(monkeypatch, 2, signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match=r"at step 2: saved .*latest\.pt; run the same command again"):
        train(tiny_config(tmp_path, trainer={"max_steps": 5, "ckpt_every": 100}))
    assert load_torch(tmp_path / "latest.pt")["step"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def start_cli(run_dir: Path, max_steps: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "i2sb.train", *CLI_TINY, f"trainer.max_steps={max_steps}", f"run_dir={run_dir}"]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return sum(1 for line in path.read_text().splitlines() if '"loss"' in line) if path.is_file() else 0


@pytest.mark.parametrize("sig, code, what", [(signal.SIGINT, 130, "interrupted (Ctrl-C)"),
                                             (signal.SIGTERM, 0, "stopped (SIGTERM)")])
def test_cli_saves_on_a_signal_with_one_line_and_resumes(tmp_path, sig, code, what):
    proc = start_cli(tmp_path, 100_000)
    wait_for(lambda: logged_steps(tmp_path) >= 2, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-2000:]
    lines = [line for line in (out + err).splitlines() if what in line]
    assert len(lines) == 1 and "latest.pt; run the same command again" in lines[0], out + err
    step = load_torch(tmp_path / "latest.pt")["step"]
    assert f"at step {step}:" in lines[0]
    resumed = start_cli(tmp_path, step + 1)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err[-2000:]
    assert f"resumed from {tmp_path / 'latest.pt'} at step {step}" in out
    assert load_torch(tmp_path / "latest.pt")["step"] == step + 1


def test_second_ctrl_c_aborts_and_keeps_the_last_checkpoint(tmp_path):
    proc = subprocess.Popen([sys.executable, str(WORKER), str(tmp_path), "100", "1.5"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    steps = tmp_path / "steps0"
    wait_for(lambda: steps.is_file() and "3" in steps.read_text().split(), proc)  # in step 3's 1.5 s
    before = (tmp_path / "latest.pt").stat().st_mtime_ns
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "second Ctrl-C" in err, err[-2000:]
    assert (tmp_path / "latest.pt").stat().st_mtime_ns == before
    assert load_torch(tmp_path / "latest.pt")["step"] == 2
    assert not (tmp_path / "rank0.json").exists()


class SignalDispositions(torch.utils.data.Dataset):
    """Reports, from inside a loader worker, whether the stop signals are ignored there."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict:
        ignored = [signal.getsignal(s) is signal.SIG_IGN for s in (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)]
        return {"ignored": torch.tensor(ignored)}


def test_loader_workers_ignore_the_stop_signals_the_main_process_handles():
    batch = next(infinite_loader(SignalDispositions(), 2, num_workers=1))
    assert batch["ignored"].all()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the main process is untouched
