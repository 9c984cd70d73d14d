"""Atomic checkpoint writes survive kill -9; loading errors are one line naming the file."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from i2sb.utils.files import remove_temp_files
from i2sb.utils.torchfile import load_torch, save_torch

WRITER = """
import sys, torch
sys.path.insert(0, {root!r})
from i2sb.utils.torchfile import save_torch
path, i = sys.argv[1], 0
print("ready", flush=True)
while True:
    i += 1
    save_torch({{"step": i, "blob": torch.full((4_000_000,), float(i))}}, path)
"""


def test_kill_during_write_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "latest.pt"
    save_torch({"step": 0, "blob": torch.zeros(4_000_000)}, path)
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=str(os.getcwd())))
    steps = set()
    for delay in (0.05, 0.13, 0.29, 0.41):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)  # mid-way through one of the ~16 MB writes
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = load_torch(path)
        assert torch.all(state["blob"] == float(state["step"]))
        steps.add(state["step"])
    assert len(steps) > 1  # the writer really was overwriting the file when it was killed
    leftovers = remove_temp_files(tmp_path)
    assert not list(tmp_path.glob(".*.tmp")) and all(not p.exists() for p in leftovers)


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pt: checkpoint file not found"):
        load_torch(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match=r"bad\.pt: not a checkpoint \(not a zip/pickle file\)") as err:
        load_torch(bad)
    assert "\n" not in str(err.value)
    truncated = tmp_path / "trunc.pt"
    torch.save({"w": torch.randn(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(ValueError, match=r"trunc\.pt: truncated or corrupt \("):
        load_torch(truncated)


def test_code_pickles_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(ValueError, match=r"evil\.pt: refusing unsafe global (posix|nt|os)\.system \(the file wants to run code"):
        load_torch(path)
