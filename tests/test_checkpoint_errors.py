"""Every checkpoint or pickle that does not load is one line naming the file and the cause, never torch's
advice to disable ``weights_only`` nor its colour codes; resuming from a corrupt ``latest.pt`` names the kept
checkpoint to resume from."""

from __future__ import annotations

import pickle
import zipfile

import pytest
import torch
from helpers import tiny_config

from i2sb.evaluation import metrics
from i2sb.restoration.authors import read_options
from i2sb.restoration.checkpoints import network_spec
from i2sb.training.loop import train
from i2sb.training.resume import ResumeError, read_latest
from i2sb.utils.loaderrors import clean_reason
from i2sb.utils.torchfile import load_torch, save_torch

# Pickles that name a global, written opcode by opcode: nothing here is ever unpickled by Python (the refusal
# messages below name the global each one holds, which shows they are read as intended).
OS_SYSTEM = b"\x80\x02cos\nsystem\nq\x00X\x05\x00\x00\x00touchq\x01\x85q\x02Rq\x03."
OS_SYSTEM_PROTOCOL_4 = (b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93"
                        b"\x94\x8c\x05touch\x94\x85\x94R\x94.")
NAMESPACE = b"\x80\x02cargparse\nNamespace\nq\x00)\x81q\x01}q\x02b."  # torch's message for it has ANSI codes
FORBIDDEN = ("weights_only=False", "weights_only` set to `False", "add_safe_globals", "\x1b[")


def assert_one_clean_line(message: str, path, *parts: str) -> None:
    assert "\n" not in message and message.startswith(f"{path}: "), message
    assert not any(bad in message for bad in FORBIDDEN), message
    for part in parts:
        assert part in message, message


def zip_checkpoint(path, data_pkl: bytes) -> None:
    """A zip laid out as torch.save writes it, holding ``data_pkl`` as its pickle."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")


# ------------------------------------------------------------------------------------------ load_torch
def test_a_text_file_named_latest_pt_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "latest.pt"
    path.write_text("Not Found\n")
    with pytest.raises(ValueError) as err:
        load_torch(path, mmap=True)
    assert_one_clean_line(str(err.value), path, "not a checkpoint (not a zip/pickle file)")


def test_a_git_lfs_pointer_says_so(tmp_path):
    path = tmp_path / "latest.pt"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 99\n")
    with pytest.raises(ValueError) as err:
        load_torch(path)
    assert_one_clean_line(str(err.value), path, "not a checkpoint", "git lfs pull")


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_truncated_checkpoint_is_truncated_or_corrupt(tmp_path, zip_format):
    path = tmp_path / "ckpt.pt"
    torch.save({"w": torch.randn(1000)}, path, _use_new_zipfile_serialization=zip_format)
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(ValueError) as err:
        load_torch(path, mmap=True)
    assert_one_clean_line(str(err.value), path, "truncated or corrupt (")
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="truncated or corrupt \\(empty file\\)"):
        load_torch(path)


@pytest.mark.parametrize("payload, name", [
    (OS_SYSTEM, "os.system"), (OS_SYSTEM_PROTOCOL_4, "os.system"), (NAMESPACE, "argparse.Namespace")])
@pytest.mark.parametrize("container", ["zip", "pickle"])
def test_unsafe_globals_are_refused_by_name(tmp_path, payload, name, container):
    path = tmp_path / "latest.pt"
    zip_checkpoint(path, payload) if container == "zip" else path.write_bytes(payload)
    with pytest.raises(ValueError) as err:
        load_torch(path, mmap=True)
    message = str(err.value).replace("posix.", "os.").replace("nt.", "os.")  # os.system's module per platform
    assert_one_clean_line(message, path, f"refusing unsafe global {name}", "wants to run code at load",
                          "i2sb never loads such files")


def test_an_ansi_coloured_multi_line_torch_message_becomes_one_clean_line(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_torch({"w": torch.zeros(1)}, path)
    text = ("Weights only load failed. This file can still be loaded, \x1b[1mdo those steps only if you trust the "
            "source\x1b[0m.\n\t(1) Re-running `torch.load` with `weights_only` set to `False` will likely succeed"
            "\n\n\x1b[31mstorage has wrong byte size\x1b[0m. Please file an issue.")

    def fail(*args, **kwargs):
        raise RuntimeError(text)

    monkeypatch.setattr(torch, "load", fail)
    with pytest.raises(ValueError) as err:
        load_torch(path)
    assert_one_clean_line(str(err.value), path, "truncated or corrupt (storage has wrong byte size)")


def test_clean_reason_keeps_the_cause_only():
    assert clean_reason("\x1b[1mPytorchStreamReader failed reading zip archive: bad\x1b[0m. This is an internal "
                        "error.") == "failed reading zip archive: bad"
    assert clean_reason("x" * 500, limit=50) == "x" * 47 + "..."


# -------------------------------------------------------------------------------- every loading site
def test_network_spec_and_the_eval_weights_report_the_same_causes(tmp_path):
    path = tmp_path / "evil.pt"
    zip_checkpoint(path, OS_SYSTEM)
    with pytest.raises(ValueError) as err:
        network_spec(path)
    assert_one_clean_line(str(err.value).replace("posix.", "os."), path, "refusing unsafe global os.system")
    with pytest.raises(ValueError) as err:
        metrics.load_inception(path)
    message = str(err.value).replace("posix.", "os.")
    assert "\n" not in message and "is not a FID Inception" in message and "refusing unsafe global os.system" in message
    assert not any(bad in message for bad in FORBIDDEN)


@pytest.mark.parametrize("content, cause", [
    (OS_SYSTEM, "refusing unsafe global os.system (the file wants to run code at load"),
    (b"<html>not found</html>", "not an options file (not a pickle file)"),
    (pickle.dumps({"interval": 1000}, protocol=2)[:-4], "truncated or corrupt ("),
])
def test_options_pkl_errors(tmp_path, content, cause):
    path = tmp_path / "options.pkl"
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        read_options(path)
    assert_one_clean_line(str(err.value), path, cause)


# ---------------------------------------------------------------------------------------------- resume
def _kept(run, step: int) -> None:
    save_torch({"format": "i2sb-checkpoint", "step": step}, run / f"ckpt_{step:09d}.pt")


def test_a_corrupt_latest_names_the_newest_readable_kept_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _kept(run, 200)
    _kept(run, 400)
    _kept(run, 600)
    (run / "ckpt_000000600.pt").write_bytes((run / "ckpt_000000600.pt").read_bytes()[:100])  # damaged too
    (run / "latest.pt").write_text("garbage")
    with pytest.raises(ResumeError) as err:
        read_latest(run / "latest.pt")
    assert_one_clean_line(str(err.value).removeprefix("cannot resume: "), run / "latest.pt",
                          "not a checkpoint", f"copy {run / 'ckpt_000000400.pt'} to {run / 'latest.pt'}",
                          "step 400", "resume=false")


def test_a_corrupt_latest_without_kept_checkpoints_says_how_to_start_over(tmp_path):
    (tmp_path / "latest.pt").write_bytes(b"PK\x03\x04broken")
    with pytest.raises(ResumeError) as err:
        read_latest(tmp_path / "latest.pt")
    assert "truncated or corrupt" in str(err.value) and "no readable ckpt_*.pt" in str(err.value)
    assert "resume=false" in str(err.value) and "\n" not in str(err.value)


def test_training_resumes_through_read_latest(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _kept(run, 2)
    (run / "latest.pt").write_text("garbage")
    with pytest.raises(ValueError, match=r"cannot resume: .*latest\.pt: not a checkpoint .*copy .*ckpt_000000002\.pt"):
        train(tiny_config(run))
