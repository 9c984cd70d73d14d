"""``i2sb-train`` / ``i2sb-sample`` as Hydra applications: help, --cfg/--info that validate, one-line errors whose
suggestion works, sweeps and run directories, task parameters, the paper's experiments, Slurm launchers."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from PIL import Image

from i2sb.cli import sample_main, train_main
from i2sb.cli.compose import group_options
from i2sb.cli.help_text import key_notes
from i2sb.config import DDNMConfig, SampleConfig

PAPER_TASKS = ["jpeg5", "jpeg10", "sr4x_pool", "sr4x_bicubic", "blur_uni", "blur_gauss", "inpaint_center",
               "inpaint_freeform1020", "inpaint_freeform2030"]
TINY = ["model=tiny", "data=demo", "trainer=cpu", "trainer.batch_size=2", "trainer.microbatch=2",
        "trainer.max_steps=1", "trainer.eval_every=1000", "trainer.ckpt_every=1", "trainer.eval_nfe=2",
        "trainer.eval_batch=2", "task.n_steps=100", "logging.progress=false", "device=cpu"]


def cli(main, argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


def composed(argv: list[str], capsys) -> dict:
    code, out, err = cli(train_main, [*argv, "--cfg", "job"], capsys)
    assert code == 0, err
    return yaml.safe_load(out)


def one_error(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------- help, --cfg, --info
def test_help_lists_groups_keys_and_an_example(capsys):
    code, out, _ = cli(train_main, ["--help"], capsys)
    assert code == 0
    for group in ("task", "model", "data", "trainer", "experiment"):
        assert f"\n{group}: " in out, group
    assert "jpeg5_imagenet" in out and "adm256" in out
    assert "lr: 5.0e-05" in out and "n_steps: 1000" in out and "crop: native" in out  # keys with defaults
    assert "i2sb-train task=jpeg5 model=tiny" in out  # an example


def test_cfg_job_prints_the_validated_config_with_every_task_key(capsys):
    cfg = composed(["task=sr4x_pool", "model=tiny", "data=demo"], capsys)
    assert cfg["task"]["degradation"] == "sr4x_pool" and cfg["model"]["model_channels"] == 32
    assert {"n_steps": 1000, "t0": 1e-4, "T": 1.0, "cond_x1": False}.items() <= cfg["task"].items()
    code, out, _ = cli(train_main, ["task=jpeg5", "data=demo", "-c", "job", "--resolve"], capsys)
    assert code == 0 and "run_dir: runs/jpeg5" in out and "image_size: 256" in out


def test_cfg_hydra_and_info_work(capsys):
    code, out, _ = cli(train_main, ["task=jpeg5", "data=demo", "--cfg", "hydra"], capsys)
    assert code == 0 and "chdir: false" in out and "dir: ${run_dir}" in out
    code, out, _ = cli(train_main, ["task=jpeg5", "data=demo", "--info"], capsys)
    assert code == 0 and "Defaults List" in out
    assert cli(train_main, ["--info", "defaults"], capsys)[0] == 0  # no task needed to look


@pytest.mark.parametrize("argv, message, fixed", [
    (["trainer.lrr=1e-4"], "trainer.lrr: unknown key; did you mean trainer.lr=1e-4?", ["trainer.lr=1e-4"]),
    (["+trainer.lrr=1e-4"], "trainer.lrr: unknown key; did you mean trainer.lr=1e-4?", ["trainer.lr=1e-4"]),
    (["trainr.lr=1e-4"], "trainr.lr: unknown key; did you mean trainer.lr=1e-4?", ["trainer.lr=1e-4"]),
    (["model=tny"], "model=tny: no such option; did you mean model=tiny? one of: adm256, small, tiny", ["model=tiny"]),
    (["hydra.run.dirr=x"], "hydra.run.dirr: unknown key; did you mean hydra.run.dir=x?", ["hydra.run.dir=x"]),
    (["task.params.qualty=5"], "task.params.qualty: not a parameter of degradation jpeg; did you mean "
                               "task.params.quality?", ["task.params.quality=5"]),
])
def test_a_misspelt_key_fails_in_one_line_with_a_suggestion_that_works(argv, message, fixed, capsys):
    base = ["task=jpeg5", "data=demo"]
    line = one_error(*cli(train_main, [*base, *argv, "--cfg", "job"], capsys)[::2])
    assert line == f"i2sb-train: error: {message}"
    composed([*base, *fixed], capsys)  # the suggestion, applied, composes and validates


def test_a_missing_task_and_bad_values_are_one_line(capsys):
    line = one_error(*cli(train_main, ["data=demo", "--cfg"], capsys)[::2])
    assert "task: missing; add task=<name>, one of: blur_gauss" in line and "experiment=<name>" in line
    line = one_error(*cli(train_main, ["task=jpeg5", "data=demo", "trainer.lr=abc"], capsys)[::2])
    assert line.startswith("i2sb-train: error: trainer.lr: Value 'abc'")
    line = one_error(*cli(train_main, ["-m", "task=jpeg5", "data=demo", "--cfg", "job"], capsys)[::2])
    assert line == "i2sb-train: error: only one of --run, --multirun, --cfg, --info, --shell-completion at a time"


# ---------------------------------------------------------------------------- task parameters
def test_task_parameters_are_plain_keys(capsys):
    assert composed(["task=jpeg10", "data=demo", "task.params.quality=5"], capsys)["task"]["params"] == {"quality": 5}
    cfg = composed(["task=sr4x_pool", "data=demo", "task.degradation=jpeg_libjpeg", "task.params.quality=5"], capsys)
    assert cfg["task"]["degradation"] == "jpeg_libjpeg" and cfg["task"]["params"] == {"quality": 5}
    assert composed(["task=jpeg5", "data=demo"], capsys)["task"]["params"] == {"quality": 5}


@pytest.mark.parametrize("argv, message", [
    (["task=sr4x_pool", "task.degradation=jpeg_libjpeg"],
     "task.params.quality: required by degradation jpeg_libjpeg; add task.params.quality=<value>"),
    (["task=jpeg5", "task.degradation=sr4x_pool"],
     "task.params.quality: not a parameter of degradation sr4x_pool; it takes none"),
    (["task=jpeg5", "task.degradation=nope"], "task.degradation: unknown 'nope'"),
])
def test_a_degradation_without_its_parameters_is_an_error_naming_the_key(argv, message, capsys):
    assert message in one_error(*cli(train_main, [*argv, "data=demo", "--cfg"], capsys)[::2])


# ---------------------------------------------------------------------------- the paper's experiments
def photo_folder(folder: Path) -> Path:
    """``folder`` with one small photo in it (a data folder without images is refused)."""
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8), (120, 60, 30)).save(folder / "photo.png")
    return folder


def imagenet_layout(root: Path) -> list[str]:
    """The folders (one photo each) and the ADM file (empty) a paper experiment reads, under ``root``; their
    overrides."""
    for folder in ("imagenet/train", "imagenet/val"):
        photo_folder(root / "data" / folder)
    (root / "data" / "256x256_diffusion_uncond.pt").touch()
    return ["data.root=data/imagenet/train", "data.val_root=data/imagenet/val"]


@pytest.mark.parametrize("task", PAPER_TASKS)
def test_every_paper_experiment_composes_with_its_data_roots(task, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    roots = imagenet_layout(tmp_path)
    cfg = composed([f"experiment={task}_imagenet", *roots, "--resolve"], capsys)
    assert cfg["task"]["name"] == task and cfg["run_dir"] == f"runs/{task}_imagenet"
    assert cfg["model"]["name"] == "adm256" and cfg["model"]["init"] == "data/256x256_diffusion_uncond.pt"
    assert cfg["data"]["crop"] == "resize" and cfg["data"]["root"] == "data/imagenet/train"
    t = cfg["trainer"]  # NVlabs/I2SB train.py defaults
    assert (t["lr"], t["batch_size"], t["microbatch"], t["ema"], t["lr_gamma"], t["lr_step"]) == \
        (5e-5, 256, 2, 0.99, 0.99, 1000)
    assert cfg["task"]["beta_max"] == (0.3 if task.startswith(("jpeg", "sr")) else 1.0)


def test_experiments_need_their_data_roots(capsys):
    assert set(group_options("experiment")) >= {f"{t}_imagenet" for t in PAPER_TASKS}
    line = one_error(*cli(train_main, ["experiment=jpeg5_imagenet"], capsys)[::2])
    assert line == "i2sb-train: error: data.root: missing; add data.root=<value>"
    line = one_error(*cli(train_main, ["experiment=jpeg5_imagenet", "data.root=/d", "--cfg"], capsys)[::2])
    assert line == "i2sb-train: error: data.val_root: missing; add data.val_root=<value>"


def test_your_own_experiments_with_config_dir(tmp_path, capsys):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /task: jpeg10\n  - override /data: demo\n")
    cfg = composed(["--config-dir", str(tmp_path), "experiment=mine"], capsys)
    assert cfg["task"]["name"] == "jpeg10" and cfg["data"]["kind"] == "demo"
    line = one_error(*cli(train_main, ["-cn", "sample"], capsys)[::2])
    assert line.startswith("i2sb-train: error: -cn: not supported")


def test_inputs_are_checked_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photos = photo_folder(tmp_path / "photos")
    argv = ["experiment=jpeg5_imagenet", f"data.root={photos}", f"data.val_root={photos}"]
    line = one_error(*cli(train_main, argv, capsys)[::2])
    assert line.startswith("i2sb-train: error: model.init: data/256x256_diffusion_uncond.pt: no such file")
    line = one_error(*cli(train_main, ["task=jpeg5", f"data.root={tmp_path / 'none'}"], capsys)[::2])
    assert line.endswith("data.root: " + str(tmp_path / "none") + ": no such folder")
    assert [p.name for p in tmp_path.iterdir()] == ["photos"] and [p.name for p in photos.iterdir()] == ["photo.png"]


# ---------------------------------------------------------------------------- run directories and sweeps
def test_run_dir_is_hydras_output_dir_and_a_rerun_resumes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(train_main, ["task=jpeg5", *TINY, "hydra.run.dir=out/x"], capsys)
    assert code == 0, err
    run = tmp_path / "out" / "x"
    assert (run / "latest.pt").is_file() and (run / ".hydra" / "config.yaml").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["run_dir"] == str(run)
    code, out, err = cli(train_main, ["task=jpeg5", *TINY, "run_dir=out/x", "trainer.max_steps=2"], capsys)
    assert code == 0 and f"resumed from {run / 'latest.pt'} at step 1" in out + err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # Hydra kept the working directory


def test_a_sweep_gives_every_job_its_run_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(train_main, ["-m", "task=jpeg5,jpeg10", *TINY, "hydra.sweep.dir=sweep"], capsys)
    assert code == 0, err
    runs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert [("task=jpeg10" in p.name, "task=jpeg5" in p.name) for p in runs] == [(True, False), (False, True)]
    for run in runs:
        assert (run / "latest.pt").is_file()
        assert yaml.safe_load((run / "config.yaml").read_text())["run_dir"] == str(run)
    line = one_error(*cli(train_main, ["--multirun", "task=jpeg5,jpeg10", "run_dir=r", *TINY], capsys)[::2])
    assert "run_dir: a sweep gives every job its own directory" in line


def test_shell_completion(capsys, monkeypatch):
    monkeypatch.setenv("COMP_LINE", "i2sb-train tas")
    code, out, _ = cli(train_main, ["--shell-completion", "query=bash"], capsys)
    assert code == 0 and "task=" in out.split()


# ---------------------------------------------------------------------------- Slurm launchers
@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
                    reason="needs hydra-submitit-launcher (pip install 'i2sb[slurm]')")
@pytest.mark.parametrize("launcher, nodes", [("slurm_8gpu", 1), ("slurm_multinode", 4)])
def test_slurm_launchers_compose(launcher, nodes, capsys):
    argv = [f"hydra/launcher={launcher}", "experiment=jpeg5_imagenet", "data.root=/d", "data.val_root=/v"]
    argv += ["hydra.launcher.nodes=4"] if nodes > 1 else []
    code, out, err = cli(train_main, [*argv, "--cfg", "hydra"], capsys)
    assert code == 0, err
    conf = yaml.safe_load(out)["hydra"]["launcher"]
    assert conf["_target_"].endswith("SlurmLauncher")
    assert (conf["nodes"], conf["gpus_per_node"], conf["tasks_per_node"]) == (nodes, 8, 8)
    assert conf["signal_delay_s"] > 0 and conf["max_num_timeout"] > 0


def test_launcher_configs_are_package_data():
    root = Path(__file__).resolve().parents[1]
    patterns = yaml.safe_load("[" + (root / "pyproject.toml").read_text().split("i2sb = [", 1)[1].split("]", 1)[0]
                              + "]")
    assert "configs/*/*/*.yaml" in patterns
    assert {"slurm_8gpu", "slurm_multinode"} <= set(group_options("hydra/launcher"))


# ---------------------------------------------------------------------------- i2sb-sample
def test_sample_help_describes_every_key_from_sample_yaml(capsys):
    code, out, _ = cli(sample_main, ["--help", "nfe=3"], capsys)
    assert code == 0
    described = {line.split(":")[0] for line in out.splitlines() if ": " in line and " # " in line}
    keys = {f.name for f in dataclasses.fields(SampleConfig)} | {f"  {f.name}" for f in dataclasses.fields(DDNMConfig)}
    assert keys - {"model"} <= described, keys - described  # model.*: the U-Net's own argument names
    assert re.search(r"\nnfe: 3 +# network evaluations; null = ", out)  # the value given, the yaml's words
    assert "i2sb-sample ckpt=runs/jpeg5 input=degraded/ output=restored/" in out


def test_key_notes_follow_nesting_groups_and_continuations():
    text = ("defaults:\n  - task: null   # a group\n  - _self_\na: 1   # first\n     # more\nb:\n  c: 2  # nested\n"
            "d: 3\n# a file comment\nhydra:\n  run: x  # Hydra's own\n")
    assert key_notes(text) == {"task": ["a group"], "a": ["first", "more"], "b.c": ["nested"]}


@pytest.mark.parametrize("argv", [["--ckpt", "x"], ["--ckpt=x"]])
def test_sample_dash_dash_options_get_a_one_line_hint(argv, capsys):
    line = one_error(*cli(sample_main, [*argv, "input=i", "output=o"], capsys)[::2])
    assert line == "i2sb-sample: error: --ckpt: not an option; settings are key=value overrides: write ckpt=x"


def test_sample_misspelt_key_and_nothing_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_error(*cli(sample_main, ["ckpt=r", "input=i", "output=o", "nfee=3"], capsys)[::2])
    assert line == "i2sb-sample: error: nfee: unknown key; did you mean nfe=3?"
    line = one_error(*cli(sample_main, ["ckpt=r", "input=i", "output=o"], capsys)[::2])
    assert line.startswith("i2sb-sample: error: ")
    assert list(tmp_path.iterdir()) == []  # no outputs/, no .hydra/, no log file
