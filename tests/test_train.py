"""Training: Algorithm 1 on tiny models — learning, exact resume, non-finite steps, config errors, ADM init."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import group, tiny_config

from i2sb.config import ConfigError, TrainerConfig, to_train_config
from i2sb.methods import BridgeMethod, make_pair, task_degradation
from i2sb.methods.base import draw_steps
from i2sb.nets.guided_diffusion import load_adm_init
from i2sb.utils.file_formats import CHECKPOINT_FORMAT
from i2sb.train import train
from i2sb.training.dist import DistInfo
from i2sb.training.loop import TrainingError, cpu_batch_hint
from i2sb.training.trainer import Trainer, micro_steps, step_generator
from i2sb.unet import UNet
from i2sb.utils.torchfile import load_torch

CPU = DistInfo(device=torch.device("cpu"))


def degradation(cfg):
    return task_degradation(cfg.task, cfg.data.image_size)


def demo_batch(n: int = 4, size: int = 16) -> dict[str, torch.Tensor]:
    from i2sb.data import DemoImages

    ds = DemoImages(size, "train", length=n)
    return {"x0": torch.stack([ds.item(i, torch.Generator().manual_seed(i))["x0"] for i in range(n)])}


def test_loss_decreases_on_a_fixed_batch(tmp_path):
    cfg = to_train_config(tiny_config(tmp_path, trainer={"batch_size": 4, "microbatch": 4, "lr": 2e-3}))
    trainer = Trainer(cfg, CPU)
    deg = degradation(cfg)
    batch = demo_batch()

    def eval_loss() -> float:  # same t and noise every time: a fixed objective
        g = torch.Generator().manual_seed(123)
        pair = make_pair(batch, deg, cfg.task, g, CPU.device)
        with torch.no_grad():
            return float(trainer.method.loss(trainer.denoiser, pair, g))

    before = eval_loss()
    for _ in range(30):
        trainer.train_step([batch], deg)
    after = eval_loss()
    assert after < 0.5 * before, (before, after)


def test_train_step_accumulates_the_mean_gradient(tmp_path):
    """Two microbatches of 2 with the loss scaled by 1/2 give the mean gradient (same random draws)."""
    cfg = to_train_config(tiny_config(tmp_path, trainer={"batch_size": 4, "microbatch": 2, "grad_clip": 0.0}))
    trainer = Trainer(cfg, CPU)
    with torch.no_grad():  # perturb the zero-initialised layers so gradients reach every parameter
        for p in trainer.unet.parameters():
            p.add_(0.01 * torch.randn_like(p))
    deg = degradation(cfg)
    batch = demo_batch()
    halves = [{"x0": batch["x0"][:2]}, {"x0": batch["x0"][2:]}]

    g = step_generator(cfg.seed, 0, 0, CPU.device)
    torch.manual_seed(g.initial_seed())
    losses = []
    for half in halves:
        pair = make_pair(half, deg, cfg.task, g, CPU.device)
        losses.append(trainer.method.loss(trainer.denoiser, pair, g))  # t_power: the method's own
    expected = torch.autograd.grad(sum(losses) / 2, list(trainer.unet.parameters()))

    total = trainer.train_step(halves, deg)  # gradients stay in .grad after the step
    torch.testing.assert_close(total, (sum(losses) / 2).detach(), rtol=1e-6, atol=0)
    for p, e in zip(trainer.unet.parameters(), expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-8)


def test_batch_size_must_divide(tmp_path):
    cfg = to_train_config(tiny_config(tmp_path, trainer={"batch_size": 6, "microbatch": 4}))
    with pytest.raises(ConfigError, match=r"trainer\.batch_size.*not divisible by world_size \(1\) x trainer\.microbatch \(4\)"):
        micro_steps(cfg, 1)
    with pytest.raises(ConfigError, match="world_size \\(4\\)"):
        micro_steps(to_train_config(tiny_config(tmp_path, trainer={"batch_size": 8, "microbatch": 4})), 4)


def test_cpu_hint_only_for_the_cluster_batch_on_cpu(tmp_path):
    big = to_train_config(tiny_config(tmp_path, trainer={"batch_size": 256, "microbatch": 2}))
    assert "trainer=cpu" in cpu_batch_hint(big, torch.device("cpu"))
    assert cpu_batch_hint(big, torch.device("cuda")) is None
    assert cpu_batch_hint(to_train_config(tiny_config(tmp_path)), torch.device("cpu")) is None


def test_config_errors_name_the_key(tmp_path):
    bad = tiny_config(tmp_path, trainer={"lrr": 1.0})
    with pytest.raises(ConfigError, match="trainer.lrr") as err:
        to_train_config(bad)
    assert "\n" not in str(err.value)
    missing = tiny_config(tmp_path)
    del missing["task"]["name"]
    with pytest.raises(ConfigError, match="task.name"):
        to_train_config(missing)
    with pytest.raises(ConfigError, match="trainer.precision"):
        to_train_config(tiny_config(tmp_path, trainer={"precision": "fp8"}))
    with pytest.raises(ConfigError, match="model.num_res_blocks"):
        to_train_config(tiny_config(tmp_path, model={"num_res_blocks": "two"}))


def test_run_writes_state_and_metrics(tmp_path, capsys):
    summary = train(tiny_config(tmp_path, trainer={"max_steps": 4, "eval_every": 4}))
    assert summary["step"] == 4 and summary["bad_steps"] == 0
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "samples" / "step_000000004.png").is_file()
    state = load_torch(tmp_path / "latest.pt")
    assert state["format"] == CHECKPOINT_FORMAT and state["step"] == 4
    assert set(state) >= {"model", "ema", "optimizer", "lr_scheduler", "rng", "config"}
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert any("val_psnr" in r and "val_psnr_nfe1" in r for r in records)
    assert "step 4: validation PSNR" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("task, warmup", [("jpeg5", 0), ("inpaint_center", 0), ("jpeg5", 3)])
def test_resume_gives_the_same_weights(tmp_path, task, warmup):
    """4 steps in one go == 2 steps, stop, resume for 2 more (same command), bit for bit on CPU."""
    full = tmp_path / "full"
    train(tiny_config(full, task=task, trainer={"max_steps": 4, "lr_warmup": warmup}))
    split = tmp_path / "split"
    train(tiny_config(split, task=task, trainer={"max_steps": 2, "lr_warmup": warmup}))
    summary = train(tiny_config(split, task=task, trainer={"max_steps": 4, "lr_warmup": warmup}))
    assert summary["step"] == 4
    a, b = load_torch(full / "latest.pt"), load_torch(split / "latest.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["ema"]["state_dict"][key], b["ema"]["state_dict"][key]), key
    assert a["lr_scheduler"] == b["lr_scheduler"]


def test_learning_rate_warms_up_linearly_under_the_step_decay(tmp_path):
    """lr_warmup=4, lr_step=3, gamma 0.5: step k runs at lr * min(1, (k+1)/4) * 0.5 ** (k // 3)."""
    cfg = to_train_config(tiny_config(tmp_path, trainer={"lr": 1e-3, "lr_warmup": 4, "lr_step": 3,
                                                         "lr_gamma": 0.5, "adam_beta2": 0.99}))
    trainer = Trainer(cfg, CPU)
    assert trainer.optimizer.param_groups[0]["betas"] == (0.9, 0.99)
    deg, batch, rates = degradation(cfg), demo_batch(2), []
    for _ in range(7):
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.train_step([batch, batch], deg)
    expected = [1e-3 * min(1, (k + 1) / 4) * 0.5 ** (k // 3) for k in range(7)]
    assert rates == pytest.approx(expected, rel=1e-12)


def test_without_warm_up_the_optimiser_is_the_authors(tmp_path):
    """trainer=default (and the schema): torch's AdamW betas and StepLR, as their checkpoints and ours before."""
    assert group("trainer", "default")["adam_beta2"] == TrainerConfig().adam_beta2 == 0.999
    assert group("trainer", "cpu")["adam_beta2"] == 0.99  # the small-budget recipe (README, equal budget)
    trainer = Trainer(to_train_config(tiny_config(tmp_path, trainer={"adam_beta2": 0.999})), CPU)
    assert trainer.optimizer.param_groups[0]["betas"] == (0.9, 0.999)
    assert isinstance(trainer.scheduler, torch.optim.lr_scheduler.StepLR)


@pytest.mark.parametrize("key, value", [("adam_beta2", 1.0), ("adam_beta2", -0.1), ("lr_warmup", -1), ("t_power", 0.0)])
def test_optimiser_settings_out_of_range_name_the_key(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"trainer.{key}"):
        to_train_config(tiny_config(tmp_path, trainer={key: value}))


def test_uniform_steps_are_algorithm_1s_draws():
    """t_power = 1 draws exactly torch.randint's steps (the stream of runs before the option)."""
    steps = draw_steps(0, 1000, 64, torch.Generator().manual_seed(3), torch.device("cpu"))
    torch.testing.assert_close(steps, torch.randint(0, 1000, (64,), generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("low, high, power", [(0, 1000, 2.0), (1, 1001, 2.0), (0, 1000, 0.5), (0, 10, 3.0)])
def test_skewed_steps_follow_the_power_law(low, high, power):
    """P(step < low + s) = (s / n)^t_power over [low, high), n = high - low."""
    steps = draw_steps(low, high, 400_000, torch.Generator().manual_seed(0), torch.device("cpu"), power)
    assert steps.dtype == torch.long and int(steps.min()) >= low and int(steps.max()) == high - 1
    n = high - low
    for s in sorted({max(1, round(f * n)) for f in (0.1, 0.25, 0.5, 0.75, 0.9)}):
        assert float((steps < low + s).double().mean()) == pytest.approx((s / n) ** power, abs=3e-3)


def test_trainer_draws_steps_with_its_t_power(tmp_path, monkeypatch):
    import i2sb.methods.bridge as bridge_method

    seen = []

    def spy(low, high, batch, g, device, t_power=1.0):
        steps = draw_steps(low, high, batch, g, device, t_power)
        seen.append((t_power, steps))
        return steps

    monkeypatch.setattr(bridge_method, "draw_steps", spy)
    cfg = to_train_config(tiny_config(tmp_path, trainer={"batch_size": 64, "microbatch": 64, "t_power": 20.0}))
    Trainer(cfg, CPU).train_step([demo_batch(64)], degradation(cfg))
    (power, steps), = seen
    assert power == 20.0 and int(steps.min()) > 500  # P(step < 500) = 2^-20 per draw


def test_resume_refuses_a_different_network(tmp_path):
    train(tiny_config(tmp_path, trainer={"max_steps": 1}))
    with pytest.raises(ConfigError, match="model.model_channels"):
        train(tiny_config(tmp_path, model={"model_channels": 64}, trainer={"max_steps": 2}))


@pytest.mark.parametrize("before, after", [(0, 3), (3, 0), (3, 5)])
def test_resume_refuses_a_different_warm_up(tmp_path, before, after):
    """The warm-up lives in the saved schedule: a changed lr_warmup is refused, the checkpoint left as it was."""
    train(tiny_config(tmp_path, trainer={"max_steps": 2, "lr_warmup": before}))
    saved = (tmp_path / "latest.pt").read_bytes()
    with pytest.raises(ConfigError, match=f"'trainer.lr_warmup' was {before} in the checkpoint but is {after} now"):
        train(tiny_config(tmp_path, trainer={"max_steps": 4, "lr_warmup": after}))
    assert (tmp_path / "latest.pt").read_bytes() == saved


def test_non_finite_steps_are_skipped_then_stop(tmp_path, monkeypatch):
    real = BridgeMethod.loss
    poisoned = {2, 3}  # optimiser steps whose loss is NaN
    calls = {"n": 0}

    def flaky(self, model, pair, g, *settings):
        loss = real(self, model, pair, g, *settings)
        step = calls["n"] // 2  # two microbatches per step
        calls["n"] += 1
        return loss * float("nan") if step in poisoned else loss

    monkeypatch.setattr(BridgeMethod, "loss", flaky)
    cfg = to_train_config(tiny_config(tmp_path))
    trainer = Trainer(cfg, CPU)
    deg = degradation(cfg)
    batch = demo_batch(2)
    snapshots = []
    for _ in range(5):
        trainer.train_step([batch, batch], deg)
        snapshots.append({k: v.clone() for k, v in trainer.unet.state_dict().items()})
    # steps 2 and 3 changed nothing, steps 1 and 4 did
    assert all(torch.equal(snapshots[1][k], snapshots[3][k]) for k in snapshots[1])
    assert not all(torch.equal(snapshots[3][k], snapshots[4][k]) for k in snapshots[3])
    assert int(trainer.bad_total) == 2 and int(trainer.bad_run) == 0

    poisoned.update(range(5, 100))
    with pytest.raises(TrainingError, match="non-finite for 5 consecutive steps"):
        train(tiny_config(tmp_path / "run", trainer={"max_steps": 50, "max_bad_steps": 5}))


# ------------------------------------------------------------------------------------- ADM init
def tiny_adm_kwargs(**kw):
    base = dict(image_size=16, in_channels=3, model_channels=32, out_channels=6, num_res_blocks=1,
                attention_resolutions=[2], channel_mult=[1, 1], num_head_channels=32,
                use_scale_shift_norm=True, resblock_updown=False)
    return {**base, **kw}


@pytest.mark.parametrize("cond_x1", [False, True])
def test_adm_init_surgery(tmp_path, cond_x1):
    torch.manual_seed(3)
    adm = UNet(**tiny_adm_kwargs())  # learn_sigma: 6 output channels
    with torch.no_grad():
        for p in adm.parameters():
            p.add_(torch.randn_like(p))
    path = tmp_path / "adm.pt"
    torch.save(adm.state_dict(), path)
    model = UNet(**tiny_adm_kwargs(out_channels=3, in_channels=6 if cond_x1 else 3))
    fresh_first = model.input_blocks[0][0].weight.detach().clone()
    load_adm_init(model, path)
    sd, ref = model.state_dict(), adm.state_dict()
    torch.testing.assert_close(sd["out.2.weight"], ref["out.2.weight"][:3], rtol=0, atol=0)
    torch.testing.assert_close(sd["out.2.bias"], ref["out.2.bias"][:3], rtol=0, atol=0)
    torch.testing.assert_close(sd["input_blocks.0.0.weight"][:, :3], ref["input_blocks.0.0.weight"], rtol=0, atol=0)
    if cond_x1:  # the extra x1 channels keep the model's own initialisation (authors' ckpt_util)
        torch.testing.assert_close(sd["input_blocks.0.0.weight"][:, 3:], fresh_first[:, 3:], rtol=0, atol=0)
    torch.testing.assert_close(sd["middle_block.1.qkv.weight"], ref["middle_block.1.qkv.weight"], rtol=0, atol=0)


def test_adm_init_mismatch_names_key_and_shapes(tmp_path):
    path = tmp_path / "adm.pt"
    torch.save(UNet(**tiny_adm_kwargs(model_channels=64)).state_dict(), path)
    model = UNet(**tiny_adm_kwargs(out_channels=3))
    with pytest.raises(ValueError, match=r"adm\.pt: does not match the configured U-Net: 'time_embed.0.weight' has shape \(256, 64\) in the file but \(128, 32\) in the model"):
        load_adm_init(model, path)


def test_model_init_from_config(tmp_path):
    torch.manual_seed(0)
    adm = UNet(**tiny_adm_kwargs(num_head_channels=32))
    path = tmp_path / "adm.pt"
    torch.save(adm.state_dict(), path)
    cfg = to_train_config(tiny_config(tmp_path / "run", model={"init": str(path)}))
    trainer = Trainer(cfg, CPU)
    torch.testing.assert_close(trainer.unet.state_dict()["out.2.weight"], adm.state_dict()["out.2.weight"][:3])
