"""Every config group composes through Hydra, validates, and instantiates; CLI errors are one line."""

from __future__ import annotations

import pytest
import torch
from helpers import group

from i2sb import degrade
from i2sb.cli import compose, group_options, train_main
from i2sb.config import to_train_config
from i2sb.training.trainer import build_unet

TASKS = group_options("task")
MODELS = group_options("model")


def test_groups_are_complete():
    assert set(TASKS) >= {"jpeg5", "jpeg10", "sr4x_pool", "sr4x_bicubic", "blur_uni", "blur_gauss",
                          "inpaint_center", "inpaint_freeform1020", "inpaint_freeform2030", "colorize", "paired"}
    assert set(MODELS) >= {"adm256", "small", "tiny"}
    assert set(group_options("data")) >= {"imagefolder", "paired", "demo"}
    assert set(group_options("trainer")) >= {"default", "cpu"}


@pytest.mark.parametrize("task", TASKS)
def test_every_task_composes_and_builds_its_degradation(task):
    cfg = to_train_config(compose("train", [f"task={task}", "model=tiny", "data=demo"]))
    assert cfg.task.name == task and cfg.run_dir == f"runs/{task}"
    authors = {"jpeg5": 0.3, "jpeg10": 0.3, "sr4x_pool": 0.3, "sr4x_bicubic": 0.3,
               "blur_uni": 1.0, "blur_gauss": 1.0, "inpaint_center": 1.0,
               "inpaint_freeform1020": 1.0, "inpaint_freeform2030": 1.0}
    if task in authors:  # scripts/train.sh: beta_max 0.3 (JPEG, SR), 1.0 + OT-ODE (blur, inpainting)
        assert cfg.task.beta_max == authors[task] and cfg.task.ot_ode == (authors[task] == 1.0)
    if cfg.task.degradation is None:
        return
    deg = degrade.build(cfg.task.degradation, 16, **cfg.task.params)
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    x1, mask = deg(x0, generator=torch.Generator().manual_seed(0))
    assert x1.shape == x0.shape and (mask is not None) == task.startswith("inpaint")


@pytest.mark.parametrize("model", MODELS)
def test_every_model_composes_and_instantiates(model):
    cfg = to_train_config(compose("train", ["task=jpeg5", f"model={model}", "data=demo"]))
    with torch.device("meta"):  # adm256 has 553M parameters: build it without allocating them
        unet = build_unet(cfg)
    n_params = sum(p.numel() for p in unet.parameters())
    expected = {"adm256": 552_807_171, "tiny": 318_691}
    if model in expected:
        assert n_params == expected[model]
    assert cfg.data.image_size == cfg.model.image_size


def test_adm256_matches_the_authors_network():
    cfg = group("model", "adm256")
    from i2sb.unet import adm256_kwargs, attention_ds

    ref = adm256_kwargs(cond_x1=False)
    for key in ("model_channels", "num_res_blocks", "num_head_channels", "num_heads", "use_scale_shift_norm",
                "resblock_updown", "use_new_attention_order", "image_size", "out_channels"):
        assert cfg[key] == ref[key], key
    assert tuple(cfg["channel_mult"]) == tuple(ref["channel_mult"])
    assert sorted(cfg["attention_resolutions"]) == sorted(attention_ds(256, "32,16,8"))


@pytest.mark.parametrize("data", ["imagefolder", "paired"])
def test_folder_data_needs_a_root(data):
    with pytest.raises(ValueError, match="data.root"):
        to_train_config(compose("train", ["task=jpeg5", "model=tiny", f"data={data}"]))


def test_trainer_groups_instantiate(tmp_path):
    for trainer in group_options("trainer"):
        cfg = to_train_config(compose("train", ["task=jpeg5", "model=tiny", "data=demo", f"trainer={trainer}"]))
        assert cfg.trainer.batch_size % cfg.trainer.microbatch == 0
    default = to_train_config(compose("train", ["task=jpeg5", "model=tiny", "data=demo"]))
    t = default.trainer  # the authors' optimisation
    assert (t.lr, t.lr_gamma, t.lr_step, t.ema, t.batch_size, t.microbatch) == (5e-5, 0.99, 1000, 0.99, 256, 2)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["model=tiny"], "task: missing; add task=<name>, one of: blur_gauss"),
        (["task=jpeg5", "trainer.lrr=1"], "trainer.lrr"),
        (["task=nope"], "task"),
        (["task=jpeg5", "data=demo", "trainer.precision=fp8"], "trainer.precision"),
    ],
)
def test_cli_errors_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2
    assert message in err and len(err.splitlines()) == 1, err


def test_cli_prints_config(capsys):
    with pytest.raises(SystemExit) as exit_:
        train_main(["task=sr4x_pool", "model=tiny", "data=demo", "--cfg"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "degradation: sr4x_pool" in out and "model_channels: 32" in out
