"""What ``i2sb-train`` checks before Hydra writes anything: a refused run (a resume with another network, a damaged
``latest.pt``, a batch that does not split, a missing folder) leaves the run directory byte for byte as it was;
``--cfg job`` runs the same checks and still prints the config, missing values marked; ``--key value`` habits get
the full key; a sweep run again with more steps resumes its jobs; launchers are listed and checked; paths with
``=`` or quotes in their names work."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from i2sb.cli import sample_main, train_main
from i2sb.cli.hydra_app import prepare
from i2sb.cli.train import TOOL
from i2sb.utils.torchfile import load_torch

sys.path.insert(0, str(Path(__file__).parent))
from test_hydra import TINY, cli, one_error  # noqa: E402

SUBMITIT = importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None
needs_submitit = pytest.mark.skipif(not SUBMITIT, reason="needs hydra-submitit-launcher (pip install 'i2sb[slurm]')")


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` -> the SHA-256 of its bytes (``dir`` for a folder)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A one-step tiny run made by ``i2sb-train`` (its ``.hydra/`` record included)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    with pytest.raises(SystemExit) as exit_:
        train_main(["task=jpeg5", *TINY, f"run_dir={run}"])
    assert exit_.value.code == 0 and (run / ".hydra" / "config.yaml").is_file()
    return run


# ---------------------------------------------------------------------------- a refused run writes nothing
@pytest.mark.parametrize("change, message", [
    (["model.model_channels=16"], "cannot resume: config key 'model.model_channels' was 32 in the checkpoint but "
                                  "is 16 now (use a new run_dir, or resume=false to start over)"),
    (["method=palette"], "cannot resume: config key 'method' was 'i2sb' in the checkpoint but is 'palette' now"),
    (["task.beta_max=1.0"], "cannot resume: config key 'task.beta_max' was 0.3 in the checkpoint but is 1.0 now"),
    ([], "cannot resume: {latest}: truncated or corrupt"),  # latest.pt cut short, as by a full disk
])
@pytest.mark.parametrize("cfg_job", [False, True])
def test_a_refused_resume_leaves_the_run_directory_as_it_was(trained, change, message, cfg_job, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    if not change:
        latest = (run / "latest.pt").read_bytes()
        (run / "latest.pt").write_bytes(latest[: len(latest) // 2])
    before = tree(tmp_path)
    argv = ["task=jpeg5", *TINY, f"run_dir={run}", *change] + (["--cfg", "job"] if cfg_job else [])
    code, out, err = cli(train_main, argv, capsys)
    line = one_error(code, err)
    assert message.format(latest=run / "latest.pt") in line, line
    assert tree(tmp_path) == before  # .hydra/config.yaml and overrides.yaml still describe the checkpoint
    assert bool(out) == cfg_job  # --cfg job still shows the config


def test_a_resume_that_keeps_the_network_is_not_refused(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(trained, tmp_path / "run")
    code, out, err = cli(train_main, ["task=jpeg5", *TINY, "run_dir=run", "trainer.max_steps=2"], capsys)
    assert code == 0 and f"resumed from {tmp_path / 'run' / 'latest.pt'} at step 1" in out + err, err


# ---------------------------------------------------------------------------- --cfg job: the same checks
@pytest.mark.parametrize("argv, message", [
    (["task=jpeg5", "data.root=nonexistent"], "data.root: nonexistent: no such folder"),
    (["task=jpeg5", "data.root=.", "data.val_root=."],
     "data.root: .: no images found (supported extensions: .bmp, .jpeg, .jpg, .pgm, .png, .ppm, .tif, .tiff, .webp)"),
    (["task=jpeg5", "data=demo", "trainer.batch_size=3"],
     "trainer.batch_size: 3 is not divisible by world_size (1) x trainer.microbatch (2)"),
    (["task=jpeg5", "data=demo", "trainer.lr_step=0"], "trainer.lr_step: must be positive, got 0"),
])
def test_cfg_job_refuses_what_the_run_refuses_and_shows_the_config(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(train_main, argv, capsys)
    assert one_error(code, err) == f"i2sb-train: error: {message}" and out == ""
    code, out, err = cli(train_main, [*argv, "--cfg", "job"], capsys)
    assert one_error(code, err) == f"i2sb-train: error: {message}"
    assert yaml.safe_load(out)["task"]["name"] == "jpeg5"
    assert list(tmp_path.iterdir()) == []  # no runs/<dir>/.hydra, no log


def test_cfg_job_marks_what_is_missing(capsys):
    code, out, err = cli(train_main, ["task=jpeg5", "--cfg", "job"], capsys)
    assert one_error(code, err) == "i2sb-train: error: data.root: missing; add data.root=<value>"
    assert "  root: ???  # missing" in out.splitlines()
    cfg = yaml.safe_load(out)
    assert cfg["data"]["root"] == "???" and cfg["data"]["kind"] == "imagefolder" and cfg["trainer"]["lr"] == 5e-5
    code, out, err = cli(train_main, ["data=demo", "--cfg", "job", "--resolve"], capsys)
    assert "task: missing; add task=<name>" in one_error(code, err)
    assert "  name: ???  # missing" in out.splitlines() and "run_dir: runs/${task.name}" in out.splitlines()
    assert out.count("image_size: 256") == 2  # what resolves is resolved (data.image_size: ${model.image_size})
    code, out, err = cli(train_main, ["task=jpeg5", "data=demo", "--cfg", "job"], capsys)
    assert code == 0 and err == "" and "???" not in out


# ---------------------------------------------------------------------------- --key value habits
@pytest.mark.parametrize("argv, hint", [
    (["--lr", "1e-3"], "write trainer.lr=1e-3"),
    (["--lr=1e-3"], "write trainer.lr=1e-3"),
    (["--max-steps", "10"], "write trainer.max_steps=10"),
    (["--task", "jpeg5"], "write task=jpeg5"),
    (["--seed", "3"], "write seed=3"),
    (["--image-size", "32"], "write one of data.image_size=32, model.image_size=32"),
    (["--launcher", "basic"], "write hydra/launcher=basic"),
    (["--nope", "1"], "no key of that name (--help lists them)"),
])
def test_a_dash_dash_option_gets_the_full_key(argv, hint, capsys):
    line = one_error(*cli(train_main, ["task=jpeg5", "data=demo", *argv], capsys)[::2])
    assert line == f"i2sb-train: error: {argv[0].split('=')[0]}: not an option; settings are key=value overrides: " \
                   f"{hint}"
    if hint.startswith("write ") and "one of" not in hint:  # the suggestion works
        code, _, err = cli(train_main, ["task=jpeg5", "data=demo", hint.split()[1], "--cfg", "job"], capsys)
        assert code == 0, err


# ---------------------------------------------------------------------------- sweeps resume
def test_a_sweep_run_again_with_more_steps_resumes_its_jobs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = [o for o in TINY if not o.startswith("trainer.max_steps=")]
    for steps in (1, 2):
        code, out, err = cli(train_main, ["-m", "task=jpeg5", *tiny, f"trainer.max_steps={steps}",
                                          "trainer.log_every=1", "hydra.sweep.dir=sweep"], capsys)
        assert code == 0, err
    [job] = [p.parent for p in (tmp_path / "sweep").glob("*/latest.pt")]
    assert "max_steps" not in job.name and f"resumed from {job / 'latest.pt'} at step 1" in out + err
    assert load_torch(job / "latest.pt")["step"] == 2
    line = one_error(*cli(train_main, ["-m", "task=jpeg5", *tiny, "trainer.max_steps=1,2", "hydra.sweep.dir=sweep"],
                          capsys)[::2])
    assert "trainer.max_steps=1 and trainer.max_steps=2: both jobs would run in " in line


# ---------------------------------------------------------------------------- launchers
@needs_submitit
def test_a_wrong_launcher_lists_every_option(capsys):
    for wrong in ("slurm", "nope"):
        line = one_error(*cli(train_main, [f"hydra/launcher={wrong}", "task=jpeg5", "data=demo"], capsys)[::2])
        assert line.startswith(f"i2sb-train: error: hydra/launcher={wrong}: no such option; ")
        assert line.endswith("basic, slurm_8gpu, slurm_multinode, submitit_local, submitit_slurm"), line


@needs_submitit
def test_a_slurm_launcher_without_slurm_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no sbatch, no srun
    argv = ["-m", "hydra/launcher=slurm_8gpu", "task=jpeg5", "data=demo"]
    line = one_error(*cli(train_main, argv, capsys)[::2])
    assert line == ("i2sb-train: error: hydra/launcher=slurm_8gpu: Slurm's sbatch and srun not found on this "
                    "machine; submit from a Slurm login node, or use hydra/launcher=submitit_local to run the jobs "
                    "here")
    line = one_error(*cli(train_main, argv[1:], capsys)[::2])
    assert "hydra/launcher=slurm_8gpu: a launcher runs the jobs of a sweep; add -m" in line
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "bin").mkdir()
    for name in ("sbatch", "srun"):  # what a login node has: the same command passes every check
        (tmp_path / "bin" / name).write_text("#!/bin/sh\nexit 1\n")
        (tmp_path / "bin" / name).chmod(0o755)
    _, args = prepare(TOOL, [*argv, "device=cuda"])  # the GPUs are the cluster's, not this machine's
    assert "hydra/launcher=slurm_8gpu" in args.overrides


@needs_submitit
def test_a_submission_slurm_refuses_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bin").mkdir()
    refusal = "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified"
    (tmp_path / "bin" / "sbatch").write_text(f"#!/bin/sh\necho '{refusal}' >&2\nexit 1\n")
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    for name in ("sbatch", "srun"):
        (tmp_path / "bin" / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    code, _, err = cli(train_main, ["-m", "hydra/launcher=slurm_8gpu", "task=jpeg5", "data=demo",
                                    "hydra.sweep.dir=sweep"], capsys)
    assert code == 1 and "Traceback" not in err
    assert f"i2sb-train: error: Slurm refused the jobs: {refusal} (check hydra.launcher.partition" in err
    assert "HYDRA_FULL_ERROR" not in os.environ  # set only while the launcher ran


# ---------------------------------------------------------------------------- folder names
@pytest.mark.parametrize("name", ["a=b", "it's", "Été (2024)", "x,y[1]"])
def test_folders_with_any_name_can_be_passed(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / name / "photo.png")  # training refuses a folder without images
    code, out, err = cli(train_main, ["task=jpeg5", f"data.root={name}/", f"data.val_root={tmp_path / name}",
                                      "--cfg", "job"], capsys)
    assert code == 0, err
    assert yaml.safe_load(out)["data"]["root"] == f"{name}/"
    code, out, err = cli(sample_main, ["ckpt=c", f"input={name}", f"output={name}_out", "--cfg", "job"], capsys)
    assert code == 0 and yaml.safe_load(out)["input"] == name, err


def test_a_folder_named_like_a_sweep_needs_quotes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a,b").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a,b" / "photo.png")
    line = one_error(*cli(train_main, ["task=jpeg5", "data.root=a,b", "--cfg", "job"], capsys)[::2])
    assert "data.root=a,b" in line and "quote" in line, line  # Hydra reads a,b as two values
    code, out, err = cli(train_main, ["task=jpeg5", "data.root='a,b'", "--cfg", "job"], capsys)
    assert code == 0 and yaml.safe_load(out)["data"]["root"] == "a,b", err


def test_a_value_hydra_cannot_read_says_how_to_quote_it(capsys):
    for value in ("it's", "a=b"):
        line = one_error(*cli(train_main, [f"experiment={value}", "data=demo"], capsys)[::2])
        assert line.startswith(f"i2sb-train: error: experiment={value}: Hydra cannot read this value (")
        advice = line.split("goes in quotes: ")[1]
        [fixed] = shlex.split(advice)  # the advice, pasted into a shell, reaches Hydra as a quoted value
        line = one_error(*cli(train_main, [fixed, "data=demo"], capsys)[::2])
        assert line.startswith(f"i2sb-train: error: experiment={value}: no such option"), line
