"""The one device resolver: ``auto`` = cuda, then mps, then cpu; an unavailable device is one line, exit 2 in
every command line that takes ``device=``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from i2sb.cli import run_eval
from i2sb.cli.sample import main as sample_main
from i2sb.cli.train import main as train_main
from i2sb.utils import device as devices
from i2sb.utils.device import DeviceError, available_devices, resolve_device


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine with ``cuda`` GPUs and/or MPS (``machine(cuda=2, mps=True)``)."""

    def set_up(cuda: int = 0, mps: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return set_up


@pytest.mark.parametrize("cuda, mps, expected", [
    (1, True, "cuda:0"),  # CUDA first
    (0, True, "mps"),  # then MPS
    (0, False, "cpu"),  # then the CPU
])
def test_auto_prefers_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert resolve_device("auto") == torch.device(expected)


def test_cuda_takes_the_local_rank(machine):
    machine(cuda=2)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda:1")
    assert resolve_device("auto", local_rank=1) == torch.device("cuda:1")
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda:0")  # an explicit index wins
    assert available_devices() == ["auto", "cpu", "cuda:0", "cuda:1"]


@pytest.mark.parametrize("cuda, mps, name, reason", [
    (0, False, "cuda", "CUDA is not available here"),
    (0, False, "mps", "MPS (Apple GPU) is not available here"),
    (1, False, "cuda:3", "this machine has 1 CUDA device(s)"),
    (0, True, "mps:1", "there is one MPS device"),
    (0, False, "tpu", "not a device i2sb runs on"),
    (0, False, "meta", "not a device i2sb runs on"),
    (0, False, "", "not a device i2sb runs on"),
])
def test_unavailable_devices_are_one_line_naming_the_key_and_what_is_here(machine, cuda, mps, name, reason):
    machine(cuda=cuda, mps=mps)
    with pytest.raises(DeviceError) as err:
        resolve_device(name, key="trainer.device")
    message = str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in message
    assert message.startswith(f"trainer.device={name}") and reason in message
    assert f"available here: {', '.join(available_devices())}" in message


def test_cpu_and_torch_devices_pass(machine):
    machine()
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")


def test_the_library_defaults_to_auto():
    import inspect

    from i2sb.evaluation.evaluate_folders import evaluate_folders
    from i2sb.restoration.loading import load, load_ddnm, load_denoiser

    for function in (load, load_ddnm, load_denoiser, evaluate_folders):
        assert inspect.signature(function).parameters["device"].default == "auto", function.__name__


# ----------------------------------------------------------------------------- every command line, device=mps
def _one_error_line(capsys, prog: str) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"{prog}: error: device=mps: MPS"), err
    assert "available here: auto, cpu" in err[0]
    return err[0]


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(folder / "a.png")
    return folder


@pytest.mark.skipif(devices.mps_available(), reason="needs a machine without MPS")
def test_train_with_an_unavailable_device_is_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["task=jpeg5", "model=tiny", "data=demo", "trainer=cpu", "device=mps", f"run_dir={tmp_path}/run"])
    assert exit_info.value.code == 2
    _one_error_line(capsys, "i2sb-train")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(devices.mps_available(), reason="needs a machine without MPS")
def test_sample_with_an_unavailable_device_is_exit_2(tmp_path, photos, capsys):
    (tmp_path / "run").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        sample_main([f"ckpt={tmp_path / 'run'}", f"input={photos}", f"output={tmp_path / 'out'}", "device=mps"])
    assert exit_info.value.code == 2
    _one_error_line(capsys, "i2sb-sample")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(devices.mps_available(), reason="needs a machine without MPS")
def test_eval_with_an_unavailable_device_is_exit_2(tmp_path, photos, capsys):
    assert run_eval([f"restored={photos}", f"reference={photos}", "fid=false", "device=mps"]) == 2
    _one_error_line(capsys, "i2sb-eval")
    assert not (photos / "metrics.json").exists()
